"""Figure 3 of the paper: per test video, the attended frames of one window with their brightness following
the attention weight and the weight printed under each, one row per attended family (Object, Scene,
Action).

The window is the one where the video's top class (the models' average) scores highest; the weights are
each model's, averaged over the window's steps; brightness is normalised by each row's largest weight.
Frames, models and videos are chosen as in figure2.py (same options). Writes RESULTS/figure3/<video id>.png
and RESULTS/figure3.json; on the built-in benchmark the tiles and the JSON say which frames are salient.
"""

from __future__ import annotations

import os
import sys

from figure2 import (
    choose_videos,
    find_video,
    labels,
    load_highlight_models,
    run_script,
    salient_truth,
    thumbnails,
)

from alstm_core.atomic import write_json
from alstm_core.storage import ATTENDED_STRIDE
from reproduce.errors import ReproduceError


def figure3(args) -> None:
    from fuel_datasets import open_dataset
    from reproduce.highlighting.figures import figure3_selection, render_figure3
    from reproduce.highlighting.pipeline import highlight_features
    from reproduce.tables.runner import BENCHMARK_NOTE

    data, builtin, loaded = load_highlight_models(args)
    out_dir = os.path.join(args.results, "figure3")
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    with open_dataset(data) as ds:
        if args.videos is None and "salient" not in ds.sources:
            raise ReproduceError(f"{data} has no frames to show: give --videos DIR with the video files")
        for vid in choose_videos(ds, args):
            highlights = highlight_features(ds, vid, loaded, device=args.device or "cpu")
            strip = figure3_selection(highlights, columns=12)
            if strip is None:
                raise ReproduceError("these models have no attention (vanilla LSTM): nothing to show")
            truth = salient_truth(ds, vid)
            path = find_video(args.videos, vid) if args.videos else None
            png = render_figure3(strip, thumbnails(strip.frames, path, truth))
            figure = os.path.join(out_dir, f"{vid}.png")
            with open(figure, "wb") as f:
                f.write(png)
            entry = {"video_id": vid, "labels": labels(ds, vid), "figure": figure, "window": strip.window,
                     "class": strip.class_name, "score": strip.score, "frames": strip.frames,
                     "times": strip.times, "rows": [row._asdict() for row in strip.rows]}
            if truth is not None:
                entry["salient"] = [bool(truth[f // ATTENDED_STRIDE]) for f in strip.frames]
            entries.append(entry)
            print(f"{vid}: window {strip.window} (top class {strip.class_name}) → {figure}")
    result = {"figure": 3, "data": data, "builtin_benchmark": builtin, "videos": entries}
    if builtin:
        result["note"] = BENCHMARK_NOTE
    write_json(os.path.join(args.results, "figure3.json"), result)
    print(f"written: {os.path.join(args.results, 'figure3.json')}")


def main(argv: list[str] | None = None) -> int:
    return run_script("figure3", __doc__, figure3, argv)


if __name__ == "__main__":
    sys.exit(main())
