"""What a killed writer leaves in a feature file, and its removal.

A writer commits a video by raising ``/committed`` after its rows are on disk (`fuel_datasets.layout`).
Rows, table entries and split indices past the last committed video belong to an interrupted append;
the next writer drops them (`trim`) before it appends.
"""

from __future__ import annotations

import h5py

from alstm_core.storage import SPLITS
from fuel_datasets.layout import VIDEO_SOURCES


def needs_trim(f: h5py.File) -> bool:
    """Whether an interrupted append left anything past the last committed video."""
    V = int(f["committed"][0])
    if any(f[name].shape[0] != V for name in VIDEO_SOURCES):
        return True
    if V == 0 and len(f["features"]):
        return True
    for source in f["features"]:
        table = f["rows"][source]
        end = int(table[V - 1, 0] + table[V - 1, 1]) if V and table.shape[0] >= V else -1
        lengths = {f["features"][source].shape[0], f["frame_index"][source].shape[0]}
        if table.shape[0] != V or lengths != {end}:
            return True
    return any((f["splits"][split][()] >= V).any() for split in SPLITS)


def trim(f: h5py.File) -> None:
    """Drop what an interrupted append left past the last committed video."""
    V = int(f["committed"][0])
    if V == 0:       # no video yet: the sources are created afresh by the first one
        for group in ("features", "frame_index", "rows"):
            for name in list(f[group]):
                del f[group][name]
    for name in VIDEO_SOURCES:
        if f[name].shape[0] != V:
            f[name].resize(V, axis=0)
    for source in f["features"]:
        table = f["rows"][source]
        end = int(table[V - 1, 0] + table[V - 1, 1]) if V else 0
        if table.shape[0] != V:
            table.resize(V, axis=0)
        for ds in (f["features"][source], f["frame_index"][source]):
            if ds.shape[0] != end:
                ds.resize(end, axis=0)
    for split in SPLITS:
        ds = f["splits"][split]
        indices = ds[()]
        if (indices >= V).any():
            kept = indices[indices < V]
            ds.resize(len(kept), axis=0)
            ds[:] = kept
