"""The Hollywood2 (HOHA2) protocol (docs/paper.md §5): multi-hot targets from the ``ClipSets`` folder.

``ClipSets/<Action>_{train,test}.txt`` hold one line per clip of the subset, ``<clip>`` then whitespace
then ``1`` (the clip shows the action) or ``-1`` (docs/formats.md). The protocol:

- **Classes** are the actions that have files, sorted by name (the release's 12: AnswerPhone ... StandUp).
  Every action needs both its ``_train`` and ``_test`` file.
- **Clips**: every action file of a subset must list the same clips (and so must ``actions_<subset>.txt``,
  the release's list of all clips, when present); a clip's target is the multi-hot vector of the actions
  marked ``1``. Clips are ordered by name. A clip with no action is kept and counted (HOHA2 has none).
- ``*_autotrain.txt`` (the automatically labelled, noisy training group) and other files are not used;
  the summary lists them.
- **Splits**: train → ``train``, test → ``test`` (823 / 884 clips in the release). The paper uses no
  validation set on Hollywood2; ``valid_fraction`` [choice, default 0] moves a seeded random share of the
  training clips to ``valid``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alstm_core.storage import SPLITS

from .errors import DatasetError

SUBSETS = ("train", "test")
INDEX_NAME = "actions"  # actions_<subset>.txt lists every clip of the subset
_FILE_NAME = re.compile(r"^(?P<name>.+)_(?P<subset>train|test|autotrain)\.txt$")


@dataclass(frozen=True)
class Hollywood2Sample:
    """One clip: ``labels`` are the indices of its actions (sorted); ``subset`` the ClipSets file
    group it came from, ``split`` ours."""

    clip: str
    subset: str
    split: str
    labels: tuple[int, ...]

    def targets(self, num_classes: int) -> np.ndarray:
        """(C,) float32 multi-hot."""
        row = np.zeros(num_classes, np.float32)
        row[list(self.labels)] = 1.0
        return row


@dataclass(frozen=True)
class Hollywood2Summary:
    """``positives[subset][action]``: clips marked 1; ``unlabeled`` / ``multi_label``: clips with no /
    several actions, per subset; ``ignored_files``: ClipSets files the protocol does not read."""

    clips: dict[str, int]
    positives: dict[str, dict[str, int]]
    unlabeled: dict[str, int]
    multi_label: dict[str, int]
    split_sizes: dict[str, int]
    ignored_files: tuple[str, ...]

    def describe(self) -> str:
        return (f"Hollywood2: {len(self.positives['train'])} actions; clips "
                + ", ".join(f"{k} {v}" for k, v in self.clips.items())
                + "; with several actions " + ", ".join(f"{k} {v}" for k, v in self.multi_label.items())
                + "; with none " + ", ".join(f"{k} {v}" for k, v in self.unlabeled.items())
                + "; splits " + ", ".join(f"{k} {v}" for k, v in self.split_sizes.items()))


@dataclass(frozen=True)
class Hollywood2Protocol:
    class_names: list[str]
    samples: list[Hollywood2Sample]
    summary: Hollywood2Summary

    def splits(self) -> dict[str, list[str]]:
        """Clip names per split: ``{"train": [...], "valid": [...], "test": [...]}``."""
        out: dict[str, list[str]] = {split: [] for split in SPLITS}
        for sample in self.samples:
            out[sample.split].append(sample.clip)
        return out

    def target_matrix(self, split: str | None = None) -> np.ndarray:
        """(S, C) float32 multi-hot rows of the samples (of one split), in sample order."""
        rows = [s.targets(len(self.class_names)) for s in self.samples if split in (None, s.split)]
        return np.array(rows, np.float32).reshape(len(rows), len(self.class_names))


def parse_clipset(text: str, source: str) -> list[tuple[str, int]]:
    """The (clip, 1 | -1) lines of one ClipSets file; blank lines are skipped."""
    entries, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("1", "-1"):
            raise DatasetError(f"{source}, line {number}: expected '<clip> 1' or '<clip> -1', "
                               f"got {line.strip()!r}")
        if fields[0] in seen:
            raise DatasetError(f"{source}, line {number}: clip {fields[0]!r} is listed twice")
        seen.add(fields[0])
        entries.append((fields[0], int(fields[1])))
    return entries


def hollywood2_protocol(clipsets: Mapping[tuple[str, str], list[tuple[str, int]]], *,
                        index: Mapping[str, list[str]] | None = None, valid_fraction: float = 0.0,
                        seed: int = 0, source: str = "ClipSets",
                        ignored_files: tuple[str, ...] = ()) -> Hollywood2Protocol:
    """Samples and splits from parsed files: ``clipsets[(action, subset)]`` = (clip, ±1) entries;
    ``index[subset]``: the clips of ``actions_<subset>.txt`` when present. ``source`` names the folder."""
    if not 0.0 <= valid_fraction < 1.0:
        raise DatasetError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    actions = sorted({action for action, _ in clipsets})
    if not actions:
        raise DatasetError(f"{source}: no <Action>_train.txt / <Action>_test.txt files; is this the "
                           "Hollywood2 ClipSets folder?")
    for action in actions:
        for subset in SUBSETS:
            if (action, subset) not in clipsets:
                raise DatasetError(f"{source}: {action}_{subset}.txt is missing (every action needs a "
                                   f"train and a test file)")
    samples, clips_count, positives, unlabeled, multi = [], {}, {}, {}, {}
    for subset in SUBSETS:
        if index and subset in index:
            reference_name, reference = f"{INDEX_NAME}_{subset}.txt", set(index[subset])
        else:
            reference_name = f"{actions[0]}_{subset}.txt"
            reference = {clip for clip, _ in clipsets[(actions[0], subset)]}
        labels: dict[str, list[int]] = {clip: [] for clip in reference}
        for c, action in enumerate(actions):
            entries = clipsets[(action, subset)]
            listed = {clip for clip, _ in entries}
            if listed != reference:
                extra, missing = sorted(listed - reference), sorted(reference - listed)
                problem = (f"lists {extra[0]!r}, which {reference_name} does not" if extra
                           else f"does not list {missing[0]!r}, which {reference_name} does")
                raise DatasetError(f"{source}/{action}_{subset}.txt {problem} (every file of a subset must "
                                   "list the same clips)")
            for clip, value in entries:
                if value == 1:
                    labels[clip].append(c)
        positives[subset] = {action: sum(c in v for v in labels.values()) for c, action in enumerate(actions)}
        unlabeled[subset] = sum(not v for v in labels.values())
        multi[subset] = sum(len(v) > 1 for v in labels.values())
        clips_count[subset] = len(labels)
        samples += [Hollywood2Sample(clip, subset, subset, tuple(labels[clip])) for clip in sorted(labels)]
    train = [i for i, s in enumerate(samples) if s.subset == "train"]
    n_valid = round(valid_fraction * len(train))
    moved = set(np.random.default_rng(seed).permutation(train)[:n_valid].tolist())
    samples = [Hollywood2Sample(s.clip, s.subset, "valid", s.labels) if i in moved else s
               for i, s in enumerate(samples)]
    split_sizes = {split: sum(s.split == split for s in samples) for split in SPLITS}
    summary = Hollywood2Summary(clips_count, positives, unlabeled, multi, split_sizes, tuple(ignored_files))
    return Hollywood2Protocol(actions, samples, summary)


def read_hollywood2(folder: str | os.PathLike, **options) -> Hollywood2Protocol:
    """``hollywood2_protocol`` of the files in a ``ClipSets`` folder (same keyword options)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (give the Hollywood2 ClipSets folder)")
    clipsets, index, ignored = {}, {}, []
    for path in sorted(folder.iterdir()):
        match = _FILE_NAME.match(path.name)
        if not match or match["subset"] == "autotrain" or not path.is_file():
            ignored.append(path.name)
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path}: not a text file ({exc})") from exc
        if match["name"].lower() == INDEX_NAME:   # the clip list; its second column is not a label
            index[match["subset"]] = [line.split()[0] for line in text.splitlines() if line.split()]
            continue
        entries = parse_clipset(text, str(path))
        if not entries:
            raise DatasetError(f"{path}: the file lists no clip")
        clipsets[(match["name"], match["subset"])] = entries
    return hollywood2_protocol(clipsets, index=index, source=str(folder), ignored_files=tuple(ignored),
                               **options)
