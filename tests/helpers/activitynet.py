"""ActivityNet's files in their published layouts: the annotation JSON (taxonomy, database, subsets,
segments in seconds) and the challenge's C3D release (``v_<id>/c3d_features`` groups)."""

from __future__ import annotations

import json

import h5py
import numpy as np

TAXONOMY = [
    {"nodeId": 1, "nodeName": "Root", "parentId": None, "parentName": None},
    {"nodeId": 2, "nodeName": "Surfing", "parentId": 1, "parentName": "Root"},
    {"nodeId": 3, "nodeName": "Skiing", "parentId": 1, "parentName": "Root"},
]


def anet_video(subset, duration, *segments, **extra):
    """One video's entry of the annotation file's database: ``segments`` are ((t0, t1), label)."""
    return {"subset": subset, "duration": duration, "resolution": "40x32", "url": "", **extra,
            "annotations": [{"segment": list(seg), "label": label} for seg, label in segments]}


def write_annotations(path, database):
    path.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": TAXONOMY, "database": database}))
    return path


def write_release(path, rows: dict[str, np.ndarray]):
    """sub_activitynet_v1-3.c3d.hdf5's layout: one group v_<youtube id> with c3d_features (n, 500)."""
    with h5py.File(path, "w") as f:
        for vid, data in rows.items():
            f.create_group(vid).create_dataset("c3d_features", data=data)
    return path


def index_rows(n, dim, offset=0.0):
    """(n, dim) rows whose first column is the row number: a window's rows say where they came from."""
    rows = np.random.default_rng(n).normal(size=(n, dim)).astype(np.float32)
    rows[:, 0] = np.arange(n) + offset
    return rows


RELEASE_DATABASE = {
    # 100 rows cover 8 · 99 + 16 = 808 frames; over 808 / 30 s that is 30 fps
    "r1": anet_video("training", 808 / 30, ((2.0, 20.0), "Surfing"), ((20.0, 26.9), "Skiing")),
    "r2": anet_video("training", 808 / 30, ((0.0, 26.9), "Skiing")),
    "r3": anet_video("validation", 808 / 30, ((1.0, 25.0), "Surfing")),
    "r4": anet_video("validation", 808 / 30, ((3.0, 26.0), "Skiing")),
}
