"""Extract C3D and VGG-19 features from videos into one feature file (HDF5, the project's layout).

Each video (a file, or every video file under a folder) is stored whole, with its measured frame rate
and frame count, as rows of the sources c3d_<layer>, vgg_<family>_<layer> and their _flip versions
(horizontally flipped frames): one C3D row per consecutive 16-frame clip, one VGG row every 8 frames
inside those clips (docs/paper.md §1, §8). The video id is the file name without its extension. No labels are
needed: `alstm dataset build` later cuts the videos into a dataset's samples and labels them from its
annotations (--labels/--classes label them now instead). Videos are committed one by one: an existing
--out is appended to, videos already in it are skipped, so a killed run is resumed by running the same
command again.

Weights: --c3d conv3d_deepnetA_sport1m_iter_1900000 (with --c3d-mean sport1m_train16_128_mean.binaryproto),
--vgg obj=VGG_ILSVRC_19_layers.caffemodel; --vgg sce=FILE act=FILE add the fine-tuned families. Without a
weight file a network runs on random weights; that is refused unless --allow-random-weights, and the file
records which weights made every source.

In Python: reproduce.extract_features(VIDEOS, OUT, ...) → Extraction (the same options, by name).

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
import sys

from alstm_core.storage import LAYERS, SPLITS, VGG_FAMILIES
from reproduce.commands.common import add_network_arguments, chosen_device
from reproduce.errors import ReproduceError
from reproduce.extraction.extract import extract_features
from reproduce.extraction.networks import parse_families


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
    nets.add_argument("--layers", nargs="+", default=None, choices=LAYERS,
                      help="layers read from every network (default fc6 fc8; from a weight file without "
                      "fc8, such as R-C3D's C3D, the layers it holds)")
    nets.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                      help="also extract the features of horizontally flipped frames, <source>_flip "
                      "(default yes; train and evaluate use them when present)")
    nets.add_argument("--allow-random-weights", action="store_true",
                      help="run networks without a weight file on random weights (tests, benchmarks)")
    nets.add_argument("--weights-seed", type=int, default=0,
                      help="seed of the random weights of --allow-random-weights (default 0)")
    data = parser.add_argument_group("labels (optional: features do not depend on them)")
    data.add_argument("--labels", metavar="CSV", default=None,
                      help="CSV rows 'video,label' or 'video,label,split' (video: id or file name; split: "
                      "train/valid/test, else --split; a header row is allowed); "
                      "without it the videos are stored unlabelled, for `alstm dataset build`")
    data.add_argument("--classes", default=None, metavar="NAMES",
                      help="class names, comma-separated or a file with one per line (default: the labels')")
    data.add_argument("--multilabel", action="store_true",
                      help="a video may have several labels (repeated rows or 'a;b'); targets are multi-hot")
    data.add_argument("--split", default="test", choices=SPLITS,
                      help="split of the new videos the labels CSV gives no split (default test; `alstm "
                      "dataset build` assigns the dataset's own)")
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


def parse_shard(shard: str | None, launched: dict | None) -> tuple[int, int]:
    """(rank, world) from --shard RANK/WORLD, else from torchrun's RANK / WORLD_SIZE (``launched``: the
    variables `reproduce.cli` found, None outside torchrun), else (0, 1)."""
    launched = launched or {}
    if shard is None and "WORLD_SIZE" not in launched:
        return 0, 1
    text = shard if shard is not None else f"{launched.get('RANK', '0')}/{launched['WORLD_SIZE']}"
    try:
        rank, world = (int(x) for x in text.split("/"))
    except ValueError:
        raise ReproduceError(f"--shard {text!r}: write RANK/WORLD, e.g. 0/4") from None
    if not 0 <= rank < world:
        raise ReproduceError(f"--shard {text!r}: RANK must be in 0..WORLD-1")
    return rank, world


def run(args: argparse.Namespace) -> int:
    launched = getattr(args, "torchrun", None) or {}
    rank, world = parse_shard(args.shard, launched)
    vgg = parse_families(["obj"] if not args.no_vgg_obj else []) | parse_families(args.vgg)
    run_ = extract_features(
        args.videos, args.out, c3d=False if args.no_c3d else args.c3d, c3d_mean=args.c3d_mean, vgg=vgg,
        layers=args.layers, flip=args.flip, labels=args.labels, classes=args.classes,
        multilabel=args.multilabel, split=args.split, allow_random_weights=args.allow_random_weights,
        weights_seed=args.weights_seed, device=chosen_device(args), precision=args.precision,
        clip_batch=args.clip_batch, workers=args.workers, queue_size=args.queue_size,
        buffer_mb=args.buffer_mb, shard=(rank, world),
        local_rank=int(launched["LOCAL_RANK"]) if "LOCAL_RANK" in launched else None, progress=not args.quiet,
        warn=lambda text: print(f"alstm extract: warning: {text}", file=sys.stderr))
    where = f" (rank {rank} of {world})" if world > 1 else ""
    print(f"extracted {len(run_.written)} videos ({len(run_.partial)} partial), skipped {run_.skipped} "
          f"already present, {len(run_.failed)} failed{where}; {run_.frames} frames in {run_.seconds:.1f} s "
          f"({run_.frames_per_second:.1f} frames/s)")
    if run_.precision:
        print(f"precision: {run_.precision}")
    if world > 1 and rank != 0:
        return 0  # rank 0 reports the verdict; a non-zero exit here would make torchrun stop rank 0
    if run_.merged is not None:
        print(f"merged {world} shards into {args.out} ({run_.merged} videos added); "
              f"{len(run_.verdict_failed)} failed in all")
    for path, why in run_.verdict_failed.items():
        print(f"  failed: {path}: {why}", file=sys.stderr)
    return 1 if run_.verdict_failed and not args.keep_going else 0
