"""Fine-tune the feature networks from the public weights, as the original Caffe tools did (docs/formats.md
§6): C3D on ActivityNet (the paper's C3D), VGG-19 on ActivityNet frames (VGG_act) or on scenes (VGG_sce).

  alstm finetune mean (--data DATA.h5 --videos DIR | --list TRAIN.lst) --out MEAN.binaryproto
  alstm finetune c3d  (--data DATA.h5 --videos DIR | --list TRAIN.lst) --weights W --mean MEAN --out DIR
  alstm finetune vgg  (--data DATA.h5 --videos DIR | --images LIST) --weights W --out DIR

`mean` is C3D's compute_volume_mean_from_list (3×16×128×171); `c3d` follows C3D v1.0's fine-tuning example
(VIDEO_DATA layer, fillers, solver) and writes <prefix>_iter_<N>.caffemodel in the C3D v1.0 schema; `vgg`
follows BVLC's finetune_flickr_style (a new fc8 at lr_mult 10) and writes BVLC V2 .caffemodel files.
`alstm extract --c3d SNAPSHOT --c3d-mean MEAN --vgg act=SNAPSHOT` reads them. A killed run continues
with the same command and --resume. Under torchrun the batch is shared among the processes.

examples:
  alstm finetune mean --data data/activitynet.h5 --videos videos/ --out c3d_act_mean.binaryproto
  alstm finetune c3d --data data/activitynet.h5 --videos videos/ \\
      --weights conv3d_deepnetA_sport1m_iter_1900000 --mean c3d_act_mean.binaryproto --out runs/c3d_act
  alstm finetune vgg --data data/activitynet.h5 --videos videos/ --weights VGG_ILSVRC_19_layers.caffemodel \\
      --out runs/vgg_act
  alstm finetune c3d --list train_01.lst --valid-list test_01.lst --num-classes 101 --weights W --mean M \\
      --solver solver.prototxt --out runs/c3d_ucf101

In Python: reproduce.volume_mean, reproduce.finetune_c3d, reproduce.finetune_vgg (the same options).
"""

from __future__ import annotations

import argparse
import sys

from reproduce.commands.common import chosen_device
from reproduce.finetuning.c3d import finetune_c3d
from reproduce.finetuning.mean import volume_mean
from reproduce.finetuning.vgg import finetune_vgg
from reproduce.runtime.distributed import setup
from reproduce.runtime.precision import PRECISIONS


def _inputs(p: argparse.ArgumentParser, alternative: str) -> None:
    g = p.add_argument_group("samples (--data with --videos, or " + alternative + ")")
    g.add_argument("--data", metavar="DATA.h5", help="a built dataset (`alstm dataset build`): its train "
                   "samples, and its valid samples for validation clip accuracy")
    g.add_argument("--videos", metavar="DIR", help="the dataset's videos: <id>.<ext> or v_<id>.<ext>")
    g.add_argument("--annotations", metavar="JSON", help="ActivityNet: the annotation file the dataset was "
                   "built from, for where segments start (default: the recorded name, beside --data)")
    if alternative.startswith("--list"):
        g.add_argument("--list", dest="list_file", metavar="TRAIN.lst",
                       help="C3D list: '<video or frame folder> <start_frame> <label>' lines")


def _training(p: argparse.ArgumentParser, batch: int) -> None:
    p.add_argument("--weights", required=True, metavar="W", help="pre-trained .caffemodel")
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the snapshots, log and state")
    p.add_argument("--num-classes", type=int, help="fc8 outputs of a list (default: largest label + 1)")
    s = p.add_argument_group("solver")
    s.add_argument("--solver", metavar="SOLVER.prototxt", help="a Caffe solver (default: the example's)")
    s.add_argument("--solver-semantics", choices=("c3d", "bvlc"),
                   help="C3D v1.0's or BVLC Caffe's solver (default: the network's tool)")
    s.add_argument("--batch-size", type=int, default=batch, help=f"clips per update (default {batch})")
    s.add_argument("--valid-clips", type=int, default=1, help="validation clips per sample (default 1)")
    s.add_argument("--seed", type=int, help="seed (default: the solver's random_seed, else 0)")
    r = p.add_argument_group("running")
    r.add_argument("--resume", action="store_true", help="continue the killed run in --out")
    r.add_argument("--device", help="cpu or cuda[:K] (default: $ALSTM_DEVICE, else cuda if available)")
    r.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="float32 (default) or bfloat16/float16 autocast; auto: bfloat16 on a CPU with it")
    r.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    r.add_argument("--read-ahead", type=int, default=2, help="batches each worker holds ready (default 2)")
    r.add_argument("--checkpoint-every", type=int, default=500,
                   help="updates between resume states, besides the snapshots (default 500)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="network", metavar="{mean,c3d,vgg}")
    sub.required = True
    kinds = {"mean": "C3D's volume mean of the training clips (compute_volume_mean_from_list)",
             "c3d": "fine-tune C3D (C3D v1.0's fine-tuning example)",
             "vgg": "fine-tune VGG-19 (BVLC's finetune_flickr_style convention)"}
    ps = {name: sub.add_parser(name, help=text, description=text) for name, text in kinds.items()}
    _inputs(ps["mean"], "--list")
    ps["mean"].add_argument("--out", required=True, metavar="MEAN.binaryproto", help="the mean file to write")
    ps["mean"].add_argument("--dropping-rate", type=int, default=10,
                            help="average every Nth clip (default 10, the C3D example's)")
    ps["mean"].add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    ps["mean"].add_argument("--quiet", action="store_true", help="no progress bar")
    _inputs(ps["c3d"], "--list")
    _training(ps["c3d"], 30)
    ps["c3d"].add_argument("--mean", required=True, metavar="MEAN", help="volume mean (.binaryproto)")
    ps["c3d"].add_argument("--valid-list", metavar="TEST.lst", help="C3D list of validation clips")
    ps["c3d"].add_argument("--keep-fc", action="store_true",
                           help="keep Sports-1M's fc6-1/fc7-1 (default: fillers, as C3D's example)")
    ps["c3d"].add_argument("--fc-dim", type=int, default=4096, help="fc6/fc7 width (default 4096)")
    _inputs(ps["vgg"], "--images")
    ps["vgg"].add_argument("--images", metavar="LIST", help="Caffe ImageData list: '<image> <label>' lines")
    ps["vgg"].add_argument("--valid-images", metavar="LIST", help="ImageData list of validation images")
    _training(ps["vgg"], 50)
    ps["vgg"].add_argument("--resize", type=int, default=256, help="images resized to N×N (default 256)")
    ps["vgg"].add_argument("--crop", type=int, default=224, help="crop size (default 224)")


def run(args: argparse.Namespace) -> int:
    warn = lambda text: print(f"alstm finetune: warning: {text}", file=sys.stderr)  # noqa: E731
    if args.network == "mean":
        mean = volume_mean(args.out, data=args.data, videos=args.videos, annotations=args.annotations,
                           list_file=args.list_file, dropping_rate=args.dropping_rate, workers=args.workers,
                           progress=not args.quiet)
        print(f"{mean.path}: the mean of {mean.chunks} of {mean.available} clips, shape {mean.shape}")
        return 0
    dist = setup(args.torchrun, chosen_device(args)) if getattr(args, "torchrun", None) else None
    common = dict(weights=args.weights, data=args.data, videos=args.videos, annotations=args.annotations,
                  num_classes=args.num_classes, solver=args.solver, solver_semantics=args.solver_semantics,
                  batch_size=args.batch_size, valid_clips=args.valid_clips, seed=args.seed,
                  resume=args.resume, device=chosen_device(args), precision=args.precision,
                  workers=args.workers, read_ahead=args.read_ahead,
                  checkpoint_every=args.checkpoint_every, dist=dist, progress=not args.quiet, warn=warn)
    try:
        if args.network == "c3d":
            result = finetune_c3d(args.out, mean=args.mean, list_file=args.list_file,
                                  valid_list=args.valid_list, keep_fc=args.keep_fc, fc_dim=args.fc_dim,
                                  **common)
        else:
            result = finetune_vgg(args.out, images=args.images, valid_images=args.valid_images,
                                  resize=args.resize, crop=args.crop, **common)
    finally:
        if dist is not None:
            dist.close()
    if dist is None or dist.is_main:
        accuracy = "none" if result.valid_accuracy is None else f"{result.valid_accuracy:.3f}"
        print(f"fine-tuned {args.network.upper()} to update {result.iterations}: {result.final}; validation "
              f"clip accuracy {accuracy}; log {result.log}")
    return 0
