"""Where fine-tuning's clips and frames come from: the samples of a built dataset, or a list file.

Two sources give the same `SampleTable`, one row per sample: a video file or a frame folder, the range
of frames a clip may start in, the class:

- **A built dataset** (``--data activitynet.h5 --videos DIR``, `dataset_samples`): its ``train`` and
  ``valid`` samples. An ActivityNet file (`alstm dataset build activitynet`) holds each segment's
  length and frame rate but not where it starts in its video, so the segment's start is read from the
  annotation file it was built from (``--annotations``, else the file of that name beside the dataset
  or in the current folder): frame ``⌊max(t0, 0) · fps⌋``, the protocol's rule
  (`fuel_datasets.activitynet`). Any other single-label file (`alstm extract --labels`) holds whole
  videos: frames ``[0, num_frames)``. The video of sample ``v_<id>_<k>`` is ``<id>.<ext>`` or
  ``v_<id>.<ext>`` under ``--videos``; of a whole-video sample, its id.
- **An image list** (``--images train.txt``, `image_samples`): Caffe's ``ImageData`` lines ``<image>
  <label>``, one image per sample (VGG_sce).
- **A C3D list file** (``--list train.lst``, `list_samples`): lines ``<video file or frame folder>
  <start_frame> <label>`` as C3D v1.0's ``VIDEO_DATA`` layer reads them (``video_data_layer.cpp``): a
  frame folder holds ``%06d.jpg`` numbered from 1 and its start frame counts from 1
  (``ReadImageSequenceToVolumeDatum``); a video file's start frame counts from 0, the OpenCV position
  ``ReadVideoToVolumeDatum`` seeks to. Each line is one fixed 16-frame clip. Relative paths are taken
  from the current folder, as Caffe does, else from the list's folder.

A training clip starts at a random frame of its sample's range (C3D's ``use_temporal_jitter``: ``rand %
(frames − 16 + 1)``), drawn by the caller (`video_data`). Bad input is a `FinetuneInputError`: one line
naming the file and line (or sample) and what to do.

Frames are read by `read_frames`: ``(count, H, W, 3)`` uint8 RGB. A video file is decoded with PyAV in
decoding order, as `caffe_models.video.VideoReader` numbers frames; past the first 64 frames the file is
first sought to the keyframe before the range (frames located by their timestamps at the stream's
average rate, exact for constant-frame-rate files), falling back to decoding from the start when the
stream has no timestamps. A frame folder's JPEG files are read with Pillow (OpenCV's decoder may differ by
a grey level here and there).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from PIL import Image

from alstm_core.storage import CHUNK_FRAMES, SPLITS, TARGETS
from caffe_models.errors import VideoError
from caffe_models.video import probe, rotate_frame
from fuel_datasets import open_dataset
from reproduce.errors import ReproduceError
from reproduce.extraction.inputs import VIDEO_EXTENSIONS

CLIP_LENGTH = CHUNK_FRAMES      # frames per clip: C3D's new_length 16
SEEK_AFTER = 64                 # decode from the start below this frame; seek beyond it
FRAME_NAME = "{:06d}.jpg"       # a frame folder's files, numbered from 1
KINDS = ("video", "frames", "image")


class FinetuneInputError(ReproduceError):
    """A list line, sample, video or frame folder fine-tuning cannot use; the message says which and why."""


@dataclass(frozen=True)
class Sample:
    """One sample: ``path`` a video file, a frame folder or an image (``kind`` "video", "frames",
    "image"), frames ``[first, first + frames)`` (0-based, in decoding order) in which a clip may start
    and end, its class, and ``where`` it came from (``train.lst:12``, ``data.h5 sample v_x_0``)."""

    path: str
    kind: str
    first: int
    frames: int
    label: int
    where: str


class SampleTable:
    """Samples held as arrays (a few bytes each, shared with DataLoader workers): ``len``, ``[i]`` →
    `Sample`, ``labels`` (N,) int64."""

    def __init__(self, samples: list[Sample]):
        self.paths = sorted({s.path for s in samples})
        index = {p: i for i, p in enumerate(self.paths)}
        self.path_index = np.array([index[s.path] for s in samples], dtype=np.int32)
        self.kind = np.array([KINDS.index(s.kind) for s in samples], dtype=np.int8)
        self.first = np.array([s.first for s in samples], dtype=np.int64)
        self.frames = np.array([s.frames for s in samples], dtype=np.int64)
        self.labels = np.array([s.label for s in samples], dtype=np.int64)
        self.where = [s.where for s in samples]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:
        return Sample(self.paths[self.path_index[i]], KINDS[self.kind[i]], int(self.first[i]),
                      int(self.frames[i]), int(self.labels[i]), self.where[i])


@dataclass(frozen=True)
class Samples:
    """The training and validation samples of a fine-tuning and the class names (fc8's outputs)."""

    train: SampleTable
    valid: SampleTable
    class_names: tuple[str, ...]
    source: str                     # what they were read from, for the log

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# -- list files ------------------------------------------------------------------------------------
def list_samples(path: str | os.PathLike, *, num_classes: int | None = None, valid: str | None = None,
                 length: int = CLIP_LENGTH) -> Samples:
    """The samples of a C3D list file (one fixed ``length``-frame clip per line; see the module).

    ``num_classes``: fc8's outputs (default: the largest label + 1); ``valid``: a second list of the
    same format for validation clip accuracy (C3D's test list)."""
    train = _read_list(path, length)
    classes = num_classes if num_classes is not None else max(s.label for s in train) + 1
    checked = [_check_label(s, classes) for s in train]
    held_out = [_check_label(s, classes) for s in _read_list(valid, length)] if valid else []
    names = tuple(str(k) for k in range(classes))
    return Samples(SampleTable(checked), SampleTable(held_out), names, os.fspath(path))


def _check_label(sample: Sample, classes: int) -> Sample:
    if not 0 <= sample.label < classes:
        raise FinetuneInputError(f"{sample.where}: label {sample.label} is outside the {classes} classes "
                                 f"(0..{classes - 1}); fix the line or pass --num-classes")
    return sample


def _read_list(path, length: int) -> list[Sample]:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise FinetuneInputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise FinetuneInputError(f"{path}: not a text list file (it is not UTF-8)") from None
    base = os.path.dirname(os.path.abspath(path))
    samples, lengths = [], {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split()
        try:
            if len(fields) != 3:
                raise ValueError
            name, start, label = fields[0], int(fields[1]), int(fields[2])
        except ValueError:
            raise FinetuneInputError(f"{where}: {line.strip()!r} is not '<video or frame folder> "
                                     "<start_frame> <label>' (two integers after the path)") from None
        found = name if os.path.exists(name) else os.path.join(base, name)
        if not os.path.exists(found):
            raise FinetuneInputError(f"{where}: {name}: no such video file or frame folder (relative paths "
                                     "are read from the current folder, else from the list's folder)")
        folder = os.path.isdir(found)
        first = start - 1 if folder else start
        if first < 0:
            raise FinetuneInputError(f"{where}: start frame {start}: a frame folder's frames are numbered "
                                     "from 1, a video's from 0")
        if folder:
            for k in (first, first + length - 1):
                if not os.path.isfile(os.path.join(found, FRAME_NAME.format(k + 1))):
                    raise FinetuneInputError(
                        f"{where}: {found} has no {FRAME_NAME.format(k + 1)}: a clip needs the {length} "
                        f"frames {start}..{start + length - 1}; the folder is too short for this start")
        else:
            if found not in lengths:
                lengths[found] = _header_frames(found, where)
            if lengths[found] and first + length > lengths[found]:
                raise FinetuneInputError(f"{where}: {found} has {lengths[found]} frames, too short for "
                                         f"{length} frames from frame {start}; lower the start frame")
        samples.append(Sample(found, "frames" if folder else "video", first, length, label, where))
    if not samples:
        raise FinetuneInputError(f"{path}: no line; write '<video or frame folder> <start_frame> <label>' "
                                 "lines")
    return samples


def image_samples(path: str | os.PathLike, *, num_classes: int | None = None,
                  valid: str | None = None) -> Samples:
    """The samples of a Caffe ``ImageData`` list (``image_data_layer.cpp``): lines ``<image> <label>``,
    the path being everything before the last space; one image per sample (VGG_sce's scenes)."""
    train = _read_image_list(path)
    classes = num_classes if num_classes is not None else max(s.label for s in train) + 1
    checked = [_check_label(s, classes) for s in train]
    held_out = [_check_label(s, classes) for s in _read_image_list(valid)] if valid else []
    return Samples(SampleTable(checked), SampleTable(held_out), tuple(str(k) for k in range(classes)),
                   os.fspath(path))


def _read_image_list(path) -> list[Sample]:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FinetuneInputError(f"{path}: cannot be read as a text list ({exc})") from None
    base = os.path.dirname(os.path.abspath(path))
    samples = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        name, _, label = line.strip().rpartition(" ")
        try:
            label = int(label)
        except ValueError:
            raise FinetuneInputError(f"{where}: {line.strip()!r} is not '<image> <label>' (an integer label "
                                     "after the last space)") from None
        found = name if os.path.isfile(name) else os.path.join(base, name)
        if not name or not os.path.isfile(found):
            raise FinetuneInputError(f"{where}: {name or '(no path)'}: no such image (relative paths are "
                                     "read from the current folder, else from the list's folder)")
        samples.append(Sample(found, "image", 0, 1, label, where))
    if not samples:
        raise FinetuneInputError(f"{path}: no line; write '<image> <label>' lines")
    return samples


def _header_frames(path: str, where: str) -> int:
    """The container's frame count, or its duration times its rate where it has none (0 if neither:
    checked when decoding)."""
    try:
        return probe(path).frames
    except VideoError as exc:
        raise FinetuneInputError(f"{where}: {exc}") from None


# -- built datasets --------------------------------------------------------------------------------
def dataset_samples(data: str | os.PathLike, videos: str | os.PathLike, *,
                    annotations: str | os.PathLike | None = None, length: int = CLIP_LENGTH) -> Samples:
    """The ``train`` and ``valid`` samples of a built dataset, with their videos under ``videos`` (see
    the module for how a sample finds its video and frames). Samples shorter than ``length`` frames are
    an error."""
    data, videos = os.fspath(data), os.fspath(videos)
    if not os.path.isdir(videos):
        raise FinetuneInputError(f"--videos {videos}: no such folder (give the folder of the dataset's "
                                 "videos)")
    files = _video_files(videos)
    with open_dataset(data) as ds:
        if ds.multilabel:
            raise FinetuneInputError(f"{data} is multi-label; fine-tuning trains a softmax over one class "
                                     "per clip (use a single-label file, e.g. ActivityNet's)")
        generator = str(ds.attrs.get("generator", ""))
        starts = None
        if generator.startswith("alstm dataset build activitynet"):
            starts = _segment_starts(data, annotations, ds.attrs.get("annotations"))
        tables = []
        for split in SPLITS[:2]:                     # train, valid
            rows = [_dataset_sample(data, vid, ds.read(TARGETS, vid), ds.num_frames(vid), ds.fps(vid), starts,
                                    files, videos, length) for vid in ds.splits.get(split, [])]
            tables.append(SampleTable(rows))
        names = tuple(ds.class_names)
    if not len(tables[0]):
        raise FinetuneInputError(f"{data} has no train sample to fine-tune on")
    return Samples(tables[0], tables[1], names, data)


def _dataset_sample(data, vid, label, frames, fps, starts, files, videos, length) -> Sample:
    where = f"{data} sample {vid}"
    if label is None:
        raise FinetuneInputError(f"{where} has no label; rebuild the file with labels")
    if starts is None:
        key, first = vid, 0
    else:
        key, _, k = vid.rpartition("_")
        segment = starts.get((key.removeprefix("v_"), k))
        if segment is None:
            raise FinetuneInputError(f"{where}: no annotation {k} of video {key!r} in the annotation file; "
                                     "pass --annotations with the file the dataset was built from")
        first = math.floor(max(segment, 0.0) * fps + 1e-6)
    path = files.get(key) or files.get(key.removeprefix("v_")) or files.get("v_" + key)
    if path is None:
        bare = key.removeprefix("v_")
        raise FinetuneInputError(f"{where}: no video {bare}.<ext> or v_{bare}.<ext> in "
                                 f"{videos} (extensions {' '.join(VIDEO_EXTENSIONS)})")
    if frames < length:
        raise FinetuneInputError(f"{where} has {frames} frames, too short for one {length}-frame clip; "
                                 "rebuild the dataset with --min-frames 16 or more")
    return Sample(path, "video", first, frames, label, where)


def _video_files(videos: str) -> dict[str, str]:
    found = {}
    for root, dirs, names in os.walk(videos):
        dirs.sort()
        for name in sorted(names):
            stem, ext = os.path.splitext(name)
            if ext.lower() in VIDEO_EXTENSIONS:
                found.setdefault(stem, os.path.join(root, name))
    return found


def _segment_starts(data: str, given, recorded) -> dict[tuple[str, str], float]:
    """{(youtube id without v_, annotation index): segment start in seconds} of the annotation file."""
    beside = os.path.join(os.path.dirname(os.path.abspath(data)), str(recorded))
    candidates = [os.fspath(given)] if given else [beside, str(recorded)] if recorded else []
    path = next((c for c in candidates if os.path.isfile(c)), None)
    if path is None:
        looked = f" (looked for {', '.join(candidates)})" if candidates else ""
        raise FinetuneInputError(f"{data} records each segment's length but not where it starts in its "
                                 "video; pass --annotations with the annotation file it was built "
                                 f"from{looked}")
    try:
        with open(path, encoding="utf-8") as f:
            database = json.load(f)["database"]
        return {(vid.removeprefix("v_"), str(k)): float(a["segment"][0])
                for vid, video in database.items() for k, a in enumerate(video.get("annotations", []))}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise FinetuneInputError(f"--annotations {path}: not an ActivityNet annotation file "
                                 f"({exc})") from None


# -- reading frames --------------------------------------------------------------------------------
def read_frames(sample: Sample, first: int, count: int) -> np.ndarray:
    """Frames ``first .. first + count − 1`` (0-based) of the sample's video or folder: (count, H, W, 3)
    uint8 RGB. FinetuneInputError naming the sample when they cannot all be read."""
    try:
        if sample.kind == "image":
            return _read_image(sample, sample.path)[None]
        if sample.kind == "frames":
            return np.stack([_read_image(sample, os.path.join(sample.path, FRAME_NAME.format(k + 1)))
                             for k in range(first, first + count)])
        frames = _decode(sample.path, first, count, seek=first >= SEEK_AFTER)
    except VideoError as exc:
        raise FinetuneInputError(f"{sample.where}: {exc}") from None
    if len(frames) < count:
        raise FinetuneInputError(f"{sample.where}: {sample.path} ends after {first + len(frames)} frames, "
                                 f"before frame {first + count - 1}; the sample is longer than its video")
    return np.stack(frames)


def _read_image(sample: Sample, path: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))            # (H, W, 3) uint8, writable
    except OSError as exc:
        raise FinetuneInputError(f"{sample.where}: {path} cannot be read ({exc})") from None


def _decode(path: str, first: int, count: int, *, seek: bool) -> list[np.ndarray]:
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoError(f"{path}: cannot open as a video ({exc})") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate, base = stream.average_rate, stream.time_base
        origin = stream.start_time or 0
        if seek and rate and base:
            target = origin + int(Fraction(first) / Fraction(rate) / Fraction(base))
            try:
                container.seek(target, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError:
                seek = False
        else:
            seek = False
        out: list[np.ndarray] = []
        size = rotation = None
        index = -1
        try:
            for frame in container.decode(stream):
                if seek:
                    if frame.pts is None:
                        return _decode(path, first, count, seek=False)
                    index = round((frame.pts - origin) * Fraction(base) * Fraction(rate))
                    if not out and index > first:       # landed past the range: decode from the start
                        return _decode(path, first, count, seek=False)
                else:
                    index += 1
                if size is None:
                    size = (frame.width, frame.height)
                    rotation = int(round((frame.rotation or 0) / 90.0)) * 90
                if index < first:
                    continue
                rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                out.append(rotate_frame(rgb, rotation))
                if len(out) == count:
                    break
        except av.FFmpegError as exc:
            if len(out) < count:
                raise VideoError(f"{path}: decoding stopped before frame {first + count - 1} "
                                 f"({exc})") from None
        return out
