"""Streams of fixed-length windows for training and testing (docs/paper.md §1, §3, §4).

A window is F = 192 frames starting at a C3D chunk boundary (the frame of an input row). It holds
    inputs    the N consecutive input rows (one per F/N = 16-frame chunk): (N, Dv)
    attended  the T attended rows whose frames fall in the window at a stride of F/T frames: (T, Da).
              With attended sources stored every 8 frames, T = 2N takes every row and T = N every other
              row: the attended frame of each 16-frame chunk is its *first* frame.
A video without a full window (fewer than F frames, N input rows or T attended rows) is excluded and
counted in ``.excluded``; nothing is ever padded, so ``attended_mask`` is all True.

Training (:class:`TrainWindows`, map-style): batch k is a pure function of (seed, k, rank, world_size).
Videos are visited in epochs, each a permutation drawn from (seed, epoch); the global batch k holds the
positions k·B·W ... (k+1)·B·W - 1 of that sequence, and rank r takes its r-th block of B. Window starts
and flips are drawn for the whole global batch from a generator seeded by (seed, k), so the union of the
ranks' batches does not depend on W, and a resumed run continues at batch k with nothing saved.
With probability ``flip_prob`` a window reads the ``<source>_flip`` rows, for inputs and attended alike.

Testing (:class:`TestWindows`): per video, ``crops`` windows at positions drawn from (seed, video id),
then the same windows on the flipped sources: B = 2 · crops, always in the same order.

Each process opens its own h5py handle on first use (DataLoader workers included). Reads go straight
into the batch arrays with HDF5's chunk cache off: a batch reads the bytes it holds (plus index metadata).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import NamedTuple

import h5py
import numpy as np
import torch

from alstm_core.storage import FLIP_SUFFIX, TARGETS
from fuel_datasets.errors import DatasetError
from fuel_datasets.layout import FeatureDataset, missing_source
from fuel_datasets.opening import open_dataset

_PERMUTATION, _BATCH, _TEST = 0, 1, 2       # spawn keys: independent streams from one seed


@dataclass(frozen=True)
class WindowSpec:
    """F frames per window, N steps (input rows), T = N · attended_per_step attended rows."""

    frames: int = 192
    steps: int = 12
    attended_per_step: int = 1

    def __post_init__(self):
        if self.frames < 1 or self.steps < 1 or self.attended_per_step < 1:
            raise DatasetError(f"window {self}: frames, steps and attended_per_step must be positive")
        if self.frames % self.steps or (self.frames // self.steps) % self.attended_per_step:
            raise DatasetError(f"window {self}: frames must split into steps, and each step's "
                               f"{self.frames // self.steps} frames into {self.attended_per_step} "
                               "attended frames")

    @property
    def chunk_frames(self) -> int:       # F / N = 16
        return self.frames // self.steps

    @property
    def attended(self) -> int:           # T
        return self.steps * self.attended_per_step

    @property
    def attended_stride(self) -> int:    # F / T frames between attended frames
        return self.chunk_frames // self.attended_per_step


class Batch(NamedTuple):
    inputs: torch.Tensor                 # (B, N, Dv) float32
    attended: torch.Tensor | None        # (B, T, Da) float32
    attended_mask: torch.Tensor | None   # (B, T) bool, all True (only full windows exist)
    targets: torch.Tensor                # (B,) int64, or (B, C) float32 multi-hot
    video_ids: tuple[str, ...]
    start_frames: torch.Tensor           # (B,) int64 first frame of each window
    flipped: torch.Tensor                # (B,) bool


def keep_batch(batch):
    """``collate_fn`` for ``DataLoader(windows, batch_size=None, collate_fn=keep_batch)``: the default
    one would turn ``video_ids`` into a list."""
    return batch


def _row_step(stride: int, frames: int, rows_needed: int, what: str) -> int:
    """Rows between consecutive picks when picks are ``frames`` apart and rows ``stride`` apart."""
    if rows_needed == 1:
        return 1
    if stride <= 0:
        return 0                          # a single row: no window needing more than one
    if frames % stride:
        raise DatasetError(f"{what} has a row every {stride} frames, which cannot give one every "
                           f"{frames} frames; choose a window whose steps are a multiple of {stride} frames")
    return frames // stride


class WindowStarts(NamedTuple):
    """A video's valid windows: the input-row starts ``first + period * k`` for k < ``count``.

    Starts are row indices within the video's input rows (0-based); ``count`` 0 means no full window
    (``first`` 0, ``period`` 1 then). ``in_step``: input rows between consecutive steps of a window
    (1 when a row is stored per step); ``a_step``: attended rows between consecutive attended frames
    (1 for T = 2N from 8-frame storage, 2 for T = N).
    """

    first: int
    period: int
    count: int
    in_step: int
    a_step: int


def window_starts(input_grid, attended_grid, num_frames: int, spec: WindowSpec,
                  what: str = "source") -> WindowStarts:
    """The video's valid windows (see :class:`WindowStarts`).

    input_grid, attended_grid: (first frame, frame stride, row count) of the video's rows (attended_grid
    None without attended source).
    """
    f_in, s_in, r_in = input_grid
    in_step = _row_step(s_in, spec.chunk_frames, spec.steps, f"input {what}")
    span = (spec.steps - 1) * in_step
    i = np.arange(max(r_in - span, 0) if in_step else 0)
    start = f_in + s_in * i
    ok = start + spec.frames <= num_frames
    a_step = 1
    if attended_grid is not None:
        f_a, s_a, r_a = attended_grid
        T = spec.attended
        a_step = _row_step(s_a, spec.attended_stride, T, f"attended {what}")
        if s_a > 0 and a_step:
            offset = start - f_a
            ok &= (offset >= 0) & (offset % s_a == 0) & (offset // s_a + (T - 1) * a_step < r_a)
        else:                             # at most one attended row: usable only when T = 1
            ok &= (start == f_a) & (r_a >= 1) & (T == 1)
    valid = np.flatnonzero(ok)
    if len(valid) == 0:
        return WindowStarts(0, 1, 0, in_step, a_step)
    period = int(valid[1] - valid[0]) if len(valid) > 1 else 1
    assert (valid == valid[0] + period * np.arange(len(valid))).all(), "valid starts form a progression"
    return WindowStarts(int(valid[0]), period, len(valid), in_step, a_step)


def _video_table(ds, split, input_source, attended_source, spec, flips):
    """Per eligible video: file index, window progression, row offsets and steps; and the excluded."""
    if not isinstance(ds, FeatureDataset):
        raise DatasetError(f"{ds.path} is a legacy Fuel file; convert it first: "
                           f"alstm dataset convert {ds.path} OUT.h5")
    sources = [input_source] + ([attended_source] if attended_source else [])
    if flips:
        sources += [s + FLIP_SUFFIX for s in sources]
    for source in sources:
        if source not in ds.feature_sources:
            hint = (" (the features of flipped frames: `alstm train` and `alstm evaluate` go on without them "
                    "unless --flip is given)" if source.endswith(FLIP_SUFFIX) else "")
            raise DatasetError(str(missing_source(ds.path, source, ds.sources)) + hint)
    tables = {s: ds.row_table(s) for s in sources}
    targets, num_frames = ds.targets_array(), ds.num_frames_array()
    candidates = ds.split_indices(split)
    names = WindowStarts._fields          # the table's columns, one per field
    columns = np.zeros((len(candidates), len(names)), np.int64)
    excluded = {}
    for n, v in enumerate(candidates.tolist()):
        if (targets[v] < 0).any():
            raise DatasetError(f"video '{ds.video_ids[v]}' in split '{split}' of {ds.path} has no label; "
                               "label it (`alstm extract --labels`, `alstm dataset build`) or move it out of "
                               "the split")
        in_row = tables[input_source][v]
        att_grid = None
        if attended_source:
            att_row = tables[attended_source][v]
            att_grid = (att_row[2], att_row[3], att_row[1])
        starts = window_starts((in_row[2], in_row[3], in_row[1]), att_grid, int(num_frames[v]), spec,
                               f"source of video '{ds.video_ids[v]}'")
        columns[n] = starts
        if starts.count == 0:
            excluded[ds.video_ids[v]] = int(num_frames[v])
    eligible = columns[:, names.index("count")] > 0
    table = {name: columns[eligible, i].copy() for i, name in enumerate(names)}
    table["index"] = candidates[eligible]
    index = table["index"]
    for role, source in (("in", input_source), ("att", attended_source)):
        if source is None:
            continue
        for suffix in ("", FLIP_SUFFIX) if flips else ("",):
            table[f"{role}{suffix}_row0"] = tables[source + suffix][index, 0]
        table[f"{role}_frame0"], table[f"{role}_stride"] = tables[source][index, 2], tables[source][index, 3]
    if len(index) == 0:
        raise DatasetError(f"no video of split '{split}' in {ds.path} has a full {spec.frames}-frame window "
                           f"({len(excluded)} excluded)")
    table[TARGETS] = targets[index]
    table["ids"] = [ds.video_ids[v] for v in index]
    return table, excluded


def _batch_array(shape: tuple[int, ...]) -> np.ndarray:
    """An empty float32 array; in a DataLoader worker, the numpy view of a shared-memory tensor, so
    that handing the batch to the main process does not copy it once more."""
    if torch.utils.data.get_worker_info() is None:
        return np.empty(shape, np.float32)
    return torch.empty(shape, dtype=torch.float32).share_memory_().numpy()


class _Windows:
    """What the training and test streams share: the eligible videos and reading windows."""

    def __init__(self, path, split, input_source, attended_source, spec, flips):
        self.path, self.split, self.spec = str(path), split, spec
        self.input_source, self.attended_source = input_source, attended_source
        with open_dataset(path) as ds:
            self._table, self.excluded = _video_table(ds, split, input_source, attended_source, spec, flips)
            self.input_dim = ds.dim(input_source)
            self.attended_dim = ds.dim(attended_source) if attended_source else None
            self.class_names, self.num_classes = list(ds.class_names), ds.num_classes
            self.multilabel = ds.multilabel
        self.video_ids = tuple(self._table["ids"])
        self.num_videos = len(self.video_ids)
        self._ds, self._pid = None, None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_ds"], state["_pid"] = None, None       # every process opens its own handle
        return state

    def _dataset(self) -> FeatureDataset:
        if self._ds is None or self._pid != os.getpid():
            self._ds, self._pid = FeatureDataset(self.path), os.getpid()
        return self._ds

    def close(self) -> None:
        if self._ds is not None and self._pid == os.getpid():
            self._ds.close()
        self._ds = None

    def _read(self, rows: np.ndarray, starts: np.ndarray, flipped: np.ndarray) -> Batch:
        """Windows of table rows ``rows`` (B,) at input-row starts ``starts`` (B,), flipped (B,) bool."""
        t, spec, ds = self._table, self.spec, self._dataset()
        B, N, T = len(rows), spec.steps, spec.attended
        start_frames = t["in_frame0"][rows] + t["in_stride"][rows] * starts
        inputs = _batch_array((B, N, self.input_dim))
        self._fill(ds, inputs, "in", self.input_source, rows, starts, t["in_step"][rows], flipped)
        attended = None
        if self.attended_source:
            stride = np.maximum(t["att_stride"][rows], 1)
            att_starts = (start_frames - t["att_frame0"][rows]) // stride
            attended = _batch_array((B, T, self.attended_dim))
            self._fill(ds, attended, "att", self.attended_source, rows, att_starts, t["a_step"][rows],
                       flipped)
        targets = t[TARGETS][rows].astype(np.float32 if self.multilabel else np.int64)
        return Batch(
            inputs=torch.as_tensor(inputs),
            attended=None if attended is None else torch.as_tensor(attended),
            attended_mask=None if attended is None else torch.ones(B, T, dtype=torch.bool),
            targets=torch.from_numpy(targets),
            video_ids=tuple(t["ids"][r] for r in rows),
            start_frames=torch.from_numpy(start_frames.astype(np.int64)),
            flipped=torch.from_numpy(np.asarray(flipped, dtype=bool)),
        )

    def _fill(self, ds, out, role, source, rows, starts, steps, flipped) -> None:
        """out[b] = rows starts[b] :: steps[b] of the video (flip or not); out: (B, K, D) float32.

        HDF5's low-level reads with reused dataspaces: h5py's slicing costs more than the copy here.
        Rows every other one (T = N from 8-frame storage) are read as one span and subsampled: a
        strided selection costs one I/O call per row, the span at most (2K - 1) / K < 2x the bytes.
        """
        t, (K, D) = self._table, out.shape[1:]
        handles = {False: ds.features(source).id}
        if flipped.any():
            handles[True] = ds.features(source + FLIP_SUFFIX).id
        file_spaces = {flip: handle.get_space() for flip, handle in handles.items()}
        memory_space = h5py.h5s.create_simple((K, D))
        scratch = np.empty((2 * K - 1, D), np.float32)
        span_space = h5py.h5s.create_simple(scratch.shape)
        for b, (row, start, step, flip) in enumerate(zip(rows, starts, steps, flipped, strict=True)):
            step, flip = int(step), bool(flip)
            first = int(t[f"{role}{FLIP_SUFFIX if flip else ''}_row0"][row] + start)
            space = file_spaces[flip]
            if step <= 1 or K == 1:
                space.select_hyperslab((first, 0), (K, D))
                handles[flip].read(memory_space, space, out[b])
            elif step == 2:
                space.select_hyperslab((first, 0), scratch.shape)
                handles[flip].read(span_space, space, scratch)
                out[b] = scratch[::2]
            else:
                space.select_hyperslab((first, 0), (K, 1), stride=(step, 1), block=(1, D))
                handles[flip].read(memory_space, space, out[b])
        sums = out.sum(axis=(1, 2))          # NaN/inf propagate: one pass, no (B, K, D) temporary
        for b in np.flatnonzero(~np.isfinite(sums)):
            if not np.isfinite(out[b]).all():
                name = source + (FLIP_SUFFIX if flipped[b] else "")
                raise DatasetError(f"video '{t['ids'][rows[b]]}', source '{name}': NaN or infinite values "
                                   f"in the window at input row {int(starts[b])}; re-extract this "
                                   "video's features")


class TrainWindows(_Windows):
    """Random training windows: ``windows[k]`` is batch k (B = batch_size per rank); see module doc.

    ``len()`` is ``num_batches`` (default: effectively unbounded). With a DataLoader, pass
    ``batch_size=None, sampler=range(first, last), collate_fn=keep_batch``: the batches are already
    random, and a shuffling sampler would materialise ``len()`` indices.
    """

    def __init__(self, path, split: str = "train", input_source: str = "c3d_fc6",
                 attended_source: str | None = None, batch_size: int = 200, spec: WindowSpec = WindowSpec(),
                 flip_prob: float = 0.5, seed: int = 0, rank: int = 0, world_size: int = 1,
                 num_batches: int | None = None):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise DatasetError(f"batch_size {batch_size}, rank {rank}, world_size {world_size}: need "
                               "batch_size >= 1 and 0 <= rank < world_size")
        if not 0.0 <= flip_prob <= 1.0:
            raise DatasetError(f"flip_prob must be in [0, 1], got {flip_prob}")
        super().__init__(path, split, input_source, attended_source, spec, flips=flip_prob > 0)
        self.batch_size, self.flip_prob, self.seed = batch_size, float(flip_prob), int(seed)
        self.rank, self.world_size = rank, world_size
        self.num_batches = num_batches if num_batches is not None else 2**62

    def __len__(self) -> int:
        return self.num_batches

    def videos_at(self, positions: np.ndarray) -> np.ndarray:
        """Table rows of the videos at global positions of the epoch-permutation sequence."""
        M = self.num_videos
        epochs, offsets = np.divmod(np.asarray(positions, dtype=np.int64), M)
        out = np.empty(len(offsets), np.int64)
        for epoch in np.unique(epochs):
            generator = np.random.default_rng(
                np.random.SeedSequence(self.seed, spawn_key=(_PERMUTATION, int(epoch))))
            mask = epochs == epoch
            out[mask] = generator.permutation(M)[offsets[mask]]
        return out

    def __getitem__(self, k: int) -> Batch:
        if not 0 <= k < self.num_batches:
            raise IndexError(k)
        B, W = self.batch_size, self.world_size
        mine = slice(self.rank * B, (self.rank + 1) * B)
        rows = self.videos_at(k * B * W + np.arange(B * W)[mine])
        generator = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_BATCH, int(k))))
        u = generator.random(B * W)[mine]                    # drawn for the global batch, then sliced
        flipped = (generator.random(B * W) < self.flip_prob)[mine]
        t = self._table
        picks = np.minimum((u * t["count"][rows]).astype(np.int64), t["count"][rows] - 1)
        return self._read(rows, t["first"][rows] + t["period"][rows] * picks, flipped)


def _video_key(video_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(video_id.encode("utf-8"), digest_size=8).digest(), "little")


class TestWindows(_Windows):
    """Per video, ``crops`` seeded windows then the same on flipped sources (``flip=False``: no flips).

    ``for video_id, batch in windows``; ``windows[n]`` is the n-th video's (id, batch). Positions depend
    only on (seed, video id), not on the other videos of the file.
    """

    __test__ = False      # not a pytest class

    def __init__(self, path, split: str = "test", input_source: str = "c3d_fc6",
                 attended_source: str | None = None, spec: WindowSpec = WindowSpec(), crops: int = 40,
                 seed: int = 0, flip: bool = True):
        if crops < 1:
            raise DatasetError(f"crops must be >= 1, got {crops}")
        super().__init__(path, split, input_source, attended_source, spec, flips=flip)
        self.crops, self.seed, self.flip = crops, int(seed), flip

    def __len__(self) -> int:
        return self.num_videos

    def starts(self, n: int) -> np.ndarray:
        """(crops,) input-row starts of the n-th video's windows."""
        t, video_id = self._table, self.video_ids[n]
        generator = np.random.default_rng(
            np.random.SeedSequence(self.seed, spawn_key=(_TEST, _video_key(video_id))))
        return t["first"][n] + t["period"][n] * generator.integers(0, t["count"][n], self.crops)

    def __getitem__(self, n: int) -> tuple[str, Batch]:
        if not 0 <= n < self.num_videos:
            raise IndexError(n)
        starts = self.starts(n)
        copies = 2 if self.flip else 1
        flipped = np.repeat(np.arange(copies) == 1, self.crops)
        rows = np.full(copies * self.crops, n, np.int64)
        return self.video_ids[n], self._read(rows, np.tile(starts, copies), flipped)

    def __iter__(self):
        for n in range(self.num_videos):
            yield self[n]
