"""Highlighting (docs/paper.md §7): windows over a whole video, attention weights → per-frame weights →
moments.

The attention weights w_{t,i} (Eq. 4) say, for each step t of a window, how much attended frame i drove
the label. A trained model reads windows of F = 192 frames; a video is longer, so it is read as a
sequence of windows and the weights are mapped back to absolute frames::

    features, one row per 16-frame chunk (C3D) or every s frames (VGG-19), streamed in order
      ─▶ WindowAssembler: windows of F frames every `stride` frames (default F: non-overlapping), plus a
         last window aligned to the end of the video, so that every frame is read; rows older than the
         next window are dropped (memory does not grow with the video)
      ─▶ score_windows: each model on its inputs (N, Dv) and attended (T, Da) rows (member_window):
         class scores (C,) averaged over the models, attention (N, T) per model (variant b: (1, T))
      ─▶ reproduce.highlighting.results.summarize: the typed `Highlights` (per-frame weights, timeline,
      moments)

Frames are indexed in decoding order from 0 (caffe_models.video); a row "at frame f" was computed from
frame f (VGG-19) or from frames f..f+15 (C3D), the storage convention of the feature files. Frames after
the last complete 16-frame chunk are not read, as in extraction. Nothing here reads or writes files:
``reproduce.highlighting.pipeline`` feeds it the features of a video (or of a feature file) and writes the
result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from alstm_core.storage import CHUNK_FRAMES, LAYERS, SourceName, parse_source
from reproduce.errors import ReproduceError


def extracted_source(source: str) -> SourceName:
    """The network and layer of a source the extractors make from a video (``c3d_fc6``,
    ``vgg_obj_fc8``); ReproduceError for any other (``salient``, ``*_flip``, a release's ``c3d_fc7pca``)."""
    name = parse_source(source)
    if name is None or name.flip:
        raise ReproduceError(
            f"source {source!r} cannot be extracted from a video: the extractors make c3d_<layer> and "
            f"vgg_<family>_<layer> with layer {'/'.join(LAYERS)} (flipped-frame sources are not read here)")
    return name


def plan_windows(num_frames: int, frames: int, stride: int | None = None) -> np.ndarray:
    """First frames (W,) int64 of the windows that read a ``num_frames`` video, in order.

    Windows start at chunk boundaries every ``stride`` frames (None: ``frames``, non-overlapping); when
    the last of them ends before the last complete chunk, one more window ends exactly there (it overlaps
    its predecessor), so every chunk is read and every window is full, as in training (a shorter window
    would spread its attention over fewer frames). A video without one full window raises ReproduceError.
    """
    check_window(frames, stride)
    stride = frames if stride is None else stride
    covered = num_frames // CHUNK_FRAMES * CHUNK_FRAMES
    if covered < frames:
        raise short_video_error(num_frames, frames)
    starts = list(range(0, covered - frames + 1, stride))
    if starts[-1] + frames < covered:
        starts.append(covered - frames)
    return np.asarray(starts, dtype=np.int64)


def short_video_error(num_frames: int, frames: int) -> ReproduceError:
    return ReproduceError(
        f"the video has {num_frames} frames, fewer than one window of {frames} frames (in complete "
        f"{CHUNK_FRAMES}-frame chunks) that the model reads; the paper excludes such videos "
        "(docs/paper.md §1). "
        "Use a longer video, or a model trained with shorter windows (alstm train --frames)")


def check_window(frames: int, stride: int | None) -> None:
    """ReproduceError unless windows of ``frames`` every ``stride`` frames start at chunk boundaries."""
    if frames < CHUNK_FRAMES or frames % CHUNK_FRAMES:
        raise ReproduceError(f"window of {frames} frames: it must be a multiple of {CHUNK_FRAMES} frames")
    if stride is not None and (stride < CHUNK_FRAMES or stride % CHUNK_FRAMES):
        raise ReproduceError(f"--stride {stride}: give a multiple of {CHUNK_FRAMES} frames (the C3D chunk), "
                             f"e.g. {frames} (non-overlapping windows) or {frames // 2}")


class WindowRows(NamedTuple):
    """One window: its first frame and, per source, the rows at frames start, start + s, … < start + F
    (s the source's row stride): (F / s, D) float32."""

    start: int
    rows: dict[str, np.ndarray]


class WindowAssembler:
    """Cuts streamed feature rows into the windows of ``plan_windows``, keeping only the rows that a
    window still to come can read (at most F + stride frames' worth per source).

    ``strides``: {source: frames between its rows}; every source's rows start at frame 0. ``add(rows,
    covered)`` appends rows (``covered``: frames in complete chunks decoded so far) and returns the
    windows now complete; ``finish()`` returns the last, end-aligned one (if needed) and raises
    ReproduceError if the video never held a full window.
    """

    def __init__(self, strides: Mapping[str, int], frames: int, stride: int | None = None):
        check_window(frames, stride)
        for source, step in strides.items():
            if step < 1 or frames % step:
                raise ReproduceError(f"source {source!r} has a row every {step} frames, which does not "
                                     f"divide the {frames}-frame window")
        self.strides, self.frames = dict(strides), frames
        self.stride = frames if stride is None else stride
        self.base = 0                                       # frame of the first buffered row
        self.buffers: dict[str, list[np.ndarray]] = {s: [] for s in strides}
        self.counts = dict.fromkeys(strides, 0)             # buffered rows per source
        self.covered = 0
        self.next_start = 0
        self.last_start: int | None = None

    def add(self, rows: Mapping[str, np.ndarray], covered: int) -> list[WindowRows]:
        for source, value in rows.items():
            if len(value):
                self.buffers[source].append(np.asarray(value, dtype=np.float32))
                self.counts[source] += len(value)
        self.covered = max(self.covered, covered // CHUNK_FRAMES * CHUNK_FRAMES)
        ready = []
        while self.next_start + self.frames <= self.covered:
            ready.append(self._window(self.next_start))
            self.next_start += self.stride
        self._trim(min(self.next_start, max(0, self.covered - self.frames)))
        return ready

    def finish(self, num_frames: int | None = None) -> list[WindowRows]:
        """The end-aligned last window, if the regular ones stop short of the last chunk."""
        if self.last_start is None:
            raise short_video_error(self.covered if num_frames is None else num_frames, self.frames)
        end = self.covered - self.frames
        if self.last_start < end:
            return [self._window(end)]
        return []

    def _window(self, start: int) -> WindowRows:
        out = {}
        for source, step in self.strides.items():
            first = (start - self.base) // step
            count = self.frames // step
            rows = self._rows(source)
            if first < 0 or first + count > len(rows):
                have, need = self.base // step + len(rows), (start + self.frames) // step
                raise ReproduceError(f"source {source!r} has {have} rows, fewer than the {need} that frames "
                                     f"up to {start + self.frames} need")
            out[source] = rows[first:first + count]
        self.last_start = start
        return WindowRows(start, out)

    def _rows(self, source: str) -> np.ndarray:
        parts = self.buffers[source]
        if len(parts) > 1:
            self.buffers[source] = parts = [np.concatenate(parts)]
        return parts[0] if parts else np.zeros((0, 0), np.float32)

    def _trim(self, keep_from: int) -> None:
        """Drop the rows before frame ``keep_from`` (a multiple of every stride)."""
        keep_from -= keep_from % math.lcm(CHUNK_FRAMES, *self.strides.values())
        if keep_from <= self.base:
            return
        for source, step in self.strides.items():
            rows = self._rows(source)
            drop = min((keep_from - self.base) // step, len(rows))
            self.buffers[source] = [rows[drop:]] if len(rows) > drop else []
            self.counts[source] = len(rows) - drop
        self.base = keep_from


class Reading(NamedTuple):
    """What one model reads: sources, the window spec (F, N, T/N) and the row strides of its sources."""

    input_source: str
    attended_source: str | None
    frames: int
    steps: int
    attended_per_step: int

    @property
    def attended(self) -> int:                      # T
        return self.steps * self.attended_per_step

    @property
    def attended_stride(self) -> int:               # F / T frames between attended frames
        return self.frames // self.attended


def check_reading(reading: Reading, strides: Mapping[str, int], what: str) -> None:
    """ReproduceError unless the rows at ``strides`` give this model one input row every F/N frames and
    one attended row every F/T frames."""
    step_frames = reading.frames // reading.steps
    if reading.frames % reading.steps or step_frames % strides[reading.input_source]:
        raise ReproduceError(
            f"{what} reads {reading.input_source} every {step_frames} frames (F = {reading.frames}, N = "
            f"{reading.steps}), but a video gives it every {strides[reading.input_source]} frames")
    if reading.attended_source is not None:
        stride = strides[reading.attended_source]
        if reading.frames % reading.attended or reading.attended_stride % stride:
            raise ReproduceError(
                f"{what} attends to {reading.attended_source} every {reading.frames / reading.attended:g} "
                f"frames, but a video gives it every {stride} frames")


def member_window(window: WindowRows, reading: Reading, strides: Mapping[str, int]):
    """(inputs (N, Dv), attended (T, Da) or None, attended_frames (T,) int64 or None) of one window."""
    step_in = (reading.frames // reading.steps) // strides[reading.input_source]
    inputs = window.rows[reading.input_source][::step_in][:reading.steps]                # (N, Dv)
    if reading.attended_source is None:
        return inputs, None, None
    step_att = reading.attended_stride // strides[reading.attended_source]
    attended = window.rows[reading.attended_source][::step_att][:reading.attended]      # (T, Da)
    frames = window.start + reading.attended_stride * np.arange(reading.attended, dtype=np.int64)
    return inputs, attended, frames


class WindowResult(NamedTuple):
    """One window's outputs: ``scores`` (C,) averaged over the models; per model, (attended frames (T,),
    attention (N, T), (1, T) for variant b) or None for a model without attention."""

    start: int
    scores: np.ndarray
    attention: list[tuple[np.ndarray, np.ndarray] | None]


def score_windows(models: Sequence, readings: Sequence[Reading], windows: Sequence[WindowRows],
                  strides: Mapping[str, int], device="cpu") -> list[WindowResult]:
    """Every model (``bricks.AttentionLSTM`` in eval mode, reading ``readings[m]``) on the windows, in one
    batch of B windows each: scores (B, C) averaged over the models, attention (B, N, T) per model."""
    import torch

    if not windows:
        return []
    scores, attention = [], []
    with torch.inference_mode():
        for model, reading in zip(models, readings, strict=True):
            parts = [member_window(w, reading, strides) for w in windows]
            inputs = torch.from_numpy(np.stack([p[0] for p in parts])).to(device)              # (B, N, Dv)
            attended = (torch.from_numpy(np.stack([p[1] for p in parts])).to(device)
                        if reading.attended_source else None)                                   # (B, T, Da)
            out = model(inputs, attended)
            scores.append(out.scores.float().cpu().numpy())                                   # (B, C)
            weights = None if out.attention is None else out.attention.float().cpu().numpy()   # (B, N, T)
            attention.append([None if weights is None else (p[2], weights[b]) for b, p in enumerate(parts)])
    mean = np.mean(scores, axis=0)                                                              # (B, C)
    return [WindowResult(w.start, mean[b], [a[b] for a in attention]) for b, w in enumerate(windows)]

