"""Room for a feature file's next write: what a video needs on disk, checked before HDF5 writes it.

A write that fails half-way leaves HDF5 unable to close the file cleanly (and its clean-up at exit
crashes), so `fuel_datasets.writer.FeatureWriter` asks here first; when a write fails anyway, it
recognises a full disk with `alstm_core.disk.is_disk_full` and ends with `DiskFullError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from alstm_core.disk import free_bytes
from fuel_datasets.errors import DatasetError

MAX_CHUNK_ROWS = 1024
METADATA_MARGIN = 1 << 20      # HDF5's metadata and the per-video tables' chunks, with room to spare


class DiskFullError(DatasetError):
    """The disk cannot take the next video; what was committed before stays readable. ``abandoned_hdf5``:
    HDF5 failed a write and still holds the file (its clean-up at exit would fail; see `reproduce.cli`)."""

    abandoned_hdf5 = False


def chunk_rows_for(dim: int, chunk_bytes: int) -> int:
    """Rows per HDF5 chunk of a (rows, ``dim``) float32 feature dataset: about ``chunk_bytes``."""
    return max(1, min(chunk_bytes // (4 * dim), MAX_CHUNK_ROWS))


def video_bytes(rows: Mapping[str, np.ndarray], ends: Mapping[str, int], chunk_rows: Mapping[str, int],
                chunk_bytes: int) -> int:
    """Bytes a video's ``rows`` ({source: (R, D) float32}) may need: HDF5 allocates a chunk whole, so
    every chunk the rows open past ``ends`` (rows already in each source), their frame indices, and
    ``METADATA_MARGIN``. ``chunk_rows``: the chunk length of sources that exist (the others get
    `chunk_rows_for`)."""
    needed = METADATA_MARGIN
    for source, data in rows.items():
        dim, end = data.shape[1], ends.get(source, 0)
        per_chunk = chunk_rows.get(source) or chunk_rows_for(dim, chunk_bytes)
        new_chunks = -(-(end + len(data)) // per_chunk) - -(-end // per_chunk)
        needed += 4 * dim * per_chunk * new_chunks + 8 * len(data) + 64 * 1024   # rows, frame index
    return needed


def require_room(path: str | os.PathLike, folder: str | os.PathLike, needed: int, what: str, *,
                 videos_kept: int | None) -> None:
    """DiskFullError naming ``path`` when ``folder``'s file system has less than ``needed`` bytes free
    for ``what``. ``videos_kept``: the videos already committed (None: the file is being opened)."""
    free = free_bytes(folder)
    if free >= needed:
        return
    if videos_kept is None:
        kept = "free some space and run the same command again"
    elif videos_kept:
        kept = (f"the {videos_kept} videos written before stay readable; free some space and run the same "
                "command again to go on")
    else:
        kept = "nothing was written"
    raise DiskFullError(f"{path}: the disk is full ({free / 2**20:.1f} MiB free, {what} needs about "
                        f"{needed / 2**20:.1f} MiB); {kept}")
