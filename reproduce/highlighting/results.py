"""What highlighting found in one video (docs/paper.md §7), as typed values, and its JSON form
``highlights.json``.

``summarize`` turns the scored windows of a whole video (``reproduce.highlighting.windows``) into a
`Highlights`:

    Highlights
      video, models              where it came from (`HighlightedVideo`, one `ModelInfo` per checkpoint)
      top_classes                [ClassScore], best first: the scores averaged over windows (and models)
      windows                    [Window]: frames, times, top-class scores, and per model with attention
                                 a `WindowAttention` (step weights (N, T), their mean per frame (T,))
      frames                     [FrameCurve] per model with attention: each attended frame's weight
                                 averaged over the windows reading it, and its density (weight × T)
      timeline                   `Timeline`: the models' densities on one frame grid (None: no attention)
      moments                    [Moment]: runs of the timeline at or above the threshold, best first
      settings                   `HighlightSettings` (threshold, moments, merge gap, top)
      extractors, random_weights, precision    the networks that made the features (video input only)

Values keep full precision; ``to_json`` rounds them to 6 digits, in the key order of format version 1.
The report (``reproduce.highlighting.report``) and the clip (``reproduce.highlighting.summary_video``) read
these values, never the JSON.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alstm_core.atomic import write_json
from alstm_core.storage import CHUNK_FRAMES
from reproduce.errors import ReproduceError
from reproduce.highlighting.moments import (
    FrameWeights,
    combine_curves,
    density,
    find_moments,
    frame_times,
    top_classes,
)
from reproduce.highlighting.windows import Reading, WindowResult

FORMAT, FORMAT_VERSION = "alstm-highlights", 1


def _round(values, digits: int = 6) -> list:
    return [round(float(v), digits) for v in np.asarray(values).ravel().tolist()]


def _r(value: float) -> float:
    return round(float(value), 6)


@dataclass(frozen=True)
class ClassScore:
    """One class of the video's ranking: its name, index in the class list and mean score."""

    name: str
    index: int
    score: float


@dataclass(frozen=True)
class HighlightedVideo:
    """The highlighted video: its path (or id), frame rate, size, rotation and decoder problems."""

    path: str
    fps: float
    width: int | None = None
    height: int | None = None
    rotation: int | None = None
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict:
        if self.width is None:      # features read from a file: no decoded video
            return {"path": self.path, "fps": self.fps}
        return {"path": self.path, "fps": self.fps, "width": self.width, "height": self.height,
                "rotation": self.rotation, "problems": list(self.problems)}


@dataclass(frozen=True)
class ModelInfo:
    """One checkpoint of the (ensemble) classifier and what it reads."""

    checkpoint: str
    label: str                       # the paper's row name, e.g. "aLSTM-VGG_obj (fc8)"
    input_source: str
    attended_source: str | None
    frames: int
    steps: int
    attended_per_step: int
    variant: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class WindowAttention:
    """One model's attention in one window: attended ``frames`` (T,) int64 and their ``times`` (T,) s,
    ``step_weights`` (N, T) (variant b: (1, T)), ``frame_weights`` (T,) their mean over the steps."""

    model: int
    frames: np.ndarray
    times: np.ndarray
    step_weights: np.ndarray
    frame_weights: np.ndarray

    def to_json(self) -> dict:
        return {"model": self.model, "frames": self.frames.tolist(), "times": _round(self.times),
                "step_weights": [_round(row) for row in self.step_weights],
                "frame_weights": _round(self.frame_weights)}


@dataclass(frozen=True)
class Window:
    """One window of the video: frames [start_frame, end_frame), its times, the scores of the video's top
    classes in it ({class name: score}), and per model its attention (None: a model without attention)."""

    index: int
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    class_scores: dict[str, float]
    attention: tuple[WindowAttention | None, ...]

    def to_json(self) -> dict:
        return {"index": self.index, "start_frame": self.start_frame, "end_frame": self.end_frame,
                "start_time": _r(self.start_time), "end_time": _r(self.end_time),
                "class_scores": {name: _r(score) for name, score in self.class_scores.items()},
                "attention": [None if a is None else a.to_json() for a in self.attention]}


@dataclass(frozen=True)
class FrameCurve:
    """One model's attention over the whole video: per attended frame (U,) its weight averaged over the
    windows reading it, and its density (weight × T, 1 = uniform); each frame stands for ``cell_frames``
    frames, the last one ending at ``end_time``."""

    model: int
    cell_frames: int
    frames: np.ndarray
    times: np.ndarray
    end_time: float
    weights: np.ndarray
    density: np.ndarray

    def to_json(self) -> dict:
        return {"model": self.model, "cell_frames": self.cell_frames, "frames": self.frames.tolist(),
                "times": _round(self.times), "end_time": _r(self.end_time), "weights": _round(self.weights),
                "density": _round(self.density)}


@dataclass(frozen=True)
class Timeline:
    """The models' densities averaged on one grid of ``cell_frames``: frames (G,), times (G,), density
    (G,) float64, NaN where no model reads the cell."""

    frames: np.ndarray
    times: np.ndarray
    density: np.ndarray
    cell_frames: int
    end_time: float

    def to_json(self) -> dict:
        return {"frames": self.frames.tolist(), "times": _round(self.times),
                "density": [None if math.isnan(v) else round(v, 6) for v in self.density.tolist()],
                "cell_frames": self.cell_frames, "end_time": _r(self.end_time)}


@dataclass(frozen=True)
class Moment:
    """A highlighted moment, rank 1 the best: frames [start_frame, end_frame), times, its peak frame, and
    its peak and mean density."""

    rank: int
    start_frame: int
    end_frame: int
    start_time: float
    end_time: float
    peak_frame: int
    peak_time: float
    peak_density: float
    mean_density: float

    def to_json(self) -> dict:
        """The fields in order, times and densities rounded."""
        return {k: _r(v) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class HighlightSettings:
    """How moments were chosen: density ``threshold`` (× uniform), at most ``moments`` of them, runs
    ``merge_gap_cells`` apart merged; ``top`` classes listed."""

    threshold: float = 1.5
    moments: int = 5
    merge_gap_cells: int = 0
    top: int = 5

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Highlights:
    """The action of one video and the frames that drove it (see the module docstring)."""

    video: HighlightedVideo
    models: tuple[ModelInfo, ...]
    num_frames: int
    frames_read: int                 # frames in complete 16-frame chunks
    duration: float                  # seconds
    window_frames: int               # F
    window_starts: tuple[int, ...]
    top_classes: tuple[ClassScore, ...]
    windows: tuple[Window, ...]
    frames: tuple[FrameCurve, ...]
    timeline: Timeline | None
    moments: tuple[Moment, ...]
    settings: HighlightSettings
    extractors: dict[str, str] | None = None        # network → description of its weights
    random_weights: tuple[str, ...] = ()
    precision: str | None = None

    def to_json(self) -> dict:
        """The content of ``highlights.json`` (format version 1): plain JSON types, rounded to 6 digits."""
        out = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "video": self.video.to_json(), "models": [m.to_json() for m in self.models],
            "num_frames": self.num_frames, "frames_read": self.frames_read, "duration": _r(self.duration),
            "window": {"frames": self.window_frames, "count": len(self.windows),
                       "starts": list(self.window_starts)},
            "top_classes": [{"class": c.name, "index": c.index, "score": c.score} for c in self.top_classes],
            "windows": [w.to_json() for w in self.windows],
            "frames": [f.to_json() for f in self.frames],
            "timeline": None if self.timeline is None else self.timeline.to_json(),
            "moments": [m.to_json() for m in self.moments],
            "settings": self.settings.to_json(),
        }
        if self.extractors is not None:
            out |= {"extractors": dict(self.extractors), "random_weights": list(self.random_weights),
                    "precision": self.precision}
        return out

    def write_json(self, path: str) -> str:
        """Write ``to_json()`` to ``path`` atomically (indent 1; its folder created); returns the path."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return write_json(path, self.to_json(), indent=1)


DEFAULT_SETTINGS = HighlightSettings()


def summarize(windows: Sequence[WindowResult], readings: Sequence[Reading], class_names: Sequence[str],
              timestamps: np.ndarray, num_frames: int, *, video: HighlightedVideo,
              models: Sequence[ModelInfo], settings: HighlightSettings | None = None,
              **extraction) -> Highlights:
    """The `Highlights` of a whole video from its scored windows.

    ``timestamps`` (num_frames,): seconds of every decoded frame from the first one. Scores are averaged
    over the windows (each already averaged over the models). ``extraction``: `Highlights`' extractors,
    random_weights and precision, for a video read by the feature networks.
    """
    settings = settings or DEFAULT_SETTINGS
    if not windows:
        raise ReproduceError("no window was read")
    covered = num_frames // CHUNK_FRAMES * CHUNK_FRAMES
    times = np.asarray(timestamps, dtype=np.float64)
    at = lambda frames: frame_times(frames, times)  # noqa: E731
    scores = np.mean([w.scores for w in windows], axis=0)                                  # (C,)
    best = tuple(ClassScore(c["class"], c["index"], c["score"])
                 for c in top_classes(scores, class_names, settings.top))
    accumulators = [FrameWeights(r.attended_stride) if r.attended_source else None for r in readings]
    items = []
    for index, window in enumerate(windows):
        per_model = []
        for m, item in enumerate(window.attention):
            if item is None:
                per_model.append(None)
                continue
            attended, attention = item
            per_frame = accumulators[m].add(attended, attention)
            per_model.append(WindowAttention(m, np.asarray(attended), at(attended), np.asarray(attention),
                                             per_frame))
        start, end = int(window.start), int(window.start) + readings[0].frames
        items.append(Window(index, start, end, float(at([start])[0]), float(at([end])[0]),
                            {c.name: float(window.scores[c.index]) for c in best}, tuple(per_model)))
    curves = []
    for m, (reading, acc) in enumerate(zip(readings, accumulators, strict=True)):
        if acc is not None:
            frames, weights = acc.result()
            end = float(at([frames[-1] + reading.attended_stride])[0])
            curves.append(FrameCurve(m, reading.attended_stride, frames, at(frames), end, weights,
                                     density(weights, reading.attended)))
    timeline, found = None, []
    if curves:
        grid, values, cell = combine_curves([(c.frames, c.density, c.cell_frames) for c in curves], covered)
        timeline = Timeline(grid, at(grid), values, cell, float(at([covered])[0]))
        found = find_moments(grid, values, cell, covered, settings.threshold, settings.moments,
                             settings.merge_gap_cells)
    moments = tuple(Moment(rank, m.start, m.end, float(at([m.start])[0]), float(at([m.end])[0]), m.peak_frame,
                           float(at([m.peak_frame])[0]), m.peak, m.mean) for rank, m in enumerate(found, 1))
    return Highlights(video, tuple(models), int(num_frames), int(covered), float(at([num_frames])[0]),
                      readings[0].frames, tuple(int(w.start) for w in windows), best, tuple(items),
                      tuple(curves), timeline, moments, settings, **extraction)

