"""Evaluate trained models on a split: accuracy, mAP and per-class AP (docs/paper.md §4).

Each video is scored by 40 random windows and the same 40 on flipped frames (--crops), averaged; a file
without the features of flipped frames (<source>_flip) is evaluated on the 40 alone, with a note.
Several --checkpoint flags evaluate their ensemble (the average of the models' scores, docs/paper.md §2);
--baseline SOURCE evaluates the CNN baseline "C3D (fc8)" instead (the network's own softmax from that
source, averaged over each window's chunks). A run folder given as --checkpoint means its best.pt.

Two mAPs are reported: scikit-learn's average precision ("mAP") and ActivityNet's official
interpolated AP ("mAP_interpolated"). Values are fractions in [0, 1]. --json writes every number:
accuracy, hit_at_3, mAP, mAP_interpolated, per_class_ap, per_class_ap_interpolated,
classes_without_positives, num_videos, excluded_videos, split, crops, seed, checkpoints (and members
for an ensemble). --scores writes the video scores (video_ids, scores (V, C), positives (V, C)).
Under `torchrun --nproc-per-node K -m reproduce.cli evaluate ...` the videos are shared over the K
processes and rank 0 writes the merged report, equal to a single process's.

examples:
  alstm evaluate --data synth.h5 --checkpoint runs/obj_fc8/best.pt --json obj_fc8.json
  alstm evaluate --data synth.h5 --checkpoint runs/act_fc8 --checkpoint runs/obj_fc8
  alstm evaluate --data synth.h5 --baseline c3d_fc8
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

from reproduce.commands.common import chosen_device
from reproduce.errors import ReproduceError
from reproduce.runtime.precision import PRECISIONS

if TYPE_CHECKING:
    from reproduce.evaluation.evaluate import Evaluation


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="feature HDF5 file")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                        help="checkpoint (or run folder: its best.pt); repeat for an ensemble")
    parser.add_argument("--baseline", metavar="SOURCE", default=None,
                        help="evaluate the C3D (fc8) baseline read from SOURCE (e.g. c3d_fc8)")
    parser.add_argument("--split", default="test", help="split to evaluate (default test)")
    parser.add_argument("--crops", type=int, default=40,
                        help="random windows per video, plus as many flipped (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the window positions")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="add the windows on flipped frames (<source>_flip); default: when the file has "
                        "them for every source read (otherwise evaluation goes on without them and says so)")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS,
                        help="float32 (default: the paper's tables), bfloat16 / float16 (CUDA) autocast, or "
                        "auto: bfloat16 on a CPU with native bfloat16, else float32")
    parser.add_argument("--frames", type=int, default=192, help="window length F of the baseline")
    parser.add_argument("--steps", type=int, default=12, help="chunks N per window of the baseline")
    parser.add_argument("--json", metavar="OUT", default=None, help="write the full report as JSON")
    parser.add_argument("--scores", metavar="OUT.npz", default=None, help="write the video scores")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, ... (default: $ALSTM_DEVICE, else cuda if available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from reproduce.evaluation.evaluate import evaluate_baseline, evaluate_checkpoints
    from reproduce.runtime.distributed import setup

    if bool(args.checkpoint) == bool(args.baseline):
        raise ReproduceError("give either --checkpoint (one or more) or --baseline SOURCE")
    if args.crops < 1:
        raise ReproduceError("--crops must be at least 1")
    device = "cpu" if args.baseline else chosen_device(args)
    notice = lambda text: print(f"alstm evaluate: note: {text}", file=sys.stderr)  # noqa: E731
    options = dict(split=args.split, crops=args.crops, seed=args.seed, flip=args.flip,
                   progress=not args.quiet, notice=notice)
    with setup(getattr(args, "torchrun", None), device) as dist:   # one process, or a torchrun job
        if args.baseline:
            result = evaluate_baseline(args.data, args.baseline, frames=args.frames, steps=args.steps,
                                       dist=dist, **options)
        else:
            result = evaluate_checkpoints(args.data, args.checkpoint, precision=args.precision, dist=dist,
                                          **options)
        if not dist.is_main:
            return 0                                # rank 0 writes and prints the merged report
    if args.json:
        result.write_json(args.json)
    if args.scores:
        result.write_scores(args.scores)
    _print(result, args.crops)
    return 0


def _print(result: Evaluation, crops: int) -> None:
    def pct(value: float) -> str:
        return "-" if math.isnan(value) else f"{100 * value:.1f}"

    what = f"baseline {result.baseline}" if result.baseline else ", ".join(result.checkpoints)
    windows = f"{crops}+{crops} flipped" if result.flip else f"{crops}"
    print(f"{what} on {result.split} ({result.num_videos} videos, {windows} windows each, "
          f"{result.excluded_videos} too short; {result.precision})")
    print(f"accuracy {pct(result.accuracy)}%  hit@3 {pct(result.hit_at_3)}%  "
          f"mAP {pct(result.mAP)}%  mAP (ActivityNet interpolated) {pct(result.mAP_interpolated)}%")
    for member in result.members:
        print(f"  member {member.checkpoint}: accuracy {pct(member.accuracy)}%  mAP {pct(member.mAP)}%")
    if result.classes_without_positives:
        print(f"{len(result.classes_without_positives)} classes have no positive video and are left out "
              "of the mAP")
