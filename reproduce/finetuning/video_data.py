"""C3D v1.0's ``VIDEO_DATA`` layer (``video_data_layer.cpp``, ``util/image_io.cpp``), and the batches of
a fine-tuning run as a pure function of (seed, iteration).

One training clip (`VideoDataLayer.train_item`), in Caffe's order of random draws:

1. its start: a random frame of the sample's range (``rand % (frames − 16 + 1)``, C3D's
   ``use_temporal_jitter``; a list line's range is its one clip);
2. 16 consecutive frames, each resized to 128×171 (H×W) bilinear with uint8 rounding (``cv::resize``;
   `caffe_models.preprocess`), BGR: the datum (3, 16, 128, 171);
3. ``h_off = rand % (128 − 112)``, ``w_off = rand % (171 − 112)``: 0..15 and 0..58, so the largest offset
   (16, 59) is never drawn (C3D v1.0's modulus, not BVLC's ``Rand(H − crop + 1)``);
4. ``(x − mean)[c, l, h + h_off, w + w_off]``: the per-voxel mean (3, 16, 128, 171) is subtracted before
   the 112×112 crop, at the crop's offset; scale 1;
5. mirror with probability ½ (``mirror && rand % 2``): the crop, already mean-subtracted, flipped left-right.

Validation (`VideoDataLayer.eval_item`): the same without randomness: the centre crop (8, 29), no mirror.
Steps 2, 4 and 5 are `caffe_models.preprocess.preprocess_c3d`.

Order and randomness: update k of a run takes the global clips ``k·B … k·B + B − 1``; global clip g is
sample ``order(⌊g / N⌋)[g mod N]`` of the N training samples, ``order(e)`` a seeded permutation per
epoch (Caffe's ``shuffle``), and its draws come from ``numpy.random.default_rng([seed, 1, g])``. A batch
therefore depends on (seed, k) alone: any number of DataLoader workers, a resumed run and W processes
(rank r takes clips ``r·B/W … (r+1)·B/W − 1`` of each batch) all see the same clips.

Memory: frames are decoded in DataLoader worker processes, one batch each, with ``read_ahead`` batches
per worker ready: at most ``workers · read_ahead`` batches exist at a time, whatever the dataset's size.
A worker that meets bad input returns its one-line message, which the run raises as a
`FinetuneInputError` (no traceback of the worker).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from alstm_core.errors import UserError
from caffe_models.preprocess import C3D_CROP, C3D_RESIZE, center_crop_offset, preprocess_c3d, resize_bilinear
from reproduce.finetuning.clips import CLIP_LENGTH, FinetuneInputError, SampleTable, read_frames


def crop_offsets(rng: np.random.Generator, height: int = C3D_RESIZE[0], width: int = C3D_RESIZE[1],
                 crop: int = C3D_CROP) -> tuple[int, int]:
    """C3D v1.0's training crop corner: ``(rand % (height − crop), rand % (width − crop))``."""
    return int(rng.integers(height - crop)), int(rng.integers(width - crop))


def draw_mirror(rng: np.random.Generator) -> bool:
    """Caffe's ``rand % 2``: mirror with probability ½."""
    return bool(rng.integers(2))


def clip_rng(seed: int, g: int) -> np.random.Generator:
    """The generator of global clip ``g``'s draws (start, crop, mirror)."""
    return np.random.default_rng([seed, 1, g])


def resized_clip(frames) -> torch.Tensor:
    """The datum of ``ReadVideoToVolumeDatum``: (L, H, W, 3) uint8 RGB → (3, L, 128, 171) float32 BGR, each
    frame resized with uint8 rounding (integer values)."""
    frames = torch.from_numpy(np.ascontiguousarray(frames))
    x = resize_bilinear(frames, C3D_RESIZE, round_to_uint8=True).flip(1)     # (L, 3, 128, 171) BGR
    return x.permute(1, 0, 2, 3).contiguous()


class VideoDataLayer:
    """The layer's transform for one sample: ``mean`` (3, 16, 128, 171) BGR per voxel; ``mirror`` as the
    prototxt's ``mirror`` (training only). Items are (3, 16, 112, 112) float32."""

    def __init__(self, mean: np.ndarray, *, mirror: bool = True, length: int = CLIP_LENGTH):
        mean = np.asarray(mean, dtype=np.float32)
        if mean.shape != (3, length, *C3D_RESIZE):
            shape = (3, length, *C3D_RESIZE)
            raise FinetuneInputError(f"the mean has shape {mean.shape}; C3D's VIDEO_DATA layer subtracts a "
                                     f"per-voxel mean of shape {shape} (make one with `alstm finetune mean`)")
        self.mean, self.mirror, self.length = torch.from_numpy(mean), mirror, length
        self.item_shape = (3, length, C3D_CROP, C3D_CROP)

    def train_item(self, table: SampleTable, i: int, rng: np.random.Generator) -> torch.Tensor:
        sample = table[i]
        start = sample.first + int(rng.integers(sample.frames - self.length + 1))
        frames = read_frames(sample, start, self.length)
        offset = crop_offsets(rng)
        flip = self.mirror and draw_mirror(rng)
        return preprocess_c3d(frames[None], self.mean, crop_offset=offset, mirror=flip)[0]

    def eval_item(self, table: SampleTable, i: int, start: int) -> torch.Tensor:
        frames = read_frames(table[i], start, self.length)
        offset = center_crop_offset(*C3D_RESIZE, C3D_CROP)
        return preprocess_c3d(frames[None], self.mean, crop_offset=offset)[0]


class TrainBatches(Dataset):
    """``[k]`` → (items (b, …) float32, labels (b,) int64, error message or None): this rank's share b =
    B / W of update k's batch (see the module). ``layer``: `VideoDataLayer` or the VGG image layer."""

    def __init__(self, table: SampleTable, layer, *, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1):
        if batch_size % world_size:
            raise FinetuneInputError(f"the batch of {batch_size} clips cannot be split evenly over "
                                     f"{world_size} processes; launch a number of processes that divides it")
        self.table, self.layer, self.seed = table, layer, seed
        self.batch, self.local = batch_size, batch_size // world_size
        self.rank = rank
        self._epoch: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return 2 ** 62                     # indexed by update, through a sampler

    def sample_of(self, g: int) -> int:
        n = len(self.table)
        epoch = g // n
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, np.random.default_rng([self.seed, 0, epoch]).permutation(n))
        return int(self._epoch[1][g % n])

    def clips(self, k: int) -> list[int]:
        """Global clip numbers of this rank's share of update k."""
        start = k * self.batch + self.rank * self.local
        return list(range(start, start + self.local))

    def __getitem__(self, k: int):
        indices = [self.sample_of(g) for g in self.clips(k)]
        labels = torch.from_numpy(self.table.labels[indices])
        try:
            items = [self.layer.train_item(self.table, i, clip_rng(self.seed, g))
                     for i, g in zip(indices, self.clips(k), strict=True)]
        except UserError as exc:
            return torch.zeros(0), labels, str(exc)
        return torch.stack(items), labels, None


class EvalBatches(Dataset):
    """``[b]`` → (items, labels, error or None) of the b-th batch of ``batch_size`` validation items;
    ``items``: (sample index, start frame) pairs, fixed for the whole run."""

    def __init__(self, table: SampleTable, layer, items: Sequence[tuple[int, int]], batch_size: int):
        self.table, self.layer, self.items, self.batch = table, layer, list(items), batch_size

    def __len__(self) -> int:
        return -(-len(self.items) // self.batch)

    def __getitem__(self, b: int):
        chosen = self.items[b * self.batch:(b + 1) * self.batch]
        labels = torch.from_numpy(self.table.labels[[i for i, _ in chosen]])
        try:
            items = [self.layer.eval_item(self.table, i, start) for i, start in chosen]
        except UserError as exc:
            return torch.zeros(0), labels, str(exc)
        return torch.stack(items), labels, None


def eval_items(table: SampleTable, clips_per_sample: int, length: int = CLIP_LENGTH) -> list[tuple[int, int]]:
    """(sample, start) of the validation clips: ``clips_per_sample`` starts evenly spread over each
    sample's range (one: its middle clip; a list line's range is its one clip)."""
    out = []
    for i in range(len(table)):
        first, frames = int(table.first[i]), int(table.frames[i])
        count = max(1, min(clips_per_sample, frames - length + 1))
        if count == 1:
            starts = [first + (frames - length) // 2]
        else:
            starts = (first + np.round(np.linspace(0, frames - length, count))).astype(int).tolist()
        out += [(i, s) for s in starts]
    return out


def batch_loader(dataset: Dataset, indices, *, workers: int, read_ahead: int, pin: bool = False):
    """Batches ``dataset[j]`` for j in ``indices``, in order, decoded by ``workers`` processes (0: here)
    with ``read_ahead`` batches each ready; raises the first bad input as one FinetuneInputError line."""
    loader = DataLoader(dataset, batch_size=None, sampler=indices, num_workers=workers,
                        prefetch_factor=read_ahead if workers else None, pin_memory=pin)
    for items, labels, error in loader:
        if error is not None:
            raise FinetuneInputError(error)
        yield items, labels
