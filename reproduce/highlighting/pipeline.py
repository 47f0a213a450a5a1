"""Highlight a video with trained checkpoints (docs/paper.md §7): ``highlight_video`` → `VideoHighlights`.

    h = highlight_video("match.mp4", ["runs/act_fc8/best.pt"], c3d="c3d.caffemodel",
                        vgg={"act": "act.caffemodel"})
    h.top_classes, h.moments              # typed results (reproduce.highlighting.results)
    h.write_json("out/highlights.json"); h.write_summary_video("out/clip.mp4")
    h.write_report("out/", clip="out/clip.mp4")    # the page plays out/video.mp4, a browser copy

The video is decoded once, in order: the features each checkpoint reads (c3d_<layer>, vgg_<family>_<layer>)
are extracted chunk by chunk and the models run on windows of F frames (the checkpoint's) every ``stride``
frames (default F: non-overlapping), plus one last window ending at the last complete 16-frame chunk, so
the whole video is read (``reproduce.highlighting.windows``). Memory stays bounded whatever the video's
length: features are dropped once no window needs them, and only small JPEG thumbnails of the attended
frames are kept, in a temporary file; the report's frames are loaded back at the end. Class scores are
averaged over the windows and over the models of an ensemble. Videos shorter than one window are refused.

Weights: a network given no file (and C3D given no mean cube) uses the one recorded with the checkpoint's
training features (in their feature file, if it is still there): found with its sha256 where extraction
read it, or by name in ``weights_dirs`` and the checkpoints' folders; ``allow_random_weights`` runs the
rest on random weights (tests only: the result means nothing). ``highlight_features`` does the same from
the stored features of a feature file (the figure scripts).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import NamedTuple

import numpy as np
import torch

from alstm_core.progress import progress_bar
from alstm_core.storage import ATTENDED_STRIDE, CHUNK_FRAMES
from caffe_models import RandomWeightsWarning
from caffe_models.errors import VideoError
from caffe_models.prefetch import decode_in_background
from caffe_models.video import probe
from reproduce.errors import ReproduceError, python_warning
from reproduce.extraction.networks import extractor_for, find_file, load_networks, recorded_files
from reproduce.highlighting.figures import model_label, report_frames
from reproduce.highlighting.report import write_report
from reproduce.highlighting.results import (
    DEFAULT_SETTINGS,
    HighlightedVideo,
    Highlights,
    HighlightSettings,
    ModelInfo,
    summarize,
)
from reproduce.highlighting.summary_video import write_summary_video
from reproduce.highlighting.thumbnails import ThumbnailStore, jpeg_thumbnail
from reproduce.highlighting.windows import (
    Reading,
    WindowAssembler,
    check_reading,
    check_window,
    extracted_source,
    score_windows,
    short_video_error,
)
from reproduce.runs.checkpoint import checkpoint_path, load_model
from reproduce.runtime.device import resolve_device


class LoadedModel(NamedTuple):
    """A checkpoint ready to read windows: its path, model (eval mode), meta and what it reads."""

    path: str
    model: torch.nn.Module
    meta: dict
    reading: Reading

    def info(self) -> ModelInfo:
        r = self.reading
        return ModelInfo(os.path.abspath(self.path), model_label(r.input_source, r.attended_source),
                         r.input_source, r.attended_source, r.frames, r.steps, r.attended_per_step,
                         self.model.variant)


def load_highlight_models(paths: Sequence[str], device: str = "cpu") -> list[LoadedModel]:
    """The checkpoints (a folder: its best.pt); an ensemble's must share classes, window length and kind
    of scores (multi-label or not)."""
    loaded: list[LoadedModel] = []
    for path in paths:
        path = checkpoint_path(path)
        model, meta = load_model(path, device=device)
        spec = meta["spec"]
        reading = Reading(meta["input_source"], meta["attended_source"], int(spec["frames"]),
                          int(spec["steps"]), int(spec["attended_per_step"]))
        if loaded:
            first = loaded[0]
            if meta["class_names"] != first.meta["class_names"]:
                raise ReproduceError(f"{path} and {first.path} have different classes: no ensemble")
            if reading.frames != first.reading.frames:
                raise ReproduceError(f"{path} reads windows of {reading.frames} frames, {first.path} of "
                                     f"{first.reading.frames}: an ensemble needs one window length")
            if model.multilabel != first.model.multilabel:
                raise ReproduceError(f"{path} and {first.path}: multi-label and multi-class scores cannot "
                                     "be averaged")
        loaded.append(LoadedModel(path, model, meta, reading))
    return loaded


@dataclass(frozen=True)
class VideoHighlights(Highlights):
    """`Highlights` of a decoded video, with the thumbnails its report shows ({frame: (h, w, 3) uint8})."""

    thumbnails: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def write_report(self, folder: str, *, clip: str | None = None, warn: Callable[[str], None] | None = None,
                     progress: bool = False) -> list[str]:
        """report.html, timeline.png, figure2.png, figure3.png and the browser copy of the video that the
        page plays (video.mp4, `reproduce.highlighting.browser_video`) into ``folder`` (created); their
        paths. ``clip``: the highlight clip (``write_summary_video``'s file), the player's second source.
        A copy that cannot be made leaves a page without a player that says why (``warn`` hears it)."""
        os.makedirs(folder, exist_ok=True)
        return write_report(folder, self, self.thumbnails, video=self.video.path, clip=clip, warn=warn,
                            progress=progress)

    def write_summary_video(self, path: str, *, progress: bool = False) -> int:
        """The highlighted moments, in time order, as an H.264 video at ``path``; the frames written."""
        if not self.moments:
            raise ReproduceError(f"no highlighted moment, so no clip: lower the threshold (now "
                                 f"{self.settings.threshold:g})")
        return write_summary_video(self.video.path, [(m.start_frame, m.end_frame) for m in self.moments],
                                   path, progress=progress)


class _VideoExtractor(NamedTuple):
    extractor: object                 # caffe_models.extract.FeatureExtractor
    strides: dict[str, int]           # source → frames between its rows
    random: list[str]                 # networks on random weights


def _video_extractor(loaded: Sequence[LoadedModel], *, c3d, c3d_mean, vgg, weights_dirs,
                     allow_random_weights, weights_seed, device, precision, warn) -> _VideoExtractor:
    """The networks the checkpoints read, with their weight files, as one extractor."""
    names, files = {}, []           # source → its network and layer; (network, (weights, mean)) recorded
    for m in loaded:
        for source in filter(None, (m.reading.input_source, m.reading.attended_source)):
            try:
                names[source] = extracted_source(source)
            except ReproduceError as exc:
                raise ReproduceError(f"{m.path}: {exc}") from None
            files.append((names[source].network, recorded_files(m.meta, source)))
    folders = list(weights_dirs) + sorted({os.path.dirname(os.path.abspath(m.path)) for m in loaded})
    given = {"c3d": c3d} | {f"vgg_{family}": path for family, path in (vgg or {}).items()}

    def recorded(network: str, kind: int) -> set:
        return {pair[kind] for n, pair in files if n == network and pair[kind]}

    def weights(network: str) -> str | None:
        return find_file(network, given.get(network), recorded(network, 0), folders, warn)

    networks = {n.network for n in names.values()}
    families = sorted(n.family for n in names.values() if n.family)
    nets = load_networks(weights("c3d") if "c3d" in networks else False,
                         {f: weights(f"vgg_{f}") for f in families}, weights_seed)
    if nets.random and not allow_random_weights:
        raise ReproduceError(
            f"no weight file for {', '.join(nets.random)} (none given, none recorded with the checkpoint "
            "found): give --c3d FILE / --vgg FAMILY=FILE or --weights-dir DIR, or --allow-random-weights "
            "(tests)")
    every_8 = any(m.reading.attended_source and names[m.reading.attended_source].family
                  and m.reading.attended_stride % CHUNK_FRAMES for m in loaded)   # some model attends T = 2N
    attended_stride = ATTENDED_STRIDE if every_8 else CHUNK_FRAMES
    if "c3d" in networks:
        c3d_mean = find_file("c3d", c3d_mean, recorded("c3d", 1), folders, warn, "mean file")
    layers = sorted({n.layer for n in names.values()})
    extractor = extractor_for(nets, layers, c3d_mean=c3d_mean, flip=False, device=device,
                              precision=precision, attended_stride=attended_stride)
    made = extractor.sources
    for m in loaded:
        for source, dim in ((m.reading.input_source, m.model.input_dim),
                            (m.reading.attended_source, m.model.attended_dim)):
            if source and made[source].dim != dim:
                raise ReproduceError(
                    f"{m.path} reads {source} of dimension {dim}, but the {made[source].network} network "
                    f"gives {made[source].dim}: the checkpoint was trained on other features (e.g. the "
                    "synthetic benchmark), which cannot be extracted from a video")
    strides = {s: n.stride if n.network == "c3d" else attended_stride for s, n in names.items()}
    for m in loaded:
        check_reading(m.reading, strides, m.path)
    return _VideoExtractor(extractor, strides, nets.random)


class _Stream(NamedTuple):
    windows: list                     # reproduce.highlighting.windows.WindowResult, in order
    times: np.ndarray                 # (num_frames,) seconds from the first frame
    num_frames: int
    problems: list[str]


def _stream(path: str, loaded: Sequence[LoadedModel], ex: _VideoExtractor, store: ThumbnailStore,
            stride: int | None, batch_size: int, device: str, progress: bool) -> _Stream:
    """Decode ``path`` once: features → windows → models, thumbnails of the attended frames → ``store``."""
    models, readings = [m.model for m in loaded], [m.reading for m in loaded]
    assembler = WindowAssembler(ex.strides, readings[0].frames, stride)
    shown = [r.attended_stride for r in readings if r.attended_source]   # no attention: no frames
    step = min(shown or [CHUNK_FRAMES])

    def prepare(chunk):  # in the decode thread: the clip tensor, thumbnails and times
        picks = range(-chunk.start % step, len(chunk.frames), step) \
            if len(chunk.frames) == CHUNK_FRAMES and shown else ()
        thumbs = [(chunk.start + i, jpeg_thumbnail(chunk.frames[i])) for i in picks]
        return ex.extractor.prepare(chunk), thumbs, chunk.timestamps

    def run(clips, covered):  # features of complete chunks → the windows they complete, through the models
        rows = ex.extractor(clips)
        ready = assembler.add({s: rows[s] for s in ex.strides}, covered)
        return score_windows(models, readings, ready, ex.strides, device)

    results, times, pending, covered = [], [], [], 0
    decoded = decode_in_background([path], prepare, CHUNK_FRAMES, workers=1, queue_size=4)
    try:
        video = next(decoded)
        if video.error is not None:
            raise VideoError(video.error)
        with progress_bar(total=video.info.frames or None, unit="frame", desc="highlight",
                          enabled=progress) as bar:
            for clip, thumbs, stamps in video.items:
                for frame, data in thumbs:
                    store.add(frame, data)
                times.append(stamps)
                bar.update(len(stamps))
                if clip is not None:
                    pending.append(clip)
                if pending and (len(pending) == batch_size or clip is None):
                    covered += CHUNK_FRAMES * len(pending)
                    results += run(pending, covered)
                    pending = []
            if pending:
                covered += CHUNK_FRAMES * len(pending)
                results += run(pending, covered)
        num_frames = int(video.report.get("frames_decoded", sum(len(t) for t in times)))
        results += score_windows(models, readings, assembler.finish(num_frames), ex.strides, device)
    finally:
        decoded.close()
    stamps = np.concatenate(times)
    return _Stream(results, stamps - stamps[0], num_frames, list(video.report.get("problems", [])))


def check_writable(folder: str, what: str = "files") -> None:
    """Create ``folder`` and make sure ``what`` can be written in it, before any long work."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ReproduceError(f"cannot write {what} to {folder}: {exc.strerror or exc}") from None


def highlight_video(video: str, checkpoints: Sequence[str], *, c3d: str | None = None,
                    c3d_mean: str | None = None, vgg: Mapping[str, str] | None = None,
                    weights_dirs: Sequence[str] = (), allow_random_weights: bool = False,
                    weights_seed: int = 0, stride: int | None = None,
                    settings: HighlightSettings = DEFAULT_SETTINGS, device: str | None = None,
                    precision: str = "auto", clip_batch: int | None = None, scratch_dir: str | None = None,
                    writable: Sequence[str] = (), progress: bool = False,
                    warn: Callable[[str], None] | None = None) -> VideoHighlights:
    """Classify ``video`` with the checkpoint(s) (several: an ensemble) and find the frames that drove it.

    ``c3d``, ``c3d_mean``, ``vgg`` ({family: .caffemodel}): weight files of the feature networks (looked
    up in ``weights_dirs`` when not given, see the module docstring). ``stride``: frames between window
    starts, a multiple of 16 (None: the window length). ``settings``: top classes and moments.
    ``precision`` of the feature networks (`reproduce.runtime.precision`; auto: bfloat16/float16 where
    native and within 1% of float32). ``clip_batch``: 16-frame clips per network call (default cpu 4,
    cuda 32). ``scratch_dir``: where the thumbnails wait (default: the system's temporary folder).
    ``writable``: folders checked (created) once the inputs are, before the long work: where the results
    will go.
    ``warn`` hears the warnings (random weights, decoder problems, weight files other than the recorded
    ones; default: `warnings.warn`)."""
    settings_ok = settings.top >= 1 and settings.moments >= 0 and settings.merge_gap_cells >= 0
    if not settings_ok or not settings.threshold > 0:
        raise ReproduceError("--top must be ≥ 1, --moments and --merge-gap ≥ 0, --threshold > 0")
    if not os.path.isfile(video):
        raise ReproduceError(f"{video}: no such file")
    warn = warn or python_warning
    device = str(resolve_device(device))
    info = probe(video)                                          # not a video / no frame: VideoError
    loaded = load_highlight_models(checkpoints, device)
    frames = loaded[0].reading.frames
    check_window(frames, stride)
    if info.frames and info.frames < 0.9 * frames:               # clearly short by the header's count
        raise short_video_error(info.frames, frames)             # (estimates too): before any work
    for folder in writable:
        check_writable(folder)
    ex = _video_extractor(loaded, c3d=c3d, c3d_mean=c3d_mean, vgg=vgg, weights_dirs=weights_dirs,
                          allow_random_weights=allow_random_weights, weights_seed=weights_seed, device=device,
                          precision=precision, warn=warn)
    if ex.random:
        warn(f"{', '.join(ex.random)} run on RANDOM weights: the classes and highlights mean nothing")
    batch_size = clip_batch or (32 if device.startswith("cuda") else 4)
    if batch_size < 1:
        raise ReproduceError("--clip-batch must be at least 1")
    store = ThumbnailStore(scratch_dir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)     # said once, above
            stream = _stream(video, loaded, ex, store, stride, batch_size, device, progress)
        for problem in stream.problems:
            warn(f"{video}: {problem}")
        where = HighlightedVideo(os.path.abspath(video), info.fps, info.width, info.height, info.rotation,
                          tuple(stream.problems))
        found = summarize(stream.windows, [m.reading for m in loaded], loaded[0].meta["class_names"],
                          stream.times, stream.num_frames, video=where, models=[m.info() for m in loaded],
                          settings=settings,
                          extractors={n: net.weights_description
                                      for n, net in ex.extractor.networks().items()},
                          random_weights=tuple(ex.random), precision=ex.extractor.describe_precision())
        thumbnails = store.load(report_frames(found))
    finally:
        store.close()
    return VideoHighlights(**{f.name: getattr(found, f.name) for f in fields(found)}, thumbnails=thumbnails)


def highlight_features(ds, video_id: str, loaded: Sequence[LoadedModel], *,
                       settings: HighlightSettings = DEFAULT_SETTINGS, device: str = "cpu") -> Highlights:
    """`Highlights` of a video of an open feature file (``fuel_datasets.open_dataset``) from its stored
    features; times from its fps (30 when unknown). No thumbnails: the caller has the frames, if any."""
    readings = [m.reading for m in loaded]
    sources = {s for r in readings for s in (r.input_source, r.attended_source) if s}
    strides, rows = {}, {}
    for source in sources:
        index = ds.frame_index(source, video_id)
        step = int(index[1] - index[0]) if len(index) > 1 else CHUNK_FRAMES
        if index[0] != 0 or np.any(np.diff(index) != step):
            raise ReproduceError(f"{video_id}: rows of {source} are not evenly spaced from frame 0")
        strides[source], rows[source] = step, ds.read(source, video_id)
    for m in loaded:
        check_reading(m.reading, strides, m.path)
    num_frames, fps = ds.num_frames(video_id), ds.fps(video_id)
    fps = fps if fps > 0 else 30.0
    assembler = WindowAssembler(strides, readings[0].frames)
    windows = assembler.add(rows, num_frames) + assembler.finish(num_frames)
    results = score_windows([m.model for m in loaded], readings, windows, strides, device)
    times = np.arange(num_frames) / fps
    return summarize(results, readings, loaded[0].meta["class_names"], times, num_frames,
                     video=HighlightedVideo(video_id, fps), models=[m.info() for m in loaded],
                     settings=settings)
