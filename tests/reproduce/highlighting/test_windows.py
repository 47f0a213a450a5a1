"""Highlight planning (reproduce.highlighting.windows): windows over a whole video, their assembly with
bounded memory, what a model reads of them; each against a direct construction."""

import numpy as np
import pytest

from reproduce.errors import ReproduceError
from reproduce.highlighting.windows import (
    Reading,
    WindowAssembler,
    WindowRows,
    check_reading,
    extracted_source,
    member_window,
    plan_windows,
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
