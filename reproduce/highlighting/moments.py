"""Attention on the frames of a whole video (docs/paper.md §7): per-frame weights, densities, moments.

`reproduce.highlighting.windows` reads a video as windows; this module turns their attention weights into what
the report shows: `FrameWeights` averages each attended frame's step-averaged weight over the windows
reading it; `density` and `combine_curves` put models that attend to 12 or 24 frames per window on one
frame grid (weight × T, so 1 is uniform attention); `find_moments` picks the highlighted stretches;
`extreme_frames`, `strip_columns` and `frame_times` choose and time the frames a figure shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class FrameWeights:
    """Per attended frame of one model: the step-averaged weight of each window reading it, averaged over
    those windows (overlapping windows read some frames twice)."""

    def __init__(self, cell: int):
        self.cell = cell                                   # frames between attended frames (F / T)
        self._sum: dict[int, float] = {}
        self._count: dict[int, int] = {}

    def add(self, frames: np.ndarray, attention: np.ndarray) -> np.ndarray:
        """frames (T,), attention (N, T) → the window's per-frame weights (T,) = mean over steps."""
        per_frame = np.asarray(attention, dtype=np.float64).mean(axis=0)                  # (T,)
        for frame, weight in zip(frames.tolist(), per_frame.tolist(), strict=True):
            self._sum[frame] = self._sum.get(frame, 0.0) + weight
            self._count[frame] = self._count.get(frame, 0) + 1
        return per_frame

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(frames (U,) int64 ascending, weights (U,) float64)."""
        frames = np.asarray(sorted(self._sum), dtype=np.int64)
        weights = np.asarray([self._sum[f] / self._count[f] for f in frames.tolist()], dtype=np.float64)
        return frames, weights


def combine_curves(curves: Sequence[tuple[np.ndarray, np.ndarray, int]], covered: int):
    """Average several models' attention densities on one frame grid.

    ``curves``: per model (frames (U,), densities (U,) = weight × T, cell = F / T): the density of an
    attended frame f holds for its cell [f, f + cell) (1 = uniform attention, so models attending to 12
    or 24 frames per window compare). Returns (grid frames (G,) int64 every gcd of the cells, density
    (G,) float64 averaged over the models that read each grid cell, NaN where none does, the grid cell).
    """
    cell = math.gcd(*[c for _, _, c in curves])
    grid = np.arange(0, covered, cell, dtype=np.int64)                               # (G,)
    total, count = np.zeros(len(grid)), np.zeros(len(grid))
    for frames, values, c in curves:
        per_cell = np.full(covered // c + 1, np.nan)
        per_cell[np.asarray(frames, dtype=np.int64) // c] = values
        at_grid = per_cell[grid // c]                                                # (G,)
        ok = ~np.isnan(at_grid)
        total[ok] += at_grid[ok]
        count[ok] += 1
    return grid, np.where(count > 0, total / np.maximum(count, 1), np.nan), cell


def density(weights: np.ndarray, attended: int) -> np.ndarray:
    """Weights of T attended frames (each row summing to 1) as densities: weight × T (1 = uniform)."""
    return np.asarray(weights, dtype=np.float64) * attended


class MomentSpan(NamedTuple):
    """A highlighted stretch: frames [start, end), its peak frame and density (weight × T), its mean."""

    start: int
    end: int
    peak_frame: int
    peak: float
    mean: float


def find_moments(grid: np.ndarray, values: np.ndarray, cell: int, covered: int, threshold: float = 1.5,
                 top: int = 5, gap: int = 0) -> list[MomentSpan]:
    """The ``top`` moments of a density curve, best first.

    A grid cell [g, g + cell) is highlighted when its density is at least ``threshold`` (1 = the uniform
    weight 1/T; NaN cells never are). Highlighted cells separated by at most ``gap`` cells merge into one
    moment [first cell, end of last cell), clipped to ``covered``. Moments are ranked by their peak
    density (ties: the longer, then the earlier one).
    """
    if top < 1:
        return []
    hot = np.flatnonzero(np.nan_to_num(values, nan=-np.inf) >= threshold)
    runs: list[list[int]] = []
    for i in hot.tolist():
        if runs and i - runs[-1][-1] <= gap + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    moments = []
    for run in runs:
        cells = np.arange(run[0], run[-1] + 1)
        vals = values[cells]
        best = int(cells[np.nanargmax(vals)])
        moments.append(MomentSpan(int(grid[run[0]]), int(min(grid[run[-1]] + cell, covered)), int(grid[best]),
                              float(values[best]), float(np.nanmean(vals))))
    moments.sort(key=lambda m: (-m.peak, -(m.end - m.start), m.start))
    return moments[:top]


def top_classes(scores: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[dict]:
    """The k best classes of scores (C,): [{"class", "index", "score"}], best first (ties: lower index)."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return [{"class": class_names[i], "index": int(i), "score": float(scores[i])} for i in order.tolist()]


def extreme_frames(frames: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``frames`` of the k highest (descending) and k lowest (ascending) weights (Fig. 2);
    ties go to the earlier frame. With fewer than 2k frames the two sets may share frames."""
    weights = np.asarray(weights, dtype=np.float64)
    position = np.arange(len(weights))
    high = np.lexsort((position, -weights))[:k]
    low = np.lexsort((position, weights))[:k]
    return high, low


def strip_columns(frames: Sequence[int], limit: int = 12) -> list[int]:
    """At most ``limit`` of the (sorted, distinct) ``frames``, evenly spaced, first and last included."""
    frames = sorted(set(int(f) for f in frames))
    if len(frames) <= limit:
        return frames
    picks = np.round(np.linspace(0, len(frames) - 1, limit)).astype(int)
    return [frames[i] for i in picks.tolist()]


def frame_times(frames, timestamps: np.ndarray) -> np.ndarray:
    """Seconds of ``frames`` from the per-frame presentation times ``timestamps`` (seconds from the first
    frame); a frame past the last decoded one (an exclusive end) is the last time plus one frame."""
    frames = np.asarray(frames, dtype=np.int64)
    times = np.asarray(timestamps, dtype=np.float64)
    last = len(times) - 1
    period = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    out = times[np.minimum(frames, last)]
    beyond = frames > last
    return np.where(beyond, times[last] + period * (frames - last), out)
