"""The inputs of feature extraction: video files (given, or found under folders) and optional labels.

Ids are file names without their extension and must be unique. Labels come from a CSV of rows
``video,label`` or ``video,label,split`` (video: an id or a file name; split: train, valid or test; a
header row is allowed; ``a;b`` or repeated rows give several labels to a multi-label video); class
names from a comma-separated list or a file with one name per line.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from alstm_core.storage import SPLITS
from reproduce.errors import ReproduceError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".3gp", ".ogv", ".ts", ".mts")


def list_videos(inputs: list[str]) -> list[tuple[str, str]]:
    """(video id, path) of the given files and of the video files under the given folders, sorted by
    path within each folder; ids (file names without extension) must be unique."""
    found: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                found += [os.path.join(root, f) for f in sorted(files)
                          if f.lower().endswith(VIDEO_EXTENSIONS)]
        elif os.path.isfile(item):
            found.append(item)
        else:
            raise ReproduceError(f"{item}: no such file or folder")
    seen: dict[str, str] = {}
    videos = []
    for path in found:
        vid = os.path.splitext(os.path.basename(path))[0]
        if vid in seen:
            if os.path.samefile(seen[vid], path):
                continue
            raise ReproduceError(f"two videos have the id {vid!r}: {seen[vid]} and {path}; rename one")
        seen[vid] = path
        videos.append((vid, path))
    if not videos:
        raise ReproduceError(
            f"no video files in {', '.join(inputs)} (extensions: {' '.join(VIDEO_EXTENSIONS)})")
    return videos


def read_classes(spec: str | Sequence[str]) -> list[str]:
    """Class names from ``spec``: a list of names, a file with one per line, or a comma-separated list."""
    if not isinstance(spec, str):
        names = [str(name).strip() for name in spec]
    elif os.path.isfile(spec):
        with open(spec, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = [name.strip() for name in spec.split(",") if name.strip()]
    if len(set(names)) != len(names) or not names:
        raise ReproduceError(f"--classes {spec!r}: give distinct, non-empty class names")
    return names


class Labels(NamedTuple):
    """The class names; per video its class index (or its (C,) float32 multi-hot targets), and its split
    where the CSV gives one."""

    class_names: list[str]
    targets: dict[str, int | np.ndarray]
    splits: dict[str, str]


def read_labels(path: str, video_ids: list[str], classes: list[str] | None, multilabel: bool) -> Labels:
    """The `Labels` of ``video_ids`` from a 'video,label[,split]' CSV (``classes``: None for the labels'
    own)."""
    labels: dict[str, list[str]] = {}
    splits: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    except OSError as exc:
        raise ReproduceError(f"--labels {path}: {exc.strerror}") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["video", "label"]:
        rows = rows[1:]
    for line, row in enumerate(rows, 1):
        if len(row) not in (2, 3):
            raise ReproduceError(f"{path}: row {line} {row!r} is not 'video,label' or 'video,label,split'")
        name, label = row[0].strip(), row[1].strip()
        vid = os.path.splitext(os.path.basename(name))[0] if name.lower().endswith(VIDEO_EXTENSIONS) else name
        labels.setdefault(vid, []).extend(p.strip() for p in label.split(";") if p.strip())
        if len(row) == 3:
            split = row[2].strip()
            if split not in SPLITS or splits.get(vid, split) != split:
                raise ReproduceError(f"{path}: row {line}: split {split!r} of {vid}: give one of "
                                     f"{', '.join(SPLITS)}, the same on every row of a video")
            splits[vid] = split
    names = classes or sorted({label for values in labels.values() for label in values})
    index = {name: k for k, name in enumerate(names)}
    unknown = sorted({label for values in labels.values() for label in values} - set(index))
    if unknown:
        raise ReproduceError(f"{path}: labels not among the classes: {', '.join(unknown[:10])}")
    missing = [vid for vid in video_ids if vid not in labels]
    if missing:
        raise ReproduceError(f"{path}: no label for {len(missing)} videos ({', '.join(missing[:5])}); "
                             "add rows or leave out --labels")
    targets = {}
    for vid in video_ids:
        values = sorted(set(labels[vid]))
        if multilabel:
            hot = np.zeros(len(names), dtype=np.float32)
            hot[[index[v] for v in values]] = 1.0
            targets[vid] = hot
        elif len(values) != 1:
            raise ReproduceError(f"{path}: video {vid} has labels {values}; pass --multilabel for several")
        else:
            targets[vid] = index[values[0]]
    return Labels(names, targets, {vid: splits[vid] for vid in video_ids if vid in splits})
