"""Every table of the paper in one go (what `make reproduce-all` runs), then a summary.

Runs table1.py … table5.py in order with the same options (models are shared between tables, so each
is trained once), prints each table and a closing summary of the orderings the paper reports, and
writes RESULTS/summary.md. Interrupted runs resume where they stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from reproduce.errors import ReproduceError
    from reproduce.tables.rows import TABLES, RunSettings
    from reproduce.tables.runner import (
        Runner,
        findings,
        markdown,
        prepare_data,
        run_table,
        write_result,
        write_summary,
    )

    parser = argparse.ArgumentParser(prog="reproduce_all.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (the built-in benchmark) or a folder of feature files")
    parser.add_argument("--quick", action="store_true", help="small benchmark, few iterations")
    parser.add_argument("--results", default="results")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available, else cpu)")
    parser.add_argument("--tables", default="1,2,3,4,5", help="comma-separated table numbers")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    settings = (RunSettings.quick() if args.quick else
                RunSettings.benchmark() if args.data == "synthetic" else RunSettings.paper())
    start = time.perf_counter()
    results = []
    try:
        files = prepare_data(args.data, settings, args.results)
        runner = Runner(files, settings, args.results, device=args.device, progress=not args.quiet)
        for number in (int(n) for n in args.tables.split(",")):
            if number not in TABLES:
                raise ReproduceError(f"no table {number}: choose among {sorted(TABLES)}")
            result = run_table(number, runner)
            write_result(result, args.results)
            print(markdown(result) + "\n", flush=True)
            results.append(result)
    except ReproduceError as exc:
        print(f"reproduce-all: error: {exc}", file=sys.stderr)
        return 2
    lines = findings(results)
    print("Findings of the paper, checked on these runs:")
    for line in lines:
        print(f"  {line}")
    path = write_summary(results, lines, args.results, time.perf_counter() - start)
    print(f"\nsummary: {path}  ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
