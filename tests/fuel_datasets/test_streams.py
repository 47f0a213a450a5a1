"""Training and test windows: compared with direct numpy slices of the arrays written, closed-form
counts of excluded videos, determinism, sharding, DataLoader workers and bytes read."""

import sys

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fuel_datasets import DatasetError, FeatureWriter
from fuel_datasets.streams import TestWindows, TrainWindows, WindowSpec, keep_batch, window_starts

CLASSES = ["a", "b", "c", "d"]
# (frames, attended rows or None for all F // 8): short videos, exact fits, and two whose attended rows
# stop early (VGG extracted for the first 200 / 80 frames only).
VIDEOS = [(150, None), (191, None), (192, None), (200, None), (263, None), (400, 25), (400, 10), (520, None),
          (777, None), (1000, None)]
SPEC_N, SPEC_2N = WindowSpec(192, 12, 1), WindowSpec(192, 12, 2)


def video_arrays(v: int, dv: int, da: int) -> dict:
    frames, att_rows = VIDEOS[v]
    rng = np.random.default_rng(100 + v)
    R1, R2 = frames // 16, att_rows if att_rows is not None else frames // 8
    return {"c3d": rng.standard_normal((R1, dv)).astype(np.float32),
            "c3d_flip": rng.standard_normal((R1, dv)).astype(np.float32),
            "vgg": rng.standard_normal((R2, da)).astype(np.float32),
            "vgg_flip": rng.standard_normal((R2, da)).astype(np.float32)}


def write(path, videos=None, dv=6, da=5, split=lambda v: "train"):
    videos = range(len(VIDEOS)) if videos is None else videos
    with FeatureWriter(path, class_names=CLASSES) as writer:
        for v in videos:
            features = video_arrays(v, dv, da)
            writer.add_video(f"v{v}", features=features,
                             frame_index={"c3d": 16 * np.arange(len(features["c3d"])),
                                          "vgg": 8 * np.arange(len(features["vgg"]))},
                             num_frames=VIDEOS[v][0], fps=30.0, targets=v % 4, split=split(v))
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write(tmp_path_factory.mktemp("streams") / "f.h5")


def brute_force_starts(frames, input_index, attended_index, spec):
    """Window starts by enumeration: every needed frame must be the start frame of a stored row."""
    starts = []
    for s in range(0, frames, spec.chunk_frames):
        need_in = {s + spec.chunk_frames * n for n in range(spec.steps)}
        need_att = {s + spec.attended_stride * t for t in range(spec.attended)}
        if s + spec.frames <= frames and need_in <= set(input_index) and need_att <= set(attended_index):
            starts.append(s)
    return starts


@pytest.mark.parametrize("spec", [SPEC_N, SPEC_2N, WindowSpec(64, 4, 1)])
@pytest.mark.parametrize("v", range(len(VIDEOS)))
def test_window_starts_match_enumeration(v, spec):
    frames, att_rows = VIDEOS[v]
    R1, R2 = frames // 16, att_rows if att_rows is not None else frames // 8
    w = window_starts((0, 16, R1), (0, 8, R2), frames, spec)
    got = [16 * (w.first + w.period * k) for k in range(w.count)]
    assert got == brute_force_starts(frames, 16 * np.arange(R1), 8 * np.arange(R2), spec)
    assert (w.in_step, w.a_step) == (1, 2 // spec.attended_per_step)


def test_window_starts_on_offset_grids():
    # Input rows every 8 frames from frame 4 (overlapping clips), attended every 16 from frame 12.
    frames, spec = 300, WindowSpec(96, 6, 1)
    w = window_starts((4, 8, 36), (12, 16, 18), frames, spec)
    got = [4 + 8 * (w.first + w.period * k) for k in range(w.count)]
    assert got == brute_force_starts_general(frames, 4 + 8 * np.arange(36), 12 + 16 * np.arange(18), spec)
    assert (w.in_step, w.a_step) == (2, 1) and w.period == 2
    with pytest.raises(DatasetError, match="every 10 frames"):
        window_starts((0, 10, 50), None, 500, spec)


def brute_force_starts_general(frames, input_index, attended_index, spec):
    return [s for s in input_index
            if s + spec.frames <= frames
            and {s + spec.chunk_frames * n for n in range(spec.steps)} <= set(input_index)
            and {s + spec.attended_stride * t for t in range(spec.attended)} <= set(attended_index)]


@pytest.mark.parametrize("spec, attended_per_row", [(SPEC_N, 2), (SPEC_2N, 1)])
def test_excluded_videos_follow_the_closed_form(data_file, spec, attended_per_row):
    windows = TrainWindows(data_file, input_source="c3d", attended_source="vgg", batch_size=4, spec=spec)
    expected_excluded = {}
    for v, (frames, att_rows) in enumerate(VIDEOS):
        R2 = att_rows if att_rows is not None else frames // 8
        # i in [0, F//16 - 12] with the last attended row 2i + (T - 1) * step inside the R2 rows
        last_row = [2 * i + (spec.attended - 1) * attended_per_row for i in range(frames // 16 - 11)]
        count = sum(1 for row in last_row if row < R2)
        if count == 0:
            expected_excluded[f"v{v}"] = frames
    assert windows.excluded == expected_excluded
    assert windows.num_videos == len(VIDEOS) - len(expected_excluded)
    # v5 has 25 attended rows: 2 windows at T = N, 1 at T = 2N; v6 (10 rows) has none
    assert "v5" not in windows.excluded and "v6" in windows.excluded


def expected_window(v, start, flipped, spec, dv=6, da=5):
    arrays, suffix = video_arrays(v, dv, da), "_flip" if flipped else ""
    i, in_step = start // 16, spec.chunk_frames // 16           # rows every 16 frames
    j, a_step = start // 8, spec.attended_stride // 8            # rows every 8 frames
    return (arrays["c3d" + suffix][i:i + (spec.steps - 1) * in_step + 1:in_step],
            arrays["vgg" + suffix][j:j + (spec.attended - 1) * a_step + 1:a_step])


@pytest.mark.parametrize("spec", [SPEC_N, SPEC_2N, WindowSpec(192, 6, 1)])    # the last: row steps 2 and 4
def test_training_batches_equal_direct_slices(data_file, spec):
    windows = TrainWindows(data_file, input_source="c3d", attended_source="vgg", batch_size=5, spec=spec,
                           seed=3)
    assert (windows.input_dim, windows.attended_dim, windows.num_classes) == (6, 5, 4)
    seen_flips = set()
    for k in range(4):
        batch = windows[k]
        assert batch.inputs.shape == (5, spec.steps, 6) and batch.attended.shape == (5, spec.attended, 5)
        assert batch.attended_mask.all() and batch.targets.dtype == torch.int64
        for b, video_id in enumerate(batch.video_ids):
            v, start, flipped = int(video_id[1:]), int(batch.start_frames[b]), bool(batch.flipped[b])
            frames = VIDEOS[v][0]
            assert start % 16 == 0 and start + 192 <= frames
            inputs, attended = expected_window(v, start, flipped, spec)
            np.testing.assert_array_equal(batch.inputs[b].numpy(), inputs)
            np.testing.assert_array_equal(batch.attended[b].numpy(), attended)
            assert int(batch.targets[b]) == v % 4
            seen_flips.add(flipped)
    assert seen_flips == {False, True}


def test_batches_are_a_pure_function_of_seed_and_index(data_file):
    make = lambda seed: TrainWindows(data_file, input_source="c3d", attended_source="vgg",  # noqa: E731
                                     batch_size=6, spec=SPEC_N, seed=seed)
    a, b = make(0), make(0)
    later_first = [b[k] for k in (7, 2, 0)]             # any order of access
    for k, batch in zip((7, 2, 0), later_first, strict=True):
        for x, y in zip(a[k], batch, strict=True):
            assert x == y if isinstance(x, tuple) else torch.equal(x, y)
    other = make(1)[0]
    assert not torch.equal(other.inputs, a[0].inputs)
    never = TrainWindows(data_file, input_source="c3d", attended_source="vgg", batch_size=6, spec=SPEC_N,
                         flip_prob=0.0)[0]
    assert not never.flipped.any()


def test_epochs_visit_every_video_once(data_file):
    windows = TrainWindows(data_file, input_source="c3d", batch_size=3, spec=SPEC_N, seed=5)
    M = windows.num_videos
    for epoch in range(3):
        rows = windows.videos_at(np.arange(epoch * M, (epoch + 1) * M))
        assert sorted(rows.tolist()) == list(range(M))
    assert windows[0].attended is None and windows[0].attended_mask is None


def test_ranks_split_the_global_batch(data_file):
    kwargs = dict(input_source="c3d", attended_source="vgg", spec=SPEC_2N, seed=11)
    whole = TrainWindows(data_file, batch_size=6, **kwargs)
    ranks = [TrainWindows(data_file, batch_size=3, rank=r, world_size=2, **kwargs) for r in range(2)]
    for k in range(3):
        parts, full = [w[k] for w in ranks], whole[k]
        assert parts[0].video_ids + parts[1].video_ids == full.video_ids
        assert not set(parts[0].video_ids) & set(parts[1].video_ids)        # 6 <= 7 videos: disjoint
        for field in ("inputs", "attended", "start_frames", "flipped", "targets"):
            assert torch.equal(torch.cat([getattr(p, field) for p in parts]), getattr(full, field))


def test_dataloader_workers_give_the_same_batches(data_file):
    windows = TrainWindows(data_file, input_source="c3d", attended_source="vgg", batch_size=4, spec=SPEC_N)
    windows[0]                                          # the parent's handle must not leak into workers
    loaders = [DataLoader(windows, batch_size=None, sampler=range(6), num_workers=w, collate_fn=keep_batch)
               for w in (0, 2)]
    for serial, parallel in zip(*loaders, strict=True):
        assert serial.video_ids == parallel.video_ids
        assert torch.equal(serial.inputs, parallel.inputs) and torch.equal(serial.attended, parallel.attended)


def test_test_windows_are_seeded_per_video_and_flipped(data_file, tmp_path):
    windows = TestWindows(data_file, split="train", input_source="c3d", attended_source="vgg", spec=SPEC_N,
                          crops=5, seed=2)
    assert len(windows) == windows.num_videos
    results = dict(iter(windows))
    for video_id, batch in results.items():
        v = int(video_id[1:])
        assert batch.inputs.shape == (10, 12, 6) and batch.video_ids == (video_id,) * 10
        assert torch.equal(batch.start_frames[:5], batch.start_frames[5:])
        assert batch.flipped.tolist() == [False] * 5 + [True] * 5
        for b in range(10):
            inputs, attended = expected_window(v, int(batch.start_frames[b]), bool(batch.flipped[b]), SPEC_N)
            np.testing.assert_array_equal(batch.inputs[b].numpy(), inputs)
            np.testing.assert_array_equal(batch.attended[b].numpy(), attended)
    # Positions depend on (seed, video id) only: a file holding fewer videos gives the same windows.
    small = write(tmp_path / "small.h5", videos=[9, 8])
    again = dict(iter(TestWindows(small, split="train", input_source="c3d", attended_source="vgg",
                                  spec=SPEC_N, crops=5, seed=2)))
    assert torch.equal(again["v9"].inputs, results["v9"].inputs)
    reseeded = TestWindows(data_file, split="train", input_source="c3d", spec=SPEC_N, crops=5, seed=3,
                           flip=False)
    other = reseeded[reseeded.video_ids.index("v9")][1]
    assert other.inputs.shape[0] == 5 and not torch.equal(other.start_frames, results["v9"].start_frames[:5])


def test_bad_requests_name_what_is_available(data_file, tmp_path):
    with pytest.raises(DatasetError, match="no source 'vgg_obj_fc8'; available: c3d, c3d_flip, vgg, "):
        TrainWindows(data_file, input_source="c3d", attended_source="vgg_obj_fc8", spec=SPEC_N)
    with pytest.raises(DatasetError, match="no split 'training'"):
        TrainWindows(data_file, split="training", input_source="c3d", spec=SPEC_N)
    noflip = tmp_path / "noflip.h5"
    with FeatureWriter(noflip, class_names=CLASSES) as writer:
        writer.add_video("x", {"c3d": np.zeros((20, 2))}, {"c3d": 16 * np.arange(20)}, 320, 30.0,
                         targets=None)
    with pytest.raises(DatasetError, match="no source 'c3d_flip'.*--flip"):
        TrainWindows(noflip, input_source="c3d", spec=SPEC_N)
    with pytest.raises(DatasetError, match="video 'x' in split 'train' .* has no label"):
        TrainWindows(noflip, input_source="c3d", spec=SPEC_N, flip_prob=0.0)
    with pytest.raises(DatasetError, match="no video of split 'valid'"):
        TrainWindows(data_file, split="valid", input_source="c3d", spec=SPEC_N)


def test_nan_in_a_window_names_the_video_and_source(tmp_path):
    path = write(tmp_path / "nan.h5", videos=[2, 3])
    with h5py.File(path, "r+") as f:
        first, count = f["rows/vgg"][1, :2]
        f["features/vgg"][first:first + count, 2] = np.nan          # every row of v3
    windows = TrainWindows(path, input_source="c3d", attended_source="vgg", batch_size=2, spec=SPEC_N,
                           flip_prob=0.0)
    with pytest.raises(DatasetError, match="video 'v3', source 'vgg': NaN or infinite"):
        windows[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/io")
def test_bytes_read_per_batch_stay_within_twice_the_batch(tmp_path):
    path = write(tmp_path / "big.h5", dv=256, da=128)
    windows = TrainWindows(path, input_source="c3d", attended_source="vgg", batch_size=8, spec=SPEC_N)

    def read_bytes():
        with open("/proc/self/io") as io:
            return int(next(line for line in io if line.startswith("rchar")).split()[1])

    for k in range(3):                                   # warm HDF5's metadata (chunk indices)
        windows[k]
    before, held = read_bytes(), 0
    for k in range(3, 13):
        batch = windows[k]
        held += batch.inputs.numel() * 4 + batch.attended.numel() * 4
    ratio = (read_bytes() - before) / held
    assert 0.99 <= ratio <= 2.0
