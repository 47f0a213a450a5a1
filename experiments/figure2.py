"""Figure 2 of the paper: per test video, the frames of highest (green) and lowest (red) attention.

The videos' features come from the dataset file; the attention is that of `alstm highlight` (windows over
the whole video, weights averaged per attended frame). Frames are shown from the video files (--videos
DIR, named <video id>.<ext> as `alstm extract` names them). The built-in benchmark has no frames: each
attended frame is drawn as a tile saying whether it carries the class evidence (the generator's `salient`
ground truth), and the JSON reports how many of the highest- and lowest-attention frames are salient.

Models: --checkpoint CKPT … (one row per model), else the aLSTM-VGG_obj/sce/act (fc8) models of the tables
(trained on first use under --results, reused afterwards, as the table scripts do). Writes
RESULTS/figure2/<video id>.png and RESULTS/figure2.json. figure3.py shares this module.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _table import add_run_arguments  # noqa: E402

from alstm_core.atomic import write_json  # noqa: E402
from alstm_core.storage import ATTENDED_STRIDE, CHUNK_FRAMES, TARGETS  # noqa: E402
from reproduce.errors import ReproduceError  # noqa: E402

FAMILY_MODELS = ("alstm-obj-fc8", "alstm-sce-fc8", "alstm-act-fc8")   # Figures 2 and 3: the fc8 models
SALIENT, OTHER = (235, 150, 40), (105, 115, 128)                      # benchmark tiles


def parse_args(name: str, doc: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"{name}.py", description=doc.split("\n\n")[0])
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (the built-in benchmark) or a folder with activitynet.h5")
    parser.add_argument("--checkpoint", nargs="+", default=None, metavar="CKPT",
                        help="checkpoints to show (default: the tables' aLSTM-VGG_{obj,sce,act} (fc8))")
    parser.add_argument("--videos", default=None, metavar="DIR", help="folder of the video files")
    parser.add_argument("--video-ids", nargs="+", default=None, metavar="ID",
                        help="test videos to show (default: --count videos of distinct classes)")
    parser.add_argument("--count", type=int, default=3, help="videos shown by default (3)")
    add_run_arguments(parser)
    return parser.parse_args(argv)


def load_highlight_models(args):
    """(data path, builtin?, [LoadedModel]) from --checkpoint or the tables' runner."""
    from reproduce.tables.rows import RunSettings
    from reproduce.tables.runner import Runner, prepare_data

    settings = RunSettings.quick() if args.quick else (
        RunSettings.benchmark() if args.data == "synthetic" else RunSettings.paper())
    files = prepare_data(args.data, settings, args.results)
    if args.checkpoint:
        paths = args.checkpoint
    else:
        runner = Runner(files, settings, args.results, device=args.device, progress=not args.quiet,
                        seed=args.seed)
        paths = [runner.checkpoint("activitynet", key) for key in FAMILY_MODELS]
    from reproduce.highlighting.pipeline import load_highlight_models as load_checkpoints

    return files.path("activitynet"), files.builtin, load_checkpoints(paths, args.device or "cpu")


def choose_videos(ds, args) -> list[str]:
    """--video-ids, else the first --count test videos (by id) of distinct classes that have frames."""
    if args.video_ids:
        unknown = [v for v in args.video_ids if v not in ds.splits.get("test", [])]
        if unknown:
            raise ReproduceError(f"not test videos of the file: {', '.join(unknown)}")
        return list(args.video_ids)
    chosen, classes = [], set()
    for vid in sorted(ds.splits.get("test", [])):
        label = labels(ds, vid)[0]
        if label in classes or (args.videos and find_video(args.videos, vid) is None):
            continue
        chosen.append(vid)
        classes.add(label)
        if len(chosen) == args.count:
            break
    return chosen


def find_video(folder: str, video_id: str) -> str | None:
    from reproduce.extraction.inputs import VIDEO_EXTENSIONS

    for ext in VIDEO_EXTENSIONS:
        for name in (video_id + ext, video_id + ext.upper()):
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    return None


def thumbnails(frames, video_path: str | None, salient: np.ndarray | None) -> dict[int, np.ndarray]:
    """{frame: (h, 160, 3) uint8}: decoded from the video, or benchmark tiles from the ground truth."""
    from PIL import Image, ImageDraw

    wanted, out = set(int(f) for f in frames), {}
    if video_path is None:
        for f in wanted:
            hot = salient is not None and bool(salient[min(f // ATTENDED_STRIDE, len(salient) - 1)])
            image = Image.new("RGB", (160, 90), SALIENT if hot else OTHER)
            ImageDraw.Draw(image).text((8, 8), f"frame {f}\n{'salient' if hot else 'other'}", fill=(255,) * 3)
            out[f] = np.asarray(image)
        return out
    from caffe_models.video import VideoReader

    with VideoReader(video_path) as reader:
        for chunk in reader.chunks(CHUNK_FRAMES):
            for i in range(len(chunk.frames)):
                if chunk.start + i in wanted:
                    image = Image.fromarray(chunk.frames[i])
                    height = max(1, round(160 * image.height / image.width))
                    out[chunk.start + i] = np.asarray(image.resize((160, height), Image.BILINEAR))
            if len(out) == len(wanted):
                break
    return out


def salient_truth(ds, video_id: str) -> np.ndarray | None:
    """(R,) bool per attended row (8 frames), from the benchmark's ``salient`` source; None if none."""
    return ds.read("salient", video_id)[:, 0] > 0.5 if "salient" in ds.sources else None


def labels(ds, video_id: str) -> list[str]:
    target = np.asarray(ds.read(TARGETS, video_id))
    indices = [int(target)] if target.ndim == 0 else np.flatnonzero(target > 0.5).tolist()
    return [ds.class_names[i] for i in indices]


def run_script(name: str, doc: str, body, argv: list[str] | None) -> int:
    """Parse the arguments and run ``body(args)``; a user error is one line and exit code 2."""
    args = parse_args(name, doc, argv)
    try:
        body(args)
    except ReproduceError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def figure2(args) -> None:
    from fuel_datasets import open_dataset
    from reproduce.highlighting.figures import figure2_selection, render_figure2
    from reproduce.highlighting.pipeline import highlight_features
    from reproduce.tables.runner import BENCHMARK_NOTE

    data, builtin, loaded = load_highlight_models(args)
    out_dir = os.path.join(args.results, "figure2")
    os.makedirs(out_dir, exist_ok=True)
    entries, counts = [], {"high": [0, 0], "low": [0, 0]}
    with open_dataset(data) as ds:
        if args.videos is None and "salient" not in ds.sources:
            raise ReproduceError(f"{data} has no frames to show: give --videos DIR with the video files")
        for vid in choose_videos(ds, args):
            highlights = highlight_features(ds, vid, loaded, device=args.device or "cpu")
            rows = figure2_selection(highlights, k=4)
            truth = salient_truth(ds, vid)
            frames = {shown.frame for row in rows for shown in row.high + row.low}
            path = find_video(args.videos, vid) if args.videos else None
            png = render_figure2(rows, thumbnails(frames, path, truth))
            with open(os.path.join(out_dir, f"{vid}.png"), "wb") as f:
                f.write(png)
            shown_rows = []
            for row in rows:
                shown = {"label": row.label}
                for kind in ("high", "low"):
                    shown[kind] = [shown_frame._asdict() for shown_frame in getattr(row, kind)]
                    if truth is not None:
                        for item in shown[kind]:
                            item["salient"] = bool(truth[item["frame"] // ATTENDED_STRIDE])
                            counts[kind][0] += item["salient"]
                            counts[kind][1] += 1
                shown_rows.append(shown)
            top = highlights.to_json()["top_classes"][:3]
            entries.append({"video_id": vid, "labels": labels(ds, vid), "top_classes": top,
                            "models": shown_rows, "figure": os.path.join(out_dir, f"{vid}.png")})
            print(f"{vid}: top class {top[0]['class']} → {entries[-1]['figure']}")
    result = {"figure": 2, "data": data, "builtin_benchmark": builtin, "videos": entries}
    if builtin:
        result["note"] = BENCHMARK_NOTE
        result["salient_fraction"] = {k: (c[0] / c[1] if c[1] else None) for k, c in counts.items()}
        print(f"salient among the highest-attention frames: {result['salient_fraction']['high']:.2f}, "
              f"among the lowest: {result['salient_fraction']['low']:.2f}")
    write_json(os.path.join(args.results, "figure2.json"), result)
    print(f"written: {os.path.join(args.results, 'figure2.json')}")


def main(argv: list[str] | None = None) -> int:
    return run_script("figure2", __doc__, figure2, argv)


if __name__ == "__main__":
    sys.exit(main())
