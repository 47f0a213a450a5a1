"""What a training or evaluation run reads from a feature file, decided in one place.

- **The file.** Runs read this project's layout. Given a legacy Fuel ``H5PYDataset`` file,
  `readable_data` converts it once with `fuel_datasets.legacy.convert_legacy` and its defaults (sources
  keep their names, one row per 16 frames, splits named train/valid/test kept, class names
  ``class_<k>``) into ``<name>.alstm.h5`` in the same folder, and the run reads that. The conversion
  commits video by video, so an interrupted one continues on the next call, and a finished one is
  reused. Other settings (renamed sources, strides, split names, class names) are `alstm dataset
  convert`'s flags.
- **Labels.** `require_labels`: a file extracted without labels has no class list; `check_labels`: each
  video's label lies inside the class list.
- **Flips.** `resolve_flip`: whether the features of flipped frames (``<source>_flip``) are read.

Each returns what it decided; the caller words the notice to its user.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from alstm_core.storage import FLIP_SUFFIX, TARGETS
from fuel_datasets.errors import DatasetError
from fuel_datasets.layout import file_format, open_h5


class ReadableData(NamedTuple):
    """The file a run reads: ``path`` itself, or the conversion of the legacy Fuel file ``legacy``."""

    path: str
    legacy: str | None = None          # the legacy Fuel file converted into ``path``, if any
    converted_now: bool = False        # whether videos were converted by this call (else reused)

    @property
    def notice(self) -> str | None:
        """The line that tells the user a legacy file is read through its conversion (None otherwise)."""
        if self.legacy is None:
            return None
        done = "converted" if self.converted_now else "already converted"
        return (f"{self.legacy} is a legacy Fuel file: {done} to {self.path} (this project's layout, one row "
                "per 16 frames; `alstm dataset convert` offers other settings), which is read instead")


def converted_path(path: str | os.PathLike) -> Path:
    """Where the conversion of the legacy file ``path`` lives: ``<stem>.alstm.h5`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.alstm.h5")


def readable_data(path: str | os.PathLike) -> ReadableData:
    """``path`` itself when it is in our layout (or cannot be opened: the reader then says why);
    otherwise its conversion, made (or completed) first."""
    path = os.fspath(path)
    try:
        with open_h5(path) as h5file:
            if file_format(h5file) != "fuel":
                return ReadableData(path)
    except DatasetError:       # a missing or damaged file: the dataset reader reports it in one line
        return ReadableData(path)
    from fuel_datasets.legacy import convert_legacy

    out = converted_path(path)
    if not os.access(out.parent, os.W_OK):
        raise DatasetError(f"{path} is a legacy Fuel file and its folder cannot take the converted copy; "
                           f"convert it elsewhere: alstm dataset convert {path} OUT.h5")
    counts = convert_legacy(path, out)
    return ReadableData(str(out), path, bool(counts.written))


def require_labels(ds) -> None:
    """DatasetError, naming the commands that add them, for a file without labels (no class list)."""
    if ds.num_classes == 0:
        raise DatasetError(
            f"{ds.path} has no labels (its videos were extracted without --labels): label them when "
            f"extracting (`alstm extract ... --labels CSV`) or build a labelled dataset from annotations "
            f"(`alstm dataset build activitynet|hollywood2 ... --features {ds.path}`)")


def check_labels(ds, split: str, videos: list[str]) -> None:
    """DatasetError for the first of ``videos`` (of ``split``) whose label is missing or lies outside the
    file's class list (single-label: an integer in [0, C); multi-label: a 0/1 row of C)."""
    num_classes = ds.num_classes
    for video in videos:
        target = ds.read(TARGETS, video)
        if target is None:
            raise DatasetError(f"video {video!r} of the {split!r} split of {ds.path} has no label; label it "
                               "or move it out of the split")
        target = np.asarray(target)
        if ds.multilabel:
            ok = target.shape == (num_classes,) and np.all((target == 0) | (target == 1))
        else:
            ok = target.size == 1 and float(target) == int(target) and 0 <= int(target) < num_classes
        if not ok:
            raise DatasetError(
                f"video {video!r} of the {split!r} split of {ds.path} has label {target.tolist()}, outside "
                f"the {num_classes} classes of the file's class list; fix the file's targets or class names"
            )


class FlipChoice(NamedTuple):
    """Whether the ``<source>_flip`` features are read, and those missing when they are left out for
    want of them (empty when read, or when left out by choice)."""

    flip: bool
    missing: tuple[str, ...] = ()

    def notice(self, path: str, what: str) -> str | None:
        """The one line that says they were left out for want of them (``what``: e.g. "training")."""
        if not self.missing:
            return None
        return (f"{path} has no {', '.join(self.missing)} (features of flipped frames): {what} without "
                "them (--no-flip says so explicitly)")


def resolve_flip(ds, sources: list[str], flip: bool | None) -> FlipChoice:
    """Whether to read the ``<source>_flip`` features of ``sources`` in the file ``ds``. ``flip`` None:
    when present for every source; True: required (DatasetError naming the flag otherwise); False:
    never."""
    missing = tuple(s + FLIP_SUFFIX for s in dict.fromkeys(sources) if s + FLIP_SUFFIX not in ds.sources)
    if flip is False:
        return FlipChoice(False)
    if not missing:
        return FlipChoice(True)
    if flip:
        raise DatasetError(f"--flip: {ds.path} has no {', '.join(missing)} (the features of flipped "
                           "frames); leave out --flip to go on without them, or extract them (`alstm "
                           "extract` makes them unless --no-flip)")
    return FlipChoice(False, missing)
