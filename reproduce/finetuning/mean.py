"""C3D's volume mean, as C3D v1.0's ``tools/compute_volume_mean_from_list.cpp`` computes it.

``compute_volume_mean_from_list.bin <list> 16 128 171 1 <out>.binaryproto 10`` (docs/formats.md §6): for
chunk lines of a C3D list, read ``length`` frames from the start frame every ``sampling_rate`` frames,
resize each to 128×171 (``cv::resize``, uint8), stack them BGR as (3, 16, 128, 171), and average. Its
loop reads the first line only to learn the datum's size and then counts the following lines
c = 1, 2, …, summing line c when ``c % dropping_rate == 0``: lines ``d, 2d, …`` after the first (0-based
line numbers), the first line itself never. `volume_mean` keeps exactly that rule.

Chunks: the lines of ``--list``; or, from a built dataset, every training sample's consecutive
non-overlapping 16-frame chunks (its frames 0, 16, 32, … within the sample, the clips C3D's list
enumerates), samples in the file's order. The sum is exact (float64 of integers; the tool's float32 sum
rounds beyond 65,536 chunks), the mean is written as float32 with `caffe_models.writer.save_mean` in C3D
v1.0's schema: `alstm finetune c3d --mean` and `alstm extract --c3d-mean` read it. Chunks are decoded in
DataLoader worker processes, 8 to an item, ``read_ahead`` items each: memory is a few chunks whatever the
dataset's size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from alstm_core.errors import UserError
from alstm_core.progress import progress_bar
from caffe_models.preprocess import C3D_RESIZE
from caffe_models.writer import save_mean
from reproduce.errors import ReproduceError
from reproduce.finetuning.c3d import read_samples
from reproduce.finetuning.clips import CLIP_LENGTH, SampleTable, read_frames
from reproduce.finetuning.video_data import batch_loader, resized_clip

CHUNKS_PER_ITEM = 8


@dataclass(frozen=True)
class VolumeMean:
    """The mean file written, the chunks averaged (of ``available`` chunks), and its shape (C, L, H, W)."""

    path: str
    chunks: int
    available: int
    shape: tuple[int, ...]


def chunk_list(table: SampleTable, length: int = CLIP_LENGTH,
               sampling_rate: int = 1) -> list[tuple[int, int]]:
    """(sample, start frame) of every chunk, in order: a list line's clip, or a dataset sample's
    consecutive non-overlapping chunks."""
    span = length * sampling_rate
    out = []
    for i in range(len(table)):
        first, frames = int(table.first[i]), int(table.frames[i])
        out += [(i, start) for start in range(first, first + frames - span + 1, span)]
    return out


def chosen_chunks(count: int, dropping_rate: int) -> list[int]:
    """The chunks compute_volume_mean_from_list sums: ``d, 2d, …`` below ``count`` (never the first)."""
    return list(range(dropping_rate, count, dropping_rate))


class _ChunkSums(Dataset):
    """``[j]`` → (sum (3, L, 128, 171) float64 of item j's chunks, count, error or None)."""

    def __init__(self, table: SampleTable, chunks: list[tuple[int, int]], length: int, sampling_rate: int):
        self.table, self.chunks, self.length, self.rate = table, chunks, length, sampling_rate

    def __len__(self) -> int:
        return -(-len(self.chunks) // CHUNKS_PER_ITEM)

    def __getitem__(self, j: int):
        total = torch.zeros(3, self.length, *C3D_RESIZE, dtype=torch.float64)
        chosen = self.chunks[j * CHUNKS_PER_ITEM:(j + 1) * CHUNKS_PER_ITEM]
        try:
            for i, start in chosen:
                frames = read_frames(self.table[i], start, self.length * self.rate)[::self.rate]
                total += resized_clip(frames)                       # (3, L, 128, 171), integer values
        except UserError as exc:
            return total, torch.tensor(0), str(exc)
        return total, torch.tensor(len(chosen)), None


def volume_mean(out: str, *, data: str | None = None, videos: str | None = None,
                annotations: str | None = None, list_file: str | None = None, length: int = CLIP_LENGTH,
                sampling_rate: int = 1, dropping_rate: int = 10, workers: int = 2, read_ahead: int = 2,
                progress: bool = False) -> VolumeMean:
    """Write the volume mean of the training chunks to ``out`` (.binaryproto); see the module.

    Chunks of ``data`` (a built dataset's train split, videos under ``videos``; ``annotations`` for
    ActivityNet) or of ``list_file`` (a C3D list). ``length`` 16, ``sampling_rate`` 1 and
    ``dropping_rate`` 10 are the C3D example's arguments. ``workers`` decoding processes."""
    if length < 1 or sampling_rate < 1 or dropping_rate < 1:
        raise ReproduceError("length, sampling rate and dropping rate must be >= 1")
    samples = read_samples(data, videos, annotations, list_file, None, None, length * sampling_rate)
    chunks = chunk_list(samples.train, length, sampling_rate)
    chosen = [chunks[c] for c in chosen_chunks(len(chunks), dropping_rate)]
    if not chosen:
        raise ReproduceError(f"{samples.source} gives {len(chunks)} chunk(s); the tool averages chunks "
                             f"{dropping_rate}, {2 * dropping_rate}, … after the first: lower "
                             "--dropping-rate")
    sums = _ChunkSums(samples.train, chosen, length, sampling_rate)
    total = torch.zeros(3, length, *C3D_RESIZE, dtype=torch.float64)
    count = 0
    with progress_bar(total=len(chosen), desc="mean", unit="clip", enabled=progress) as bar:
        for part, n in batch_loader(sums, range(len(sums)), workers=workers, read_ahead=read_ahead):
            total += part
            count += int(n)
            bar.update(int(n))
    mean = (total / count).to(torch.float32).numpy()                # (3, L, 128, 171) BGR
    path = save_mean(mean, os.fspath(out))
    return VolumeMean(path, count, len(chunks), tuple(mean.shape))

