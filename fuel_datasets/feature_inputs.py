"""Per-video features from other places than our own layout's samples: what `alstm dataset build` reads.

Three kinds of input, each opened by `open_feature_input` and read one video at a time (memory
stays bounded by the largest video, whatever the input's size):

- **Our feature files** (``alstm extract``, ``alstm synth``, ``dataset convert``): every source of the
  file, with its frame grid, the video's measured fps and frame count. Several files (families
  extracted separately, shards of one extraction) combine.
- **The ActivityNet challenge's C3D release** (``sub_activitynet_v1-3.c3d.hdf5``, docs/formats.md): one group
  ``v_<youtube id>`` per video holding ``c3d_features`` (n, 500), C3D fc7 reduced to 500 dimensions by
  PCA, one row per 16-frame clip every 8 frames. It becomes one source (``c3d_fc7pca`` unless named)
  whose row r starts at frame 8·r: the attended stride of our layout, so it serves as attended data
  with T = 2N, and, every other row, as input data (one row per 16-frame step). The release records
  no frame rate and no frame count: a video's frames are taken as those its rows cover, 8·(n − 1) + 16.
- **A folder of per-video arrays** (``<video id>.npy``, or ``.npz`` holding one array or one named
  ``features``), shape (rows, D), from any other extractor (I3D, CLIP, SlowFast, ...): one source named
  after the folder unless named, row r starting at frame ``stride · r`` (``--stride``: frames one row
  covers). Its frames are those its rows cover, ``stride · rows``.

Where the frame rate is not recorded (the release, arrays), `fuel_datasets.build` takes it from another
input that measured it (our extraction of the same video), else from the annotation file when it has
one per video, else from the frames above and the annotated duration.

Video ids: an annotated video ``ID`` is found under ``ID`` or ``v_ID`` (`candidate_ids`):
the official crawler names files ``v_<youtube id>.mp4`` and the C3D release names its groups so, while
the annotation file's keys have no prefix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from fuel_datasets.errors import DatasetError
from fuel_datasets.layout import FeatureDataset, open_h5
from fuel_datasets.opening import open_dataset

RELEASE_DATASET = "c3d_features"          # the dataset inside every video group of the C3D release
RELEASE_SOURCE = "c3d_fc7pca"             # its default source name
# One row every 8 frames, each seeing a 16-frame clip: facts of the release, not our storage convention
# (alstm_core.storage), though equal to its ATTENDED_STRIDE and CHUNK_FRAMES, which is why the release
# serves as attended and as input data.
RELEASE_STRIDE, RELEASE_CLIP = 8, 16
ARRAY_EXTENSIONS = (".npy", ".npz")


@dataclass(frozen=True)
class SourceRows:
    """The rows of one source of one video: row r starts at frame ``first_frame + stride · r``.

    rows: (R, D) float32; stride 0 when the video has a single row."""

    rows: np.ndarray
    first_frame: int
    stride: int

    def frame_index(self) -> np.ndarray:
        """(R,) int64: the frame at which each row starts."""
        return self.first_frame + self.stride * np.arange(len(self.rows), dtype=np.int64)


@dataclass(frozen=True)
class VideoMeta:
    """What is known of a video without reading its rows. ``rows``: {source: row count};
    ``num_frames``: measured (our extraction) or None; ``covered_frames``: the frames its rows cover;
    ``fps``: measured, or NaN when unknown."""

    rows: dict[str, int]
    num_frames: int | None
    covered_frames: int
    fps: float


@dataclass
class FeatureInput:
    """One opened input: its kind, its sources with their attributes, its videos (ids as stored)."""

    path: str
    kind: str                                    # "alstm-features", "activitynet-c3d", "arrays"
    sources: dict[str, dict]                     # source -> attributes for the built file
    video_ids: list[str]
    _handle: object = field(default=None, repr=False)
    _files: dict[str, Path] = field(default_factory=dict, repr=False)
    _dims: dict[str, tuple[int, str]] = field(default_factory=dict, repr=False)

    # -- per video -------------------------------------------------------------------------------
    def meta(self, video_id: str) -> VideoMeta:
        if self.kind == "alstm-features":
            ds: FeatureDataset = self._handle
            i = ds.index(video_id)
            rows = {s: int(ds.row_table(s)[i, 1]) for s in self.sources}
            frames = ds.num_frames(video_id)
            return VideoMeta(rows, frames, frames, ds.fps(video_id))
        source = next(iter(self.sources))
        if self.kind == "activitynet-c3d":
            n = int(self._release_rows(video_id).shape[0])
            return VideoMeta({source: n}, None, RELEASE_STRIDE * (n - 1) + RELEASE_CLIP if n else 0,
                             math.nan)
        n = len(self._array(video_id, mmap=True))
        return VideoMeta({source: n}, None, self.sources[source]["stride"] * n, math.nan)

    def read(self, video_id: str) -> dict[str, SourceRows]:
        """Every source of the video; DatasetError naming the video for NaN/inf values or a dim that
        differs from the input's other videos."""
        if self.kind == "alstm-features":
            ds: FeatureDataset = self._handle
            table_row = {s: ds.row_table(s)[ds.index(video_id)] for s in self.sources}
            out = {s: SourceRows(self._checked(s, video_id, ds.read(s, video_id)), int(t[2]), int(t[3]))
                   for s, t in table_row.items()}
            return out
        source = next(iter(self.sources))
        if self.kind == "activitynet-c3d":
            rows = np.asarray(self._release_rows(video_id)[()])
        else:
            rows = np.asarray(self._array(video_id, mmap=False))
        rows = self._checked(source, video_id, rows).astype(np.float32, copy=False)
        return {source: SourceRows(rows, 0, self.sources[source]["stride"] if len(rows) > 1 else 0)}

    def _checked(self, source: str, video_id: str, rows: np.ndarray) -> np.ndarray:
        if rows.dtype.kind not in "biuf":
            raise DatasetError(f"{self.path}: video '{video_id}', source '{source}' holds {rows.dtype} "
                               "values; features must be real numbers")
        if rows.ndim != 2:
            raise DatasetError(f"{self.path}: video '{video_id}', source '{source}' has shape {rows.shape}; "
                               "features must be (rows, D)")
        seen = self._dims.setdefault(source, (rows.shape[1], video_id))
        if seen[0] != rows.shape[1]:
            raise DatasetError(f"{self.path}: source '{source}' has D = {rows.shape[1]} in video "
                               f"'{video_id}' but D = {seen[0]} in video '{seen[1]}'; every video of a "
                               "source needs the same dimension")
        if not np.isfinite(rows).all():
            bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
            raise DatasetError(f"{self.path}: video '{video_id}', source '{source}' has NaN or infinite "
                               f"values in rows {bad[:5].tolist()}; re-extract this video's features")
        return rows

    def _release_rows(self, video_id: str) -> h5py.Dataset:
        group = self._handle[video_id]
        if not isinstance(group, h5py.Group) or RELEASE_DATASET not in group:
            raise DatasetError(f"{self.path}: group '{video_id}' has no '{RELEASE_DATASET}' dataset; is "
                               "this the ActivityNet C3D release (sub_activitynet_v1-3.c3d.hdf5)?")
        return group[RELEASE_DATASET]

    def _array(self, video_id: str, mmap: bool) -> np.ndarray:
        path = self._files[video_id]
        try:
            if path.suffix == ".npy":
                return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                name = names[0] if len(names) == 1 else "features" if "features" in names else None
                if name is None:
                    raise DatasetError(f"{path} holds the arrays {', '.join(names)}; keep one, or name the "
                                       "features array 'features'")
                return archive[name]
        except (OSError, ValueError, EOFError) as exc:
            raise DatasetError(f"{path} cannot be read as a numpy array: {' '.join(str(exc).split())}") \
                from None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def parse_feature_spec(spec: str) -> tuple[str | None, str]:
    """``NAME=PATH`` or ``PATH`` → (name or None, path)."""
    name, sep, path = spec.partition("=")
    if sep and name and "/" not in name and not os.path.exists(spec):
        return name, path
    return None, spec


def open_feature_input(spec: str, stride: int | None = None) -> FeatureInput:
    """Open ``[NAME=]PATH``: one of our feature files, the ActivityNet C3D release, or a folder of
    per-video arrays (which needs ``stride``, the frames one row covers). DatasetError for anything
    else, naming the path and what it expected."""
    name, path = parse_feature_spec(spec)
    if os.path.isdir(path):
        return _open_arrays(path, name, stride)
    if not os.path.exists(path):
        raise DatasetError(f"--features {spec}: no such file or folder")
    h5file = open_h5(path)
    if "alstm_layout" in h5file.attrs or "split" in h5file.attrs:
        h5file.close()
        if name is not None:
            raise DatasetError(f"--features {spec}: NAME= names the source of the C3D release or of a "
                               "folder of arrays; a feature file keeps its own source names")
        ds = open_dataset(path)
        if not isinstance(ds, FeatureDataset):
            ds.close()
            raise DatasetError(f"{path} is a legacy Fuel file; convert it first: "
                               f"alstm dataset convert {path} OUT.h5")
        sources = {s: ds.source_info(s) for s in ds.feature_sources}
        return FeatureInput(path, "alstm-features", sources, list(ds.video_ids), ds)
    groups = [key for key in h5file if isinstance(h5file.get(key, getlink=True), h5py.HardLink)]
    if not groups or not all(isinstance(h5file[g], h5py.Group) for g in groups[:5]) \
            or RELEASE_DATASET not in h5file[groups[0]]:
        h5file.close()
        raise DatasetError(f"{path} is neither a feature file of ours nor the ActivityNet C3D release "
                           f"(groups v_<youtube id> holding '{RELEASE_DATASET}')")
    info = {"network": "c3d", "layer": "fc7", "reduction": "PCA to 500 dimensions (ActivityNet release)",
            "chunk_length": RELEASE_CLIP, "stride": RELEASE_STRIDE, "origin": os.path.basename(path)}
    return FeatureInput(path, "activitynet-c3d", {name or RELEASE_SOURCE: info}, sorted(groups), h5file)


def _open_arrays(path: str, name: str | None, stride: int | None) -> FeatureInput:
    folder = Path(path)
    files: dict[str, Path] = {}
    for item in sorted(folder.iterdir()):
        if item.suffix.lower() in ARRAY_EXTENSIONS and item.is_file():
            if item.stem in files:
                raise DatasetError(f"{folder} has both {files[item.stem].name} and {item.name}; keep one")
            files[item.stem] = item
    if not files:
        raise DatasetError(f"{folder} holds no <video id>.npy or .npz file")
    if stride is None:
        raise DatasetError(f"{folder}: give --stride FRAMES, the frames one row of these arrays covers "
                           "(e.g. 16 for one row per 16-frame clip)")
    if stride < 1:
        raise DatasetError(f"--stride {stride}: give a positive number of frames")
    source = name or folder.name
    info = {"network": "external", "chunk_length": stride, "stride": stride, "origin": folder.name}
    return FeatureInput(str(folder), "arrays", {source: info}, list(files), None, files)


class FeatureSet:
    """Several inputs seen as one: per video, the union of their sources. A video named ``key`` in the
    annotations is ``key`` or ``v_<key>`` in the inputs (`candidate_ids`)."""

    def __init__(self, inputs: Sequence[FeatureInput]):
        self.inputs = list(inputs)
        self.sources: dict[str, dict] = {}
        for inp in self.inputs:
            for source, info in inp.sources.items():
                self.sources.setdefault(source, info)
        self._where: dict[str, list[FeatureInput]] = {}         # stored id -> inputs holding it
        for inp in self.inputs:
            for vid in inp.video_ids:
                self._where.setdefault(vid, []).append(inp)

    def ids(self) -> list[str]:
        """Every stored video id, sorted."""
        return sorted(self._where)

    def entries(self, key: str) -> list[tuple[FeatureInput, str]]:
        """(input, stored id) of the video ``key``; a source given twice for it is an error."""
        found: list[tuple[FeatureInput, str]] = []
        for vid in candidate_ids(key):
            for inp in self._where.get(vid, []):
                for other, other_vid in found:
                    common = sorted(set(other.sources) & set(inp.sources))
                    if common:
                        raise DatasetError(f"video '{key}' has the source '{common[0]}' in both "
                                           f"{other.path} (as '{other_vid}') and {inp.path} (as '{vid}'); "
                                           "give each source of a video once")
                found.append((inp, vid))
        return found

    def lacking(self, key: str) -> list[str]:
        """The sources the video does not have (all of them if it is unknown)."""
        have = {s for inp, _ in self.entries(key) for s in inp.sources}
        return sorted(set(self.sources) - have)

    def meta(self, key: str) -> VideoMeta:
        """Row counts of every source; the measured frame count and fps where an input has them."""
        rows, frames, covered, fps = {}, None, 0, math.nan
        for inp, vid in self.entries(key):
            meta = inp.meta(vid)
            rows.update(meta.rows)
            if meta.num_frames is not None and frames is None:
                frames = meta.num_frames
            covered = max(covered, meta.covered_frames)
            if math.isnan(fps) and meta.fps > 0:
                fps = meta.fps
        return VideoMeta(rows, frames, covered, fps)

    def read(self, key: str) -> dict[str, SourceRows]:
        out: dict[str, SourceRows] = {}
        for inp, vid in self.entries(key):
            out.update(inp.read(vid))
        return out

    def close(self) -> None:
        for inp in self.inputs:
            inp.close()



def candidate_ids(key: str) -> tuple[str, ...]:
    """The ids under which inputs may hold the annotated video ``key``: as it is, or with the ``v_`` of
    the official crawler's file names (``v_<youtube id>.mp4``) and of the C3D release's groups."""
    return (key, f"v_{key}")



def open_features(specs: Sequence[str], strides: dict[str, int] | int | None = None) -> FeatureSet:
    """Open every ``[NAME=]PATH`` of ``specs`` (see `open_feature_input`); ``strides``: frames per row of
    folders of arrays, one number for all, or {source name or folder path: frames}."""
    if not specs:
        raise DatasetError("give at least one --features FILE_OR_FOLDER")
    opened: list[FeatureInput] = []
    try:
        for spec in specs:
            if isinstance(strides, dict):
                name, path = parse_feature_spec(spec)
                stride = strides.get(name) or strides.get(path) or strides.get(Path(path).name)
            else:
                stride = strides
            opened.append(open_feature_input(spec, stride))
        return FeatureSet(opened)
    except BaseException:
        for inp in opened:
            inp.close()
        raise



def cut_rows(rows: SourceRows, start_frame: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows whose first frame lies in ``[start_frame, start_frame + num_frames)``: ((R', D) rows,
    (R',) int64 frame index counted from ``start_frame``)."""
    index = rows.frame_index()                                   # (R,) absolute first frames
    keep = (index >= start_frame) & (index < start_frame + num_frames)
    return rows.rows[keep], index[keep] - start_frame
