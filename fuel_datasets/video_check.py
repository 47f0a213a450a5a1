"""Checks on what is about to be written to a feature file: videos, targets, attribute values.

Pure functions of their arguments (no file access), used by ``FeatureWriter``; each raises DatasetError
saying which video and source is wrong and what to do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from alstm_core.storage import FLIP_SUFFIX, SPLITS, TARGETS
from fuel_datasets.errors import DatasetError
from fuel_datasets.layout import ID_BYTES, attr_value


class CheckedVideo(NamedTuple):
    rows: dict            # source -> (R, D) float32
    grids: dict           # source -> (first frame, frame stride, (R,) int64 frame index)
    target_row: np.ndarray
    num_frames: int
    fps: float


def attr_to_hdf5(value):
    """A user attribute value as something HDF5 stores: str, number, bool, list of those; dict as JSON."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str | bool | int | float | np.number | np.bool_):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    if isinstance(value, list | tuple | np.ndarray) and np.asarray(value).dtype.kind in "biuf":
        return np.asarray(value)
    raise DatasetError(f"attribute value {value!r} is not a string, number, bool, list or dict")


def same_attr(attrs, key: str, value) -> bool:
    """Whether setting ``key`` to ``value`` (None: removing it) would leave ``attrs`` unchanged."""
    if value is None:
        return key not in attrs
    return key in attrs and attr_value(attrs[key]) == attr_value(attr_to_hdf5(value))


def frame_grid(index: np.ndarray, source: str, video_id: str, num_frames: int) -> tuple[int, int]:
    """(first frame, stride) of evenly spaced frame indices; stride 0 when fewer than 2 rows."""
    if len(index) == 0:
        return 0, 0
    if index[0] < 0 or index[-1] >= num_frames:
        raise DatasetError(f"video '{video_id}', source '{source}': frame_index runs from {index[0]} to "
                           f"{index[-1]}, outside the video's {num_frames} frames")
    if len(index) == 1:
        return int(index[0]), 0
    steps = np.diff(index)
    if steps[0] <= 0 or (steps != steps[0]).any():
        raise DatasetError(f"video '{video_id}', source '{source}': frame_index must be evenly spaced "
                           "and increasing (one row every k frames); got steps "
                           f"{sorted(set(steps.tolist()))[:5]}")
    return int(index[0]), int(steps[0])



def check_video(video_id, features: dict, frame_index: dict, num_frames, fps, targets, split, *,
                dims: dict[str, int], num_classes: int, multilabel: bool) -> CheckedVideo:
    """Validate one video for ``FeatureWriter.add_video`` against the file's sources ``dims`` ({} before
    the first video) and classes; DatasetError naming the video and source otherwise."""
    where = f"video '{video_id}'"
    if not isinstance(video_id, str) or not video_id or len(video_id.encode("utf-8")) > ID_BYTES:
        raise DatasetError(f"video id {video_id!r} must be a non-empty string of at most "
                           f"{ID_BYTES} bytes")
    if split is not None and split not in SPLITS:
        raise DatasetError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)} (or None)")
    if not isinstance(num_frames, int | np.integer) or num_frames < 1:
        raise DatasetError(f"{where}: num_frames must be a positive integer, got {num_frames!r}")
    fps = float(fps)
    if not (math.isnan(fps) or (math.isfinite(fps) and fps > 0)):
        raise DatasetError(f"{where}: fps must be positive (or NaN when unknown), got {fps}")
    if not features:
        raise DatasetError(f"{where}: no feature sources given")
    if dims and set(features) != set(dims):
        raise DatasetError(f"{where} has sources {sorted(features)}; the file has "
                           f"{sorted(dims)} (every video must provide the same sources)")
    rows, grids = {}, {}
    for source in sorted(features):
        if not isinstance(source, str) or not source or "/" in source or source == TARGETS:
            raise DatasetError(f"{where}: {source!r} is not a valid source name")
        data = np.asarray(features[source])
        if data.ndim != 2 or data.dtype.kind not in "biuf":
            raise DatasetError(f"{where}, source '{source}': features must be a 2-D (rows, D) numeric "
                               f"array, got shape {data.shape} {data.dtype}; reshape per-row scalars "
                               "to (rows, 1)")
        data = data.astype(np.float32, copy=False)
        expected = dims.get(source)
        if expected is not None and data.shape[1] != expected:
            raise DatasetError(f"{where}, source '{source}': D = {data.shape[1]}, the file has "
                               f"D = {expected}")
        if not np.isfinite(data).all():
            bad = np.flatnonzero(~np.isfinite(data).all(axis=1))
            raise DatasetError(f"{where}, source '{source}': NaN or infinite values in rows "
                               f"{bad[:5].tolist()}; fix the extraction before writing")
        base = source[:-len(FLIP_SUFFIX)] if source.endswith(FLIP_SUFFIX) else None
        index = frame_index.get(source)
        if index is None and base in features:
            index = frame_index.get(base)
            if index is not None and len(index) != len(data):
                raise DatasetError(f"{where}: '{source}' must have the rows and frames of '{base}' "
                                   f"({len(data)} vs {len(index)} rows)")
        if index is None:
            raise DatasetError(f"{where}: no frame_index for source '{source}'")
        index = np.asarray(index)
        if index.shape != (len(data),) or (len(index) and index.dtype.kind not in "iu"):
            raise DatasetError(f"{where}, source '{source}': frame_index must be ({len(data)},) "
                               f"integers, got shape {index.shape} {index.dtype}")
        index = index.astype(np.int64)
        rows[source] = data
        grids[source] = (*frame_grid(index, source, video_id, int(num_frames)), index)
    for source in rows:
        base = source[:-len(FLIP_SUFFIX)] if source.endswith(FLIP_SUFFIX) else None
        if base in rows and (len(rows[base]), grids[base][:2]) != (len(rows[source]), grids[source][:2]):
            raise DatasetError(f"{where}: '{source}' must have the rows and frames of '{base}' "
                               f"({len(rows[source])} vs {len(rows[base])} rows)")
    target = target_row(where, targets, num_classes, multilabel)
    return CheckedVideo(rows, grids, target, int(num_frames), fps)


def target_row(where: str, targets, num_classes: int, multilabel: bool) -> np.ndarray:
    """The stored targets row: (1,) int64 class (-1: none), or (C,) int8 multi-hot (-1s: none)."""
    C = num_classes
    if multilabel:
        if targets is None:
            return np.full(C, -1, np.int8)
        row = np.asarray(targets)
        if row.shape != (C,) or not np.isin(row, (0, 1)).all():
            raise DatasetError(f"{where}: multi-label targets must be a ({C},) array of 0/1, got {row!r}")
        return row.astype(np.int8)
    if targets is None:
        return np.array([-1], np.int64)
    if not isinstance(targets, int | np.integer) or not 0 <= targets < C:
        raise DatasetError(f"{where}: target must be a class index in [0, {C}), got {targets!r}")
    return np.array([int(targets)], np.int64)

