"""Classify a video and show the frames that drove the label (docs/paper.md §7): report.html with a player,
highlights.json, PNGs.

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
  report.html      self-contained page (opens from disk, fetches nothing): a player of the video with,
                   under it, a timeline of each model's attention, the top classes' scores per window
                   and the moments (click to seek; space plays, arrow keys step one attended frame)
                   and, beside it, the window under the playhead (its attended frames and weights);
                   top classes, frames of highest and lowest attention (Fig. 2), a strip of frames
                   whose brightness follows the attention (Fig. 3)
  video.mp4        the video for the player: H.264 at most 480 pixels wide, ≤ 500 kbit/s, no sound
  timeline.png, figure2.png, figure3.png
--clip OUT.mp4 also writes the highlighted moments, in time order, as a short video (the player's second
source; copied into REPORT_DIR as clip.mp4 unless it is an .mp4 there).
In Python: reproduce.highlight_video(VIDEO, [CKPT]) → VideoHighlights (.write_json, .write_report,
.write_summary_video).

Weights: as `alstm extract` (--c3d, --c3d-mean, --vgg FAMILY=FILE). A network given no file (and C3D
given no mean cube) uses the one recorded with the checkpoint's training features (in the feature file it
was trained on, if that is still there): found, with its sha256, where extraction read it, or by name in
the --weights-dir folders and the checkpoint's folder. --allow-random-weights runs the rest on random
weights (tests only: the result means nothing).

examples:
  alstm highlight match.mp4 --checkpoint runs/act_fc8/best.pt --out match_report \\
      --c3d conv3d_deepnetA_sport1m_iter_1900000 --vgg act=vgg_act.caffemodel
  alstm highlight match.mp4 --checkpoint runs/act_fc8 runs/obj_fc8 --out report --weights-dir weights/
"""

from __future__ import annotations

import argparse
import os
import sys

from alstm_core.storage import VGG_FAMILIES
from reproduce.commands.common import add_network_arguments, chosen_device
from reproduce.errors import ReproduceError
from reproduce.extraction.networks import parse_families
from reproduce.highlighting.browser_video import COPY_NAME
from reproduce.highlighting.pipeline import highlight_video
from reproduce.highlighting.results import HighlightSettings


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


def run(args: argparse.Namespace) -> int:
    warn = lambda text: print(f"alstm highlight: warning: {text}", file=sys.stderr)  # noqa: E731
    vgg = parse_families(args.vgg)
    if None in vgg.values():
        raise ReproduceError(f"--vgg {' '.join(args.vgg)}: write FAMILY=WEIGHTS (a family without a file "
                             "uses the weights recorded with the checkpoint)")
    if args.clip and os.path.abspath(args.clip) == os.path.abspath(os.path.join(args.out, COPY_NAME)):
        raise ReproduceError(f"--clip {args.clip}: the report's video copy goes there; name the clip "
                             "otherwise")
    writable = [args.out] + ([os.path.dirname(os.path.abspath(args.clip))] if args.clip else [])
    h = highlight_video(
        args.video, args.checkpoint, c3d=args.c3d, c3d_mean=args.c3d_mean, vgg=vgg,
        weights_dirs=args.weights_dir, allow_random_weights=args.allow_random_weights,
        weights_seed=args.weights_seed, stride=args.stride,
        settings=HighlightSettings(args.threshold, args.moments, args.merge_gap, args.top),
        device=chosen_device(args), precision=args.precision, clip_batch=args.clip_batch,
        scratch_dir=args.out, writable=writable, progress=not args.quiet, warn=warn)
    h.write_json(os.path.join(args.out, "highlights.json"))
    for item in h.top_classes:
        print(f"{item.score:.3f}  {item.name}")
    for m in h.moments:
        print(f"moment {m.rank}: {m.start_time:.2f}–{m.end_time:.2f} s "
              f"(frames {m.start_frame}–{m.end_frame - 1}, peak {m.peak_density:.2f}× uniform)")
    clip = None
    if args.clip:
        if h.moments:
            print(f"clip: {args.clip} ({h.write_summary_video(args.clip, progress=not args.quiet)} frames)")
            clip = args.clip
        else:
            warn("no highlighted moment, so no clip was written")
    h.write_report(args.out, clip=clip, warn=warn, progress=not args.quiet)
    print(f"precision: {h.precision}")
    print(f"report: {os.path.join(args.out, 'report.html')}")
    return 0
