"""Running a table of the paper: data on first use, each model trained once, each row evaluated once.

Everything lands under one results folder (default ``results/``)::

    results/data/<settings>-activitynet.h5, <settings>-hollywood2.h5   the built-in benchmark files
    results/runs/<data tag>/<dataset>/<model key>/                      alstm train's run folders
                 .../done.json                                         written when a run has finished
                 .../eval-<crops>.json                                 its test-set report
    results/table<K>.json                                              the table, paper beside measured

A run interrupted at any point continues where it stopped (the training run resumes from its
``last.pt``; finished runs and evaluations are reused), so a killed ``make reproduce-all`` loses little.
A run folder is reused only if its saved configuration equals the one the row asks for; otherwise it is
an error that names the folder, so stale results never mix with new ones.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from typing import Any

from alstm_core.atomic import write_json, write_text
from reproduce.errors import ReproduceError
from reproduce.tables.rows import MODELS, TABLES, Row, RunSettings, finetune_source, train_config
from reproduce.training.config import TrainConfig

BENCHMARK_NOTE = ("Built-in benchmark: a generated dataset that tests the implementation, not evidence for "
                  "the paper's claims; compare the orderings of rows, not the values.")


@dataclass(frozen=True)
class DataFiles:
    """The feature files of the two datasets and a tag naming them in the run folders."""

    activitynet: str | None
    hollywood2: str | None
    tag: str
    builtin: bool

    def path(self, dataset: str) -> str:
        path = getattr(self, dataset)
        if path is None:
            raise ReproduceError(f"no {dataset} feature file: put {dataset}.h5 in the --data folder")
        return path


def synth_configs(settings: RunSettings):
    """The two benchmark configurations: single-label (ActivityNet tables) and multi-label (Hollywood2)."""
    from fuel_datasets.synthetic import SynthConfig

    # One seed for both: the two files then share their feature spaces, so that fine-tuning the
    # Hollywood2-like models from the ActivityNet-like ones transfers something, as in the paper.
    if settings.name == "quick":
        base = dict(num_classes=10, num_videos=240, seed=0)
        multi = dict(num_classes=8, num_videos=200, seed=0, multilabel=True)
    else:
        # 1,400 / 200 / 400 training / validation / test videos: fewer let the attention LSTMs fit the
        # training set within a hundred iterations and make the early-stopping choice noisy
        # (RunSettings.benchmark).
        base = dict(num_classes=20, num_videos=2000, seed=0)
        multi = dict(num_classes=12, num_videos=800, seed=0, multilabel=True)
    return SynthConfig(**base), SynthConfig(**multi)


def _atomic_json(path: str, payload: Any) -> None:
    write_json(path, payload, indent=2, sort_keys=True)


def prepare_data(data: str, settings: RunSettings, results: str) -> DataFiles:
    """``data`` is "synthetic" (generate the benchmark on first use) or a folder holding activitynet.h5
    and/or hollywood2.h5 in this project's layout."""
    if data != "synthetic":
        if not os.path.isdir(data):
            raise ReproduceError(f"--data {data}: not a folder; give a folder with activitynet.h5 and/or "
                                 "hollywood2.h5, or 'synthetic'")
        found = {name: os.path.join(data, f"{name}.h5") for name in ("activitynet", "hollywood2")}
        found = {k: (v if os.path.exists(v) else None) for k, v in found.items()}
        if not any(found.values()):
            raise ReproduceError(f"--data {data}: neither activitynet.h5 nor hollywood2.h5 is there")
        tag = os.path.basename(os.path.abspath(data)) or "data"
        return DataFiles(found["activitynet"], found["hollywood2"], tag, builtin=False)

    from fuel_datasets.synthetic import write_synthetic

    folder = os.path.join(results, "data")
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for dataset, config in zip(("activitynet", "hollywood2"), synth_configs(settings), strict=True):
        path = os.path.join(folder, f"{settings.name}-{dataset}.h5")
        if not os.path.exists(path):
            print(f"generating the built-in benchmark {path} ...", file=sys.stderr)
            write_synthetic(path, config)
        paths[dataset] = path
    return DataFiles(paths["activitynet"], paths["hollywood2"], f"synthetic-{settings.name}", builtin=True)


class Runner:
    """Trains and evaluates what the rows of a table need, reusing finished work."""

    def __init__(self, files: DataFiles, settings: RunSettings, results: str = "results",
                 device: str | None = None, progress: bool = True, seed: int = 0):
        self.files, self.settings, self.results = files, settings, results
        self.device, self.progress, self.seed = device, progress, seed

    def run_dir(self, dataset: str, key: str) -> str:
        return os.path.join(self.results, "runs", self.files.tag, dataset, key)

    def config(self, dataset: str, key: str) -> TrainConfig:
        init_from = None
        if dataset == "hollywood2" and self._transferable(key):
            init_from = self.checkpoint("activitynet", finetune_source(key))
        return train_config(MODELS[key], dataset, self.files.path(dataset), self.settings, init_from,
                            seed=self.seed)

    def unavailable(self, dataset: str, row: Row) -> str | None:
        """Why the dataset's file cannot give the row (a source it lacks; a baseline source whose width
        is not the class count), or None when it can. Quoted rows are always available."""
        from fuel_datasets import open_dataset

        if row.kind == "quoted":
            return None
        wanted = [row.baseline] if row.baseline else [
            s for key in row.models for s in (MODELS[key].input_source, MODELS[key].attended_source) if s]
        path = self.files.path(dataset)
        with open_dataset(path) as ds:
            missing = sorted({s for s in wanted if s not in ds.sources})
            if missing:
                return f"{path} has no {', '.join(missing)}"
            if row.baseline and ds.dim(row.baseline) != ds.num_classes:
                return (f"{row.baseline} of {path} has {ds.dim(row.baseline)} scores, not one per class "
                        f"({ds.num_classes}): the baseline needs a C3D fine-tuned on these classes")
        return None

    def _transferable(self, key: str) -> bool:
        """Whether the Hollywood2 model ``key`` can start from its ActivityNet model: both files must give
        its sources the same dimensions. (On the built-in benchmark ``c3d_fc8`` holds each file's own class
        scores, so aLSTM-C3D (fc8) is trained from scratch there.)"""
        from fuel_datasets import open_dataset

        if self.files.activitynet is None:
            return False
        model = MODELS[key]
        sources = [s for s in (model.input_source, model.attended_source) if s is not None]
        with open_dataset(self.files.activitynet) as a, open_dataset(self.files.hollywood2) as h:
            return all(s in a.sources and s in h.sources and a.dim(s) == h.dim(s) for s in sources)

    def checkpoint(self, dataset: str, key: str) -> str:
        """best.pt of the model, trained first if needed (resuming an interrupted run)."""
        from reproduce.training.loop import train

        folder = self.run_dir(dataset, key)
        done = os.path.join(folder, "done.json")
        config = self.config(dataset, key)
        saved_path = os.path.join(folder, "config.json")
        if os.path.exists(saved_path):
            saved = TrainConfig.read_json(saved_path)
            # the file records the resolved multilabel and flip settings; compare what the row decides
            if saved.replace(multilabel=config.multilabel, flip=config.flip) != config:
                raise ReproduceError(f"{folder} holds a run with another configuration; delete it (or use "
                                     "another --results folder) to train this row again")
        if not os.path.exists(done):
            resume = os.path.exists(os.path.join(folder, "last.pt"))
            print(f"training {dataset}/{key}{' (resuming)' if resume else ''}", file=sys.stderr)
            start = time.perf_counter()
            result = train(config, folder, resume=resume, device=self.device, progress=self.progress)
            _atomic_json(done, {"iterations": result.iterations, "stopped_early": result.stopped_early,
                                "best_iteration": result.best_iteration,
                                "best_valid_loss": result.best_valid_loss,
                                "seconds": time.perf_counter() - start})
        return os.path.join(folder, "best.pt")

    def evaluate_model(self, dataset: str, key: str) -> dict[str, Any]:
        """The test-set report (`Evaluation.to_dict`) of one model, evaluated once and kept beside its
        run as eval-<crops>.json."""
        from reproduce.evaluation.evaluate import evaluate_checkpoints

        path = os.path.join(self.run_dir(dataset, key), f"eval-{self.settings.crops}.json")
        checkpoint = self.checkpoint(dataset, key)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        report = evaluate_checkpoints(self.files.path(dataset), [checkpoint], crops=self.settings.crops,
                                      device=self.device).to_dict()
        _atomic_json(path, report)
        return report

    def evaluate_row(self, dataset: str, row: Row) -> dict[str, Any] | None:
        """The report (`Evaluation.to_dict`) of a row; None for a quoted row."""
        from reproduce.evaluation.evaluate import evaluate_baseline, evaluate_checkpoints

        if row.kind == "quoted":
            return None
        if row.kind == "baseline":
            return evaluate_baseline(self.files.path(dataset), row.baseline,
                                     crops=self.settings.crops).to_dict()
        if row.kind == "model":
            return self.evaluate_model(dataset, row.models[0])
        checkpoints = [self.checkpoint(dataset, key) for key in row.models]
        return evaluate_checkpoints(self.files.path(dataset), checkpoints, crops=self.settings.crops,
                                    device=self.device).to_dict()


def run_table(number: int, runner: Runner) -> dict[str, Any]:
    """Every row of Table ``number``: the paper's values beside the measured ones (in %)."""
    table = TABLES[number]
    dataset, metrics = table["dataset"], table["metrics"]
    missing = {row.name: runner.unavailable(dataset, row) for row in table["rows"]}
    for name, why in missing.items():
        if why:
            print(f"table{number}: {name}: not run: {why}", file=sys.stderr)
    runnable = [row for row in table["rows"] if not missing[row.name]]
    for key in dict.fromkeys(key for row in runnable for key in row.models):
        runner.checkpoint(dataset, key)
    rows = []
    for row in table["rows"]:
        report = None if missing[row.name] else runner.evaluate_row(dataset, row)
        measured = {m: (None if report is None else round(100.0 * report[m], 2)) for m in metrics}
        entry = {"name": row.name, "kind": row.kind, "models": list(row.models), "paper": row.paper,
                 "measured": measured}
        if missing[row.name]:
            entry["not_run"] = missing[row.name]
        if report is not None and "members" in report:
            entry["members"] = [{m: round(100.0 * member[m], 2) for m in metrics}
                                for member in report["members"]]
        rows.append(entry)
    return {
        "table": number, "title": table["title"], "dataset": dataset, "metrics": list(metrics),
        "data": runner.files.path(dataset), "builtin_benchmark": runner.files.builtin,
        "settings": {"name": runner.settings.name, "changes": runner.settings.changes,
                     "h2_changes": runner.settings.h2_changes, "crops": runner.settings.crops},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    """The table as markdown: one column pair per metric, paper | measured."""
    metrics = result["metrics"]
    names = {"accuracy": "AC", "mAP": "mAP"}
    head = "| Model | " + " | ".join(f"{names[m]} paper | {names[m]} measured" for m in metrics) + " |"
    lines = [f"**{result['title']}**", "", head, "|---|" + "---:|---:|" * len(metrics)]

    def fmt(value):
        return "–" if value is None else f"{value:.1f}"

    for row in result["rows"]:
        cells = " | ".join(f"{fmt(row['paper'].get(m))} | {fmt(row['measured'][m])}" for m in metrics)
        lines.append(f"| {row['name']} | {cells} |")
    not_run = [row for row in result["rows"] if row.get("not_run")]
    if not_run:
        lines += [""] + [f"- {row['name']}: not run: {row['not_run']}" for row in not_run]
    if result["builtin_benchmark"]:
        lines += ["", f"_{BENCHMARK_NOTE}_"]
    return "\n".join(lines)


def write_result(result: dict[str, Any], results: str) -> str:
    os.makedirs(results, exist_ok=True)
    path = os.path.join(results, f"table{result['table']}.json")
    _atomic_json(path, result)
    return path


def _by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in result["rows"]}


def claims(number: int) -> list[tuple[str, str, str | None]]:
    """The paper's qualitative claims about Table ``number``, from its rows in `reproduce.tables.rows`:
    (claim, row that should score higher, row it should beat — None: the row's best ensemble member)."""
    rows = TABLES[number]["rows"]
    out = []
    if number in (1, 4):    # every attention LSTM of variant (a) beats the vanilla LSTM on C3D fc6
        out += [(f"Table {number}: {row.name} beats LSTM-C3D (fc6)", row.name, "LSTM-C3D (fc6)")
                for row in rows if row.kind == "model" and MODELS[row.models[0]].attended_source is not None
                and MODELS[row.models[0]].variant == "a"]
    out += [(f"Table {number}: {row.name} beats its vanilla LSTM", row.name, row.vanilla)
            for row in rows if row.vanilla is not None]
    if number == 4:
        out.append(("Table 4: variant (a) beats variant (b)", "aLSTM-VGG_obj (fc8)",
                    "aLSTM-VGG_obj (fc8)(b)"))
    out += [(f"Table {number}: ensemble {row.name} beats its best member", row.name, None)
            for row in rows if row.kind == "ensemble"]
    return out


def findings(results: list[dict[str, Any]]) -> list[str]:
    """The paper's qualitative claims (`claims`) about the tables in ``results``, checked on measured
    mAP: one line each, "[ok]", "[NOT MET]", "[NOT RUN]" (a row the data could not give) or "[MISSING]"
    (a row the result does not hold). Every claim of every table given gets a line."""
    lines = []
    for result in results:
        rows, number = _by_name(result), result["table"]
        for claim, better_name, worse_name in claims(number):
            absent = [n for n in (better_name, worse_name) if n is not None and n not in rows]
            if absent:
                lines.append(f"[MISSING] {claim}: Table {number} has no row {absent[0]!r}")
                continue
            better = rows[better_name]["measured"].get("mAP")
            if worse_name is None:
                members = rows[better_name].get("members") or []
                worse = max((m["mAP"] for m in members), default=None)
            else:
                worse = rows[worse_name]["measured"].get("mAP")
            if better is None or worse is None:
                lines.append(f"[NOT RUN] {claim}: no measured mAP")
                continue
            verdict = "ok" if better > worse else "NOT MET"
            lines.append(f"[{verdict}] {claim}: {better:.1f} vs {worse:.1f} mAP")
    return lines


def write_summary(results: list[dict[str, Any]], lines: list[str], results_dir: str, seconds: float) -> str:
    """RESULTS/summary.md: every table, then the findings."""
    parts = [markdown(result) for result in results]
    parts.append("Findings of the paper, checked on these runs:\n\n"
                 + "\n".join(f"- {line}" for line in lines))
    parts.append(f"Wall time: {seconds / 60:.1f} min; {platform.platform()}, "
                 f"Python {platform.python_version()}.")
    path = os.path.join(results_dir, "summary.md")
    return write_text(path, "\n\n".join(parts) + "\n")
