"""``alstm dataset repair``: reopen a feature file whose writer was killed, so that readers open it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from fuel_datasets.errors import DatasetError
from fuel_datasets.writer import FeatureWriter


class Repair(NamedTuple):
    """What ``repair`` found: whether a killed writer's leftovers were cleaned up, and the complete videos."""

    recovered: bool
    videos: int


def repair(path: str | os.PathLike) -> Repair:
    """Reopen a file whose writer was killed: clear HDF5's "open for write" flags and drop the incomplete
    last video, so that readers open it normally (any writer does this by itself)."""
    if not Path(path).is_file():
        raise DatasetError(f"{path}: no such file")
    with FeatureWriter(path) as writer:
        return Repair(writer.recovered, writer.num_videos)
