"""Shared command line of the experiment scripts: which data, how much training, where results go."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every experiment script shares (tables and figures): how much training, on which
    device, where results go."""
    parser.add_argument("--quick", action="store_true",
                        help="a small benchmark and few iterations (minutes, for checks)")
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument("--device", default=None,
                        help="cpu or cuda (default: cuda if available, else cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training runs (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def main(number: int, argv: list[str] | None = None) -> int:
    from reproduce.errors import ReproduceError
    from reproduce.tables.rows import TABLES, RunSettings
    from reproduce.tables.runner import Runner, markdown, prepare_data, run_table, write_result

    parser = argparse.ArgumentParser(
        prog=f"table{number}.py",
        description=f"{TABLES[number]['title']}: trains and evaluates every row, prints the paper's numbers "
        "beside the measured ones and writes RESULTS/table{K}.json. Finished runs are reused and "
        "interrupted ones resume.",
    )
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (the built-in benchmark, generated on first use) or a folder with "
                             "activitynet.h5 / hollywood2.h5 feature files (default: synthetic)")
    add_run_arguments(parser)
    args = parser.parse_args(argv)

    if args.quick:
        settings = RunSettings.quick()
    elif args.data == "synthetic":
        settings = RunSettings.benchmark()
    else:
        settings = RunSettings.paper()
    try:
        files = prepare_data(args.data, settings, args.results)
        runner = Runner(files, settings, args.results, device=args.device, progress=not args.quiet,
                        seed=args.seed)
        result = run_table(number, runner)
    except ReproduceError as exc:
        print(f"table{number}: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(result))
    print(f"\nwritten: {write_result(result, args.results)}")
    return 0
