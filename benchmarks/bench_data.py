"""Speed and memory of the feature streams (``fuel_datasets.streams``) on files on disk.

1. Throughput: batches/s of B = 200 training windows (F = 192, N = 12, Dv = 4096 C3D fc6, Da = 1000
   VGG fc8, flips with p = 1/2) for T = N and T = 2N, through ``torch.utils.data.DataLoader`` with 0
   and 2 workers. The file is written first (which also times the writer), so it sits in the page cache
   ("warm": the loader's own cost); one more pass runs after ``posix_fadvise(DONTNEED)`` has dropped
   the file's pages ("cold": what the disk adds). Beside it, the model's training-step time from
   ``benchmarks/results/bricks.json`` (the config with B = 200, Dv = 4096, Da = 1000). Target: the
   loader (warm, best of 0/2 workers, T = N) is at least 3x faster than a training step.
   A worker hands each batch over in a fresh shared-memory segment; the time to allocate and fill one
   of a batch's size is measured too, since on some machines (this VM's tmpfs) it exceeds the read
   itself: workers then pay off only by overlapping the training step, not in batches/s alone.
2. Bytes read per batch: ``rchar`` of /proc/self/io (bytes returned by read/pread calls, page-cache hits
   included) over the bytes of the batch's arrays. Target: at most 2.
3. Memory: peak RSS (``ru_maxrss``) of a fresh process that opens ``TrainWindows`` on a file of 1,000 and
   one of 20,000 videos (Dv = 16, Da = 8, so that the files stay small) and draws 50 batches of 200.
   Target: the two within 10% of each other (the per-video tables are tens of bytes per video).

Usage: ``python benchmarks/bench_data.py [--quick] [--workdir DIR]``; writes
``benchmarks/results/data.json`` and prints tables. ``--quick``: fewer and smaller videos, B = 50, and
files of 200 / 4,000 videos for the memory part. Numbers from a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from fuel_datasets import FeatureWriter  # noqa: E402
from fuel_datasets.streams import TrainWindows, WindowSpec, keep_batch  # noqa: E402

LOADER_VS_STEP_MIN, BYTES_RATIO_MAX, RSS_SPREAD_MAX = 3.0, 2.0, 0.10
NUM_CLASSES = 203


def write_file(path: Path, videos: int, dv: int, da: int, frames: tuple[int, int], seed: int) -> dict:
    """A feature file like `alstm extract` writes: C3D rows every 16 frames, VGG every 8, flips."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    with FeatureWriter(path, class_names=[f"class_{c}" for c in range(NUM_CLASSES)],
                       attrs={"generator": "benchmarks/bench_data.py"}) as writer:
        for v in range(videos):
            F = int(rng.integers(*frames))
            R1, R2 = F // 16, F // 8
            features = {"c3d_fc6": rng.random((R1, dv), np.float32),
                        "c3d_fc6_flip": rng.random((R1, dv), np.float32),
                        "vgg_obj_fc8": rng.random((R2, da), np.float32),
                        "vgg_obj_fc8_flip": rng.random((R2, da), np.float32)}
            frame_index = {"c3d_fc6": 16 * np.arange(R1), "vgg_obj_fc8": 8 * np.arange(R2)}
            writer.add_video(f"v_{v:07d}", features, frame_index, F, 30.0,
                             targets=int(rng.integers(NUM_CLASSES)), split="train")
    seconds = time.perf_counter() - start
    size = path.stat().st_size
    return {"videos": videos, "dv": dv, "da": da, "size_bytes": size, "write_s": seconds,
            "write_videos_per_s": videos / seconds, "write_MB_per_s": size / seconds / 1e6}


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass


def drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rchar() -> int | None:
    try:
        with open("/proc/self/io") as io:
            return int(next(line for line in io if line.startswith("rchar")).split()[1])
    except (OSError, StopIteration):
        return None


def time_loader(windows: TrainWindows, workers: int, batches: int, first: int) -> dict:
    """Batches/s over ``batches`` batches after two warm-up batches (worker start-up excluded)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(windows, batch_size=None, sampler=range(first, first + batches + 2),
                        num_workers=workers, collate_fn=keep_batch, prefetch_factor=2 if workers else None)
    iterator = iter(loader)
    for _ in range(2):
        next(iterator)
    before, start, held = rchar(), time.perf_counter(), 0
    for batch in iterator:
        held += batch.inputs.numel() * 4 + batch.attended.numel() * 4
    seconds = time.perf_counter() - start
    after = rchar()
    result = {"workers": workers, "batches": batches, "batches_per_s": batches / seconds,
              "ms_per_batch": 1e3 * seconds / batches, "MB_per_s": held / seconds / 1e6}
    if workers == 0 and before is not None:
        result["bytes_read_ratio"] = (after - before) / held
    return result


def shared_memory_ms(shape: tuple[int, ...], repeats: int = 3) -> float:
    """Milliseconds to allocate and fill a shared-memory float32 tensor (what a worker's batch costs)."""
    import torch

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.empty(shape, dtype=torch.float32).share_memory_().numpy()[:] = 1.0
        times.append(time.perf_counter() - start)
    return 1e3 * _common.median(times)


def training_step(path: Path) -> dict:
    if not path.exists():
        return {"available": False, "note": f"{path} not found; run benchmarks/bench_bricks.py"}
    payload = json.loads(path.read_text())
    configs = payload.get("configs", [])
    wanted = {"B": 200, "Dv": 4096, "Da": 1000}
    match = next((c for c in configs if all(c["sizes"].get(k) == v for k, v in wanted.items())), None)
    if match is None:
        sizes = [c.get("sizes") for c in configs]
        return {"available": False, "note": f"{path} has no config with {wanted} (it has {sizes}); "
                                            "run benchmarks/bench_bricks.py without --quick"}
    return {"available": True, "train_step_s": match["train_step_s"], "sizes": match["sizes"],
            "source": str(path)}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1])


def rss_child(path: str, batches: int, batch_size: int) -> None:
    """In a fresh process: RSS after imports, then the peak RSS while opening and drawing batches.

    Importing torch peaks above what the stream uses, so the peak is reset after the imports (writing
    5 to /proc/self/clear_refs resets VmHWM); where that is refused, ru_maxrss (peak since start).
    """
    import torch  # noqa: F401  (the baseline includes what a training process has loaded)

    baseline = _status_kb("VmRSS:")
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        peak_field = "VmHWM:"
    except OSError:
        peak_field = None
    windows = TrainWindows(path, input_source="c3d_fc6", attended_source="vgg_obj_fc8", batch_size=batch_size,
                           spec=WindowSpec(192, 12, 1))
    for k in range(batches):
        windows[k]
    peak = _status_kb(peak_field) if peak_field else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_rss_mb": baseline / 1024, "peak_rss_mb": peak / 1024,
                      "peak_measure": "VmHWM after reset" if peak_field else "ru_maxrss",
                      "eligible_videos": windows.num_videos, "excluded_videos": len(windows.excluded)}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small files and batches (a smoke run)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the temporary files")
    parser.add_argument("--out", type=Path, default=_common.RESULTS_DIR / "data.json")
    parser.add_argument("--bricks", type=Path, default=_common.RESULTS_DIR / "bricks.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rss-child", nargs=3, metavar=("PATH", "BATCHES", "B"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]), int(args.rss_child[2]))
        return 0
    quick = args.quick
    batch_size, batches = (50, 4) if quick else (200, 10)
    videos, frames = (40, (192, 1200)) if quick else (300, (192, 3000))
    rss_sizes = (200, 4000) if quick else (1000, 20000)
    workdir = Path(tempfile.mkdtemp(prefix="bench_data_", dir=args.workdir))
    try:
        print(f"writing {videos} videos (Dv=4096, Da=1000) to {workdir} ...", file=sys.stderr, flush=True)
        big = workdir / "throughput.h5"
        big_file = write_file(big, videos, 4096, 1000, frames, args.seed)
        runs = []
        for attended_per_step in (1, 2):
            spec = WindowSpec(192, 12, attended_per_step)
            windows = TrainWindows(big, input_source="c3d_fc6", attended_source="vgg_obj_fc8",
                                   batch_size=batch_size, spec=spec, seed=args.seed)
            warm_page_cache(big)
            for workers in (0, 2):
                print(f"T={spec.attended}, {workers} workers ...", file=sys.stderr, flush=True)
                runs.append(dict(time_loader(windows, workers, batches, first=100 * workers),
                                 T=spec.attended, cache="warm"))
            drop_page_cache(big)
            runs.append(dict(time_loader(windows, 0, batches, first=1000), T=spec.attended, cache="cold"))
            windows.close()
        rss = []
        for count in rss_sizes:
            print(f"memory: {count} videos ...", file=sys.stderr, flush=True)
            small = workdir / f"rss_{count}.h5"
            info = write_file(small, count, 16, 8, (100, 1500), args.seed + count)
            command = [sys.executable, __file__, "--rss-child", str(small), "50", str(batch_size)]
            child = subprocess.run(command, check=True, capture_output=True, text=True)
            rss.append(dict(info, **json.loads(child.stdout)))
            small.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    step = training_step(args.bricks)
    shm_ms = shared_memory_ms((batch_size, 12, 4096 + 1000))
    warm_n = [r for r in runs if r["cache"] == "warm" and r["T"] == 12]
    best = max(warm_n, key=lambda r: r["batches_per_s"])
    loader_vs_step = step["train_step_s"] * best["batches_per_s"] if step["available"] else None
    ratios = [r["bytes_read_ratio"] for r in runs if "bytes_read_ratio" in r]
    peaks = [r["peak_rss_mb"] for r in rss]
    spread = (max(peaks) - min(peaks)) / min(peaks)
    targets = {
        "loader_vs_step_min": LOADER_VS_STEP_MIN, "loader_vs_step": loader_vs_step,
        "loader_met": None if loader_vs_step is None else loader_vs_step >= LOADER_VS_STEP_MIN,
        "bytes_read_ratio_max": BYTES_RATIO_MAX, "bytes_read_ratio": max(ratios) if ratios else None,
        "bytes_met": bool(ratios) and max(ratios) <= BYTES_RATIO_MAX,
        "rss_spread_max": RSS_SPREAD_MAX, "rss_spread": spread, "rss_met": spread <= RSS_SPREAD_MAX,
    }
    payload = {
        "benchmark": "data", "quick": quick, "machine": _common.machine_description(),
        "window": {"F": 192, "N": 12, "Dv": 4096, "Da": 1000, "B": batch_size, "flip_prob": 0.5},
        "throughput_file": big_file, "runs": runs, "training_step": step, "memory": rss, "targets": targets,
        "shared_memory_ms_per_batch": shm_ms,
        "note": "warm = file in the page cache; cold = after posix_fadvise(DONTNEED); shared machine, noisy",
        "peak_rss": _common.peak_rss(),
    }
    _common.write_json(args.out, payload)

    print(_common.format_table(runs, [
        ("T", "T", "d"), ("workers", "workers", "d"), ("cache", "cache", "s"),
        ("batches_per_s", "batches/s", ".2f"), ("ms_per_batch", "ms/batch", ".1f"),
        ("MB_per_s", "MB/s", ".0f"),
        ("bytes_read_ratio", "read/held", ".3f")]))
    print()
    print(_common.format_table(rss, [
        ("videos", "videos", "d"), ("size_bytes", "file bytes", "d"), ("eligible_videos", "eligible", "d"),
        ("baseline_rss_mb", "RSS after imports MB", ".1f"),
        ("peak_rss_mb", "peak RSS while reading MB", ".1f"),
        ("write_videos_per_s", "write videos/s", ".0f")]))
    print()
    if step["available"]:
        verdict = "met" if targets["loader_met"] else "NOT met"
        print(f"training step (bricks.json, B=200, Dv=4096, Da=1000): {step['train_step_s']:.3f} s; loader "
              f"{1e3 / best['batches_per_s']:.1f} ms/batch ({best['workers']} workers) -> "
              f"{loader_vs_step:.1f}x faster (target >= {LOADER_VS_STEP_MIN:.0f}x: {verdict})")
    else:
        print(f"training step: {step['note']}")
    print(f"a worker's batch handed over in shared memory: {shm_ms:.0f} ms to allocate and fill (T = N)")
    if quick:
        print("(--quick: B = 50, so the loader/step comparison is not at the paper's batch size)")
    print(f"bytes read / bytes held: {targets['bytes_read_ratio']:.3f} (target <= {BYTES_RATIO_MAX:.0f}: "
          f"{'met' if targets['bytes_met'] else 'NOT met'})")
    print(f"peak RSS {rss_sizes[0]} vs {rss_sizes[1]} videos: {spread:.1%} apart "
          f"(target <= {RSS_SPREAD_MAX:.0%}: {'met' if targets['rss_met'] else 'NOT met'}); "
          f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
