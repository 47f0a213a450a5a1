"""Testing as in docs/paper.md §4: per video, 40 windows + the same 40 on flipped frames, scores averaged.

Three kinds of scorer share one path (`VideoScores`: one row of class scores per test video):

- a trained checkpoint: the model's window scores (the average of its per-step softmax y_t, or the
  sigmoid of the averaged logits for multi-label models), averaged over the video's 80 windows;
- an ensemble (docs/paper.md §2, Tables 2 and 5): the average of several checkpoints' video scores. Each
  member reads its own sources with its own windows; with the same seed, spec and crops the window positions
  coincide, so this equals averaging the members' window scores first;
- the CNN baseline "C3D (fc8)": the network's own softmax, averaged over each window's N chunks and
  then over the windows. The ``c3d_fc8`` source is assumed to hold the network's fc8 *logits* (what a
  Caffe ``fc8`` blob is) and is softmaxed here; if its source info says it already holds probabilities
  (``layer`` = "prob", or ``probabilities`` true) it is averaged as it is. Its width must be the dataset's
  class count, i.e. a network fine-tuned on those classes, as in the paper.

Windows of several videos are concatenated into one forward pass of up to ``window_batch`` windows.
`evaluate_checkpoints` and `evaluate_baseline` return an `Evaluation`: the metrics, what was evaluated
and how, and the `VideoScores` (``video_scores``); `Evaluation.to_json` is what ``alstm evaluate
--json`` writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from alstm_core.atomic import write_atomically, write_json
from alstm_core.storage import TARGETS
from fuel_datasets.run_inputs import readable_data, require_labels, resolve_flip
from reproduce.errors import ReproduceError
from reproduce.evaluation.metrics import ClassificationReport, classification_report
from reproduce.evaluation.scoring import VideoScores, baseline_scores, ensemble_scores, score_videos
from reproduce.evaluation.sharding import score_sharded
from reproduce.runs.checkpoint import checkpoint_path
from reproduce.runtime.distributed import Distributed, single_process
from reproduce.runtime.precision import resolve as resolve_precision

__all__ = ["Evaluation", "Member", "VideoScores", "baseline_scores", "ensemble_scores", "evaluate_baseline",
           "evaluate_checkpoints", "score_videos"]


@dataclass(frozen=True)
class Member:
    """One checkpoint of an ensemble, scored alone."""

    checkpoint: str
    accuracy: float
    mAP: float
    mAP_interpolated: float

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "mAP": self.mAP, "mAP_interpolated": self.mAP_interpolated,
                "checkpoint": self.checkpoint}


@dataclass(frozen=True)
class Evaluation(ClassificationReport):
    """The metrics (`ClassificationReport`'s fields) of one scorer on a split, what was evaluated and
    how, and the video scores behind them.

    A scorer is either trained models (``checkpoints``: one, or an ensemble whose ``members`` hold each
    one's metrics alone; ``members`` is empty for a single checkpoint) or the C3D (fc8) ``baseline``
    source (``softmax_applied``: whether its rows were logits, softmaxed here). ``flip``: whether the
    windows on flipped frames were added; ``precision``: the resolved `reproduce.runtime.precision` choice of
    the
    forward passes; ``excluded_videos``: videos of the split shorter than a window."""

    class_names: tuple[str, ...]
    split: str
    crops: int
    flip: bool
    seed: int
    precision: str
    excluded_videos: int
    video_scores: VideoScores = field(compare=False, repr=False)
    checkpoints: tuple[str, ...] = ()
    members: tuple[Member, ...] = ()
    baseline: str | None = None
    softmax_applied: bool | None = None

    @classmethod
    def of(cls, scores: VideoScores, class_names: Sequence[str], **setting: Any) -> Evaluation:
        """The evaluation of ``scores``: their `classification_report`, plus ``setting`` (the fields
        after ``class_names``)."""
        report = classification_report(scores.scores, scores.positives, class_names)
        metrics = {f.name: getattr(report, f.name) for f in fields(ClassificationReport)}
        return cls(**metrics, class_names=tuple(class_names), video_scores=scores, **setting)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain types: `ClassificationReport.to_dict`'s keys, then ``split``, ``crops``,
        ``flip``, ``seed``, ``precision`` and either ``checkpoints``, ``excluded_videos`` (and
        ``members`` for an ensemble) or ``baseline``, ``softmax_applied``, ``excluded_videos``. NaN
        stays NaN (see `to_json`)."""
        out = {**super().to_dict(), "split": self.split, "crops": self.crops, "flip": self.flip,
               "seed": self.seed, "precision": self.precision}
        if self.baseline is not None:
            return out | {"baseline": self.baseline, "softmax_applied": self.softmax_applied,
                          "excluded_videos": self.excluded_videos}
        out |= {"checkpoints": list(self.checkpoints), "excluded_videos": self.excluded_videos}
        if self.members:
            out["members"] = [m.to_dict() for m in self.members]
        return out

    def to_json(self) -> dict[str, Any]:
        """`to_dict` with NaN as None, so that the JSON is standard (what ``alstm evaluate --json``
        writes)."""
        return _plain(self.to_dict())

    def write_json(self, path: str) -> str:
        """``to_json()`` into ``path``, atomically."""
        return write_json(path, self.to_json())

    def write_scores(self, path: str) -> str:
        """The video scores as ``.npz`` (video_ids (V,), scores (V, C), positives (V, C)), atomically."""
        s = self.video_scores
        return write_atomically(path, lambda f: np.savez(f, video_ids=np.array(s.video_ids), scores=s.scores,
                                                          positives=s.positives), binary=True)


def _plain(value):
    """NaN → None recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def evaluate_checkpoints(data: str, checkpoints: Sequence[str], *, split: str = "test", crops: int = 40,
                         seed: int = 0, flip: bool | None = None, device: str | None = None,
                         window_batch: int = 400, progress: bool = False, dist: Distributed | None = None,
                         notice: Callable[[str], None] | None = None,
                         precision: str = "float32") -> Evaluation:
    """The evaluation of one checkpoint, or of the ensemble of several, on ``split`` of the file ``data``
    (``device`` None: cuda where available, else cpu). With ``dist`` (a `Distributed` of a torchrun
    job) every rank scores its share of the videos on ``dist.device`` and gets the merged result, equal
    to one process's.

    ``flip`` (`resolve_flip`): None adds the flipped windows when the file has them for every source a
    model reads, True requires them, False leaves them out; the result's ``flip`` is what was done, and
    ``notice`` hears when they were left out for want of them. ``precision`` (`reproduce.runtime.precision`;
    float32 by default, as the paper's tables) is recorded resolved. A checkpoint may be given as its
    run folder (its best.pt); ``data`` may be a legacy Fuel file (`fuel_datasets.run_inputs`: converted
    once beside it, which ``notice`` hears)."""
    from fuel_datasets.streams import TestWindows, WindowSpec
    from reproduce.runs.checkpoint import load_model

    dist = dist or single_process(device)
    device = dist.device
    data = _readable(data, dist, notice)
    checkpoints = [checkpoint_path(p) for p in checkpoints]
    precision = resolve_precision(precision, device)
    loaded, class_names = [], None
    for path in checkpoints:
        model, meta = load_model(path, device=device)
        if class_names is not None and meta["class_names"] != class_names:
            raise ReproduceError(f"{path} was trained on other classes than {checkpoints[0]}: no ensemble")
        class_names = meta["class_names"]
        loaded.append((path, model, meta))
    sources = sorted({s for _, _, meta in loaded
                      for s in (meta["input_source"], meta["attended_source"]) if s})
    flip = _flip_for(data, sources, flip, notice if dist.is_main else None)   # one choice for every member
    members, excluded = [], 0
    for path, model, meta in loaded:
        windows = TestWindows(data, split=split, input_source=meta["input_source"],
                              attended_source=meta["attended_source"], spec=WindowSpec(**meta["spec"]),
                              crops=crops, seed=seed, flip=flip)
        _check_classes(windows.class_names, class_names, data, path)
        excluded = len(windows.excluded)
        try:
            members.append(score_sharded(dist, windows, lambda share, model=model, path=path: score_videos(
                model, share, device=device, window_batch=window_batch, progress=progress and dist.is_main,
                desc=str(path), precision=precision), window_batch))
        finally:
            windows.close()
    alone = []
    if len(members) > 1:
        for scores, path in zip(members, checkpoints, strict=True):
            report = classification_report(scores.scores, scores.positives, class_names)
            alone.append(Member(str(path), report.accuracy, report.mAP, report.mAP_interpolated))
    return Evaluation.of(ensemble_scores(members), class_names, split=split, crops=crops, flip=flip,
                         seed=seed, precision=precision, excluded_videos=excluded,
                         checkpoints=tuple(str(p) for p in checkpoints), members=tuple(alone))


def evaluate_baseline(data: str, source: str = "c3d_fc8", *, split: str = "test", crops: int = 40,
                      seed: int = 0, flip: bool | None = None, frames: int = 192, steps: int = 12,
                      progress: bool = False, dist: Distributed | None = None,
                      notice: Callable[[str], None] | None = None) -> Evaluation:
    """The evaluation of the C3D (fc8) baseline read from ``source`` (see the module docstring), on the
    CPU; sharded over the ranks of ``dist`` like `evaluate_checkpoints`; ``flip`` and ``notice`` as
    there, and ``data`` as there."""
    from fuel_datasets import open_dataset
    from fuel_datasets.streams import TestWindows, WindowSpec

    dist = dist or single_process("cpu")
    data = _readable(data, dist, notice)
    with open_dataset(data) as ds:
        if source not in ds.sources:
            raise ReproduceError(f"{data} has no source {source!r} for the baseline; it has "
                                 f"{', '.join(s for s in ds.sources if s != TARGETS)}")
        info = ds.source_info(source)
        class_names = list(ds.class_names)
    flip = _flip_for(data, [source], flip, notice if dist.is_main else None)
    already = str(info.get("layer", "")).lower() == "prob" or bool(info.get("probabilities", False))
    windows = TestWindows(data, split=split, input_source=source, attended_source=None,
                          spec=WindowSpec(frames=frames, steps=steps, attended_per_step=1), crops=crops,
                          seed=seed, flip=flip)
    try:
        scores = score_sharded(dist, windows, lambda share: baseline_scores(
            share, already_probabilities=already, num_classes=len(class_names),
            progress=progress and dist.is_main))
    finally:
        windows.close()
    return Evaluation.of(scores, class_names, split=split, crops=crops, flip=flip, seed=seed,
                         precision="float32", excluded_videos=len(windows.excluded), baseline=source,
                         softmax_applied=not already)


def _flip_for(data: str, sources: list[str], flip: bool | None, notice) -> bool:
    """The file's checks for evaluation: labels, and whether to add the flipped windows."""
    from fuel_datasets import open_dataset

    with open_dataset(data) as ds:
        require_labels(ds)
        choice = resolve_flip(ds, sources, flip)
    text = choice.notice(data, "evaluating")
    if text and notice is not None:
        notice(text)
    return choice.flip


def _readable(data: str, dist: Distributed, notice) -> str:
    """The file to read for ``data`` (a legacy Fuel file's conversion, made once by rank 0)."""
    readable = dist.from_main(lambda: readable_data(data))
    if readable.notice and notice is not None and dist.is_main:
        notice(readable.notice)
    return readable.path


def _check_classes(file_classes: Sequence[str], model_classes: Sequence[str], data: str, path: str) -> None:
    if list(file_classes) != list(model_classes):
        raise ReproduceError(f"{path} was trained on {len(model_classes)} classes that differ from the "
                             f"{len(file_classes)} classes of {data}: evaluate it on data with its classes")
