"""Inspect, convert and repair feature datasets (HDF5).

  alstm dataset info FILE [--json]
      sources with their dims, rows and frame strides, splits with video counts, classes, size on disk;
      works on our layout and on legacy Fuel H5PYDataset files.
  alstm dataset convert LEGACY.h5 OUT.h5 [--source OLD=NEW ...] [--stride NAME=FRAMES ...]
                                         [--split OLD=NEW ...] [--fps FPS] [--class-names FILE]
      copies a legacy Fuel H5PYDataset file into our layout. Example e becomes video "000000"-style
      id e; source names are kept unless renamed with --source (e.g. --source features=c3d_fc6);
      row r of a source starts at frame r * FRAMES (default 16: one C3D chunk per row; use 8 for
      attended sources to allow T = 2N); splits named train/valid/test are kept, others can be mapped
      (--split validation=valid); targets come from the `targets` source; class names are class_0...
      unless --class-names gives a file with one name per line. Re-running continues an interrupted
      conversion.
  alstm dataset build activitynet --annotations activity_net.v1-3.min.json --features F [--features F ...]
                              --out DIR/activitynet.h5 [--seed S] [--min-frames 192] [--stride [NAME=]FRAMES]
  alstm dataset build hollywood2 --clipsets ClipSets/ --features F [--features F ...] --out DIR/hollywood2.h5
      turns the features of whole videos into the protocol's file (docs/paper.md §5): ActivityNet gets one
      sample per annotated segment, its rows cut from the video's rows at the video's own frame rate,
      the train/valid/test splits and the annotation file's classes; Hollywood2 gets one multi-hot
      sample per clip, 823 train / 884 test, autotrain left out. --features takes, as often as needed:
      our feature files (alstm extract; families or shards in separate files), the ActivityNet C3D
      release sub_activitynet_v1-3.c3d.hdf5 (one source, c3d_fc7pca unless NAME=: a row every 8
      frames, so attended data with T = 2N and, every other row, input data), or a folder of
      <video id>.npy/.npz arrays (rows, D) from another extractor, whose rows cover --stride frames
      each (one source named after the folder unless NAME=). Ids match with or without "v_". OUT is
      written whole (built as OUT.part, which a rerun continues); annotated videos without features
      are listed in OUT.missing.txt.
  alstm dataset repair FILE
      reopens a file whose writer was killed: clears HDF5's "open for write" flags and drops the
      incomplete last video, so that readers open it normally (a writer does this by itself).
"""

from __future__ import annotations

import argparse
import json
import math

from alstm_core.progress import progress_bar
from alstm_core.storage import CHUNK_FRAMES
from fuel_datasets import build_activitynet, build_hollywood2, convert_legacy, describe, repair
from fuel_datasets.errors import DatasetError
from reproduce.commands.common import parse_pairs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION")
    sub.required = True
    info = sub.add_parser("info", help="describe a feature file (ours or legacy Fuel)")
    info.add_argument("file", help="HDF5 feature file")
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    convert = sub.add_parser("convert", help="convert a legacy Fuel H5PYDataset file into our layout")
    convert.add_argument("legacy", help="legacy Fuel H5PYDataset file")
    convert.add_argument("out", help="output feature file (our layout)")
    convert.add_argument("--source", action="append", metavar="OLD=NEW", help="rename a source (repeatable)")
    convert.add_argument("--stride", action="append", metavar="NAME=FRAMES",
                         help="frames between rows of an output source (default 16; repeatable)")
    convert.add_argument("--split", action="append", metavar="OLD=NEW",
                         help="map a legacy split onto train, valid or test (repeatable)")
    convert.add_argument("--fps", type=float, default=math.nan, help="frame rate to record (default unknown)")
    convert.add_argument("--class-names", metavar="FILE", help="text file with one class name per line")
    build = sub.add_parser("build", help="per-video features + a dataset's annotations → the protocol's file",
                           description="Per-video features + a dataset's annotations → the feature file "
                           "that `alstm train` and experiments/tableK.py --data DIR read.")
    kinds = build.add_subparsers(dest="build_dataset", metavar="DATASET")
    kinds.required = True
    for name, help_text in (("activitynet", "one sample per annotated segment (docs/paper.md §5)"),
                            ("hollywood2", "one multi-hot sample per clip, 823 train / 884 test")):
        kind = kinds.add_parser(name, help=help_text, description=help_text)
        if name == "activitynet":
            kind.add_argument("--annotations", required=True, metavar="JSON",
                              help="activity_net.v1-3.min.json (or another release's file of that shape)")
            kind.add_argument("--min-frames", type=int, default=192,
                              help="drop samples shorter than this (default 192, the window F)")
            kind.add_argument("--keep-videos-together", action="store_true",
                              help="draw whole videos for the valid split (default: samples, as the paper)")
        else:
            kind.add_argument("--clipsets", required=True, metavar="DIR", help="Hollywood2's ClipSets folder")
            kind.add_argument("--valid-fraction", type=float, default=0.0,
                              help="share of the training clips moved to valid (default 0, as the paper)")
        kind.add_argument("--features", action="append", required=True, metavar="[NAME=]PATH",
                          help="a feature file of ours, the ActivityNet C3D release, or a folder of "
                          "<video id>.npy/.npz arrays (repeatable)")
        kind.add_argument("--out", required=True, metavar="OUT.h5", help=f"the file to write (DIR/{name}.h5)")
        kind.add_argument("--stride", action="append", metavar="[NAME=]FRAMES",
                          help="frames one row of a folder of arrays covers (all folders, or NAME=FRAMES)")
        kind.add_argument("--seed", type=int, default=0, help="seed of the valid split (default 0)")
        kind.add_argument("--quiet", action="store_true", help="no progress bar")
    repair = sub.add_parser("repair", help="clean up after a killed writer")
    repair.add_argument("file", help="HDF5 feature file in our layout")


def _class_names(path: str | None) -> list[str] | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    except OSError as exc:
        raise DatasetError(f"cannot read class names from {path}: {exc.strerror}") from None


def _strides(values: list[str] | None) -> dict[str, int] | int | None:
    """--stride FRAMES (every folder) or --stride NAME=FRAMES (repeatable)."""
    if values and len(values) == 1 and "=" not in values[0]:
        try:
            return int(values[0])
        except ValueError:
            raise DatasetError(f"--stride {values[0]}: give a number of frames, or NAME=FRAMES") from None
    return parse_pairs(values, "--stride", int) or None


def run(args: argparse.Namespace) -> int:
    if args.dataset_command == "info":
        info = describe(args.file)
        print(json.dumps(info.to_json(), indent=2) if args.json else info.format_text())
    elif args.dataset_command == "repair":
        done = repair(args.file)
        state = "repaired" if done.recovered else "nothing to repair"
        print(f"{args.file}: {state}; {done.videos} complete videos")
    elif args.dataset_command == "build":
        common = dict(strides=_strides(args.stride), seed=args.seed, progress=not args.quiet)
        if args.build_dataset == "activitynet":
            summary = build_activitynet(args.annotations, args.features, args.out,
                                        min_frames=args.min_frames,
                                        keep_videos_together=args.keep_videos_together, **common)
        else:
            summary = build_hollywood2(args.clipsets, args.features, args.out,
                                       valid_fraction=args.valid_fraction, **common)
        print(summary.describe())
    else:
        done = convert_legacy(
            args.legacy, args.out, rename=parse_pairs(args.source, "--source"),
            frame_stride=parse_pairs(args.stride, "--stride", int) or CHUNK_FRAMES, fps=args.fps,
            class_names=_class_names(args.class_names),
            split_names=parse_pairs(args.split, "--split") or None,
            progress=lambda videos: progress_bar(videos, desc="convert", unit="video"))
        if done.copied:
            print(f"{args.legacy} is already in this project's layout and needs no conversion: copied as it "
                  f"is to {args.out} ({done.written} videos)")
        else:
            print(f"{args.out}: {done.written} videos written, {done.skipped} already there")
    return 0
