"""The ActivityNet protocol (docs/paper.md §5): trimmed samples and splits from the official annotation JSON.

The file (docs/formats.md) is ``{"version", "taxonomy": [...], "database": {youtube_id: {"subset",
"duration", "annotations": [{"segment": [t0, t1], "label"}]}}}``. The protocol:

- **Classes** come from the file, never from a list in the code: the leaves of ``taxonomy`` (nodes that
  are nobody's parent), sorted by name; a file without a taxonomy uses the sorted set of annotated labels.
  Release 1.1 gives the paper's 203 classes, v1.3 gives 200. An annotation whose label is not a class is
  an error (the file is inconsistent), not a silent drop.
- **Samples**: one trimmed sample per annotated segment of the ``training`` and ``validation`` subsets,
  named ``v_<youtube_id>_<k>`` with k its position in the video's ``annotations`` list. The ``testing``
  subset has no public labels and is only counted.
- **Frames**: a segment is clipped to [0, duration] seconds, and, where ``frame_counts`` gives the
  frames the downloaded video really has, to [0, frames / fps]; it starts at frame ``⌊t0 · fps⌋`` and
  lasts ``⌊(t1 − t0) · fps⌋`` frames. The annotation file holds no frame rate: ``fps`` maps YouTube ids
  (with or without the ``v_`` prefix) to the rate measured on the downloaded file, and videos it does
  not list use ``default_fps`` (30 by default; the paper notes most videos are about 29–30 fps).
- **Short samples**: fewer than ``min_frames`` (F = 192) frames are dropped and counted in the
  summary (about 10% of ActivityNet, docs/paper.md §1).
- **Splits**: the validation subset is the test split. The training subset is divided at random (seeded)
  into train and valid in the paper's proportion, 22,624 : 2,500 of 25,124, scaled to the samples
  present: ``n_valid = round(n · 2500 / 25124)``. ``keep_videos_together`` [choice, off as in the paper]
  draws whole YouTube videos for valid until it holds at least ``n_valid`` samples, so that no video
  contributes to both.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from alstm_core.storage import SPLITS

from .errors import DatasetError

PAPER_TRAIN, PAPER_VALID = 22_624, 2_500  # the paper's division of its 25,124 training samples
SUBSET_SPLIT = {"training": "train", "validation": "test"}


@dataclass(frozen=True)
class ActivityNetSample:
    """One trimmed sample: ``segment`` (t0, t1) in seconds after clipping to the video;
    ``start_frame`` and ``num_frames`` at ``fps``; ``subset`` as in the file, ``split`` ours."""

    sample_id: str
    youtube_id: str
    segment: tuple[float, float]
    label: int
    subset: str
    split: str
    fps: float
    start_frame: int
    num_frames: int


@dataclass(frozen=True)
class ActivityNetSummary:
    """Counts of what the file held and what the protocol kept (per subset where it matters)."""

    version: str
    num_classes: int
    videos: dict[str, int]
    segments: dict[str, int]
    dropped_short: dict[str, int]
    clipped_segments: int
    split_sizes: dict[str, int]

    def describe(self) -> str:
        dropped = sum(self.dropped_short.values())
        total = sum(self.segments.values())
        return (f"ActivityNet {self.version}: {self.num_classes} classes; videos "
                + ", ".join(f"{k} {v}" for k, v in self.videos.items())
                + f"; {total} annotated segments, {dropped} dropped as too short "
                + "(" + ", ".join(f"{k} {v}" for k, v in self.dropped_short.items()) + ")"
                + f"; {self.clipped_segments} clipped to the video; splits "
                + ", ".join(f"{k} {v}" for k, v in self.split_sizes.items()))


@dataclass(frozen=True)
class ActivityNetProtocol:
    class_names: list[str]
    samples: list[ActivityNetSample]
    summary: ActivityNetSummary

    def splits(self) -> dict[str, list[str]]:
        """Sample ids per split, in file order: ``{"train": [...], "valid": [...], "test": [...]}``."""
        out: dict[str, list[str]] = {split: [] for split in SPLITS}
        for sample in self.samples:
            out[sample.split].append(sample.sample_id)
        return out


def load_activitynet_json(path: str | os.PathLike) -> dict:
    """Read the annotation file; a missing or unparsable file is a DatasetError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: no such ActivityNet annotation file "
                           "(activity_net.v1-3.min.json from http://activity-net.org/download.html)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a valid JSON annotation file ({exc})") from exc


def read_activitynet(path: str | os.PathLike, **options) -> ActivityNetProtocol:
    """``activitynet_protocol`` of the annotation file at ``path`` (same keyword options)."""
    return activitynet_protocol(load_activitynet_json(path), source=os.fspath(path), **options)


def class_list(annotations: Mapping, source: str = "annotations") -> list[str]:
    """The sorted leaves of the file's taxonomy, or the sorted annotated labels without one."""
    taxonomy = annotations.get("taxonomy")
    if taxonomy:
        if not isinstance(taxonomy, list):
            raise DatasetError(f"{source}: 'taxonomy' must be a list of nodes, got {type(taxonomy).__name__}")
        try:
            parents = {node["parentId"] for node in taxonomy}
            leaves = {node["nodeName"] for node in taxonomy if node["nodeId"] not in parents}
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"{source}: a taxonomy node lacks 'nodeId', 'nodeName' or 'parentId' "
                               f"({exc!r})") from exc
        return sorted(leaves)
    labels = set()
    for video in _database(annotations, source).values():
        for annotation in (video.get("annotations") or []) if isinstance(video, Mapping) else []:
            if isinstance(annotation, Mapping) and isinstance(annotation.get("label"), str):
                labels.add(annotation["label"])
    if not labels:
        raise DatasetError(f"{source}: no taxonomy and no annotated label: cannot build the class list")
    return sorted(labels)


def activitynet_protocol(annotations: Mapping, *, source: str = "annotations",
                         fps: Mapping[str, float] | None = None, default_fps: float = 30.0,
                         frame_counts: Mapping[str, int] | None = None, min_frames: int = 192, seed: int = 0,
                         keep_videos_together: bool = False,
                         class_names: list[str] | None = None) -> ActivityNetProtocol:
    """Samples, classes and splits of a parsed annotation file (see the module docstring).
    ``source`` names the file in error messages; ``class_names`` (default: `class_list` of the file)
    fixes the class list, e.g. that of the whole file when ``annotations`` holds some of its videos."""
    if default_fps <= 0:
        raise DatasetError(f"default_fps must be positive, got {default_fps}")
    database = _database(annotations, source)
    names = list(class_names) if class_names is not None else class_list(annotations, source)
    index = {name: i for i, name in enumerate(names)}
    fps = {key.removeprefix("v_"): float(value) for key, value in (fps or {}).items()}
    frame_counts = {key.removeprefix("v_"): int(value) for key, value in (frame_counts or {}).items()}
    videos = {"training": 0, "validation": 0, "testing": 0}
    segments = {"training": 0, "validation": 0}
    dropped = {"training": 0, "validation": 0}
    clipped = 0
    kept: list[dict] = []
    for youtube_id, video in database.items():
        where = f"{source}: video {youtube_id!r}"
        if not isinstance(video, Mapping):
            raise DatasetError(f"{where}: expected an object, got {type(video).__name__}")
        subset = video.get("subset")
        if subset not in videos:
            raise DatasetError(f"{where}: 'subset' must be 'training', 'validation' or 'testing', "
                               f"got {subset!r}")
        videos[subset] += 1
        if subset == "testing":
            continue
        for key in ("duration", "annotations"):
            if key not in video:
                raise DatasetError(f"{where}: missing key {key!r}")
        duration = video["duration"]
        if not isinstance(duration, (int, float)) or isinstance(duration, bool) or not duration > 0:
            raise DatasetError(f"{where}: 'duration' must be a positive number of seconds, got {duration!r}")
        if not isinstance(video["annotations"], list):
            raise DatasetError(f"{where}: 'annotations' must be a list")
        rate = fps.get(youtube_id.removeprefix("v_"), default_fps)
        if not rate > 0:
            raise DatasetError(f"{where}: frame rate must be positive, got {rate}")
        end_of_video = float(duration)
        if youtube_id.removeprefix("v_") in frame_counts:
            end_of_video = min(end_of_video, frame_counts[youtube_id.removeprefix("v_")] / rate)
        for k, annotation in enumerate(video["annotations"]):
            t0, t1, label = _annotation(annotation, f"{where}, annotation {k}")
            if label not in index:
                raise DatasetError(f"{where}, annotation {k}: label {label!r} is not one of the file's "
                                   f"{len(names)} classes (taxonomy leaves)")
            segments[subset] += 1
            start, end = max(t0, 0.0), min(t1, end_of_video)
            clipped += (start, end) != (t0, t1)
            num_frames = max(0, math.floor((end - start) * rate + 1e-6))
            if num_frames < max(min_frames, 1):
                dropped[subset] += 1
                continue
            kept.append(dict(sample_id=f"v_{youtube_id}_{k}", youtube_id=youtube_id, segment=(start, end),
                             label=index[label], subset=subset, split=SUBSET_SPLIT[subset], fps=rate,
                             start_frame=math.floor(start * rate + 1e-6), num_frames=num_frames))
    valid = _valid_choice([s for s in kept if s["subset"] == "training"], seed, keep_videos_together)
    samples = [ActivityNetSample(**{**s, "split": "valid" if s["sample_id"] in valid else s["split"]})
               for s in kept]
    split_sizes = {split: sum(s.split == split for s in samples) for split in SPLITS}
    summary = ActivityNetSummary(str(annotations.get("version", "unknown")), len(names), videos, segments,
                                 dropped, clipped, split_sizes)
    return ActivityNetProtocol(names, samples, summary)


def valid_size(num_training: int) -> int:
    """The paper's 2,500 of 25,124 training samples, scaled to ``num_training``."""
    return round(num_training * PAPER_VALID / (PAPER_TRAIN + PAPER_VALID))


def _valid_choice(training: list[dict], seed: int, keep_videos_together: bool) -> set[str]:
    """Sample ids moved from train to valid: a seeded random subset of ``valid_size`` samples, or of
    whole videos reaching at least that many samples."""
    target = valid_size(len(training))
    rng = np.random.default_rng(seed)
    if not keep_videos_together:
        order = rng.permutation(len(training))[:target]
        return {training[i]["sample_id"] for i in order}
    by_video: dict[str, list[str]] = {}
    for sample in training:
        by_video.setdefault(sample["youtube_id"], []).append(sample["sample_id"])
    chosen: set[str] = set()
    for i in rng.permutation(len(by_video)):
        if len(chosen) >= target:
            break
        chosen.update(by_video[list(by_video)[i]])
    return chosen


def _database(annotations: Mapping, source: str) -> Mapping:
    if not isinstance(annotations, Mapping):
        raise DatasetError(f"{source}: expected a JSON object at the top level, "
                           f"got {type(annotations).__name__}")
    if "database" not in annotations:
        raise DatasetError(f"{source}: missing key 'database' (the ActivityNet annotation file has "
                           "'version', 'taxonomy' and 'database')")
    database = annotations["database"]
    if not isinstance(database, Mapping):
        raise DatasetError(f"{source}: 'database' must map YouTube ids to videos")
    return database


def _annotation(annotation, where: str) -> tuple[float, float, str]:
    """(t0, t1, label) of one annotation, validated."""
    if not isinstance(annotation, Mapping):
        raise DatasetError(f"{where}: expected an object with 'segment' and 'label'")
    for key in ("segment", "label"):
        if key not in annotation:
            raise DatasetError(f"{where}: missing key {key!r}")
    segment, label = annotation["segment"], annotation["label"]
    if not isinstance(label, str):
        raise DatasetError(f"{where}: 'label' must be a string, got {label!r}")
    if (not isinstance(segment, list) or len(segment) != 2
            or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
                       for t in segment)):
        raise DatasetError(f"{where}: 'segment' must be [start, end] in seconds, got {segment!r}")
    t0, t1 = float(segment[0]), float(segment[1])
    if t1 < t0:
        raise DatasetError(f"{where}: segment ends before it starts ({t0} > {t1} seconds)")
    return t0, t1, label
