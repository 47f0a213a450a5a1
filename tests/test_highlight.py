"""Highlight planning and aggregation (reproduce.highlight, reproduce.moments): windows over a whole
video, per-frame weights, densities on a common grid, moments, rankings; each against a direct
construction."""

import numpy as np
import pytest

from reproduce.errors import ReproduceError
from reproduce.highlight import (
    Reading,
    WindowAssembler,
    WindowResult,
    WindowRows,
    check_reading,
    extracted_source,
    member_window,
    plan_windows,
)
from reproduce.highlights import ModelInfo, Settings, VideoInfo, summarize
from reproduce.moments import (
    FrameWeights,
    combine_curves,
    extreme_frames,
    find_moments,
    frame_times,
    strip_columns,
    top_classes,
)


def brute_force_windows(num_frames, frames, stride):
    """Windows by enumeration: every chunk-aligned start on the stride grid whose window fits the
    complete chunks, then the window ending at the last chunk if the video's end is not read yet."""
    covered = num_frames - num_frames % 16
    starts = [s for s in range(0, num_frames, stride) if s + frames <= covered]
    if starts and max(starts) + frames != covered:
        starts.append(covered - frames)
    return starts


@pytest.mark.parametrize("frames", [48, 192])
@pytest.mark.parametrize("stride", [None, 16, 32, 96, 240])
def test_windows_cover_the_video_with_full_windows(frames, stride):
    for num_frames in range(frames, frames + 400, 7):
        starts = plan_windows(num_frames, frames, stride)
        assert starts.tolist() == brute_force_windows(num_frames, frames, stride or frames)
        covered = num_frames // 16 * 16
        read = np.zeros(covered, bool)
        for s in starts:
            read[s:s + frames] = True
        assert starts[-1] + frames == covered and np.all(starts % 16 == 0)
        if stride is None or stride <= frames:
            assert read.all()                    # every complete chunk is read by some window


def test_short_videos_and_bad_strides_are_explained():
    with pytest.raises(ReproduceError, match="the video has 190 frames, fewer than one window of 192"):
        plan_windows(190, 192)
    with pytest.raises(ReproduceError, match="the video has 200 frames, fewer than one window of 208"):
        plan_windows(200, 208)                   # 200 frames hold 192 in complete chunks
    with pytest.raises(ReproduceError, match="--stride 20: give a multiple of 16"):
        plan_windows(500, 192, 20)


@pytest.mark.parametrize("stride", [None, 32, 144])
def test_assembler_streams_the_planned_windows_with_bounded_memory(stride):
    rng = np.random.default_rng(0)
    num_frames, frames = 613, 96
    chunks = num_frames // 16
    full = {"c3d_fc6": rng.normal(size=(chunks, 3)).astype(np.float32),
            "vgg_obj_fc8": rng.normal(size=(2 * chunks, 2)).astype(np.float32)}
    strides = {"c3d_fc6": 16, "vgg_obj_fc8": 8}
    assembler = WindowAssembler(strides, frames, stride)
    windows, done, most = [], 0, 0
    while done < chunks:                          # batches of 1 to 5 chunks, as decoding delivers them
        take = min(int(rng.integers(1, 6)), chunks - done)
        rows = {"c3d_fc6": full["c3d_fc6"][done:done + take],
                "vgg_obj_fc8": full["vgg_obj_fc8"][2 * done:2 * (done + take)]}
        done += take
        windows += assembler.add(rows, done * 16 + (num_frames % 16 if done == chunks else 0))
        most = max(most, assembler.counts["c3d_fc6"])
    windows += assembler.finish(num_frames)
    assert [w.start for w in windows] == plan_windows(num_frames, frames, stride).tolist()
    for w in windows:
        np.testing.assert_array_equal(w.rows["c3d_fc6"],
                                      full["c3d_fc6"][w.start // 16:(w.start + frames) // 16])
        np.testing.assert_array_equal(w.rows["vgg_obj_fc8"],
                                      full["vgg_obj_fc8"][w.start // 8:(w.start + frames) // 8])
    # between deliveries the assembler keeps at most one window of rows, whatever the video's length
    assert most <= frames // 16


def test_assembler_refuses_a_video_without_a_window():
    assembler = WindowAssembler({"c3d_fc6": 16}, 192)
    assert assembler.add({"c3d_fc6": np.zeros((11, 4))}, 183) == []
    with pytest.raises(ReproduceError, match="183 frames, fewer than one window of 192"):
        assembler.finish(183)


@pytest.mark.parametrize("per_step,source_stride", [(1, 8), (2, 8), (1, 16)])
def test_member_window_picks_one_input_per_chunk_and_the_attended_frames(per_step, source_stride):
    rng = np.random.default_rng(1)
    attended_source = "vgg_act_fc6" if source_stride == 8 else "c3d_fc8"
    strides = {"c3d_fc6": 16, attended_source: source_stride}
    reading = Reading("c3d_fc6", attended_source, 192, 12, per_step)
    check_reading(reading, strides, "model")
    rows = {"c3d_fc6": rng.normal(size=(12, 5)), attended_source: rng.normal(size=(192 // source_stride, 3))}
    inputs, attended, frames = member_window(WindowRows(320, rows), reading, strides)
    np.testing.assert_array_equal(inputs, rows["c3d_fc6"])
    T = 12 * per_step
    expected_frames = 320 + np.arange(T) * (192 // T)
    np.testing.assert_array_equal(frames, expected_frames)
    # row r of the window is frame 320 + r * stride
    np.testing.assert_array_equal(attended, rows[attended_source][(expected_frames - 320) // source_stride])


def test_check_reading_refuses_grids_the_video_cannot_give():
    with pytest.raises(ReproduceError, match="attends to c3d_fc8 every 8 frames"):
        check_reading(Reading("c3d_fc6", "c3d_fc8", 192, 12, 2), {"c3d_fc6": 16, "c3d_fc8": 16}, "m")
    with pytest.raises(ReproduceError, match="reads c3d_fc6 every 8 frames"):
        check_reading(Reading("c3d_fc6", None, 96, 12, 1), {"c3d_fc6": 16}, "m")


def test_extracted_source():
    assert extracted_source("c3d_fc6") == ("c3d", "fc6", False)
    assert extracted_source("vgg_obj_fc8") == ("vgg_obj", "fc8", False)
    assert extracted_source("vgg_obj_fc8").family == "obj" and extracted_source("c3d_fc8").stride == 16
    for bad in ("salient", "vgg_obj_fc8_flip", "c3d_pool5", "vgg_fc8", "resnet_fc8", "c3d_fc7pca"):
        with pytest.raises(ReproduceError, match=f"source '{bad}' cannot be extracted"):
            extracted_source(bad)


def test_frame_weights_average_steps_then_overlapping_windows():
    acc = FrameWeights(16)
    a1 = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])          # window at 0: frames 0, 16, 32
    a2 = np.array([[0.2, 0.2, 0.6], [0.4, 0.4, 0.2]])          # window at 16: frames 16, 32, 48
    np.testing.assert_allclose(acc.add(np.array([0, 16, 32]), a1), [0.3, 0.45, 0.25])
    acc.add(np.array([16, 32, 48]), a2)
    frames, weights = acc.result()
    assert frames.tolist() == [0, 16, 32, 48]
    np.testing.assert_allclose(weights, [0.3, (0.45 + 0.3) / 2, (0.25 + 0.3) / 2, 0.4])


def test_combine_curves_holds_each_density_over_its_cell():
    coarse = (np.array([0, 16, 32]), np.array([1.0, 2.0, 3.0]), 16)
    fine = (np.array([0, 8, 16, 24, 32]), np.array([4.0, 0.0, 2.0, 2.0, 1.0]), 8)
    grid, values, cell = combine_curves([coarse, fine], 48)
    assert cell == 8 and grid.tolist() == [0, 8, 16, 24, 32, 40]
    np.testing.assert_allclose(values, [2.5, 0.5, 2.0, 2.0, 2.0, 3.0])   # frame 40: only the coarse one
    grid, values, _ = combine_curves([coarse], 64)
    assert np.isnan(values[-1]) and values[:3].tolist() == [1.0, 2.0, 3.0]


def test_moments_merge_runs_rank_by_peak_and_clip_to_the_video():
    values = np.array([0.5, 2.0, 2.5, 0.4, 1.6, 0.2, 3.0, np.nan, 1.5])
    grid = np.arange(len(values)) * 16
    moments = find_moments(grid, values, 16, covered=140, threshold=1.5, top=5)
    assert [(m.start, m.end, m.peak_frame, m.peak) for m in moments] == [
        (96, 112, 96, 3.0), (16, 48, 32, 2.5), (64, 80, 64, 1.6), (128, 140, 128, 1.5)]
    assert moments[1].mean == pytest.approx(2.25)
    merged = find_moments(grid, values, 16, covered=140, threshold=1.5, top=2, gap=1)
    assert [(m.start, m.end, m.peak) for m in merged] == [(16, 140, 3.0)]   # one cell between hot cells
    assert find_moments(grid, values, 16, 140, threshold=5.0) == []


def test_rankings_and_times():
    scores = np.array([0.1, 0.4, 0.4, 0.05, 0.05])
    assert [c["index"] for c in top_classes(scores, list("abcde"), 3)] == [1, 2, 0]
    high, low = extreme_frames(np.array([0, 16, 32, 48]), np.array([0.2, 0.5, 0.1, 0.2]), 2)
    assert high.tolist() == [1, 0] and low.tolist() == [2, 0]
    frames = list(range(0, 384, 16))                                   # 24 frames → 12, ends kept
    assert strip_columns(frames, 12) == [frames[round(i * 23 / 11)] for i in range(12)]
    assert strip_columns([32, 0, 16, 16], 12) == [0, 16, 32]
    times = np.arange(10) / 25.0
    np.testing.assert_allclose(frame_times([0, 9, 10, 12], times), [0.0, 0.36, 0.4, 0.48])


def test_summarize_reports_windows_frames_and_moments_consistently():
    rng = np.random.default_rng(2)
    reading = Reading("c3d_fc6", "vgg_obj_fc8", 48, 3, 1)
    starts = plan_windows(150, 48, 32)                               # [0, 32, 64, 96]
    windows = []
    for s in starts.tolist():
        attention = rng.dirichlet(np.ones(3), size=3)                # (N, T), rows sum to 1
        windows.append(WindowResult(s, rng.dirichlet(np.ones(4)), [(s + 16 * np.arange(3), attention)]))
    times = np.arange(150) / 30.0
    model = ModelInfo("c.pt", "aLSTM-VGG_obj (fc8)", "c3d_fc6", "vgg_obj_fc8", 48, 3, 1, "a")
    out = summarize(windows, [reading], ["w", "x", "y", "z"], times, 150, video=VideoInfo("v.mp4", 30.0),
                    models=[model], settings=Settings(threshold=1.2)).to_json()
    np.testing.assert_allclose([c["score"] for c in out["top_classes"]],
                               np.sort(np.mean([w.scores for w in windows], axis=0))[::-1], rtol=1e-6)
    assert out["duration"] == pytest.approx(5.0) and out["frames_read"] == 144
    # per frame: the mean over the windows reading it of the window's step-averaged weight
    expected = {}
    for w in windows:
        frames, attention = w.attention[0]
        for f, v in zip(frames.tolist(), attention.mean(0).tolist(), strict=True):
            expected.setdefault(f, []).append(v)
    item = out["frames"][0]
    assert item["frames"] == sorted(expected)
    np.testing.assert_allclose(item["weights"], [np.mean(expected[f]) for f in sorted(expected)], atol=1e-6)
    np.testing.assert_allclose(item["density"], 3 * np.asarray(item["weights"]), atol=1e-5)
    np.testing.assert_allclose(item["times"], np.asarray(item["frames"]) / 30.0, atol=1e-6)
    for window in out["windows"]:
        np.testing.assert_allclose(np.sum(window["attention"][0]["step_weights"], axis=1), 1.0, atol=1e-5)
    # one model: the moments are exactly the runs of attended frames at or above the threshold
    hot = {f for f, d in zip(item["frames"], item["density"], strict=True) if d >= 1.2}
    runs = sum(1 for f in hot if f - 16 not in hot)
    assert 0 < len(out["moments"]) == min(runs, 5)
    inside = {f for m in out["moments"] for f in range(m["start_frame"], m["end_frame"], 16)}
    assert inside == hot if runs <= 5 else inside <= hot
    for moment in out["moments"]:
        assert moment["start_time"] == pytest.approx(moment["start_frame"] / 30.0)
        assert moment["end_time"] == pytest.approx(moment["end_frame"] / 30.0)
        assert moment["end_frame"] - moment["start_frame"] >= 16
