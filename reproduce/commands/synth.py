"""Generate the built-in benchmark: a feature dataset in the real layout, with known salient frames.

  alstm synth OUT.h5 [--classes C] [--videos V] [--seed S] [--multilabel] [--paper-dims]

The file holds every source the paper's tables read: c3d_fc6 and c3d_fc8 (one row per 16-frame
chunk; the input data, weakly informative per chunk; c3d_fc8 holds class scores, for the "C3D (fc8)"
baseline), vgg_{obj,sce,act}_{fc6,fc8} (one row every 8
frames; class evidence in a minority of frames among clutter, the families partly complementary),
each with its _flip variant, and `salient` (1.0 on the frames that carry the evidence). Splits are
train/valid/test (70/10/20). --multilabel makes the Hollywood2-like variant (12 classes, 1-3 labels
per clip). How the data is generated: the docstring of fuel_datasets/synthetic.py.

It is a controlled test of the implementation and of highlighting, not evidence for the paper's
claims. The same parameters give the same data; re-running on an interrupted file completes it.
"""

from __future__ import annotations

import argparse
import time

from alstm_core.progress import progress_bar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fuel_datasets.synthetic import SynthConfig

    default = SynthConfig()
    parser.add_argument("out", metavar="OUT.h5", help="feature file to write")
    parser.add_argument("--classes", type=int, default=None,
                        help=f"number of classes (default {default.num_classes}; 12 with --multilabel)")
    parser.add_argument("--videos", type=int, default=default.num_videos,
                        help=f"number of videos (default {default.num_videos})")
    parser.add_argument("--seed", type=int, default=default.seed, help="generator seed (default 0)")
    parser.add_argument("--multilabel", action="store_true",
                        help="Hollywood2-like variant: several labels per clip, multi-hot targets")
    parser.add_argument("--max-labels", type=int, default=default.max_labels,
                        help=f"--multilabel: at most this many labels per clip "
                             f"(default {default.max_labels})")
    parser.add_argument("--min-frames", type=int, default=default.min_frames,
                        help=f"shortest video in frames (default {default.min_frames})")
    parser.add_argument("--max-frames", type=int, default=default.max_frames,
                        help=f"longest video in frames (default {default.max_frames})")
    parser.add_argument("--paper-dims", action="store_true",
                        help="the paper's feature sizes: C3D fc6 4096, VGG fc6 4096, fc8 obj 1000 / sce "
                             "205 / act 203 (C3D fc8 stays the class scores, as the fine-tuned C3D's; about "
                             "5 MB per video)")
    parser.add_argument("--latent-dim", type=int, default=default.latent_dim,
                        help=f"dimension of each family's latent space (default {default.latent_dim})")
    parser.add_argument("--force", action="store_true", help="replace OUT.h5 if it exists")


def run(args: argparse.Namespace) -> int:
    import os

    from fuel_datasets.synthetic import PAPER_DIMS, SynthConfig, write_synthetic

    options = dict(num_videos=args.videos, seed=args.seed, multilabel=args.multilabel,
                   max_labels=args.max_labels, min_frames=args.min_frames, max_frames=args.max_frames,
                   latent_dim=args.latent_dim,
                   num_classes=args.classes if args.classes is not None else 12 if args.multilabel else 20)
    if args.paper_dims:
        options.update(PAPER_DIMS)
    config = SynthConfig(**options)
    started = time.perf_counter()
    with progress_bar(total=config.num_videos, desc="alstm synth", unit="video") as bar:
        written = write_synthetic(args.out, config, progress=bar.update, overwrite=args.force)
    seconds = time.perf_counter() - started
    size = os.path.getsize(args.out) / 2**20
    kept = config.num_videos - written
    print(f"{args.out}: {config.num_videos} videos ({written} written"
          + (f", {kept} already there" if kept else "") + f"), {config.num_classes} classes"
          + (" (multi-label)" if config.multilabel else "") + f", {size:.1f} MiB, {seconds:.1f} s")
    return 0
