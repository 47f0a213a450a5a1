"""Extract C3D and VGG-19 features from videos into one feature file (HDF5, the project's layout).

Each video (a file, or every video file under a folder) is stored whole, with its measured frame rate
and frame count, as rows of the sources c3d_<layer>, vgg_<family>_<layer> and their _flip versions
(horizontally flipped frames): one C3D row per consecutive 16-frame clip, one VGG row every 8 frames
inside those clips (SPEC §1, §8). The video id is the file name without its extension. No labels are
needed: `alstm dataset build` later cuts the videos into a dataset's samples and labels them from its
annotations (--labels/--classes label them now instead). Videos are committed one by one: an existing
--out is appended to, videos already in it are skipped, so a killed run is resumed by running the same
command again.

Weights: --c3d conv3d_deepnetA_sport1m_iter_1900000 (with --c3d-mean sport1m_train16_128_mean.binaryproto),
--vgg obj=VGG_ILSVRC_19_layers.caffemodel; --vgg sce=FILE act=FILE add the fine-tuned families. Without a
weight file a network runs on random weights; that is refused unless --allow-random-weights, and the file
records which weights made every source.

A video that cannot be decoded is reported and skipped; a damaged one keeps its readable part (reported).
The exit code is 1 if any video failed, unless --keep-going.

Several processes: `torchrun --nproc-per-node K -m reproduce.cli extract ...` (or --shard RANK/WORLD in
each of K commands) gives every rank a share of the videos and its own file OUT.shard<R>-of<K>.h5; rank 0
waits for the others and merges the shards into OUT.

examples:
  alstm extract videos/ --out videos.h5 --c3d conv3d_deepnetA_sport1m_iter_1900000 \\
      --c3d-mean sport1m_train16_128_mean.binaryproto --vgg obj=VGG_ILSVRC_19_layers.caffemodel
  alstm extract videos/ --out feats.h5 --classes classes.txt --c3d c3d.caffemodel \\
      --c3d-mean mean.binaryproto --vgg obj=VGG_ILSVRC_19_layers.caffemodel act=act.caffemodel
  alstm extract a.mp4 b.avi --out feats.h5 --labels labels.csv --split train --allow-random-weights
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import warnings

import numpy as np

from reproduce.atomic import write_json
from reproduce.commands.common import add_network_arguments
from reproduce.errors import ReproduceError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".3gp", ".ogv", ".ts", ".mts")
VGG_FAMILIES = {"obj": 1000, "sce": 205, "act": 203}  # fc8 classes (SPEC §1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR", help="video files or folders of videos")
    parser.add_argument("--out", required=True, metavar="FEATURES.h5",
                        help="feature file (created, or appended to)")
    nets = parser.add_argument_group("networks")
    nets.add_argument("--c3d", metavar="WEIGHTS", default=None, help="C3D .caffemodel (Sports-1M release)")
    nets.add_argument("--c3d-mean", metavar="MEAN", default=None,
                      help="C3D mean cube .binaryproto (default: per-channel BGR (104, 117, 128))")
    nets.add_argument("--no-c3d", action="store_true", help="no C3D sources")
    nets.add_argument("--vgg", nargs="+", action="extend", default=[], metavar="FAMILY[=WEIGHTS]",
                      help=f"VGG-19 families ({', '.join(VGG_FAMILIES)}) and their .caffemodel; obj is "
                      "always included unless --no-vgg-obj")
    nets.add_argument("--no-vgg-obj", action="store_true", help="no vgg_obj sources")
    nets.add_argument("--layers", nargs="+", default=["fc6", "fc8"], choices=["fc6", "fc7", "fc8"],
                      help="layers read from every network (default fc6 fc8)")
    nets.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                      help="also extract the features of horizontally flipped frames, <source>_flip "
                      "(default yes; train and evaluate use them when present)")
    nets.add_argument("--allow-random-weights", action="store_true",
                      help="run networks without a weight file on random weights (tests, benchmarks)")
    nets.add_argument("--weights-seed", type=int, default=0,
                      help="seed of the random weights of --allow-random-weights (default 0)")
    data = parser.add_argument_group("labels (optional: features do not depend on them)")
    data.add_argument("--labels", metavar="CSV", default=None,
                      help="CSV rows 'video,label' (video: id or file name; a header row is allowed); "
                      "without it the videos are stored unlabelled, for `alstm dataset build`")
    data.add_argument("--classes", default=None, metavar="NAMES",
                      help="class names, comma-separated or a file with one per line (default: the labels')")
    data.add_argument("--multilabel", action="store_true",
                      help="a video may have several labels (repeated rows or 'a;b'); targets are multi-hot")
    data.add_argument("--split", default="test", choices=["train", "valid", "test"],
                      help="split of the new videos (default test; `alstm dataset build` assigns the "
                      "dataset's own)")
    run_ = parser.add_argument_group("running")
    run_.add_argument("--device", default=None,
                      help="cpu or cuda[:K] (default: $ALSTM_DEVICE, else cuda if available)")
    add_network_arguments(run_)
    run_.add_argument("--workers", type=int, default=None,
                      help="decoding threads (default 1 on the CPU, where the networks are the slower stage; "
                      "up to 8 on CUDA, where decoding is)")
    run_.add_argument("--queue-size", type=int, default=8, help="decoded chunks each worker keeps ready")
    run_.add_argument("--buffer-mb", type=float, default=None,
                      help="decoded frames the workers may hold ahead beyond --queue-size, in MB: lets "
                      "--workers decode side by side when the networks outrun one decoder (default 0 on "
                      "the CPU, 2048 on CUDA)")
    run_.add_argument("--keep-going", action="store_true", help="exit 0 even if some videos failed")
    run_.add_argument("--shard", default=None, metavar="RANK/WORLD",
                      help="extract share RANK of WORLD into OUT.shard<RANK>-of<WORLD>.h5 "
                      "(default: torchrun's RANK and WORLD_SIZE)")
    run_.add_argument("--quiet", action="store_true", help="no progress bar")


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


def list_videos(inputs: list[str]) -> list[tuple[str, str]]:
    """(video id, path) of the given files and of the video files under the given folders, sorted by
    path within each folder; ids (file names without extension) must be unique."""
    found: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                found += [os.path.join(root, f) for f in sorted(files)
                          if f.lower().endswith(VIDEO_EXTENSIONS)]
        elif os.path.isfile(item):
            found.append(item)
        else:
            raise ReproduceError(f"{item}: no such file or folder")
    seen: dict[str, str] = {}
    videos = []
    for path in found:
        vid = os.path.splitext(os.path.basename(path))[0]
        if vid in seen:
            if os.path.samefile(seen[vid], path):
                continue
            raise ReproduceError(f"two videos have the id {vid!r}: {seen[vid]} and {path}; rename one")
        seen[vid] = path
        videos.append((vid, path))
    if not videos:
        raise ReproduceError(
            f"no video files in {', '.join(inputs)} (extensions: {' '.join(VIDEO_EXTENSIONS)})")
    return videos


def read_classes(spec: str) -> list[str]:
    if os.path.isfile(spec):
        with open(spec, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = [name.strip() for name in spec.split(",") if name.strip()]
    if len(set(names)) != len(names) or not names:
        raise ReproduceError(f"--classes {spec!r}: give distinct, non-empty class names")
    return names


def read_labels(path: str, video_ids: list[str], classes: list[str] | None, multilabel: bool):
    """(class names, {video id: class index | (C,) float32 multi-hot}) from a 'video,label' CSV."""
    labels: dict[str, list[str]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    except OSError as exc:
        raise ReproduceError(f"--labels {path}: {exc.strerror}") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["video", "label"]:
        rows = rows[1:]
    for line, row in enumerate(rows, 1):
        if len(row) != 2:
            raise ReproduceError(f"{path}: row {line} {row!r} is not 'video,label'")
        name, label = row[0].strip(), row[1].strip()
        vid = os.path.splitext(os.path.basename(name))[0] if name.lower().endswith(VIDEO_EXTENSIONS) else name
        labels.setdefault(vid, []).extend(p.strip() for p in label.split(";") if p.strip())
    names = classes or sorted({label for values in labels.values() for label in values})
    index = {name: k for k, name in enumerate(names)}
    unknown = sorted({label for values in labels.values() for label in values} - set(index))
    if unknown:
        raise ReproduceError(f"{path}: labels not among the classes: {', '.join(unknown[:10])}")
    missing = [vid for vid in video_ids if vid not in labels]
    if missing:
        raise ReproduceError(f"{path}: no label for {len(missing)} videos ({', '.join(missing[:5])}); "
                             "add rows or leave out --labels")
    targets = {}
    for vid in video_ids:
        values = sorted(set(labels[vid]))
        if multilabel:
            hot = np.zeros(len(names), dtype=np.float32)
            hot[[index[v] for v in values]] = 1.0
            targets[vid] = hot
        elif len(values) != 1:
            raise ReproduceError(f"{path}: video {vid} has labels {values}; pass --multilabel for several")
        else:
            targets[vid] = index[values[0]]
    return names, targets


def parse_shard(shard: str | None, env: dict | None) -> tuple[int, int]:
    """(rank, world) from --shard RANK/WORLD, else from torchrun's RANK / WORLD_SIZE (``env``: the
    variables `reproduce.cli` found, None outside torchrun), else (0, 1)."""
    env = env or {}
    if shard is None:
        if "WORLD_SIZE" not in env:
            return 0, 1
        text = f"{env.get('RANK', '0')}/{env['WORLD_SIZE']}"
    else:
        text = shard
    try:
        rank, world = (int(x) for x in text.split("/"))
    except ValueError:
        raise ReproduceError(f"--shard {text!r}: write RANK/WORLD, e.g. 0/4") from None
    if not 0 <= rank < world:
        raise ReproduceError(f"--shard {text!r}: RANK must be in 0..WORLD-1")
    return rank, world


def shard_path(out: str, rank: int, world: int) -> str:
    root, ext = os.path.splitext(out)
    return f"{root}.shard{rank}-of{world}{ext or '.h5'}"


# ------------------------------------------------------------------------------------------------
# Networks
# ------------------------------------------------------------------------------------------------


def new_c3d(seed: int):
    """The release's C3D (random weights until a file is loaded)."""
    import torch

    from caffe_models import C3D

    return C3D(generator=torch.Generator().manual_seed(seed))


def new_vgg(num_classes: int, seed: int):
    """The release's VGG-19 with ``num_classes`` fc8 outputs (random weights until a file is loaded)."""
    import torch

    from caffe_models import VGG19

    return VGG19(num_classes, generator=torch.Generator().manual_seed(seed))


def build_extractor(args, device: str):
    from caffe_models import load_caffemodel, load_mean
    from caffe_models.extract import FeatureExtractor

    families: dict[str, str | None] = {} if args.no_vgg_obj else {"obj": None}
    for item in args.vgg:
        family, _, weights = item.partition("=")
        if family not in VGG_FAMILIES:
            raise ReproduceError(
                f"--vgg {item}: unknown family {family!r}; choose from {', '.join(VGG_FAMILIES)}")
        families[family] = weights or None
    c3d = None
    if not args.no_c3d:
        c3d = new_c3d(args.weights_seed)
        if args.c3d:
            load_caffemodel(c3d, args.c3d)
    vgg = {}
    for k, (family, weights) in enumerate(families.items()):
        vgg[family] = new_vgg(VGG_FAMILIES[family], args.weights_seed + 1 + k)
        if weights:
            load_caffemodel(vgg[family], weights)
    mean, mean_text = None, None
    if args.c3d_mean:
        from caffe_models.caffemodel import file_sha256

        mean = load_mean(args.c3d_mean)
        mean_text = f"{os.path.basename(args.c3d_mean)} (sha256 {file_sha256(args.c3d_mean)})"

    cuda = device.startswith("cuda")
    kwargs = {"c3d_mean": mean, "mean_description": mean_text} if mean is not None else {}
    from reproduce.precision import network_autocast_dtype

    extractor = FeatureExtractor(c3d, vgg, args.layers, flip=args.flip, device=device,
                                 precision=args.precision,
                                 auto_dtype=network_autocast_dtype(args.precision, device),
                                 channels_last=cuda, **kwargs)
    if c3d is not None and c3d.has_real_weights and mean is None:
        print("alstm extract: warning: no --c3d-mean; C3D uses the per-channel mean (104, 117, 128), not the "
              "release's mean cube", file=sys.stderr)
    return extractor


# ------------------------------------------------------------------------------------------------
# Existing files, shards, merging
# ------------------------------------------------------------------------------------------------


def check_existing(path: str, extractor) -> set[str]:
    """Ids already in ``path``, after checking that this run would add the same sources made with the
    same weights (a file mixing weights would silently mix features)."""
    from fuel_datasets.layout import open_dataset

    if not os.path.exists(path):
        return set()
    with open_dataset(path) as ds:
        ids = set(ds.video_ids)
        have = set(ds.sources) - {"targets"}
        want = extractor.source_info()
        if ids and have != set(want):
            raise ReproduceError(
                f"{path} holds the sources {', '.join(sorted(have))}; this run makes "
                f"{', '.join(sorted(want))}. Use the same --layers/--vgg/--no-c3d/--no-flip as before, "
                "or another --out")
        for source in sorted(have & set(want)):
            before = ds.source_info(source).get("weights")
            if before is not None and before != want[source]["weights"]:
                raise ReproduceError(f"{path}: {source} was extracted with {before}, this run uses "
                                     f"{want[source]['weights']}; use the same weights or another --out")
    return ids


def _wait_for_shards(out: str, world: int, expected: dict[int, list[str]]) -> list[dict]:
    """The done-markers of every rank; a marker counts only if it lists exactly that rank's videos (a
    leftover from a run over other videos does not)."""
    announced = False
    while True:
        markers = []
        for rank in range(world):
            try:
                with open(shard_path(out, rank, world) + ".done", encoding="utf-8") as f:
                    marker = json.load(f)
            except (OSError, ValueError):
                marker = None
            if marker is None or marker.get("videos") != expected[rank]:
                break
            markers.append(marker)
        if len(markers) == world:
            return markers
        if not announced:
            print(f"alstm extract: rank 0 waits for rank {len(markers)} (of {world}) to finish",
                  file=sys.stderr)
            announced = True
        time.sleep(2.0)


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import torch

    from caffe_models.extract import extract_videos
    from fuel_datasets.layout import FeatureWriter

    launched = getattr(args, "torchrun", None) or {}
    rank, world = parse_shard(args.shard, launched)
    videos = list_videos(args.videos)
    all_ids = [vid for vid, _ in videos]
    if args.labels:
        classes = read_classes(args.classes) if args.classes else None
        class_names, targets = read_labels(args.labels, all_ids, classes, args.multilabel)
    else:
        class_names, targets = (read_classes(args.classes) if args.classes else None), None
    # Without --labels or --classes the videos are stored unlabelled (a new file gets no class list;
    # an existing one keeps its own): features do not depend on labels, and `alstm dataset build`
    # labels them later from a dataset's annotations.
    multilabel = args.multilabel if class_names is not None else None
    from reproduce.distributed import default_device
    device = args.device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ReproduceError(f"--device {device}: this machine (or this torch build) has no CUDA; "
                             "use --device cpu")
    if device == "cuda" and world > 1 and "LOCAL_RANK" in launched:
        device = f"cuda:{launched['LOCAL_RANK']}"
    batch_size = args.clip_batch or (32 if device.startswith("cuda") else 4)
    workers = args.workers if args.workers is not None else (
        min(8, os.cpu_count() or 1) if device.startswith("cuda") else 1)
    if batch_size < 1 or workers < 1 or args.queue_size < 1:
        raise ReproduceError("--clip-batch, --workers and --queue-size must be at least 1")
    buffer_mb = args.buffer_mb if args.buffer_mb is not None else (2048 if device.startswith("cuda") else 0)
    if buffer_mb < 0:
        raise ReproduceError(f"--buffer-mb {buffer_mb:g}: give 0 or more megabytes")
    extractor = build_extractor(args, device)
    random_nets = extractor.random_networks()
    if random_nets and not args.allow_random_weights:
        raise ReproduceError(
            f"no weight file for {', '.join(random_nets)}: its features would come from random weights. "
            "Give --c3d FILE / --vgg FAMILY=FILE, or --allow-random-weights for random features "
            "(tests, benchmarks)")
    if random_nets:
        print(f"alstm extract: WARNING: {', '.join(random_nets)} run on RANDOM weights (--weights-seed "
              f"{args.weights_seed}); these are not real features, and the file says so", file=sys.stderr)

    out = args.out if world == 1 else shard_path(args.out, rank, world)
    mine = videos[rank::world]
    merged = check_existing(args.out, extractor) if world > 1 else set()
    check_existing(out, extractor)
    if world > 1 and os.path.exists(out + ".done"):
        os.remove(out + ".done")
    attrs = {"generator": "alstm extract", "random_weights": ", ".join(random_nets) or "none"}
    from caffe_models import RandomWeightsWarning

    with FeatureWriter(out, class_names=class_names, multilabel=multilabel, attrs=attrs) as writer, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)   # said once above, in the command's words
        summary = extract_videos(
            [(vid, path) for vid, path in mine if vid not in merged], writer, extractor, targets=targets,
            split=args.split, batch_size=batch_size, workers=workers, queue_size=args.queue_size,
            buffer_bytes=int(buffer_mb * 2**20),
            progress=not args.quiet)
    rate = summary.frames / max(summary.seconds, 1e-9)
    where = f" (rank {rank} of {world})" if world > 1 else ""
    present = len(mine) - len(summary.written) - len(summary.failed)
    print(f"extracted {len(summary.written)} videos ({len(summary.partial)} partial), skipped {present}"
          f" already present, {len(summary.failed)} failed{where}; {summary.frames} frames in "
          f"{summary.seconds:.1f} s ({rate:.1f} frames/s)")
    if summary.written:
        print(f"precision: {extractor.describe_precision()}")
    failed = dict(summary.failed)
    if world > 1:
        write_json(out + ".done", {"videos": [vid for vid, _ in mine], "failed": failed})
        if rank != 0:
            return 0  # rank 0 reports the verdict; a non-zero exit here would make torchrun stop rank 0
        expected = {r: [vid for vid, _ in videos[r::world]] for r in range(world)}
        markers = _wait_for_shards(args.out, world, expected)
        shards = [shard_path(args.out, r, world) for r in range(world)]
        from fuel_datasets.merge import merge_feature_files

        added = merge_feature_files([s for s in shards if os.path.exists(s)], args.out, all_ids,
                                    progress=not args.quiet)
        for shard in shards:
            for path in (shard, shard + ".done"):
                if os.path.exists(path):
                    os.remove(path)
        failed = {path: why for marker in markers for path, why in marker["failed"].items()}
        print(f"merged {world} shards into {args.out} ({added} videos added); {len(failed)} failed in all")
    for path, why in failed.items():
        print(f"  failed: {path}: {why}", file=sys.stderr)
    return 1 if failed and not args.keep_going else 0
