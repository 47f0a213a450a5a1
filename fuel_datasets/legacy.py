"""Legacy Fuel ``H5PYDataset`` files: a reader with our dataset interface, and conversion to our layout.

A Fuel file (docs/framework.md §4.1) keeps each source in a root dataset whose axis 0 is the example, and
declares its splits in the ``split`` attribute. Sources are either fixed-size ((E,), (E, D) or
(E, T, D, ...): every example has the same shape) or variable-length: an (E,) ``vlen`` dataset of
flattened examples with the dimension scales ``shapes`` ((E, ndim) int) and ``shape_labels`` attached
to its axis 0; example e is ``flat.reshape(shapes[e])``.

Mapping onto videos (what ``alstm dataset convert`` writes):
- example e becomes video ``"000000"``-style id ``f"{e:06d}"`` (wider when E > 10^6);
- a feature example of shape (T, D...) becomes T rows of D = prod(D...) values; (D,) one row; a
  scalar one row of D = 1;
- row r of a source starts at frame ``r * frame_stride`` (``frame_stride``: one int, or a dict by
  source, default 16, i.e. one C3D chunk per row); a video's frame count is the largest
  ``rows * frame_stride`` over its sources; fps is unknown (NaN) unless given;
- targets come from the ``targets`` source: (E,) or (E, 1) integers are class indices, (E, C) 0/1 rows
  are multi-label; class names are ``class_0``... unless given;
- splits keep their names; only train/valid/test exist in our layout, others can be renamed onto them
  (``split_names``) and are otherwise dropped. Source names are kept unless renamed (``rename``).
Non-numeric sources (e.g. strings) are not feature sources and are skipped.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from alstm_core.storage import CHUNK_FRAMES, SPLITS, TARGETS
from fuel_datasets.errors import DatasetError
from fuel_datasets.fuel_split import read_split_attribute
from fuel_datasets.layout import (
    RESERVED_ATTRS,
    FeatureDataset,
    attr_value,
    check_finite,
    is_feature_layout,
    missing_source,
    open_h5,
)
from fuel_datasets.writer import FeatureWriter


def _scale_names(dataset: h5py.Dataset) -> dict[str, h5py.Dataset]:
    if dataset.ndim == 0:
        return {}
    return {name: dataset.dims[0][name] for name in dataset.dims[0].keys()}


class LegacyFuelDataset:
    """Read access to a Fuel ``H5PYDataset`` file, through the interface of ``FeatureDataset``."""

    format = "Fuel H5PYDataset (legacy)"

    def __init__(self, path: str | os.PathLike, *, h5file: h5py.File | None = None, frame_stride=CHUNK_FRAMES,
                 fps: float = math.nan, class_names=None, targets_source: str = TARGETS):
        self.path = Path(path)
        self._file = h5file if h5file is not None else open_h5(self.path)
        self._strides = frame_stride
        self._fps = float(fps)
        try:
            self._load(class_names, targets_source)
        except BaseException:
            self._file.close()
            raise

    def _load(self, class_names, targets_source: str) -> None:
        f = self._file
        declared = read_split_attribute(f)
        named = sorted({s for per_split in declared.values() for s in per_split})
        for source in named:
            if source not in f or not isinstance(f[source], h5py.Dataset):
                raise DatasetError(f"{self.path}: the split attribute names source '{source}', which is "
                                   "not a dataset at the file's root")
        counts = {s: f[s].shape[0] for s in named if f[s].ndim > 0}
        if len(set(counts.values())) > 1:
            raise DatasetError(f"{self.path}: sources have different example counts {counts}")
        self.num_videos = next(iter(counts.values()), 0)
        width = max(6, len(str(max(self.num_videos - 1, 0))))
        self.video_ids = [f"{e:0{width}d}" for e in range(self.num_videos)]
        self.splits = {}
        for split, per_source in declared.items():
            lists = {s: v for s, v in per_source.items()}
            if not lists:
                continue
            chosen = lists.get(targets_source, next(iter(lists.values())))
            for source, indices in lists.items():
                if not np.array_equal(indices, chosen):
                    raise DatasetError(f"{self.path}: split '{split}' lists different examples for sources "
                                       f"'{source}' and others; this reader needs one list per split")
            if len(chosen) and (chosen[0] < 0 or chosen[-1] >= self.num_videos):
                raise DatasetError(f"{self.path}: split '{split}' refers to examples outside "
                                   f"0..{self.num_videos - 1}")
            self.splits[split] = [self.video_ids[e] for e in chosen]
        self._layout: dict[str, tuple[str, np.ndarray, int]] = {}     # source -> (kind, rows (E,), D)
        for source in named:
            if source == targets_source:
                continue
            layout = self._source_layout(f[source])
            if layout is not None:
                self._layout[source] = layout
        self.feature_sources = tuple(sorted(self._layout))
        self._load_targets(targets_source if targets_source in named else None, class_names)
        self.sources = self.feature_sources + ((TARGETS,) if self._targets is not None else ())
        self.attrs = {k: attr_value(v) for k, v in f.attrs.items() if k not in RESERVED_ATTRS}

    def _source_layout(self, dataset: h5py.Dataset):
        scales = _scale_names(dataset)
        if "shapes" in scales:
            if dataset.ndim != 1 or h5py.check_vlen_dtype(dataset.dtype) is None:
                raise DatasetError(f"{self.path}: variable-length source '{dataset.name[1:]}' must be a "
                                   "1-D vlen dataset")
            if np.dtype(h5py.check_vlen_dtype(dataset.dtype)).kind not in "biuf":
                return None
            shapes = np.asarray(scales["shapes"][()], dtype=np.int64).reshape(self.num_videos, -1)
            dims = np.prod(shapes[:, 1:], axis=1) if shapes.shape[1] > 1 else np.ones(len(shapes), np.int64)
            if len(set(dims.tolist())) > 1:
                raise DatasetError(f"{self.path}: examples of source '{dataset.name[1:]}' have different "
                                   f"feature sizes {sorted(set(dims.tolist()))[:5]}")
            return "vlen", shapes[:, 0], int(dims[0]) if len(dims) else 1
        if dataset.dtype.kind not in "biuf":
            return None
        shape = dataset.shape[1:]
        rows = shape[0] if len(shape) >= 2 else 1
        dim = int(np.prod(shape[1:])) if len(shape) >= 2 else (shape[0] if shape else 1)
        return "fixed", np.full(self.num_videos, rows, np.int64), dim

    def _load_targets(self, source, class_names) -> None:
        self._targets, self.multilabel = None, False
        if source is not None:
            data = self._file[source]
            if h5py.check_vlen_dtype(data.dtype) is not None or data.ndim > 2:
                raise DatasetError(f"{self.path}: the '{source}' source must be (E,), (E, 1) or (E, C); "
                                   f"got {data.shape} {data.dtype}")
            values = np.asarray(data[()])
            values = values.reshape(len(values), -1)
            if values.shape[1] == 1:
                if (values != np.round(values)).any() or (values < 0).any():
                    raise DatasetError(f"{self.path}: '{source}' holds non-integer or negative class indices")
                self._targets = values[:, 0].astype(np.int64)
                count = int(self._targets.max()) + 1 if len(self._targets) else 0
            else:
                if not np.isin(values, (0, 1)).all():
                    raise DatasetError(f"{self.path}: multi-column '{source}' must hold 0/1 multi-hot rows")
                self._targets, self.multilabel = values.astype(np.float32), True
                count = values.shape[1]
        else:
            count = 0
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) < count or (self.multilabel and len(class_names) != count):
                raise DatasetError(f"{len(class_names)} class names given; the targets need {count}")
            self.class_names = class_names
        else:
            self.class_names = [f"class_{c}" for c in range(count)]
        self.num_classes = len(self.class_names)

    # -- the FeatureDataset interface ---------------------------------------------------------------
    def index(self, video_id: str) -> int:
        e = int(video_id) if video_id.isdigit() else -1
        if not 0 <= e < self.num_videos or self.video_ids[e] != video_id:
            example = self.video_ids[0] if self.video_ids else "000000"
            raise DatasetError(f"{self.path} has no video '{video_id}' (its {self.num_videos} examples "
                               f"are 0-padded numbers such as {example})")
        return e

    def _check_source(self, source: str) -> None:
        if source not in self._layout:
            raise missing_source(self.path, source, self.sources)

    def frame_stride(self, source: str) -> int:
        stride = self._strides.get(source, CHUNK_FRAMES) if isinstance(self._strides, dict) else self._strides
        return int(stride)

    def dim(self, source: str) -> int:
        if source == TARGETS:
            return self.num_classes if self.multilabel else 1
        self._check_source(source)
        return self._layout[source][2]

    def num_rows(self, source: str, video_id: str) -> int:
        self._check_source(source)
        return int(self._layout[source][1][self.index(video_id)])

    def read(self, source: str, video_id: str):
        e = self.index(video_id)
        if source == TARGETS:
            if self._targets is None:
                raise missing_source(self.path, source, self.sources)
            return self._targets[e].copy() if self.multilabel else int(self._targets[e])
        return self.read_rows(source, video_id, 0, self.num_rows(source, video_id))

    def read_rows(self, source: str, video_id: str, start: int, stop: int, step: int = 1) -> np.ndarray:
        """Rows of one example; a variable-length example is read whole (HDF5 stores it as one element)."""
        count = self.num_rows(source, video_id)
        if not (0 <= start <= stop <= count) or step < 1:
            raise DatasetError(f"rows {start}:{stop}:{step} are outside video '{video_id}' of source "
                               f"'{source}', which has {count} rows")
        e, (kind, _, dim) = self.index(video_id), self._layout[source]
        dataset = self._file[source]
        if kind == "vlen":
            rows = np.asarray(dataset[e]).reshape(count, dim)[start:stop:step]
        elif dataset.ndim >= 3:
            rows = np.asarray(dataset[e, start:stop:step]).reshape(-1, dim)
        else:
            rows = np.asarray(dataset[e]).reshape(1, dim)[start:stop:step]
        rows = rows.astype(np.float32)
        check_finite(rows, video_id, source)
        return rows

    def frame_index(self, source: str, video_id: str) -> np.ndarray:
        return self.frame_stride(source) * np.arange(self.num_rows(source, video_id), dtype=np.int64)

    def num_frames(self, video_id: str) -> int:
        e = self.index(video_id)
        spans = [int(rows[e]) * self.frame_stride(s) for s, (_, rows, _) in self._layout.items()]
        return max(spans + [1])

    def fps(self, video_id: str) -> float:
        self.index(video_id)
        return self._fps

    def source_info(self, source: str) -> dict:
        self._check_source(source)
        labels = [d.label for d in self._file[source].dims]
        scales = _scale_names(self._file[source])
        if "shape_labels" in scales:
            labels += [attr_value(v) for v in np.ravel(scales["shape_labels"][()])]
        return {"fuel_kind": self._layout[source][0], "axis_labels": labels,
                "stride": self.frame_stride(source)}

    def describe(self) -> dict:
        in_split = {v for ids in self.splits.values() for v in ids}
        return {
            "path": str(self.path), "format": self.format, "size_bytes": self.path.stat().st_size,
            "num_videos": self.num_videos, "num_classes": self.num_classes, "multilabel": self.multilabel,
            "class_names": self.class_names,
            "splits": {**{k: len(v) for k, v in self.splits.items()},
                       "none": self.num_videos - len(in_split)},
            "sources": [{"name": s, "dim": d, "rows": int(rows.sum()), "frame_stride": self.frame_stride(s),
                         "info": self.source_info(s)} for s, (_, rows, d) in sorted(self._layout.items())],
            "uncommitted_videos": 0, "attrs": self.attrs,
        }

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()



class Conversion(NamedTuple):
    """What ``convert_legacy`` did: videos written, videos already in the output, and whether the input
    was already in our layout and was copied as it is."""

    written: int
    skipped: int
    copied: bool = False


def convert_legacy(legacy_path, out_path, *, rename: dict | None = None, frame_stride=CHUNK_FRAMES,
                   fps: float = math.nan, class_names=None, split_names: dict | None = None,
                   progress=None) -> Conversion:
    """Write a legacy Fuel file's examples into our layout; returns the `Conversion`.

    rename: {legacy source: new name}; frame_stride: int or {new name: frames per row}; split_names:
    {legacy split: train|valid|test}, on top of the legacy splits already named so. Re-running on the
    same output continues an interrupted conversion (videos already there are skipped).
    ``progress``: a callable wrapping an iterable (e.g. tqdm) or None.
    """
    with open_h5(legacy_path) as probe:
        ours = is_feature_layout(probe)
    if ours:
        return _copy_our_layout(legacy_path, out_path, rename or split_names or class_names
                                or frame_stride != CHUNK_FRAMES or not math.isnan(fps))
    rename = dict(rename or {})
    with LegacyFuelDataset(legacy_path) as probe:
        unknown = set(rename) - set(probe.feature_sources)
        if unknown:
            raise missing_source(probe.path, sorted(unknown)[0], probe.feature_sources)
        names = {s: rename.get(s, s) for s in probe.feature_sources}
    if len(set(names.values())) != len(names):
        raise DatasetError(f"the renamed sources collide: {names}")
    strides = frame_stride if isinstance(frame_stride, dict) else dict.fromkeys(names.values(), frame_stride)
    unknown = set(strides) - set(names.values())
    if unknown:
        raise DatasetError(f"frame strides given for {sorted(unknown)}, which the output will not have "
                           f"(its sources: {', '.join(sorted(names.values()))})")
    legacy_strides = {old: int(strides.get(new, CHUNK_FRAMES)) for old, new in names.items()}
    source_file = str(Path(legacy_path).resolve())
    if Path(out_path).exists():
        with open_h5(out_path) as existing:
            stored = attr_value(existing.attrs.get("converted_from"))
        if stored != source_file:
            raise DatasetError(f"{out_path} exists and was not converted from {source_file}; "
                               "choose a new output")
    written = skipped = 0
    with LegacyFuelDataset(legacy_path, frame_stride=legacy_strides, fps=fps,
                           class_names=class_names) as legacy:
        split_of = _split_assignment(legacy, split_names)
        if not legacy.num_classes:
            raise DatasetError(f"{legacy.path} has no 'targets' source and no class names were given")
        with FeatureWriter(out_path, class_names=legacy.class_names, multilabel=legacy.multilabel,
                           attrs={"converted_from": source_file}) as writer:
            for old, new in names.items():
                writer.set_source_info(new, legacy_source=old, **legacy.source_info(old))
            videos = progress(legacy.video_ids) if progress else legacy.video_ids
            for video_id in videos:
                if writer.has_video(video_id):
                    skipped += 1
                    continue
                writer.add_video(
                    video_id,
                    features={names[s]: legacy.read(s, video_id) for s in legacy.feature_sources},
                    frame_index={names[s]: legacy.frame_index(s, video_id) for s in legacy.feature_sources},
                    num_frames=legacy.num_frames(video_id), fps=legacy.fps(video_id),
                    targets=legacy.read(TARGETS, video_id) if TARGETS in legacy.sources else None,
                    split=split_of.get(video_id))
                written += 1
    return Conversion(written, skipped)


def _copy_our_layout(path, out_path, options_given: bool) -> Conversion:
    """A file already in our layout needs no conversion: copied as it is (atomically), options refused."""
    if options_given:
        raise DatasetError(f"{path} is already a feature file in this project's layout: it needs no "
                           "conversion, and --source/--stride/--split/--fps/--class-names do not apply")
    if Path(out_path).resolve() == Path(path).resolve():
        raise DatasetError(f"{path} is already a feature file in this project's layout: it needs no "
                           "conversion")
    with FeatureDataset(path) as ds:
        count = ds.num_videos
    tmp = Path(out_path).with_name(f".{Path(out_path).name}.tmp{os.getpid()}")
    try:
        shutil.copyfile(path, tmp)
        os.replace(tmp, out_path)
    except OSError as exc:
        raise DatasetError(f"{out_path} could not be written ({exc.strerror or exc}); nothing was "
                           "written") from None
    finally:
        tmp.unlink(missing_ok=True)
    return Conversion(count, 0, copied=True)


def _split_assignment(legacy: LegacyFuelDataset, split_names: dict | None) -> dict[str, str]:
    mapping = {s: s for s in legacy.splits if s in SPLITS} | dict(split_names or {})
    for old, new in mapping.items():
        if old not in legacy.splits:
            raise DatasetError(f"{legacy.path} has no split '{old}'; splits: {', '.join(legacy.splits)}")
        if new not in SPLITS:
            raise DatasetError(f"split '{old}' cannot become '{new}': the splits are {', '.join(SPLITS)}")
    split_of: dict[str, str] = {}
    for old, new in mapping.items():
        for video_id in legacy.splits[old]:
            if split_of.setdefault(video_id, new) != new:
                raise DatasetError(f"example {video_id} is in two splits ('{split_of[video_id]}' and "
                                   f"'{new}'); map one of the legacy splits elsewhere")
    return split_of
