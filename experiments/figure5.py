"""Figure 5 of the paper: per attended family (Object, Scene, Action), the 5 ActivityNet classes whose test
accuracy gains most over the vanilla LSTM-C3D (fc6), with aLSTM-VGG_<family> (fc8).

A class's accuracy is the fraction of its test videos whose top-scoring class is the right one (videos
scored as in docs/paper.md §4: random windows plus their flips, averaged). The models are those of the tables
(trained on first use under --results, reused afterwards). Writes RESULTS/figure5.json (every class's
accuracies and gain per family) and RESULTS/figure5.png (one bar chart per family, gains in percentage
points, each bar labelled vanilla → aLSTM).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _table import add_run_arguments  # noqa: E402

from reproduce.errors import ReproduceError  # noqa: E402

VANILLA = "lstm-c3d-fc6"
FAMILIES = {"Object": "alstm-obj-fc8", "Scene": "alstm-sce-fc8", "Action": "alstm-act-fc8"}


def per_class_accuracy(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scores (V, C), positives (V, C) bool one-hot → (accuracy (C,), NaN for a class without test videos;
    videos per class (C,))."""
    truth = positives.argmax(axis=1)                                          # (V,)
    right = scores.argmax(axis=1) == truth                                    # (V,)
    counts = np.bincount(truth, minlength=scores.shape[1])                    # (C,)
    hits = np.bincount(truth, weights=right.astype(float), minlength=scores.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / counts, np.nan), counts


def top_gains(gain: np.ndarray, k: int = 5) -> list[int]:
    """Indices of the k largest gains (NaN last; ties: lower class index)."""
    order = np.lexsort((np.arange(len(gain)), -np.nan_to_num(gain, nan=-np.inf)))
    return [int(i) for i in order[:k] if not np.isnan(gain[i])]


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = result["families"]
    fig, axes = plt.subplots(1, len(families), figsize=(5.2 * len(families), 3.4), squeeze=False,
                             layout="constrained")
    for ax, (family, entry) in zip(axes[0], families.items(), strict=True):
        top = entry["top"]
        names = [item["class"] for item in top][::-1]
        gains = [100 * item["gain"] for item in top][::-1]
        bars = ax.barh(names, gains, color="#3b6fb6")
        for bar, item in zip(bars, top[::-1], strict=True):
            ax.annotate(f" {100 * item['vanilla']:.0f} → {100 * item['alstm']:.0f}%",
                        (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center", fontsize=8)
        ax.set_title(f"{family} ({entry['model']})", fontsize=10)
        ax.set_xlabel("accuracy gain over LSTM-C3D (fc6), points")
        ax.set_xlim(0, max(gains + [1]) * 1.45)
        ax.tick_params(axis="y", labelsize=8)
    if result.get("note"):
        fig.suptitle(result["note"], fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure5(args) -> dict:
    from alstm_core.atomic import write_json
    from fuel_datasets import open_dataset
    from reproduce.evaluation.evaluate import evaluate_checkpoints
    from reproduce.tables.rows import RunSettings
    from reproduce.tables.runner import BENCHMARK_NOTE, Runner, prepare_data

    settings = RunSettings.quick() if args.quick else (
        RunSettings.benchmark() if args.data == "synthetic" else RunSettings.paper())
    files = prepare_data(args.data, settings, args.results)
    runner = Runner(files, settings, args.results, device=args.device, progress=not args.quiet,
                    seed=args.seed)
    data = files.path("activitynet")

    def accuracy(key):
        scores = evaluate_checkpoints(data, [runner.checkpoint("activitynet", key)], crops=settings.crops,
                                      device=args.device).video_scores
        return per_class_accuracy(scores.scores, scores.positives)

    with open_dataset(data) as ds:
        names = list(ds.class_names)
        if ds.multilabel:
            raise ReproduceError(f"{data} is multi-label; Figure 5 uses single-label (ActivityNet) data")
    vanilla, counts = accuracy(VANILLA)
    result = {"figure": 5, "data": data, "builtin_benchmark": files.builtin, "vanilla": VANILLA,
              "crops": settings.crops, "families": {}}
    for family, key in FAMILIES.items():
        alstm, _ = accuracy(key)
        gain = alstm - vanilla
        result["families"][family] = {
            "model": key,
            "top": [{"class": names[c], "gain": float(gain[c]), "alstm": float(alstm[c]),
                     "vanilla": float(vanilla[c]), "videos": int(counts[c])} for c in top_gains(gain)],
            "all": {names[c]: {"alstm": float(alstm[c]), "vanilla": float(vanilla[c]),
                               "videos": int(counts[c])} for c in range(len(names)) if counts[c] > 0},
        }
    if files.builtin:
        result["note"] = BENCHMARK_NOTE
    os.makedirs(args.results, exist_ok=True)
    plot(result, os.path.join(args.results, "figure5.png"))
    write_json(os.path.join(args.results, "figure5.json"), result)
    for family, entry in result["families"].items():
        tops = ", ".join(f"{t['class']} +{100 * t['gain']:.0f}" for t in entry["top"])
        print(f"{family:>6} ({entry['model']}): {tops}")
    print(f"written: {os.path.join(args.results, 'figure5.json')} and figure5.png")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="figure5.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (the built-in benchmark) or a folder with activitynet.h5")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    try:
        figure5(args)
    except ReproduceError as exc:
        print(f"figure5: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
