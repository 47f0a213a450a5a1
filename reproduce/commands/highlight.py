"""Classify a video and show the frames that drove the label (SPEC §7): report.html, highlights.json, PNGs.

The video is decoded once, in order: the features each checkpoint reads (c3d_<layer>, vgg_<family>_<layer>)
are extracted chunk by chunk and the model(s) run on windows of F frames (the checkpoint's, 192 by
default) every --stride frames (default F: non-overlapping), plus one last window ending at the last
complete 16-frame chunk so that the whole video is read. Memory stays bounded whatever the video's length:
features are dropped once no window needs them, and only small thumbnails of the attended frames are kept,
in a temporary file. Class scores are averaged over the windows, and over the models of an ensemble
(several --checkpoint). Videos shorter than one window are refused (the paper excludes them).

REPORT_DIR receives:
  highlights.json  top classes; per window, the attention weights of every step and their average per
                   attended frame, with absolute frame indices and timestamps (s); per attended frame,
                   the weight averaged over windows; the highlighted moments (start/end times)
  report.html      self-contained page: top classes, timeline, frames of highest and lowest attention
                   (Fig. 2), a strip of frames whose brightness follows the attention (Fig. 3)
  timeline.png, figure2.png, figure3.png
--clip OUT.mp4 also writes the highlighted moments, in time order, as a short video.

Weights: as `alstm extract` (--c3d, --c3d-mean, --vgg FAMILY=FILE). A network given no file is looked up
by the file name and sha256 recorded with the checkpoint's training features (in the checkpoint, or in the
feature file it was trained on if that is still there) in the --weights-dir folders and the checkpoint's
folder. --allow-random-weights runs the rest on random weights (tests only: the result means nothing).

examples:
  alstm highlight match.mp4 --checkpoint runs/act_fc8/best.pt --out match_report \\
      --c3d conv3d_deepnetA_sport1m_iter_1900000 --vgg act=vgg_act.caffemodel
  alstm highlight match.mp4 --checkpoint runs/act_fc8 runs/obj_fc8 --out report --weights-dir weights/
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import warnings
from fractions import Fraction

import numpy as np

from reproduce.atomic import write_json
from reproduce.commands.common import add_network_arguments
from reproduce.commands.extract import VGG_FAMILIES, new_c3d, new_vgg
from reproduce.errors import ReproduceError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", metavar="VIDEO", help="video file")
    parser.add_argument("--checkpoint", nargs="+", action="extend", required=True, metavar="CKPT",
                        help="checkpoint(s) of `alstm train` (a folder: its best.pt); several: an ensemble")
    parser.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for the report (created)")
    parser.add_argument("--stride", type=int, default=None,
                        help="frames between window starts, a multiple of 16 (default: the window length)")
    parser.add_argument("--top", type=int, default=5, help="classes listed (default 5)")
    parser.add_argument("--moments", type=int, default=5, help="highlighted moments kept (default 5)")
    parser.add_argument("--threshold", type=float, default=1.5,
                        help="attention, in multiples of the uniform weight 1/T, that highlights a frame "
                        "(default 1.5)")
    parser.add_argument("--merge-gap", type=int, default=0,
                        help="attended frames below the threshold that may separate two parts of one moment")
    parser.add_argument("--clip", metavar="OUT.mp4", default=None, help="write the moments as a video")
    nets = parser.add_argument_group("feature extractors")
    nets.add_argument("--c3d", metavar="WEIGHTS", default=None, help="C3D .caffemodel")
    nets.add_argument("--c3d-mean", metavar="MEAN", default=None, help="C3D mean cube .binaryproto")
    nets.add_argument("--vgg", nargs="+", action="extend", default=[], metavar="FAMILY=WEIGHTS",
                      help=f"VGG-19 .caffemodel per family ({', '.join(VGG_FAMILIES)})")
    nets.add_argument("--weights-dir", action="append", default=[], metavar="DIR",
                      help="folder to search for the weight files recorded with the checkpoint")
    nets.add_argument("--allow-random-weights", action="store_true",
                      help="networks without weights run on random weights (tests only)")
    nets.add_argument("--weights-seed", type=int, default=0,
                      help="seed of the random weights of --allow-random-weights (default 0)")
    run_ = parser.add_argument_group("running")
    run_.add_argument("--device", default=None,
                      help="cpu or cuda[:K] (default: $ALSTM_DEVICE, else cuda if available)")
    add_network_arguments(run_)
    run_.add_argument("--quiet", action="store_true", help="no progress bar")


# ------------------------------------------------------------------------------------------------
# Checkpoints and networks
# ------------------------------------------------------------------------------------------------


def load_models(paths: list[str], device):
    """[(path, model, meta, Reading)] of the checkpoints; they must share classes and window length."""
    from reproduce import load_model
    from reproduce.highlight import Reading, parse_source

    loaded = []
    for path in paths:
        path = os.path.join(path, "best.pt") if os.path.isdir(path) else path
        model, meta = load_model(path, device=device)
        spec = meta["spec"]
        reading = Reading(meta["input_source"], meta["attended_source"], int(spec["frames"]),
                          int(spec["steps"]), int(spec["attended_per_step"]))
        for source in filter(None, (reading.input_source, reading.attended_source)):
            try:
                parse_source(source)
            except ReproduceError as exc:
                raise ReproduceError(f"{path}: {exc}") from None
        if loaded:
            first_path, _, first_meta, first = loaded[0]
            if meta["class_names"] != first_meta["class_names"]:
                raise ReproduceError(f"{path} and {first_path} have different classes: no ensemble")
            if reading.frames != first.frames:
                raise ReproduceError(f"{path} reads windows of {reading.frames} frames, {first_path} of "
                                     f"{first.frames}: an ensemble needs one window length")
            if model.multilabel != loaded[0][1].multilabel:
                raise ReproduceError(f"{path} and {first_path}: multi-label and multi-class scores cannot "
                                     "be averaged")
        loaded.append((path, model, meta, reading))
    return loaded


_RECORDED = re.compile(r"^(?P<name>.+) \(sha256 (?P<sha>[0-9a-f]{64})\)$")


def recorded_weights(meta: dict, source: str) -> tuple[str, str] | None:
    """(file name, sha256) of the weights that made ``source`` for this checkpoint's training data: from
    the checkpoint's ``source_info`` if it has one, else from its feature file if that still exists."""
    info = (meta.get("source_info") or {}).get(source)
    data = (meta.get("config") or {}).get("data")
    if info is None and data and os.path.isfile(data):
        from fuel_datasets import open_dataset

        try:
            with open_dataset(data) as ds:
                info = ds.source_info(source) if source in ds.sources else None
        except Exception:  # an unreadable old feature file only means "nothing recorded"
            info = None
    match = _RECORDED.match(str((info or {}).get("weights", "")))
    return (match["name"], match["sha"]) if match else None


def find_weights(network: str, given: str | None, recorded: set[tuple[str, str]], folders: list[str]):
    """The weight file of ``network``: the flag's, else a recorded one found (with its sha256) in
    ``folders``; None if none. Warns when a given file is not the one the training features used."""
    from caffe_models.caffemodel import file_sha256

    if given:
        if recorded and file_sha256(given) not in {sha for _, sha in recorded}:
            names = ", ".join(sorted(name for name, _ in recorded))
            print(f"alstm highlight: warning: {given} is not the {network} weight file the checkpoint's "
                  f"features were made with ({names}); its features may not match", file=sys.stderr)
        return given
    for name, sha in sorted(recorded):
        for folder in folders:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and file_sha256(path) == sha:
                return path
    return None


def build_extractor(args, loaded, device: str):
    """The FeatureExtractor of the networks the checkpoints read, and {source: frames between rows}."""
    from caffe_models import load_caffemodel, load_mean
    from caffe_models.extract import FeatureExtractor
    from reproduce.highlight import CHUNK_FRAMES, parse_source

    sources = {s for _, _, _, r in loaded for s in (r.input_source, r.attended_source) if s}
    networks = {parse_source(s).network for s in sources}
    layers = sorted({parse_source(s).layer for s in sources})
    unknown = sorted(n for n in networks if n != "c3d" and n[4:] not in VGG_FAMILIES)
    if unknown:
        raise ReproduceError(f"no extractor for {', '.join(unknown)}: VGG-19 families are "
                             f"{', '.join(VGG_FAMILIES)}")
    given = {"c3d": args.c3d}
    for item in args.vgg:
        family, _, path = item.partition("=")
        if family not in VGG_FAMILIES or not path:
            families = ", ".join(VGG_FAMILIES)
            raise ReproduceError(f"--vgg {item}: write FAMILY=WEIGHTS, FAMILY one of {families}")
        given[f"vgg_{family}"] = path
    folders = list(args.weights_dir) + sorted({os.path.dirname(os.path.abspath(p)) for p, *_ in loaded})
    nets, missing = {}, []
    for k, network in enumerate(sorted(networks)):
        recorded = {w for _, _, meta, _ in loaded for s in sources if parse_source(s).network == network
                    for w in [recorded_weights(meta, s)] if w}
        path = find_weights(network, given.get(network), recorded, folders)
        seed = args.weights_seed + k
        net = new_c3d(seed) if network == "c3d" else new_vgg(VGG_FAMILIES[network[4:]], seed)
        if path:
            load_caffemodel(net, path)
        else:
            missing.append(network)
        nets[network] = net
    if missing and not args.allow_random_weights:
        raise ReproduceError(
            f"no weight file for {', '.join(missing)} (none given, none recorded with the checkpoint found): "
            "give --c3d FILE / --vgg FAMILY=FILE or --weights-dir DIR, or --allow-random-weights (tests)")
    attended_stride = 8 if any(r.attended_source and r.attended_source.startswith("vgg_")
                               and r.attended_stride % 16 for _, _, _, r in loaded) else 16
    kwargs = {}
    if args.c3d_mean:
        kwargs = {"c3d_mean": load_mean(args.c3d_mean), "mean_description": os.path.basename(args.c3d_mean)}
    from reproduce.precision import network_autocast_dtype

    extractor = FeatureExtractor(nets.get("c3d"), {n[4:]: v for n, v in nets.items() if n != "c3d"},
                                 layers, flip=False, device=device, precision=args.precision,
                                 auto_dtype=network_autocast_dtype(args.precision, device),
                                 attended_stride=attended_stride, **kwargs)
    made = extractor.sources
    for path, model, _, reading in loaded:
        for source, dim in ((reading.input_source, model.input_dim),
                            (reading.attended_source, model.attended_dim)):
            if source and made[source].dim != dim:
                raise ReproduceError(
                    f"{path} reads {source} of dimension {dim}, but the {made[source].network} network gives "
                    f"{made[source].dim}: the checkpoint was trained on other features (e.g. the synthetic "
                    "benchmark), which cannot be extracted from a video")
    strides = {s: CHUNK_FRAMES if parse_source(s).network == "c3d" else attended_stride for s in sources}
    return extractor, strides, missing


# ------------------------------------------------------------------------------------------------
# Streaming
# ------------------------------------------------------------------------------------------------


def stream_video(path, loaded, extractor, strides, store, args, batch_size, device):
    """Decode ``path`` once: features → windows → models. Returns (window results, per-frame times,
    frames decoded, decoder problems)."""
    from tqdm import tqdm

    from caffe_models import RandomWeightsWarning
    from caffe_models.errors import VideoError
    from caffe_models.video import decode_in_background
    from reproduce.highlight import CHUNK_FRAMES, WindowAssembler, score_windows
    from reproduce.report import jpeg_thumbnail

    models, readings = [m for _, m, _, _ in loaded], [r for *_, r in loaded]
    frames = readings[0].frames
    assembler = WindowAssembler(strides, frames, args.stride)
    strides_shown = [r.attended_stride for r in readings if r.attended_source]   # no attention: no frames

    def prepare(chunk):  # in the decode thread: the clip tensor, thumbnails and times
        complete = len(chunk.frames) == CHUNK_FRAMES and strides_shown
        step = min(strides_shown or [CHUNK_FRAMES])
        picks = range(-chunk.start % step, len(chunk.frames), step) if complete else ()
        thumbs = [(chunk.start + i, jpeg_thumbnail(chunk.frames[i])) for i in picks]
        return extractor.prepare(chunk), thumbs, chunk.timestamps

    def add(clips):  # features of complete chunks → the windows they complete, through the models
        nonlocal covered
        covered += CHUNK_FRAMES * len(clips)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)  # said once, by `run`
            rows = extractor(clips)
        ready = assembler.add({s: rows[s] for s in strides}, covered)
        return score_windows(models, readings, ready, strides, device)

    results, times, pending, covered = [], [], [], 0
    decoded = decode_in_background([path], prepare, CHUNK_FRAMES, workers=1, queue_size=4)
    try:
        video = next(decoded)
        if video.error is not None:
            raise VideoError(video.error)
        bar = tqdm(total=video.info.frames or None, unit="frame", desc="highlight", file=sys.stderr,
                   disable=args.quiet, dynamic_ncols=True)
        with bar:
            for clip, thumbs, stamps in video.items:
                for frame, data in thumbs:
                    store.add(frame, data)
                times.append(stamps)
                bar.update(len(stamps))
                if clip is not None:
                    pending.append(clip)
                if len(pending) == batch_size or (clip is None and pending):
                    results += add(pending)
                    pending = []
            if pending:
                results += add(pending)
        num_frames = int(video.report.get("frames_decoded", sum(len(t) for t in times)))
        last = assembler.finish(num_frames)
        results += score_windows(models, readings, last, strides, device)
    finally:
        decoded.close()
    stamps = np.concatenate(times)
    return results, stamps - stamps[0], num_frames, list(video.report.get("problems", []))


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------


def prepare_output(folder: str) -> None:
    """Create ``folder`` and make sure files can be written in it, before any long work."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ReproduceError(f"cannot write the report to {folder}: {exc.strerror or exc}") from None


def write_clip(video_path: str, moments: list[dict], out: str, progress: bool) -> int:
    """Re-decode the video and encode the frames of ``moments`` (in time order) as H.264 into ``out``;
    returns the frames written. Odd sizes lose their last row/column (4:2:0 needs even sizes)."""
    import av
    from tqdm import tqdm

    from caffe_models.video import VideoReader

    spans = sorted((m["start_frame"], m["end_frame"]) for m in moments)
    keep = lambda f: any(a <= f < b for a, b in spans)  # noqa: E731
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(out)[1] or ".mp4", dir=folder)
    os.close(fd)
    written = 0
    try:
        with VideoReader(video_path) as reader, av.open(tmp, "w") as container:
            fps = Fraction(reader.info.fps if reader.info.fps > 0 else 25.0).limit_denominator(1001)
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = reader.info.width // 2 * 2, reader.info.height // 2 * 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "20", "preset": "veryfast"}
            with tqdm(total=sum(b - a for a, b in spans), unit="frame", desc="clip", file=sys.stderr,
                      disable=not progress) as bar:
                for chunk in reader.chunks(16):
                    if chunk.start >= spans[-1][1]:
                        break
                    for i, rgb in enumerate(chunk.frames):
                        if keep(chunk.start + i):
                            image = np.ascontiguousarray(rgb[:stream.height, :stream.width])
                            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                            frame.pts = written
                            container.mux(stream.encode(frame))
                            written += 1
                            bar.update(1)
            container.mux(stream.encode())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return written


def run(args: argparse.Namespace) -> int:
    import torch

    from caffe_models.video import probe
    from reproduce.highlight import check_reading, check_window, short_video_error, summarize
    from reproduce.report import ThumbnailStore, model_label, report_frames, write_report

    if args.top < 1 or args.moments < 0 or args.merge_gap < 0 or not args.threshold > 0:
        raise ReproduceError("--top must be ≥ 1, --moments and --merge-gap ≥ 0, --threshold > 0")
    if not os.path.isfile(args.video):
        raise ReproduceError(f"{args.video}: no such file")
    from reproduce.distributed import default_device
    device = args.device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ReproduceError(f"--device {device}: no CUDA on this machine; use --device cpu")
    info = probe(args.video)                                    # not a video / no frame: VideoError
    loaded = load_models(args.checkpoint, device)
    check_window(loaded[0][3].frames, args.stride)
    if info.frames and info.frames < 0.9 * loaded[0][3].frames:  # clearly short by the header's count
        raise short_video_error(info.frames, loaded[0][3].frames)  # (estimates too): before any work
    prepare_output(args.out)
    if args.clip:
        prepare_output(os.path.dirname(os.path.abspath(args.clip)))
    extractor, strides, random_nets = build_extractor(args, loaded, device)
    for path, _, _, reading in loaded:
        check_reading(reading, strides, path)
    if random_nets:
        print(f"alstm highlight: WARNING: {', '.join(random_nets)} run on RANDOM weights: the classes and "
              "highlights mean nothing", file=sys.stderr)
    batch_size = args.clip_batch or (32 if device.startswith("cuda") else 4)
    if batch_size < 1:
        raise ReproduceError("--clip-batch must be at least 1")

    store = ThumbnailStore(args.out)
    try:
        results, times, num_frames, problems = stream_video(args.video, loaded, extractor, strides, store,
                                                            args, batch_size, device)
        for problem in problems:
            print(f"alstm highlight: warning: {args.video}: {problem}", file=sys.stderr)
        video = {"path": os.path.abspath(args.video), "fps": info.fps, "width": info.width,
                 "height": info.height, "rotation": info.rotation, "problems": problems}
        models = [{"checkpoint": os.path.abspath(path), "label": model_label(meta),
                   "input_source": reading.input_source, "attended_source": reading.attended_source,
                   "frames": reading.frames, "steps": reading.steps,
                   "attended_per_step": reading.attended_per_step, "variant": model.variant}
                  for path, model, meta, reading in loaded]
        highlights = summarize(results, [r for *_, r in loaded], loaded[0][2]["class_names"], times,
                               num_frames, video=video, models=models, top=args.top, moments=args.moments,
                               threshold=args.threshold, gap=args.merge_gap)
        highlights["extractors"] = {n: net.weights_description for n, net in extractor.networks().items()}
        highlights["random_weights"] = random_nets
        highlights["precision"] = extractor.describe_precision()
        write_json(os.path.join(args.out, "highlights.json"), highlights, indent=1)
        write_report(args.out, highlights, store.load(report_frames(highlights)))
    finally:
        store.close()
    for item in highlights["top_classes"]:
        print(f"{item['score']:.3f}  {item['class']}")
    for m in highlights["moments"]:
        print(f"moment {m['rank']}: {m['start_time']:.2f}–{m['end_time']:.2f} s "
              f"(frames {m['start_frame']}–{m['end_frame'] - 1}, peak {m['peak_density']:.2f}× uniform)")
    if args.clip:
        if highlights["moments"]:
            count = write_clip(args.video, highlights["moments"], args.clip, not args.quiet)
            print(f"clip: {args.clip} ({count} frames)")
        else:
            print("alstm highlight: warning: no highlighted moment, so no clip was written", file=sys.stderr)
    print(f"precision: {highlights['precision']}")
    print(f"report: {os.path.join(args.out, 'report.html')}")
    return 0
