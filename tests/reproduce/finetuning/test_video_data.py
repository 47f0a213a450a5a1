"""C3D v1.0's VIDEO_DATA layer (reproduce.finetuning.video_data): crop offsets, the mean subtracted before
the crop at the crop's offset, the mirror, the centre crop of validation, and batches that depend on
(seed, iteration) alone, whatever the number of decoding processes."""

import numpy as np
import pytest
import torch
from helpers.videos import write_video

from caffe_models.preprocess import C3D_RESIZE
from reproduce.finetuning.clips import Sample, SampleTable
from reproduce.finetuning.video_data import (
    EvalBatches,
    TrainBatches,
    VideoDataLayer,
    batch_loader,
    clip_rng,
    crop_offsets,
    draw_mirror,
    eval_items,
)

H, W = C3D_RESIZE          # 128, 171


def test_crop_offsets_reach_zero_and_never_the_largest():
    rng = np.random.default_rng(0)
    draws = np.array([crop_offsets(rng) for _ in range(20000)])
    assert draws[:, 0].min() == 0 and draws[:, 1].min() == 0
    assert draws[:, 0].max() == H - 112 - 1 == 15             # rand() % (128 − 112): 16 is never drawn
    assert draws[:, 1].max() == W - 112 - 1 == 58             # rand() % (171 − 112): 59 is never drawn
    assert len(np.unique(draws[:, 0])) == 16 and len(np.unique(draws[:, 1])) == 59


def test_the_mirror_is_drawn_half_the_time():
    rng = np.random.default_rng(1)
    n = 20000
    share = sum(draw_mirror(rng) for _ in range(n)) / n
    assert abs(share - 0.5) < 4 * (0.25 / n) ** 0.5


@pytest.fixture(scope="module")
def flat_video(tmp_path_factory):
    """A lossless video of 20 frames at the resize size (no resampling), every pixel 200."""
    path = tmp_path_factory.mktemp("flat") / "flat.mkv"
    write_video(path, np.full((20, H, W, 3), 200, np.uint8), "ffv1")
    return SampleTable([Sample(str(path), "video", 0, 20, 1, "flat")])


def position_mean():
    """A mean cube whose value says where it is: 1000·h + w (+ 0.25·l, + 0.125·c)."""
    c, l, h, w = np.meshgrid(np.arange(3), np.arange(16), np.arange(H), np.arange(W), indexing="ij")
    return (1000.0 * h + w + 0.25 * l + 0.125 * c).astype(np.float32)


def test_the_mean_is_subtracted_before_the_crop_at_its_offset(flat_video):
    mean = position_mean()
    layer = VideoDataLayer(mean)
    seen_mirror = set()
    for g in range(40):
        draw = clip_rng(7, g)
        start = int(draw.integers(20 - 16 + 1))
        h_off, w_off = crop_offsets(draw)
        mirror = draw_mirror(draw)
        item = layer.train_item(flat_video, 0, clip_rng(7, g)).numpy()       # (3, 16, 112, 112)
        expected = 200.0 - mean[:, :, h_off:h_off + 112, w_off:w_off + 112]
        if mirror:
            expected = expected[..., ::-1]              # the mean-subtracted crop, flipped
        np.testing.assert_allclose(item, expected, rtol=0, atol=1e-3)
        seen_mirror.add(mirror)
        assert 0 <= start <= 4
    assert seen_mirror == {False, True}


def test_validation_is_the_centre_crop_without_mirror(flat_video):
    mean = position_mean()
    item = VideoDataLayer(mean).eval_item(flat_video, 0, 2).numpy()
    np.testing.assert_allclose(item, 200.0 - mean[:, :, 8:120, 29:141], atol=1e-3)
    assert eval_items(flat_video, 1) == [(0, 2)]                              # the middle clip of 20 frames
    assert eval_items(flat_video, 3) == [(0, 0), (0, 2), (0, 4)]


def test_a_mean_of_the_wrong_shape_is_one_line():
    with pytest.raises(Exception, match=r"per-voxel mean of shape \(3, 16, 128, 171\)"):
        VideoDataLayer(np.zeros((3, 16, 128, 128), np.float32))


class Recorder:
    """A data layer that returns what it was asked for: (sample, start, crop, mirror) as a tensor."""

    length = 16

    def train_item(self, table, i, rng):
        sample = table[i]
        start = sample.first + int(rng.integers(sample.frames - 16 + 1))
        return torch.tensor([i, start, *crop_offsets(rng), draw_mirror(rng)], dtype=torch.float64)

    def eval_item(self, table, i, start):
        return torch.tensor([i, start], dtype=torch.float64)


def table(n):
    return SampleTable([Sample(f"v{i}.mkv", "video", 10 * i, 40, i % 3, f"s{i}") for i in range(n)])


def test_batches_are_a_pure_function_of_seed_and_iteration():
    samples = table(7)
    direct = TrainBatches(samples, Recorder(), batch_size=4, seed=3)
    first = [direct[k] for k in range(6)]
    with_workers = list(batch_loader(TrainBatches(samples, Recorder(), batch_size=4, seed=3), range(6),
                                     workers=2, read_ahead=1))
    resumed = list(batch_loader(TrainBatches(samples, Recorder(), batch_size=4, seed=3), range(3, 6),
                                workers=0, read_ahead=1))
    for (items, labels, error), (items2, labels2) in zip(first, with_workers, strict=True):
        assert error is None and torch.equal(items, items2) and torch.equal(labels, labels2)
    for (items, _, _), (items2, _) in zip(first[3:], resumed, strict=True):
        assert torch.equal(items, items2)
    # an epoch visits every sample once: 7 samples, clips 0..6 of the seeded order
    seen = torch.cat([b[0] for b in first])[:7, 0].long().tolist()
    assert sorted(seen) == list(range(7))
    assert not torch.equal(first[0][0], TrainBatches(samples, Recorder(), batch_size=4, seed=4)[0][0])


def test_ranks_share_each_batch():
    samples = table(9)
    whole = TrainBatches(samples, Recorder(), batch_size=6, seed=1)[2][0]
    parts = [TrainBatches(samples, Recorder(), batch_size=6, seed=1, rank=r, world_size=3)[2][0]
             for r in range(3)]
    assert torch.equal(torch.cat(parts), whole)
    with pytest.raises(Exception, match="cannot be split evenly over 4 processes"):
        TrainBatches(samples, Recorder(), batch_size=6, seed=1, world_size=4)


def test_bad_input_in_a_worker_is_raised_as_one_line():
    missing = SampleTable([Sample("/nonexistent/v.mkv", "video", 0, 16, 0, "list.lst:3")])
    batches = EvalBatches(missing, VideoDataLayer(position_mean()), [(0, 0)], 1)
    with pytest.raises(Exception) as info:
        list(batch_loader(batches, range(1), workers=1, read_ahead=1))
    text = str(info.value)
    assert text.startswith("list.lst:3: ") and "cannot open" in text and "\n" not in text
