"""Per-video features + a dataset's annotations → the protocol's feature file (`alstm dataset build`).

    features of whole videos ──┐   (our files, the ActivityNet C3D release, folders of arrays;
    (fuel_datasets.            │    fuel_datasets.feature_inputs, matched by id without "v_")
     feature_inputs)           ├─▶ one sample per annotated segment (ActivityNet) or per clip
    annotations ───────────────┘   (Hollywood2), its rows cut from the video's rows, its label,
                                   its split ─▶ OUT (our layout, Fuel's split attribute)

**ActivityNet** (docs/paper.md §5, `fuel_datasets.activitynet`): a sample is the rows of every source whose
first frame lies in the segment's frames ``[start_frame, start_frame + num_frames)``, computed at the video's
own frame rate (measured by our extraction; else the annotation file's per-video ``fps`` when it has one; else
the frames the rows cover over the annotated duration). A segment is clipped to the video: to the annotated
duration and to the frames the features hold. The sample's frames are counted from the segment's first frame,
so its row r starts at frame ``first + stride · r - start_frame``. The samples of a video are read from one
read of its rows.

**Hollywood2** (docs/paper.md §5, `fuel_datasets.hollywood2`): a sample is a whole clip, every row, with its
multi-hot targets; train and test from the ClipSets files, autotrain left out.

Every source of every input becomes a source of OUT (their attributes are kept); a video that lacks one
of them, or whose features have no row, counts as a video without features and is listed, with the
reason, in ``OUT.missing.txt``.

Writing: OUT is built as ``OUT.part`` with `FeatureWriter` (committed sample by sample) and renamed to
OUT when complete, so OUT is never half-written. A killed build is continued by running it again with
the same inputs: ``OUT.part`` records them and is reused only if they are the same files, unchanged.
Memory holds one video's rows at a time. The same inputs and seed give the same file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alstm_core.locking import lock_file
from alstm_core.progress import progress_bar
from alstm_core.storage import SPLITS
from fuel_datasets.activitynet import activitynet_protocol, class_list, load_activitynet_json
from fuel_datasets.errors import DatasetError
from fuel_datasets.feature_inputs import (
    FeatureSet,
    SourceRows,
    VideoMeta,
    cut_rows,
    open_features,
    parse_feature_spec,
)
from fuel_datasets.hollywood2 import read_hollywood2
from fuel_datasets.opening import open_dataset
from fuel_datasets.writer import FeatureWriter

PART_SUFFIX = ".part"
MISSING_SUFFIX = ".missing.txt"


@dataclass(frozen=True)
class BuildSummary:
    """What a build kept and left out. ``missing``: annotated videos without features → why."""

    dataset: str
    out: str
    samples: int
    split_sizes: dict[str, int]
    dropped_short: int
    clipped: int
    missing: dict[str, str]
    missing_file: str | None
    sources: tuple[str, ...]
    resumed: int                # samples already in OUT.part from an interrupted build

    def describe(self) -> str:
        """The one-line summary `alstm dataset build` prints."""
        splits = ", ".join(f"{k} {v}" for k, v in self.split_sizes.items())
        text = f"{self.out}: {self.samples} samples kept ({splits})"
        if self.dataset == "activitynet":
            text += f"; {self.dropped_short} dropped as too short"
        text += f"; {len(self.missing)} annotated videos without features"
        if self.missing_file:
            text += f" (listed in {self.missing_file})"
        if self.dataset == "activitynet":
            text += f"; {self.clipped} segments clipped to the video"
        if self.resumed:
            text += f"; {self.resumed} samples were already written by an interrupted build"
        return text


@dataclass(frozen=True)
class _Sample:
    sample_id: str
    key: str                 # the video's match key
    start_frame: int
    num_frames: int
    fps: float
    targets: object          # class index or (C,) multi-hot
    split: str


def build_activitynet(annotations: str | os.PathLike, features: Sequence[str], out: str | os.PathLike, *,
                      strides: dict[str, int] | int | None = None, seed: int = 0, min_frames: int = 192,
                      keep_videos_together: bool = False, progress: bool = False) -> BuildSummary:
    """Build ``out`` from the annotation file (``activity_net.v1-3.min.json``) and the ``features``
    (``[NAME=]PATH`` each; see the module docstring). ``seed`` draws the valid split, ``min_frames``
    drops short samples (F = 192), ``keep_videos_together`` keeps a video's samples in one split."""
    if min_frames < 1:
        raise DatasetError(f"--min-frames {min_frames}: give at least 1 frame (the paper's F is 192)")
    _check_out(out, [annotations, *features])
    data = load_activitynet_json(annotations)
    feature_set = open_features(features, strides)
    try:
        database = data.get("database") if isinstance(data, dict) else None
        if not isinstance(database, dict):
            activitynet_protocol(data, source=str(annotations))     # raises the protocol's own error
        names = class_list(data, str(annotations))   # from the whole file, whichever videos have features
        present, missing = {}, {}
        for youtube_id, video in database.items():
            key = youtube_id
            if not isinstance(video, dict) or video.get("subset") == "testing":
                present[youtube_id] = video                         # counted (or rejected) by the protocol
                continue
            lacking = feature_set.lacking(key)
            if len(lacking) == len(feature_set.sources):
                missing[youtube_id] = "no features"
            elif lacking:
                missing[youtube_id] = "no " + ", ".join(lacking)
            else:
                present[youtube_id] = video
        if not any(isinstance(v, dict) and v.get("subset") != "testing" for v in present.values()):
            raise DatasetError(f"no video of {annotations} has features in {', '.join(features)} (a video "
                               "'ID' of the annotations is 'ID' or 'v_ID' in the features; e.g. the "
                               f"annotations have '{next(iter(database), '')}', the features "
                               f"'{next(iter(feature_set.ids()), '')}')")
        fps, frames = {}, {}
        for youtube_id, video in present.items():
            if not isinstance(video, dict) or video.get("subset") == "testing":
                continue
            meta = feature_set.meta(youtube_id)
            if min(meta.rows.values()) == 0:
                missing[youtube_id] = "features without rows"
                continue
            frames[youtube_id] = meta.num_frames if meta.num_frames is not None else meta.covered_frames
            fps[youtube_id] = _frame_rate(meta, video, frames[youtube_id])
        present = {k: v for k, v in present.items() if k not in missing}
        protocol = activitynet_protocol({**data, "database": present}, source=str(annotations), fps=fps,
                                        frame_counts=frames, min_frames=min_frames, seed=seed,
                                        keep_videos_together=keep_videos_together, class_names=names)
        samples = [_Sample(s.sample_id, s.youtube_id, s.start_frame, s.num_frames, s.fps, s.label,
                           s.split) for s in protocol.samples]
        identity = _identity("activitynet", annotations, features, seed=seed, min_frames=min_frames,
                             keep_videos_together=keep_videos_together, strides=strides)
        attrs = {"generator": "alstm dataset build activitynet", "annotations": os.path.basename(annotations),
                 "annotations_version": protocol.summary.version}
        resumed = _write(out, feature_set, samples, protocol.class_names, False, identity, attrs, progress)
        summary = protocol.summary
        return _finish("activitynet", out, samples, sum(summary.dropped_short.values()),
                       summary.clipped_segments, missing, feature_set, resumed)
    finally:
        feature_set.close()


def build_hollywood2(clipsets: str | os.PathLike, features: Sequence[str], out: str | os.PathLike, *,
                     strides: dict[str, int] | int | None = None, valid_fraction: float = 0.0, seed: int = 0,
                     progress: bool = False) -> BuildSummary:
    """Build ``out`` from a Hollywood2 ``ClipSets`` folder and the ``features`` of its clips (video ids =
    clip names, e.g. ``actioncliptrain00001``): multi-hot targets, the release's train/test split."""
    _check_out(out, [clipsets, *features])
    protocol = read_hollywood2(clipsets, valid_fraction=valid_fraction, seed=seed)
    feature_set = open_features(features, strides)
    try:
        missing, samples = {}, []
        for sample in protocol.samples:
            key = sample.clip
            lacking = feature_set.lacking(key)
            if lacking:
                missing[sample.clip] = ("no features" if len(lacking) == len(feature_set.sources)
                                        else "no " + ", ".join(lacking))
                continue
            meta = feature_set.meta(key)
            if min(meta.rows.values()) == 0:
                missing[sample.clip] = "features without rows"
                continue
            frames = meta.num_frames if meta.num_frames is not None else meta.covered_frames
            samples.append(_Sample(sample.clip, key, 0, frames, meta.fps,
                                   sample.targets(len(protocol.class_names)), sample.split))
        if not samples:
            raise DatasetError(f"no clip of {clipsets} has features in {', '.join(features)} (ids must be "
                               f"the clip names, e.g. '{protocol.samples[0].clip}'; the features have "
                               f"'{next(iter(feature_set.ids()), '')}')")
        identity = _identity("hollywood2", clipsets, features, seed=seed, valid_fraction=valid_fraction,
                             strides=strides)
        attrs = {"generator": "alstm dataset build hollywood2",
                 "annotations": os.path.basename(str(clipsets))}
        resumed = _write(out, feature_set, samples, protocol.class_names, True, identity, attrs, progress)
        return _finish("hollywood2", out, samples, 0, 0, missing, feature_set, resumed)
    finally:
        feature_set.close()


def _check_out(out, inputs: Sequence) -> None:
    """DatasetError if ``out`` would replace one of the inputs (``[NAME=]PATH`` strings or paths)."""
    target = Path(out).resolve()
    for item in inputs:
        if Path(parse_feature_spec(str(item))[1]).resolve() == target:
            raise DatasetError(f"--out {out} is one of the inputs ({item}); write the dataset to another "
                               "file")


def _frame_rate(meta: VideoMeta, video: dict, frames: int) -> float:
    """Measured fps; else the annotation's per-video ``fps``; else frames over the annotated duration."""
    if meta.fps > 0:
        return meta.fps
    given = video.get("fps")
    if isinstance(given, (int, float)) and not isinstance(given, bool) and given > 0:
        return float(given)
    duration = video.get("duration")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration > 0:
        return frames / float(duration)
    return math.nan            # the protocol rejects the video's missing duration itself


def _identity(dataset: str, annotations, features: Sequence[str], **options) -> str:
    """What OUT.part must have been built from to be continued: the inputs (path, size, mtime) and
    the options, as a digest."""
    def stamp(path: str) -> list:
        path = os.path.abspath(path)
        if os.path.isdir(path):
            return [path, sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(path))]
        st = os.stat(path)
        return [path, st.st_size, st.st_mtime_ns]

    specs = [(name, stamp(path)) for name, path in map(parse_feature_spec, features)]
    payload = json.dumps([dataset, stamp(str(annotations)), specs, options], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _write(out, feature_set: FeatureSet, samples: list[_Sample], class_names: list[str], multilabel: bool,
           identity: str, attrs: dict, progress: bool) -> int:
    """Write the samples to ``out`` through ``out.part``; returns how many an interrupted build had
    already written."""
    out = Path(out)
    if out.is_dir():
        raise DatasetError(f"--out {out} is a folder; give the path of the file to write (e.g. "
                           f"{out / 'activitynet.h5'})")
    part = out.with_name(out.name + PART_SUFFIX)
    with lock_file(out.with_name(out.name + ".lock"),
                   DatasetError(f"another build is writing {out}; wait for it to finish")):
        if part.exists() and _part_identity(part) != identity:
            part.unlink()                 # another build's leftovers: start again
        resumed = _write_part(part, feature_set, samples, class_names, multilabel, identity, attrs, progress)
        os.replace(part, out)
    return resumed


def _write_part(part: Path, feature_set: FeatureSet, samples: list[_Sample], class_names: list[str],
                multilabel: bool, identity: str, attrs: dict, progress: bool) -> int:
    order = _by_video(samples)
    sources = sorted(feature_set.sources)
    with FeatureWriter(part, class_names=class_names, multilabel=multilabel,
                       attrs={**attrs, "build_identity": identity}) as writer:
        resumed = sum(writer.has_video(s.sample_id) for s in samples)
        for source in sources:
            writer.set_source_info(source, **feature_set.sources[source])
        bar = progress_bar(total=len(order), desc="build", unit="video", enabled=progress)
        with bar:
            for key, group in order:
                todo = [s for s in group if not writer.has_video(s.sample_id)]
                if todo:
                    rows = feature_set.read(key)
                    for sample in todo:
                        _add_sample(writer, sample, rows, sources)
                bar.update(1)
    return resumed


def _by_video(samples: Iterable[_Sample]) -> list[tuple[str, list[_Sample]]]:
    groups: dict[str, list[_Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.key, []).append(sample)
    return list(groups.items())


def _add_sample(writer: FeatureWriter, sample: _Sample, rows: dict[str, SourceRows], sources: list[str]):
    features, index = {}, {}
    for source in sources:
        features[source], index[source] = cut_rows(rows[source], sample.start_frame, sample.num_frames)
    writer.add_video(sample.sample_id, features=features, frame_index=index, num_frames=sample.num_frames,
                     fps=sample.fps if sample.fps > 0 else math.nan, targets=sample.targets,
                     split=sample.split)


def _part_identity(part: Path) -> str | None:
    try:
        with open_dataset(part) as ds:
            return ds.attrs.get("build_identity")
    except DatasetError:
        return None


def _finish(dataset: str, out, samples: list[_Sample], dropped: int, clipped: int, missing: dict[str, str],
            feature_set: FeatureSet, resumed: int) -> BuildSummary:
    """The summary; writes ``OUT.missing.txt`` (one "video<TAB>why" line each) when videos lack
    features, and removes a stale one otherwise."""
    side = Path(str(out) + MISSING_SUFFIX)
    if missing:
        tmp = side.with_name(f".{side.name}.tmp{os.getpid()}")
        try:
            tmp.write_text("".join(f"{vid}\t{why}\n" for vid, why in missing.items()), encoding="utf-8")
            os.replace(tmp, side)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        side.unlink(missing_ok=True)
    split_sizes = {split: sum(s.split == split for s in samples) for split in SPLITS}
    return BuildSummary(dataset, str(out), len(samples), split_sizes, dropped, clipped, dict(missing),
                        str(side) if missing else None, tuple(sorted(feature_set.sources)), resumed)
