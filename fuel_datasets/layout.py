"""The on-disk layout of a feature dataset, and its reader: the lowest layer of ``fuel_datasets``.

This module imports no other module of the package but ``errors`` and ``fuel_split``; ``writer``
(``FeatureWriter``), ``legacy`` (Fuel files) and ``opening`` (``open_dataset``, which picks this reader
or the legacy one) build on it. ``SPLITS``, ``FLIP_SUFFIX`` and ``TARGETS`` are the storage convention's
(``alstm_core.storage``), re-exported here.

One HDF5 file per dataset (format ``alstm-features``, version 1). Every feature *source* (``c3d_fc6``,
``vgg_obj_fc8``, ``<source>_flip``, ``salient``, ...) is one 2-D dataset of rows, the rows of one video
after those of the previous one, so a window of a video is a contiguous (or strided) slice of rows::

    /                        root attributes
        alstm_layout             "alstm-features";  alstm_layout_version = 1
        class_names              (C,) UTF-8 strings
        multilabel               bool
        split                    Fuel's split array (docs/framework.md §4.1): one row per split
                                 (train, valid, test) and per-video source below, each row's
                                 `indices` referencing /splits/<split>; written once, never rewritten
        h5py_interface_version   b"0.3", as fuel-convert writes it
        <user attributes>        FeatureWriter(attrs=...): e.g. generator, extraction command
    /committed               (1,) int64: V, the number of complete videos (the commit marker)
    /video_id                (V',) S128, UTF-8       per-video datasets ("examples" in Fuel's terms;
    /targets                 (V', 1) int64 class,    axis 0 labelled "batch"); entries at index
                             -1 for no label; or     >= V belong to an interrupted append
                             (V', C) int8 multi-hot, -1 row for no label
    /num_frames              (V',) int64
    /fps                     (V',) float64, NaN when unknown
    /splits/<split>          (n,) int64: ascending video indices of train / valid / test
    /features/<source>       (R, D) float32 rows; attributes: what set_source_info stored
                             (network, layer, chunk_length, stride, weights, ...)
    /frame_index/<source>    (R,) int64: the frame at which each row starts
    /rows/<source>           (V', 4) int64 per video: first row, row count, first frame, frame stride

Rows of a video are evenly spaced in frames (``frame_index = first + stride * arange(count)``; the
writer checks it), so a window's rows follow from /rows alone. Storage convention (docs/paper.md §1,
``alstm_core.storage``): C3D sources hold one row per 16-frame chunk (frames 0, 16, 32, ...), attended
sources one row every 8 frames (0, 8, 16, ...); T = N reads every other attended row (the first frame of
each 16-frame chunk), T = 2N all of them, from the same file. ``<source>_flip`` has the rows of
``<source>`` on horizontally flipped frames. Row datasets are chunked (about 1 MiB, at most 1024 rows a
chunk) and not compressed: with HDF5's chunk cache off, a reader reads exactly the rows it selects, and
chunks never move once written. The file format is HDF5's v110 (superblock 3), which SWMR needs:
readable with HDF5 >= 1.10.

Writing protocol (``FeatureWriter``, in ``fuel_datasets.writer``; safe against a killed writer, not against
power loss, which would need an fsync per video):

1. A new file is built as ``<path>.tmp`` and renamed to ``<path>`` (``os.replace``) once its first video
   is committed, or when the writer closes: a half-created file never has the final name.
2. Appending runs in HDF5's SWMR-write mode (format v110). SWMR orders metadata flushes so that the file
   on disk is consistent at every instant -- which is also what a killed writer leaves behind.
3. One video: grow every source and per-video dataset and write them, append its index to its split,
   flush; then write /committed = V + 1 and flush again. Readers trust only the first V videos, so a
   video is either complete or invisible, and nothing is ever copied.
4. Structural changes (creating the source datasets, changed attributes, set_splits, trimming) run
   outside SWMR mode, which HDF5 does not allow them in; they are short and happen once, not per
   video. Reopening a cleanly closed file with nothing to change goes straight into SWMR mode.
5. A writer holds an exclusive ``flock`` on the file while it is open (HDF5's own lock is dropped in
   SWMR mode, so it cannot tell a running writer from a dead one). The next writer that gets the lock
   and finds the superblock's "open for write" flags set knows the last writer was killed: it clears
   them (``fuel_datasets.superblock``, what ``h5clear -s -i`` does), truncates the uncommitted tail
   (rows, per-video entries, split entries past /committed) and appends on.

Readers open without locks: a cleanly closed file as usual, a file whose writer is running or was killed
in SWMR mode in SWMR-read mode; both see exactly the committed videos. A file whose writer was killed
during a structural change must be reopened by a writer first (``alstm dataset repair FILE``).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from alstm_core.storage import FLIP_SUFFIX, SPLITS, TARGETS
from fuel_datasets.errors import DatasetError
from fuel_datasets.fuel_split import read_split_attribute

LAYOUT_NAME = "alstm-features"
LAYOUT_VERSION = 1
LIBVER = ("v110", "v110")           # the oldest format with SWMR; readable by HDF5 >= 1.10
VIDEO_SOURCES = ("video_id", TARGETS, "num_frames", "fps")   # the per-video datasets Fuel sees
ID_BYTES = 128
ROW_COLUMNS = ("first_row", "row_count", "first_frame", "frame_stride")
RESERVED_ATTRS = frozenset({"alstm_layout", "alstm_layout_version", "class_names", "multilabel", "split",
                            "h5py_interface_version"})


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def open_h5(path: str | os.PathLike, *, rdcc_nbytes: int = 0) -> h5py.File:
    """Open a feature file for reading, without taking HDF5's lock; DatasetError on any failure.

    ``rdcc_nbytes=0`` disables HDF5's chunk cache: uncompressed chunks are then read only where
    selected, so a window costs the bytes it holds, not whole chunks.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if path.is_dir():
        raise DatasetError(f"{path} is a folder, not an HDF5 file")
    try:
        signature_ok = h5py.is_hdf5(path)
    except OSError as exc:
        raise DatasetError(f"{path} cannot be read: {_one_line(exc)}") from None
    if not signature_ok:
        raise DatasetError(f"{path} is not an HDF5 file")
    options = dict(rdcc_nbytes=rdcc_nbytes, locking=False)
    try:
        return h5py.File(path, "r", **options)
    except OSError as plain_error:
        message = _one_line(plain_error)
    if "consistency flags" not in message:
        raise DatasetError(f"{path} is truncated or damaged (HDF5: {message})")
    try:   # flagged as open for writing: a SWMR writer is running, or was killed
        return h5py.File(path, "r", swmr=True, **options)
    except OSError as swmr_error:
        raise DatasetError(
            f"{path} is open for writing, or its writer was killed while changing the file's structure; "
            f"wait for the writer, or run `alstm dataset repair {path}` "
            f"(HDF5: {_one_line(swmr_error)})") from None


def is_feature_layout(h5file: h5py.File) -> bool:
    return h5file.attrs.get("alstm_layout") in (LAYOUT_NAME, LAYOUT_NAME.encode())


def file_format(h5file: h5py.File) -> str | None:
    """"alstm" for this project's layout, "fuel" for a legacy Fuel ``H5PYDataset`` (a ``split``
    attribute), None for another HDF5 file. The one rule every reader of either format follows."""
    if is_feature_layout(h5file):
        return "alstm"
    return "fuel" if "split" in h5file.attrs else None


def text_list(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes | np.bytes_) else str(v) for v in np.ravel(values)]


def attr_value(value):
    """An HDF5 attribute as plain Python (str, int, float, bool, list)."""
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [attr_value(v) for v in value.tolist()] if value.dtype.kind in "OSU" else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def missing_source(path, source: str, available) -> DatasetError:
    return DatasetError(f"{path} has no source '{source}'; available: {', '.join(available) or 'none'}")


class FeatureDataset:
    """Read access to a file in our layout: committed videos only, rows read slice by slice.

    The per-video tables (ids, targets, frame counts, splits, each source's /rows table) are read on
    first use and kept: a few hundred bytes per video at most. Feature rows are never cached.
    """

    format = f"{LAYOUT_NAME} v{LAYOUT_VERSION}"

    def __init__(self, path: str | os.PathLike, *, h5file: h5py.File | None = None):
        self.path = Path(path)
        self._file = h5file if h5file is not None else open_h5(self.path)
        try:
            self._load()
        except BaseException:
            self._file.close()
            raise

    def _load(self) -> None:
        f = self._file
        if not is_feature_layout(f):
            raise DatasetError(f"{self.path} is an HDF5 file but not a feature dataset (no alstm_layout "
                               "attribute); legacy Fuel files are opened with open_dataset")
        version = int(f.attrs.get("alstm_layout_version", -1))
        if version != LAYOUT_VERSION:
            raise DatasetError(f"{self.path} uses layout version {version}; this reader knows version "
                               f"{LAYOUT_VERSION}")
        self.num_videos = int(f["committed"][0])
        self.class_names = text_list(f.attrs["class_names"])
        self.num_classes = len(self.class_names)
        self.multilabel = bool(f.attrs["multilabel"])
        self.feature_sources = tuple(sorted(f["features"])) if "features" in f else ()
        self.sources = self.feature_sources + (TARGETS,)
        self.attrs = {k: attr_value(v) for k, v in f.attrs.items() if k not in RESERVED_ATTRS}
        self._rows: dict[str, np.ndarray] = {}

    # Per-video tables are read on first use: a stream's worker needs none of them.
    @cached_property
    def video_ids(self) -> list[str]:
        ids, dataset = [], self._file["video_id"]
        for start in range(0, self.num_videos, 4096):       # blocks: no (V, 128)-byte temporary
            ids += text_list(dataset[start:min(start + 4096, self.num_videos)])
        return ids

    @cached_property
    def _index(self) -> dict[str, int]:
        return {video_id: i for i, video_id in enumerate(self.video_ids)}

    @cached_property
    def _targets(self) -> np.ndarray:
        return np.asarray(self._file[TARGETS][:self.num_videos])

    @cached_property
    def _num_frames(self) -> np.ndarray:
        return np.asarray(self._file["num_frames"][:self.num_videos], dtype=np.int64)

    @cached_property
    def _fps(self) -> np.ndarray:
        return np.asarray(self._file["fps"][:self.num_videos], dtype=np.float64)

    @cached_property
    def _split_indices(self) -> dict[str, np.ndarray]:
        declared = read_split_attribute(self._file)
        empty = np.zeros(0, np.int64)
        indices = {split: next(iter(declared.get(split, {}).values()), empty) for split in SPLITS}
        return {split: i[i < self.num_videos] for split, i in indices.items()}

    def split_indices(self, split: str) -> np.ndarray:
        """(n,) int64 ascending indices (into ``video_ids``) of the committed videos of a split."""
        if split not in self._split_indices:
            raise DatasetError(f"{self.path} has no split '{split}'; splits: {', '.join(SPLITS)}")
        return self._split_indices[split]

    @cached_property
    def splits(self) -> dict[str, list[str]]:
        """{"train": [video ids], "valid": [...], "test": [...]} from Fuel's split attribute."""
        return {split: [self.video_ids[i] for i in indices.tolist()]
                for split, indices in self._split_indices.items()}

    # -- lookups -------------------------------------------------------------------------------
    def index(self, video_id: str) -> int:
        try:
            return self._index[video_id]
        except KeyError:
            raise DatasetError(f"{self.path} has no video '{video_id}' ({self.num_videos} videos)") from None

    def _check_source(self, source: str) -> None:
        if source not in self.feature_sources:
            raise missing_source(self.path, source, self.sources)

    def row_table(self, source: str) -> np.ndarray:
        """(V, 4) int64 per committed video: first row, row count, first frame, frame stride."""
        self._check_source(source)
        if source not in self._rows:
            self._rows[source] = np.asarray(self._file["rows"][source][:self.num_videos], dtype=np.int64)
        return self._rows[source]

    def features(self, source: str) -> h5py.Dataset:
        """The (R, D) row dataset itself, for callers that read many windows (the streams)."""
        self._check_source(source)
        return self._file["features"][source]

    def dim(self, source: str) -> int:
        if source == TARGETS:
            return self.num_classes if self.multilabel else 1
        return int(self.features(source).shape[1])

    def num_frames(self, video_id: str) -> int:
        return int(self._num_frames[self.index(video_id)])

    def fps(self, video_id: str) -> float:
        return float(self._fps[self.index(video_id)])

    def num_frames_array(self) -> np.ndarray:
        """(V,) int64 frame counts, in file order."""
        return self._num_frames

    def targets_array(self) -> np.ndarray:
        """(V,) int64 classes (-1: no label), or (V, C) int8 multi-hot (-1 rows: no label)."""
        return self._targets[:, 0].astype(np.int64) if not self.multilabel else self._targets

    def source_info(self, source: str) -> dict:
        """The attributes set_source_info stored; a ``_flip`` source inherits its base's."""
        own = {k: attr_value(v) for k, v in self.features(source).attrs.items() if k != "DIMENSION_LABELS"}
        base = source[:-len(FLIP_SUFFIX)] if source.endswith(FLIP_SUFFIX) else None
        if base in self.feature_sources:
            return {**self.source_info(base), **own}
        return own

    # -- reads ---------------------------------------------------------------------------------
    def read(self, source: str, video_id: str):
        """(rows, D) float32 for a feature source; for "targets" an int, a (C,) float32, or None."""
        i = self.index(video_id)
        if source == TARGETS:
            row = self._targets[i]
            if self.multilabel:
                return None if (row < 0).any() else row.astype(np.float32)
            return None if int(row[0]) < 0 else int(row[0])
        count = int(self.row_table(source)[i, 1])
        return self.read_rows(source, video_id, 0, count)

    def read_rows(self, source: str, video_id: str, start: int, stop: int, step: int = 1) -> np.ndarray:
        """Rows ``start:stop:step`` of one video (0-based within the video): (rows, D) float32."""
        i = self.index(video_id)
        first, count = (int(v) for v in self.row_table(source)[i, :2])
        if not (0 <= start <= stop <= count) or step < 1:
            raise DatasetError(f"rows {start}:{stop}:{step} are outside video '{video_id}' of source "
                               f"'{source}', which has {count} rows")
        out = np.asarray(self.features(source)[first + start:first + stop:step], dtype=np.float32)
        check_finite(out, video_id, source)
        return out

    def frame_index(self, source: str, video_id: str) -> np.ndarray:
        """(rows,) int64: the frame at which each row of the video starts."""
        i = self.index(video_id)
        first, count = (int(v) for v in self.row_table(source)[i, :2])
        return np.asarray(self._file["frame_index"][source][first:first + count], dtype=np.int64)

    # -- description and lifetime -----------------------------------------------------------------
    def describe(self) -> dict:
        """What `alstm dataset info` prints: sources, dims, splits, counts, size on disk."""
        f = self._file
        sources = []
        for source in self.feature_sources:
            table = self.row_table(source)
            strides = sorted({int(s) for s in table[:, 3] if s > 0})
            sources.append({"name": source, "dim": self.dim(source), "rows": int(table[:, 1].sum()),
                            "frame_stride": strides[0] if len(strides) == 1 else strides,
                            "info": self.source_info(source)})
        in_split = sum(len(v) for v in self.splits.values())
        return {
            "path": str(self.path), "format": self.format, "size_bytes": self.path.stat().st_size,
            "num_videos": self.num_videos, "num_classes": self.num_classes, "multilabel": self.multilabel,
            "class_names": self.class_names,
            "splits": {**{k: len(v) for k, v in self.splits.items()}, "none": self.num_videos - in_split},
            "sources": sources,
            "uncommitted_videos": int(f["video_id"].shape[0]) - self.num_videos,
            "frames": int(self._num_frames.sum()),
            "attrs": self.attrs,
        }

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_finite(rows: np.ndarray, video_id: str, source: str) -> None:
    """DatasetError naming the video and source if any value is NaN or infinite."""
    if not np.isfinite(rows).all():
        bad = np.flatnonzero(~np.isfinite(rows.reshape(len(rows), -1)).all(axis=1))
        raise DatasetError(f"video '{video_id}', source '{source}': NaN or infinite values in rows "
                           f"{bad[:5].tolist()} of the requested slice; re-extract this video's features")
