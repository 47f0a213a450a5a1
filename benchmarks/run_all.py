"""Run every ``benchmarks/bench_*.py`` and write ``benchmarks/results/summary.md`` (what `make bench` does).

Each script runs in its own process and writes its JSON (``results/<name>.json``); this script then
reads them back and writes one table: per benchmark its key figures, the target each is judged
against, whether it is met, and the peak memory (RSS) beside the speed figures, with the machine
they were measured on. Peak RSS is what the script reports itself (``_common.peak_rss``: the script
and its largest child process); for a script that reports none, the figure ``wait4`` returns for it.

``--quick`` passes ``--quick`` to every script (small sizes: a smoke run whose figures say little)
and writes to ``results/quick/`` instead, so that it never overwrites the full results.
``--summarise-only`` writes the summary from the JSON already there, running nothing.
``--device cuda`` runs the benchmarks that have a GPU form (bricks, train, extract, finetune) with
``--device cuda`` into ``results/cuda/``, and its summary gives each figure's speed-up over the CPU
figure of ``results/`` beside it.
A script that fails is reported as failed in the summary, and the exit code is 1.

Usage: ``python benchmarks/run_all.py [--quick] [--device cpu|cuda] [--only NAME ...] [--summarise-only]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from alstm_core.atomic import write_text  # noqa: E402

HERE = Path(__file__).resolve().parent
CUDA_BENCHMARKS = ("bricks", "extract", "train", "finetune")  # the scripts that take --device cuda


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _num(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def _verdict(met) -> str:
    return {True: "met", False: "**not met**", None: "n/a"}[met]


# Key figures of each benchmark's JSON: rows of (figure, measured, target, met).
def _bricks(r: dict) -> list[tuple]:
    rows = []
    goal = r["targets"]["train_peak_fraction_min"]
    for c in r["configs"]:
        s = c["sizes"]
        on_cpu = c.get("device", "cpu") == "cpu"
        cpu_float32 = on_cpu and c.get("precision", "float32") == "float32"
        precision = "" if cpu_float32 else f"{c['precision']} "
        what = f"{precision}training step, B={s['B']} Dv={s['Dv']} Da={s['Da']} H={s['H']}"
        rows.append((f"{what}: fraction of {c.get('precision', 'float32')} matmul peak "
                     f"({c['train_step_s']:.4g} s/step, {c['train_gflops']:.1f} GFLOP/s)",
                     _pct(c["train_peak_fraction"]),
                     f">= {_pct(goal)}" if cpu_float32 else "- (CPU float32 target)",
                     c["train_peak_fraction"] >= goal if cpu_float32 else None))
        if on_cpu and "speedup_vs_float32" in c:
            bf16_goal = r["targets"].get("cpu_bfloat16_speedup_min", 1.8)
            rows.append((f"bfloat16 training step vs float32, Da={s['Da']} (n/a without native bfloat16)",
                         f"{c['speedup_vs_float32']:.2f}x", f">= {bf16_goal}x", c.get("speedup_met")))
        rows.append((f"{precision}inference, Da={s['Da']}: s per batch "
                     f"({_pct(c['inference_peak_fraction'])} of peak)", _num(c["inference_s"], ".4g"),
                     "-", None))
        check = c.get("precision_check")
        if check:
            rows.append((f"{precision}relative error vs float64, Da={s['Da']} (scores; gradient)",
                         f"{check['scores_relative_error']:.1e}; {check['gradient_relative_error']:.1e}",
                         f"<= {r['targets']['precision_tolerance']:g}", check["usable"]))
    return rows


def _data(r: dict) -> list[tuple]:
    t = r["targets"]
    best = max((x for x in r["runs"] if x.get("cache") == "warm" and x["T"] == r["window"]["N"]),
               key=lambda x: x["batches_per_s"])
    return [
        (f"loader vs training step (best warm: {best['batches_per_s']:.1f} batches/s, "
         f"{best['workers']} workers, T={best['T']})", _num(t["loader_vs_step"], ".1f") + "x",
         f">= {t['loader_vs_step_min']:.0f}x", t["loader_met"]),
        ("bytes read / bytes in the batch", _num(t["bytes_read_ratio"], ".3f"),
         f"<= {t['bytes_read_ratio_max']}", t["bytes_met"]),
        ("peak RSS spread between a small and a 20x larger file " +
         "(" + ", ".join(f"{m['videos']} videos: {m['peak_rss_mb']:.0f} MB" for m in r["memory"]) + ")",
         _pct(t["rss_spread"]), f"<= {_pct(t['rss_spread_max'])}", t["rss_met"]),
    ]


def _extract(r: dict) -> list[tuple]:
    goal = 0.9
    rows = []
    for x in r["rows"]:
        bound = min(x["decode"], x["networks"])
        slower = "decoding" if x["decode"] < x["networks"] else "both networks"
        peak = (f"; networks at {_pct(x['networks_peak_fraction'])} of the {x['precision']} matmul peak"
                if "networks_peak_fraction" in x else "")
        rows.append((f"{x['device']} {x['precision']}: pipeline vs its slower stage, {slower} "
                     f"({x['pipeline']:.2f} video frames/s; decode alone {x['decode']:.0f}, networks "
                     f"{x['networks']:.1f}{peak})", _pct(x["pipeline"] / bound),
                     f">= {_pct(goal)} of min(decode, networks)", x["pipeline"] / bound >= goal))
        if "speedup_vs_float32" in x:
            rows.append((f"{x['device']} bfloat16 pipeline vs float32 (n/a without native bfloat16)",
                         f"{x['speedup_vs_float32']:.2f}x", f">= {r.get('cpu_bfloat16_speedup_min', 1.5)}x",
                         x.get("speedup_met")))
    return rows


def _train(r: dict) -> list[tuple]:
    t = r["targets"]
    s = r["sizes"]
    return [(f"training loop vs bare step, B={s['B']} Dv={s['Dv']} ({r['loop_updates_per_s']:.3f} vs "
             f"{r['bare_updates_per_s']:.3f} updates/s)", _pct(r["loop_fraction_of_bare"]),
             f">= {_pct(t['loop_fraction_min'])}", t["met"])]


def _finetune(r: dict) -> list[tuple]:
    t = r["targets"]
    unit = {"c3d": "clips", "vgg": "images"}
    rows = []
    for row in r["rows"]:
        what = f"{row['device']} {row['precision']} {row['network'].upper()}, batch {row['batch']}"
        rows.append((f"{what}: training pass (fwd+bwd) as a fraction of the matmul peak "
                     f"({row['train_gflops']:.0f} of {row['peak_gflops']:.0f} GFLOP/s)",
                     _pct(row["train_peak_fraction"]), f">= {_pct(t['train_peak_fraction_min'])}",
                     row["train_peak_fraction"] >= t["train_peak_fraction_min"]))
        rows.append((f"{what}: `alstm finetune` vs its slower stage ({row['pipeline']:.2f} "
                     f"{unit[row['network']]}/s; update {row['update']:.2f}, data {row['data']:.1f})",
                     _pct(row["pipeline_vs_bound"]), f">= {_pct(t['pipeline_fraction_of_bound_min'])}",
                     row["pipeline_vs_bound"] >= t["pipeline_fraction_of_bound_min"]))
    for path, decision in r["layout"]["decision"].items():
        rows.append((f"layout, {path}: measured {decision['measured_choice']}; code uses "
                     f"{decision['code_uses'].split(' (')[0]}", "-", "-", None))
    return rows


SUMMARIES = {"bricks": _bricks, "data": _data, "extract": _extract, "train": _train, "finetune": _finetune}


def _generic(r: dict) -> list[tuple]:
    targets = r.get("targets", {})
    return [("targets", json.dumps({k: v for k, v in targets.items() if k != "met"}), "see script",
             targets.get("met"))]


def _speedups(name: str, gpu: dict, cpu: dict) -> list[str]:
    """Lines comparing a CUDA result with the CPU result of the same benchmark."""
    lines = []
    if name == "bricks":
        cpu_steps = {c["sizes"]["Da"]: c for c in cpu["configs"]}
        for c in gpu["configs"]:
            base = cpu_steps.get(c["sizes"]["Da"])
            if base and base["sizes"] == c["sizes"]:
                lines.append(f"- bricks, {c['precision']}, Da={c['sizes']['Da']}: training step "
                             f"{base['train_step_s'] / c['train_step_s']:.0f}x, inference "
                             f"{base['inference_s'] / c['inference_s']:.0f}x the CPU's speed")
    elif name == "train" and gpu["sizes"] == cpu["sizes"]:
        lines.append(f"- train, {gpu.get('precision', 'float32')}: training loop "
                     f"{gpu['loop_updates_per_s'] / cpu['loop_updates_per_s']:.0f}x the CPU's speed "
                     f"({gpu['loop_updates_per_s']:.2f} vs {cpu['loop_updates_per_s']:.3f} updates/s)")
    elif name == "extract":
        cpu_rows = [x for x in cpu["rows"] if x["device"] == "cpu"]
        for x in (x for x in gpu["rows"] if x["device"] != "cpu"):
            if cpu_rows:
                base = cpu_rows[0]
                lines.append(f"- extract, {x['precision']}: pipeline {x['pipeline'] / base['pipeline']:.0f}x "
                             f"the CPU's float32 speed; networks alone "
                             f"{x['networks'] / base['networks']:.0f}x")
    return lines


def run_script(script: Path, out: Path, quick: bool, device: str = "cpu") -> dict:
    """Run one benchmark; returns its exit code, wall seconds and the peak RSS that wait4 saw."""
    command = [sys.executable, str(script), "--out", str(out)] + (["--quick"] if quick else [])
    if device != "cpu":
        command += ["--device", device]
    print(f"== {script.name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=HERE.parent)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"returncode": process.returncode, "wall_s": time.perf_counter() - start,
            "wait4_peak_rss_mb": usage.ru_maxrss / 1024}


def summary_markdown(entries: list[dict], quick: bool, device: str = "cpu",
                     cpu_dir: Path | None = None) -> str:
    machine = next((e["result"]["machine"] for e in entries if e.get("result") and "machine" in e["result"]),
                   _common.machine_description())
    flags = (" --quick" if quick else "") + (f" --device {device}" if device != "cpu" else "")
    lines = ["# Benchmark summary" + (" (CUDA)" if device != "cpu" else ""), "",
             f"Written by `benchmarks/run_all.py{flags}` "
             f"({'quick smoke run: small sizes, figures not representative' if quick else 'full sizes'}). "
             "Each benchmark's JSON beside this file has every number; its docstring says what is measured. "
             "Timings come from a shared machine and are noisy.", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), "",
             "| benchmark | figure | measured | target | verdict | peak memory |",
             "|---|---|---|---|---|---|"]
    for e in entries:
        name, result = e["name"], e.get("result")
        if result is None:
            why = e.get("error", "no result")
            lines.append(f"| {name} | {why} | - | - | **failed** | - |")
            continue
        rss = result.get("peak_rss")
        if rss:
            memory = f"{rss['self_mb']:.0f} MB (largest child process {rss['children_mb']:.0f} MB)"
        elif e.get("wait4_peak_rss_mb"):
            memory = f"{e['wait4_peak_rss_mb']:.0f} MB (wait4)"
        else:
            memory = "not reported (JSON written before the peak_rss field; rerun `make bench`)"
        if result.get("peak_gpu_memory_mb") is not None:
            memory += f"; GPU {result['peak_gpu_memory_mb']:.0f} MB (torch's allocator peak)"
        rows = SUMMARIES.get(name, _generic)(result)
        for i, (figure, measured, target, met) in enumerate(rows):
            lines.append(f"| {name if i == 0 else ''} | {figure} | {measured} | {target} | {_verdict(met)} | "
                         f"{memory if i == 0 else ''} |")
    met = [m for e in entries if e.get("result") for *_, m in SUMMARIES.get(e["name"], _generic)(e["result"])]
    lines += ["", f"{sum(m is True for m in met)} of {sum(m is not None for m in met)} targets met."]
    if device != "cpu":
        speedups = []
        for e in entries:
            cpu_json = (cpu_dir or _common.RESULTS_DIR) / f"{e['name']}.json"
            if e.get("result") and cpu_json.exists():
                cpu_result = json.loads(cpu_json.read_text(encoding="utf-8"))
                speedups += _speedups(e["name"], e["result"], cpu_result)
        if speedups:
            lines += ["", "Speed-up over the CPU figures of the summary beside `../summary.md` "
                      "(different machines: a ratio of two runs, not one run):", "", *speedups]
    elif (_common.RESULTS_DIR / "cuda" / "summary.md").exists() and not quick:
        lines += ["", "GPU figures: [cuda/summary.md](cuda/summary.md)."]
    else:
        lines += ["", "No GPU figures yet: run `python benchmarks/run_all.py --device cuda` on a CUDA "
                  "machine."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark (smoke run)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these (bricks, data, ...) only")
    parser.add_argument("--summarise-only", action="store_true", help="run nothing; summarise existing JSON")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help=f"cuda: the GPU forms of {', '.join(CUDA_BENCHMARKS)} into results/cuda/")
    args = parser.parse_args(argv)

    base_dir = _common.RESULTS_DIR / "quick" if args.quick else _common.RESULTS_DIR
    results_dir = base_dir / "cuda" if args.device == "cuda" else base_dir
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.device == "cuda":
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in CUDA_BENCHMARKS]
    names = [s.stem.removeprefix("bench_") for s in scripts]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; there are {', '.join(names)}")
    entries, failed = [], False
    for script, name in zip(scripts, names, strict=True):
        out = results_dir / f"{name}.json"
        entry = {"name": name}
        if not args.summarise_only and (not args.only or name in args.only):
            entry.update(run_script(script, out, args.quick, args.device))
            if entry["returncode"] != 0:
                failed = True
                entry["error"] = f"exit code {entry['returncode']}"
        if "error" not in entry:
            try:
                entry["result"] = json.loads(out.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                entry["error"] = f"no result ({exc.__class__.__name__})"
        entries.append(entry)
    text = summary_markdown(entries, args.quick, args.device, base_dir)
    summary = results_dir / "summary.md"
    write_text(summary, text)
    print(text)
    print(f"written to {summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
