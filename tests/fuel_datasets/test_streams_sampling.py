"""Where the streams put their windows (docs/paper.md §3, §4), against closed-form and statistical
expectations.

The files are tiny and the window small (F = 48 frames, N = T = 3), so that the videos have 1, 2, 4, 5
and 9 valid starts and many thousands of windows are drawn in a second. Every feature row encodes
itself: column 0 is its row index in the video, column 1 the video's number, column 2 is 1 on the
``_flip`` sources. The valid starts are enumerated here from the frame grids written (every frame the
window needs must be the first frame of a stored row), independently of ``window_starts``.

Statistical bounds: a position with probability p among n draws is counted Binomial(n, p) times; the
tests allow 5 standard deviations, 5 * sqrt(n p (1 - p)). The draws are seeded, so the outcome is fixed;
the bound says that the fixed outcome is not a lucky one (a fair sampler exceeds it with probability
below 6e-7 per position, below 1e-4 over the ~60 counts checked).
"""

import numpy as np
import pytest

from fuel_datasets import FeatureWriter
from fuel_datasets.streams import TestWindows, TrainWindows, WindowSpec

SPEC = WindowSpec(frames=48, steps=3)          # 16-frame chunks, one attended frame per chunk


def grid(first, stride, rows):
    return first + stride * np.arange(rows)


# name: (frames, c3d frame index, vgg frame index). c3d holds one row per 16 frames and vgg one every 8,
# except the "offset" videos: overlapping c3d clips every 8 frames from frame 4 and vgg every 16 frames
# from frame 20, so that their windows start at frames 20 + 16 m (input rows 2, 4, 6, ...: the window
# progression has first = 2 and period = 2, a start frame is not 16 times an input row, and the first
# attended row is not at frame 0 nor within one stride of it: every offset in the row arithmetic counts).
def standard(frames):
    return frames, grid(0, 16, frames // 16), grid(0, 8, frames // 8)


TRAIN = {"one": standard(48), "two": standard(64), "five": standard(112), "nine": standard(176),
         "offset": (126, grid(4, 8, 14), grid(20, 16, 7))}
TEST = {"t_one": standard(48), "t_two": standard(64), "t_nine": standard(176),
        "t_offset": (126, grid(4, 8, 14), grid(20, 16, 7))}
VIDEOS = {**TRAIN, **TEST}
NUMBER = {name: n for n, name in enumerate(VIDEOS)}        # column 1 of every row


def valid_starts(name):
    """Start frames of the video's full windows, by enumeration over the frames."""
    frames, c3d, vgg = VIDEOS[name]
    return [s for s in c3d
            if s + SPEC.frames <= frames
            and {s + SPEC.chunk_frames * n for n in range(SPEC.steps)} <= set(c3d)
            and {s + SPEC.attended_stride * t for t in range(SPEC.attended)} <= set(vgg)]


def test_the_videos_have_the_intended_numbers_of_starts():
    counts = {name: len(valid_starts(name)) for name in VIDEOS}
    assert counts == {"one": 1, "two": 2, "five": 5, "nine": 9, "offset": 4,
                      "t_one": 1, "t_two": 2, "t_nine": 9, "t_offset": 4}
    assert valid_starts("offset") == [20, 36, 52, 68]       # input rows 2, 4, 6, 8: not 16 * row


def rows_of(name, source, flip):
    """(R, 3) rows that say which row of which video (and which flip) they are."""
    index = VIDEOS[name][1 if source == "c3d" else 2]
    rows = np.zeros((len(index), 3), np.float32)
    rows[:, 0], rows[:, 1], rows[:, 2] = np.arange(len(index)), NUMBER[name], flip
    return rows


def write(path, names):
    with FeatureWriter(path, class_names=["a", "b", "c"]) as writer:
        for name in names:
            frames, c3d, vgg = VIDEOS[name]
            features = {s + suffix: rows_of(name, s, flip) for s in ("c3d", "vgg")
                        for suffix, flip in (("", 0), ("_flip", 1))}
            writer.add_video(name, features=features, frame_index={"c3d": c3d, "vgg": vgg},
                             num_frames=frames, fps=30.0, targets=NUMBER[name] % 3,
                             split="train" if name in TRAIN else "test")
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write(tmp_path_factory.mktemp("sampling") / "f.h5", list(VIDEOS))


def check_rows(batch):
    """The rows read are those of the start frames the batch reports, for inputs and attended alike."""
    for b, name in enumerate(batch.video_ids):
        _, c3d, vgg = VIDEOS[name]
        start, flip = int(batch.start_frames[b]), int(batch.flipped[b])
        for rows, index, stride in ((batch.inputs[b], c3d, SPEC.chunk_frames),
                                    (batch.attended[b], vgg, SPEC.attended_stride)):
            frames = start + stride * np.arange(len(rows))          # the frame of each row of the window
            expected = np.stack([np.searchsorted(index, frames), np.full(len(rows), NUMBER[name]),
                                 np.full(len(rows), flip)], axis=1)
            assert (index[expected[:, 0]] == frames).all()
            np.testing.assert_array_equal(rows.numpy(), expected, err_msg=f"{name} at frame {start}")


# -- training windows --------------------------------------------------------------------------------
BATCH, NUM_BATCHES = 250, 100          # 25,000 windows: 5,000 per training video (epochs visit them evenly)


@pytest.fixture(scope="module")
def train_batches(data_file):
    windows = TrainWindows(data_file, input_source="c3d", attended_source="vgg", batch_size=BATCH,
                           spec=SPEC, seed=7)
    try:
        return [windows[k] for k in range(NUM_BATCHES)]
    finally:
        windows.close()


def start_counts(batches):
    """{video: {start frame: windows}} over the batches."""
    counts = {}
    for batch in batches:
        for name, start in zip(batch.video_ids, batch.start_frames.tolist(), strict=True):
            video = counts.setdefault(name, {})
            video[start] = video.get(start, 0) + 1
    return counts


def test_training_starts_are_uniform_over_the_valid_starts(train_batches):
    """Every valid start of every video occurs, each within 5 sigma of n / count.

    Each video is drawn n = 5,000 times (B * K / M exactly: epochs visit every video once); for the
    9-start video the bound is 556 +- 111 per start, for the 2-start one 2,500 +- 177.
    """
    counts = start_counts(train_batches)
    assert set(counts) == set(TRAIN)
    n = BATCH * NUM_BATCHES // len(TRAIN)
    for name, video in counts.items():
        starts = valid_starts(name)
        assert sum(video.values()) == n, name
        assert sorted(video) == starts, f"{name}: starts drawn {sorted(video)}, valid {starts}"
        p = 1 / len(starts)
        bound = 5 * np.sqrt(n * p * (1 - p))
        for start, seen in video.items():
            assert abs(seen - n * p) <= bound, f"{name} at frame {start}: {seen} of {n}, expected {n * p:.0f}"


def test_training_reaches_the_first_and_last_start(train_batches):
    """The extremes: a sampler off by one at either end (u * (count - 1), or a clamp at count - 2)
    never draws them, however long it runs."""
    counts = start_counts(train_batches)
    for name in TRAIN:
        starts = valid_starts(name)
        assert min(counts[name]) == starts[0], name
        assert max(counts[name]) == starts[-1], name


def test_training_rows_agree_with_the_reported_start_frames(train_batches):
    """inputs and attended hold the rows at start_frames, of the video and flip reported; flips occur."""
    for batch in train_batches[:4]:
        check_rows(batch)
    flipped = np.concatenate([batch.flipped.numpy() for batch in train_batches])
    n = len(flipped)                                         # flip_prob 0.5: 12,500 +- 395
    assert abs(flipped.sum() - n / 2) <= 5 * np.sqrt(n / 4)


def test_epochs_are_fresh_permutations(data_file):
    """Each epoch visits every training video exactly once, and the orders differ between epochs.

    Batches of 3 over M = 5 videos straddle epochs, so the order is read from the batches' video ids.
    Over 500 epochs, each video sits at each position Binomial(500, 1/5) times: 100 +- 45 (5 sigma).
    """
    windows = TrainWindows(data_file, input_source="c3d", attended_source="vgg", batch_size=3, spec=SPEC,
                           seed=7)
    M, epochs = windows.num_videos, 6
    ids = [name for k in range(M * epochs // 3) for name in windows[k].video_ids]
    orders = [tuple(ids[e * M:(e + 1) * M]) for e in range(epochs)]
    for order in orders:
        assert sorted(order) == sorted(TRAIN)
    assert orders[0] != orders[1]
    assert len(set(orders)) >= 4, orders              # 6 draws among 120 orders

    many = 500
    rows = windows.videos_at(np.arange(many * M)).reshape(many, M)          # (epochs, positions)
    for epoch in rows:
        assert sorted(epoch.tolist()) == list(range(M))
    at = np.stack([(rows == video).sum(axis=0) for video in range(M)])     # (videos, positions)
    bound = 5 * np.sqrt(many * (1 / M) * (1 - 1 / M))
    assert (np.abs(at - many / M) <= bound).all(), at
    windows.close()


# -- test windows -----------------------------------------------------------------------------------
CROPS, SEEDS = 40, range(25)       # 1,000 test windows per video over the seeds


def make_test_windows(path, seed):
    return TestWindows(path, split="test", input_source="c3d", attended_source="vgg", spec=SPEC,
                       crops=CROPS, seed=seed)


@pytest.fixture(scope="module")
def eval_batches(data_file):
    """{seed: {video: batch}}"""
    out = {}
    for seed in SEEDS:
        windows = make_test_windows(data_file, seed)
        out[seed] = dict(iter(windows))
        windows.close()
    return out


def test_test_windows_are_40_then_the_same_40_flipped(eval_batches):
    """docs/paper.md §4: 40 windows at valid starts, then the same 40 on flipped frames, in that order."""
    for seed, batches in eval_batches.items():
        assert set(batches) == set(TEST)
        for name, batch in batches.items():
            assert batch.video_ids == (name,) * 2 * CROPS
            assert batch.flipped.tolist() == [False] * CROPS + [True] * CROPS
            starts = batch.start_frames.tolist()
            assert starts[:CROPS] == starts[CROPS:]
            assert set(starts) <= set(valid_starts(name)), name
            if seed < 3:                     # the rows of 960 windows: enough, and fast
                check_rows(batch)


def test_test_window_starts_are_uniform_and_reach_both_ends(eval_batches):
    """Over 25 seeds, each video's 1,000 windows cover every valid start (the first and last included),
    each within 5 sigma of 1,000 / count: for the 9-start video 111 +- 50, for the 2-start one 500 +- 79.
    Within one video and seed, 40 windows over 9 starts miss a given start with probability 0.9%, so
    reachability is asserted over the seeds, not per seed."""
    n = CROPS * len(SEEDS)
    for name in TEST:
        drawn = np.concatenate([eval_batches[seed][name].start_frames[:CROPS].numpy() for seed in SEEDS])
        starts = valid_starts(name)
        assert sorted(set(drawn.tolist())) == starts, name
        p = 1 / len(starts)
        bound = 5 * np.sqrt(n * p * (1 - p))
        for start in starts:
            seen = int((drawn == start).sum())
            assert abs(seen - n * p) <= bound, f"{name} at frame {start}: {seen} of {n}, expected {n * p:.0f}"


def test_test_window_starts_depend_only_on_seed_and_video_id(eval_batches, tmp_path):
    """Another file with fewer videos, in another order, gives the same windows; another seed does not."""
    other = make_test_windows(write(tmp_path / "other.h5", ["t_offset", "five", "t_nine"]), seed=3)
    again = dict(iter(other))
    other.close()
    assert set(again) == {"t_offset", "t_nine"}
    for name, batch in again.items():
        assert batch.start_frames.tolist() == eval_batches[3][name].start_frames.tolist(), name
    assert eval_batches[3]["t_nine"].start_frames.tolist() != eval_batches[4]["t_nine"].start_frames.tolist()
