"""Break the code on purpose, one change at a time, and report which fast tests catch each change.

    .venv/bin/python tests/helpers/mutations.py [--only NAME ...] [--tests tests/<folder>/test_x.py ...]

Not run by the test suite (it runs the suite once per mutation). Each mutation replaces one exact piece
of text in one file of a copy of the tree (the copy lives in a temporary folder; the checkout is never
touched) and runs the fast tests there (`-m "not slow"`: no platform-bound golden numbers). A mutation
whose text is no longer found is reported as "stale", so the list keeps up with the code. Exit status 1
if any mutation is caught by no test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
FAST_TESTS = ["tests/fuel_datasets/test_streams_sampling.py", "tests/fuel_datasets/test_streams.py",
              "tests/reproduce/evaluation/test_multilabel_eval.py",
              "tests/reproduce/evaluation/test_evaluate.py", "tests/reproduce/evaluation/test_metrics.py",
              "tests/reproduce/tables/test_rows.py", "tests/reproduce/tables/test_runner.py",
              "tests/suites/test_learning.py", "tests/reproduce/training/test_loop.py",
              "tests/caffe_models/test_extract.py", "tests/reproduce/runtime/test_precision.py"]


class Mutation(NamedTuple):
    name: str
    path: str          # relative to the repository root
    old: str
    new: str


MUTATIONS = [
    # window sampling (fuel_datasets/streams.py)
    Mutation("train always on the first window", "fuel_datasets/streams.py",
             'picks = np.minimum((u * t["count"][rows]).astype(np.int64), t["count"][rows] - 1)',
             "picks = np.zeros(len(rows), np.int64)"),
    Mutation("train always on the last window", "fuel_datasets/streams.py",
             'picks = np.minimum((u * t["count"][rows]).astype(np.int64), t["count"][rows] - 1)',
             'picks = t["count"][rows] - 1'),
    Mutation("train never on the last window", "fuel_datasets/streams.py",
             'picks = np.minimum((u * t["count"][rows]).astype(np.int64), t["count"][rows] - 1)',
             'picks = np.minimum((u * (t["count"][rows] - 1)).astype(np.int64), '
             'np.maximum(t["count"][rows] - 2, 0))'),
    Mutation("test windows never at the last position", "fuel_datasets/streams.py",
             'generator.integers(0, t["count"][n], self.crops)',
             'generator.integers(0, np.maximum(t["count"][n] - 1, 1), self.crops)'),
    Mutation("the same permutation every epoch", "fuel_datasets/streams.py",
             "spawn_key=(_PERMUTATION, int(epoch))", "spawn_key=(_PERMUTATION, 0)"),
    # multi-label evaluation (Hollywood2, Tables 4-5)
    Mutation("multi-hot positives inverted in evaluation", "reproduce/evaluation/evaluate.py",
             "return first.cpu().numpy() > 0.5", "return first.cpu().numpy() < 0.5"),
    Mutation("video scores: max over windows instead of the mean", "reproduce/evaluation/evaluate.py",
             "rows.append(scores[start:start + count].mean(dim=0).numpy())",
             "rows.append(scores[start:start + count].max(dim=0).values.numpy())"),
    Mutation("multi-label scores: mean of sigmoids instead of sigmoid of mean logits", "bricks/alstm.py",
             "scores = torch.sigmoid(step_logits.mean(dim=1))",
             "scores = torch.sigmoid(step_logits).mean(dim=1)"),
    Mutation("multi-label accuracy on the first label only", "reproduce/evaluation/metrics.py",
             "return float(np.mean(positives[np.arange(scores.shape[0]), top]))",
             "return float(np.mean(np.argmax(positives, axis=1) == top))"),
    Mutation("mAP and mAP_interpolated swapped in the report", "reproduce/evaluation/metrics.py",
             'mAP=m_ap,\n        mAP_interpolated=m_ap_int,',
             'mAP=m_ap_int,\n        mAP_interpolated=m_ap,'),
    # learning
    Mutation("gradients zeroed after backward", "reproduce/training/loop.py",
             "    loss.backward()\n",
             "    loss.backward()\n    state.optimizer.zero_grad(set_to_none=True)\n"),
    # the tables layer
    Mutation("findings drops a claim whose row is missing", "reproduce/tables/runner.py",
             'lines.append(f"[MISSING] {claim}: Table {number} has no row {absent[0]!r}")', "pass"),
    Mutation("markdown swaps paper and measured", "reproduce/tables/runner.py",
             "f\"{fmt(row['paper'].get(m))} | {fmt(row['measured'][m])}\"",
             "f\"{fmt(row['measured'][m])} | {fmt(row['paper'].get(m))}\""),
    Mutation("a paper number mistyped", "reproduce/tables/rows.py",
             'Row("aLSTM-VGG_act (fc8)", _acmap(48.1, 48.6)',
             'Row("aLSTM-VGG_act (fc8)", _acmap(48.1, 48.9)'),
    Mutation("a row reads a source the benchmark lacks", "reproduce/tables/rows.py",
             '"alstm-c3d-fc8": Model("alstm-c3d-fc8", "c3d_fc6", "c3d_fc8")',
             '"alstm-c3d-fc8": Model("alstm-c3d-fc8", "c3d_fc6", "c3d_fc7")'),
    # extraction's automatic precision: within 1% of float32 relative to each layer's scale
    Mutation("auto precision judges the absolute error", "caffe_models/extract.py",
             "worst = max(float((low[k].float() - exact[k]).abs().max() "
             "/ exact[k].abs().max().clamp_min(1e-12))",
             "worst = max(float((low[k].float() - exact[k]).abs().max())"),
]


def _copy_tree(into: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "results", "__pycache__", ".pytest_cache", "*.egg-info",
                                    ".ruff_cache", ".hypothesis")
    shutil.copytree(ROOT, into, ignore=ignore, dirs_exist_ok=True)


def _failed_tests(tree: Path, tests: list[str]) -> tuple[list[str], str]:
    """The test ids that fail in ``tree`` (and pytest's last line)."""
    existing = [t for t in tests if (tree / t).exists()]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider",
                           "-rf", *existing], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    failed = sorted(set(re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)))
    errors = sorted(set(re.findall(r"^ERROR (\S+)", proc.stdout, flags=re.M)))
    return failed + [f"{e} (error)" for e in errors], (proc.stdout.strip().splitlines() or [""])[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME", help="mutations whose name contains NAME")
    parser.add_argument("--tests", nargs="+", default=FAST_TESTS, help="test files to run per mutation")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
    uncaught = 0
    with tempfile.TemporaryDirectory(prefix="alstm-mutations-") as scratch:
        base = Path(scratch) / "base"
        _copy_tree(base)
        failed, last = _failed_tests(base, args.tests)
        if failed:
            print(f"the unmutated tree fails {failed} ({last}); fix that first", file=sys.stderr)
            return 2
        print("| mutation | caught by |\n|---|---|")
        for mutation in chosen:
            tree = Path(scratch) / "mutant"
            shutil.rmtree(tree, ignore_errors=True)
            shutil.copytree(base, tree)
            target = tree / mutation.path
            text = target.read_text(encoding="utf-8")
            if text.count(mutation.old) != 1:
                print(f"| {mutation.name} | stale: the text occurs {text.count(mutation.old)} times in "
                      f"{mutation.path} |", flush=True)
                uncaught += 1
                continue
            target.write_text(text.replace(mutation.old, mutation.new), encoding="utf-8")
            failed, _ = _failed_tests(tree, args.tests)
            uncaught += not failed
            caught = ", ".join(f.removeprefix("tests/") for f in failed) or "**NOTHING**"
            print(f"| {mutation.name} | {caught} |", flush=True)
    return 1 if uncaught else 0


if __name__ == "__main__":
    sys.exit(main())
