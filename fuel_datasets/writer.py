"""FeatureWriter: creates a feature dataset or appends videos to one, safely against a killed writer.

The layout and the commit protocol are described in ``fuel_datasets.layout``; in short: a new file is
``<path>.tmp`` until its first video is committed, appends run in HDF5's SWMR mode with the rows
flushed before ``/committed`` is raised, and the next writer clears what a killed one left behind.
"""

from __future__ import annotations

import gc
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from alstm_core.disk import is_disk_full
from alstm_core.locking import try_lock
from alstm_core.storage import SPLITS, TARGETS
from fuel_datasets.errors import DatasetError
from fuel_datasets.fuel_split import split_array
from fuel_datasets.layout import (
    ID_BYTES,
    LAYOUT_NAME,
    LAYOUT_VERSION,
    LIBVER,
    RESERVED_ATTRS,
    ROW_COLUMNS,
    is_feature_layout,
    text_list,
)
from fuel_datasets.recovery import needs_trim, trim
from fuel_datasets.space import METADATA_MARGIN, DiskFullError, chunk_rows_for, require_room, video_bytes
from fuel_datasets.superblock import clear_write_flags, write_flags
from fuel_datasets.video_check import attr_to_hdf5, check_video, same_attr

_PER_VIDEO_CHUNK = 1024


class FeatureWriter:
    """``with FeatureWriter(path, class_names=[...]) as w: w.add_video(...)``; see fuel_datasets.layout.

    ``class_names`` (and ``multilabel``) give the file's classes and, when given for an existing one,
    must match it. A file created without them holds unlabelled videos (no class, every target -1):
    the features of whole videos, which `alstm dataset build` later cuts and labels. ``attrs`` are
    stored as root attributes (updated on an existing file).
    ``chunk_bytes`` sizes the HDF5 chunks of the row datasets (it does not change what is read).
    """

    def __init__(self, path: str | os.PathLike, class_names=None, multilabel: bool | None = None,
                 attrs: dict | None = None, *, chunk_bytes: int = 1 << 20):
        self.path = Path(path)
        self._chunk_bytes = int(chunk_bytes)
        self._file: h5py.File | None = None
        self._lock_fd: int | None = None
        self._pending_info: dict[str, dict] = {}
        self._datasets: dict[str, h5py.Dataset] = {}
        self.recovered = False       # True when this writer cleaned up after a killed one
        for key in attrs or {}:
            if not isinstance(key, str) or key in RESERVED_ATTRS:
                raise DatasetError(f"attribute name {key!r} is reserved by the layout; rename it")
        if self.path.exists():
            self._live_path, self._renamed = self.path, True
            self._lock()
            try:
                self._free_bytes_at_least(METADATA_MARGIN, "opening it for appending")
                self._open_existing(class_names, multilabel, attrs or {})
            except BaseException as exc:
                self._fail(exc)
                raise
        else:
            if multilabel and not class_names:
                raise DatasetError(f"{self.path}: a multi-label file needs its class names")
            self._live_path, self._renamed = self.path.with_name(self.path.name + ".tmp"), False
            self._lock()
            try:
                self._free_bytes_at_least(METADATA_MARGIN, "creating it")
                self._create(list(class_names or []), bool(multilabel), attrs or {})
            except BaseException as exc:
                self._fail(exc)
                self._live_path.unlink(missing_ok=True)
                raise

    # -- opening -------------------------------------------------------------------------------
    def _lock(self) -> None:
        """Exclusive flock for this writer's lifetime; HDF5 drops its own lock in SWMR mode."""
        fd = try_lock(self._live_path)
        if fd is None:
            raise DatasetError(f"{self._live_path} is being written by another process; wait for it to "
                               "finish (one writer per file)") from None
        self._lock_fd = fd

    def _open_h5(self, mode: str) -> h5py.File:
        return h5py.File(self._live_path, mode, libver=LIBVER, locking=False,
                         rdcc_nbytes=4 * self._chunk_bytes, rdcc_w0=1.0)

    def _create(self, class_names: list[str], multilabel: bool, attrs: dict) -> None:
        f = self._file = self._open_h5("w")
        f.attrs["alstm_layout"] = LAYOUT_NAME
        f.attrs["alstm_layout_version"] = LAYOUT_VERSION
        f.attrs["class_names"] = np.array([str(c) for c in class_names], dtype=h5py.string_dtype())
        f.attrs["multilabel"] = np.bool_(multilabel)
        f.attrs["h5py_interface_version"] = np.bytes_(b"0.3")
        self._set_attrs(attrs)
        f.create_dataset("committed", data=np.zeros(1, np.int64))
        C = len(class_names)
        shapes = {"video_id": ((0,), f"S{ID_BYTES}"), "num_frames": ((0,), np.int64),
                  "fps": ((0,), np.float64),
                  TARGETS: ((0, C), np.int8) if multilabel else ((0, 1), np.int64)}
        for name, (shape, dtype) in shapes.items():
            ds = f.create_dataset(name, shape, dtype=dtype, maxshape=(None,) + shape[1:],
                                  chunks=(_PER_VIDEO_CHUNK,) + shape[1:])
            ds.dims[0].label = "batch"
            if len(shape) == 2:
                ds.dims[1].label = "class" if multilabel else "index"
        refs = {}
        for split in SPLITS:
            ds = f.create_dataset(f"splits/{split}", (0,), dtype=np.int64, maxshape=(None,),
                                  chunks=(_PER_VIDEO_CHUNK,))
            refs[split] = ds.ref
        f.attrs["split"] = split_array({split: {source: (-1, -1, refs[split]) for source in shapes}
                                        for split in SPLITS})
        for group in ("features", "frame_index", "rows"):
            f.create_group(group)
        f.flush()
        self._load_state()

    def _open_existing(self, class_names, multilabel, attrs: dict) -> None:
        if not h5py.is_hdf5(self.path):
            raise DatasetError(f"{self.path} exists and is not an HDF5 file; choose another output path")
        if write_flags(self.path):
            clear_write_flags(self.path)     # its writer was killed: we hold the lock
            self.recovered = True
        try:
            with self._open_h5("r") as f:
                self._check_existing(f, class_names, multilabel)
                changes = needs_trim(f) or not all(same_attr(f.attrs, k, v) for k, v in attrs.items())
            if changes:                                  # outside SWMR mode, then into it
                self._file = self._open_h5("r+")
                self._set_attrs(attrs)
                self.recovered |= needs_trim(self._file)
                trim(self._file)
                self._file.flush()
                self._file.swmr_mode = True
            else:                                        # straight into SWMR mode: no unsafe window
                self._file = self._open_swmr()
        except OSError as exc:
            raise DatasetError(f"{self.path} cannot be opened for appending: {' '.join(str(exc).split())}") \
                from None
        self._load_state()

    def _open_swmr(self) -> h5py.File:
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
        fapl.set_file_locking(False, True)
        metadata_elements, slots, _, _ = fapl.get_cache()
        fapl.set_cache(metadata_elements, slots, 4 * self._chunk_bytes, 1.0)
        flags = h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE
        return h5py.File(h5py.h5f.open(os.fsencode(self._live_path), flags, fapl=fapl))

    def _check_existing(self, f: h5py.File, class_names, multilabel) -> None:
        if not is_feature_layout(f):
            raise DatasetError(f"{self.path} exists and is not a feature dataset; choose another path "
                               "(legacy Fuel files: `alstm dataset convert`)")
        stored = text_list(f.attrs["class_names"])
        if class_names is not None and list(class_names) != stored:
            raise DatasetError(f"{self.path} has {len(stored)} classes {stored[:3]}...; the writer was "
                               f"given {len(class_names)} {list(class_names)[:3]}...; use a new file for "
                               "other classes")
        if multilabel is not None and bool(multilabel) != bool(f.attrs["multilabel"]):
            raise DatasetError(f"{self.path} has multilabel={bool(f.attrs['multilabel'])}; the writer was "
                               f"given multilabel={bool(multilabel)}")

    def _set_attrs(self, attrs: dict) -> None:
        for key, value in attrs.items():
            self._file.attrs[key] = attr_to_hdf5(value)

    def _load_state(self) -> None:
        f = self._file
        self._count = int(f["committed"][0])
        self._ids = {v: i for i, v in enumerate(text_list(f["video_id"][:self._count]))}
        self._class_names = text_list(f.attrs["class_names"])
        self._multilabel = bool(f.attrs["multilabel"])
        self._dims = {s: int(f["features"][s].shape[1]) for s in f["features"]}
        self._ends = {s: int(f["features"][s].shape[0]) for s in f["features"]}

    # -- structure -----------------------------------------------------------------------------
    @contextmanager
    def _structural(self):
        """Run a change of structure (datasets, attributes, shrinking) outside SWMR mode."""
        self._require_open()
        if self._file.swmr_mode:
            self._file.flush()
            self._datasets.clear()
            self._file.close()
            self._file = self._open_h5("r+")
        yield self._file
        self._file.flush()
        self._file.swmr_mode = True

    def _dataset(self, name: str) -> h5py.Dataset:
        """An open dataset by path, cached: looking datasets up by name costs more than writing a row."""
        dataset = self._datasets.get(name)
        if dataset is None:
            dataset = self._datasets[name] = self._file[name]
        return dataset

    def _require_open(self) -> None:
        if self._file is None:
            raise DatasetError(f"the writer of {self.path} is closed")

    def _create_sources(self, dims: dict[str, int]) -> None:
        unknown = set(self._pending_info) - set(dims)
        if unknown:
            raise DatasetError(f"set_source_info named {sorted(unknown)}, which the first video does not "
                               f"provide (it has {sorted(dims)})")
        with self._structural() as f:
            for source, dim in dims.items():
                rows = chunk_rows_for(dim, self._chunk_bytes)
                ds = f["features"].create_dataset(source, (0, dim), dtype=np.float32, maxshape=(None, dim),
                                                  chunks=(rows, dim))
                ds.dims[0].label, ds.dims[1].label = "row", "feature"
                for key, value in self._pending_info.pop(source, {}).items():
                    ds.attrs[key] = attr_to_hdf5(value)
                f["frame_index"].create_dataset(source, (0,), dtype=np.int64, maxshape=(None,),
                                                chunks=(4096,))
                table = f["rows"].create_dataset(source, (0, 4), dtype=np.int64, maxshape=(None, 4),
                                                 chunks=(1024, 4))
                table.attrs["columns"] = ",".join(ROW_COLUMNS)
        self._dims, self._ends = dict(dims), dict.fromkeys(dims, 0)

    def set_source_info(self, source: str, **info) -> None:
        """Store extraction settings (network, layer, chunk_length, stride, weights, ...) as attributes.

        Before the first video the sources do not exist yet; the settings are kept until they do.
        A value of None removes the attribute.
        """
        self._require_open()
        if not self._dims:
            self._pending_info.setdefault(source, {}).update(info)
            return
        if source not in self._dims:
            raise DatasetError(f"{self.path} has no source '{source}'; available: "
                               f"{', '.join(sorted(self._dims))}")
        stored = self._dataset(f"features/{source}").attrs
        if all(same_attr(stored, key, value) for key, value in info.items()):
            return                                       # unchanged (a resumed run): no structural change
        with self._structural() as f:
            attrs = f["features"][source].attrs
            for key, value in info.items():
                if value is None:
                    attrs.pop(key, None)
                else:
                    attrs[key] = attr_to_hdf5(value)

    def set_splits(self, splits: dict[str, list[str]]) -> None:
        """Reassign committed videos: each named split becomes exactly the given ids (moved out of their
        previous split); splits not named keep their other videos. A video is in at most one split."""
        self._require_open()
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise DatasetError(f"unknown split(s) {sorted(unknown)}; the splits are {', '.join(SPLITS)}")
        named: dict[int, str] = {}
        for split, ids in splits.items():
            for video_id in ids:
                if video_id not in self._ids:
                    raise DatasetError(f"set_splits: {self.path} has no video '{video_id}'")
                index = self._ids[video_id]
                if index in named:
                    raise DatasetError(f"set_splits: video '{video_id}' is listed in both '{named[index]}' "
                                       f"and '{split}'")
                named[index] = split
        with self._structural() as f:
            for split in SPLITS:
                current = f["splits"][split][()]
                if split in splits:
                    new = np.array(sorted(i for i, s in named.items() if s == split), dtype=np.int64)
                else:
                    new = np.array([i for i in current if i not in named], dtype=np.int64)
                f["splits"][split].resize(len(new), axis=0)
                f["splits"][split][:] = new

    # -- appending -----------------------------------------------------------------------------
    @property
    def num_videos(self) -> int:
        return self._count

    def has_video(self, video_id: str) -> bool:
        return video_id in self._ids

    def add_video(self, video_id: str, features: dict, frame_index: dict, num_frames: int, fps: float,
                  targets=None, split: str | None = "train") -> None:
        """Append one video and commit it (see the protocol in fuel_datasets.layout).

        features: {source: (R_s, D_s) float}, the same sources and D_s for every video; frame_index:
        {source: (R_s,) int}, evenly spaced frame numbers (a ``_flip`` source may be omitted: it shares
        its base's); targets: a class index, a (C,) multi-hot array, or None; split: train, valid, test,
        or None for a video in no split. fps may be NaN when unknown.
        """
        self._require_open()
        if video_id in self._ids:
            raise DatasetError(f"video '{video_id}' is already in {self.path}; check has_video() "
                               "before adding")
        rows, grids, target, frames, fps = check_video(
            video_id, features, frame_index, num_frames, fps, targets, split, dims=self._dims,
            num_classes=len(self._class_names), multilabel=self._multilabel)
        self._check_space(rows, video_id)
        if not self._dims:
            self._create_sources({s: r.shape[1] for s, r in rows.items()})
        if not self._file.swmr_mode:
            self._file.swmr_mode = True
        V = self._count
        try:
            self._write_video(V, video_id, rows, grids, target, frames, fps, split)
        except (OSError, RuntimeError) as exc:     # h5py reports a failed write as either
            if not is_disk_full(exc):
                raise
            self._abandon()
            error = DiskFullError(f"{self.path}: the disk is full (HDF5 could not write video '{video_id}'); "
                                  f"the {V} videos written before stay readable; free some space and run the "
                                  "same command again to go on")
            error.abandoned_hdf5 = True
            raise error from None
        self._count = V + 1
        self._ids[video_id] = V
        for source, data in rows.items():
            self._ends[source] += len(data)
        if not self._renamed:
            os.replace(self._live_path, self.path)
            self._live_path, self._renamed = self.path, True

    def _write_video(self, V: int, video_id: str, rows, grids, target, frames, fps, split) -> None:
        """Grow every dataset by one video, flush, then raise /committed (the protocol's step 3)."""
        ds = self._dataset
        for source, data in rows.items():
            start, R = self._ends[source], len(data)
            for group in ("features", "frame_index"):
                ds(f"{group}/{source}").resize(start + R, axis=0)
            if R:
                ds(f"features/{source}")[start:start + R] = data
                ds(f"frame_index/{source}")[start:start + R] = grids[source][2]
            ds(f"rows/{source}").resize(V + 1, axis=0)
            ds(f"rows/{source}")[V] = (start, R, grids[source][0], grids[source][1])
        for name, value in (("video_id", video_id.encode("utf-8")), (TARGETS, target),
                            ("num_frames", frames), ("fps", fps)):
            ds(name).resize(V + 1, axis=0)
            ds(name)[V] = value
        if split is not None:
            n = ds(f"splits/{split}").shape[0]
            ds(f"splits/{split}").resize(n + 1, axis=0)
            ds(f"splits/{split}")[n] = V
        self._file.flush()
        ds("committed")[0] = V + 1               # the commit: written last, after the rows are on disk
        self._file.flush()

    def _abandon(self) -> None:
        """Drop the file after a failed write without flushing it again: HDF5 would fail (and report)
        once per open object. What was committed is on disk already; the next writer trims the rest."""
        self._datasets.clear()
        file, self._file = self._file, None
        hook = sys.unraisablehook                   # h5py reports failed closes of its ids there
        sys.unraisablehook = lambda _: None
        try:
            try:
                file.close()
            except (OSError, RuntimeError):
                pass
            del file
            gc.collect()
        finally:
            sys.unraisablehook = hook
        self._release()

    def _fail(self, exc: BaseException) -> None:
        """Let go of the file after ``exc`` in the constructor; DiskFullError if the disk was full."""
        if isinstance(exc, (OSError, RuntimeError)) and is_disk_full(exc):
            if self._file is not None:
                self._abandon()
            self._release()
            error = DiskFullError(f"{self.path}: the disk is full; free some space and run the same command "
                                  "again")
            error.abandoned_hdf5 = True
            raise error from None
        self._release()

    def _free_bytes_at_least(self, needed: int, what: str) -> None:
        require_room(self.path, self._live_path.parent, needed, what, videos_kept=None)

    def _check_space(self, rows: dict[str, np.ndarray], video_id: str) -> None:
        """DiskFullError if the file's disk lacks the room for this video's rows and the chunks they
        open: a write that fails half-way leaves HDF5 unable to close the file cleanly, so the check
        comes first."""
        chunk_rows = {source: self._dataset(f"features/{source}").chunks[0] for source in rows
                      if source in self._dims}
        needed = video_bytes(rows, self._ends, chunk_rows, self._chunk_bytes)
        require_room(self.path, self._live_path.parent, needed, f"video '{video_id}'",
                     videos_kept=self._count)

    # -- closing -------------------------------------------------------------------------------
    def close(self, *, keep_empty: bool = True) -> None:
        """Flush, close, and give the file its final name (``keep_empty=False``: drop a new file that
        has no video, as after an error)."""
        if self._file is None:
            return
        self._file.flush()
        self._datasets.clear()
        self._file.close()
        self._file = None
        if not self._renamed:
            if keep_empty:
                os.replace(self._live_path, self.path)
                self._renamed = True
            else:
                os.unlink(self._live_path)
        if self._lock_fd is not None:
            os.fsync(self._lock_fd)
        self._release()

    def _release(self) -> None:
        self._datasets.clear()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)      # also releases the flock
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(keep_empty=exc_type is None)
