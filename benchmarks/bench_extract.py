"""Speed of feature extraction: decoding alone, each network alone, both networks, the whole pipeline.

Workload: one generated H.264 (yuv420p) video of --frames frames at --size (default 320×240, the
common ActivityNet size), full-size networks with random weights (the speed does not depend on the
values): C3D fc6 on every 16-frame clip and VGG-19 (obj) fc6 on frames 0 and 8 of each clip, each also
on the flipped frames, as `alstm extract` runs them. Every rate is in *video frames per second*
(16 per clip), so the columns compare directly:

    decode      PyAV decoding through the background workers, nothing else
    vgg_fc6     VGG-19 fc6 alone on decoded clips held in memory (preprocessing included)
    c3d_fc6     C3D fc6 alone, likewise
    networks    both networks on clips in memory: the compute the pipeline cannot avoid
    pipeline    `extract_videos` on the file: decode worker ∥ both networks, rows to an in-memory writer

The two networks share one device, so the pipeline can at best reach `networks` (≈ the harmonic
sum of the two single-network rates), not the slower network alone; and it cannot outrun decoding
either. Its bound is the slower stage, min(decode, networks): the target is `pipeline / bound`
≥ 0.9 (the slower stage kept busy, the faster one hidden behind it). On the CPU the bound is the
networks; on a GPU it is decoding. `pipeline / slower network` is reported beside it. On CUDA the
same rows are measured in float32 (TF32 off) and with float16 autocast; on the CPU in
float32 and with bfloat16 autocast (`alstm extract --precision bfloat16`, and what ``auto`` picks on a CPU
with native bfloat16). Target there: the bfloat16 pipeline at least ``TARGET_BF16_SPEEDUP`` times as
fast as float32's, in the same run (n/a on a CPU without native bfloat16). A GPU
computes far faster than one decoder thread decodes, so ``--videos K`` runs the workload over K videos
(the same file K times) decoded by ``--workers`` threads with a 2 GiB read-ahead allowance, as
`alstm extract` does over a folder on CUDA.

Usage: ``python benchmarks/bench_extract.py [--quick] [--device cpu|cuda|all] [--videos K]
[--workers W]``; writes ``benchmarks/results/extract.json`` (``results/cuda/extract.json`` with
``--device cuda``) and prints a table. Numbers are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from caffe_models import C3D, VGG19, RandomWeightsWarning  # noqa: E402
from caffe_models.extract import CHUNK_LENGTH, FeatureExtractor, extract_videos  # noqa: E402
from caffe_models.prefetch import decode_in_background  # noqa: E402

TARGET_PIPELINE_FRACTION = 0.9
TARGET_BF16_SPEEDUP = 1.5     # CPU bfloat16 pipeline vs float32, where bfloat16 is native


def write_test_video(path: Path, frames: int, width: int, height: int, seed: int = 0) -> None:
    """A moving-gradient H.264 video (yuv420p, 25 fps): the kind of file extraction meets."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    base = rng.uniform(40, 200, 3) + rng.uniform(-40, 40, 3) * y + rng.uniform(-40, 40, 3) * x
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for t in range(frames):
            image = base + 30 * np.sin(0.1 * t + 6 * x + 4 * y) + rng.normal(0, 4, (height, width, 3))
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class NullWriter:
    """Keeps nothing: the pipeline's own cost, without HDF5."""

    def has_video(self, vid):
        return False

    def set_source_info(self, source, **info):
        pass

    def add_video(self, vid, **kwargs):
        pass


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rates_of(workloads: dict, frames: int, device: str, repeats: int) -> dict[str, float]:
    """Video frames per second of each workload: one warm-up each, then ``repeats`` rounds that run them
    in turn (interleaved, so that a busy machine slows all of them alike); the median per workload."""
    times: dict[str, list[float]] = {name: [] for name in workloads}
    for fn in workloads.values():
        fn()
    for _ in range(repeats):
        for name, fn in workloads.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: frames / _common.median(values) for name, values in times.items()}


def peak_fractions(extractor, clip: torch.Tensor, precision: str, row: dict) -> dict:
    """The networks' and the pipeline's GFLOP/s as fractions of this precision's matmul peak (a square
    torch.mm of float32 or bfloat16 operands, median of 5), the FLOPs of one clip (both networks, with
    flips) counted by torch's FlopCounterMode (convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        extractor([clip])
    per_clip = counter.get_total_flops()
    operands = _common.peak_operands_for(precision, 2048, 0, torch.device("cpu"))
    out = torch.empty_like(operands[0])
    _common.matmul_peak_seconds(operands, out)                                  # warm-up
    peak = _common.matmul_flops(2048) / _common.median(
        [_common.matmul_peak_seconds(operands, out) for _ in range(5)]) / 1e9
    networks = per_clip * row["networks"] / CHUNK_LENGTH / 1e9
    pipeline = per_clip * row["pipeline"] / CHUNK_LENGTH / 1e9
    return {"gflop_per_clip": per_clip / 1e9, "peak_gflops": peak, "networks_gflops": networks,
            "networks_peak_fraction": networks / peak, "pipeline_peak_fraction": pipeline / peak}


def measure(video: Path, device: str, precision: str, batch_size: int, repeats: int, workers: int,
            copies: int = 1, buffer_bytes: int = 0) -> dict:
    c3d, vgg = C3D(), VGG19()
    decoded = [clip for v in decode_in_background([video]) for clip in v.items]  # FrameChunks
    clips = [torch.from_numpy(c.frames) for c in decoded if len(c.frames) == CHUNK_LENGTH] * copies
    frames = CHUNK_LENGTH * len(clips)
    videos = [str(video)] * copies

    def networks_on_memory(extractor):
        def run():
            for start in range(0, len(clips), batch_size):
                extractor(clips[start:start + batch_size])
        return run

    def decode_only():
        for v in decode_in_background(videos, workers=workers, buffer_bytes=buffer_bytes):
            for _ in v.items:
                pass

    kwargs = dict(device=device, precision=precision)       # channels_last, as alstm extract
    both = FeatureExtractor(c3d, {"obj": vgg}, ("fc6",), **kwargs)

    def pipeline():
        extract_videos([(f"bench{k}", path) for k, path in enumerate(videos)], NullWriter(), both,
                       batch_size=batch_size, workers=workers, buffer_bytes=buffer_bytes, progress=False)

    row = {"device": device, "precision": precision, "batch_size": batch_size, "frames": frames,
           "videos": copies, "workers": workers, "buffer_mb": buffer_bytes / 2**20, "repeats": repeats}
    row.update(rates_of({
        "decode": decode_only,
        "vgg_fc6": networks_on_memory(FeatureExtractor(None, {"obj": vgg}, ("fc6",), **kwargs)),
        "c3d_fc6": networks_on_memory(FeatureExtractor(c3d, None, ("fc6",), **kwargs)),
        "networks": networks_on_memory(both),
        "pipeline": pipeline,
    }, frames, device, repeats))
    row["networks_expected"] = 1 / (1 / row["vgg_fc6"] + 1 / row["c3d_fc6"])  # the two in sequence
    row["pipeline_vs_networks"] = row["pipeline"] / row["networks"]
    row["pipeline_vs_slower_network"] = row["pipeline"] / min(row["vgg_fc6"], row["c3d_fc6"])
    row["bound"] = min(row["decode"], row["networks"])
    row["pipeline_vs_bound"] = row["pipeline"] / row["bound"]
    row["target_met"] = row["pipeline_vs_bound"] >= TARGET_PIPELINE_FRACTION
    if device == "cpu":
        row.update(peak_fractions(both, clips[0], precision, row))
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short video and one repeat (smoke run)")
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"],
                        help="all: the CPU, and CUDA when present")
    parser.add_argument("--frames", type=int, default=None, help="video length (default 128, quick 48)")
    parser.add_argument("--size", default="320x240", help="video WIDTHxHEIGHT (default 320x240)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 3, quick 1)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decode threads (default 1 on the CPU, up to 8 on CUDA)")
    parser.add_argument("--videos", type=int, default=None,
                        help="videos per workload, the file K times (default 1 on the CPU, 8 on CUDA)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/extract.json; results/cuda/extract.json for "
                             "--device cuda)")
    args = parser.parse_args(argv)
    out = args.out or _common.results_path("extract", "cuda" if args.device == "cuda" else "cpu")
    warnings.simplefilter("ignore", RandomWeightsWarning)
    frames = args.frames or (48 if args.quick else 128)
    repeats = args.repeats or (1 if args.quick else 3)
    width, height = (int(v) for v in args.size.lower().split("x"))
    devices = ["cpu"] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append("cuda")
    if not devices:
        print("no CUDA device here", file=sys.stderr)
        return 2
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "bench.mp4"
        write_test_video(video, frames, width, height)
        for device in devices:
            settings = [("float32", 4), ("bfloat16", 4)] if device == "cpu" else \
                [("float32", 32), ("float16", 32)]
            for precision, batch_size in settings:
                cuda = device == "cuda"
                workers = args.workers or (min(8, os.cpu_count() or 1) if cuda else 1)
                copies = args.videos or (8 if cuda else 1)
                buffer = 2**31 if cuda else 0               # alstm extract's default --buffer-mb
                rows.append(measure(video, device, precision, batch_size, repeats, workers, copies, buffer))
                print(f"measured {device} {precision}", file=sys.stderr)
    from reproduce.runtime.precision import native_bfloat16

    native = native_bfloat16()
    base = {r["device"]: r for r in rows if r["precision"] == "float32"}
    for r in rows:
        if r["device"] == "cpu" and r["precision"] == "bfloat16":
            r["speedup_vs_float32"] = r["pipeline"] / base["cpu"]["pipeline"]
            r["speedup_met"] = r["speedup_vs_float32"] >= TARGET_BF16_SPEEDUP if native else None
    payload = {
        "benchmark": "extract",
        "native_bfloat16": native,
        "cpu_bfloat16_speedup_min": TARGET_BF16_SPEEDUP,
        "quick": args.quick,
        "video": {"frames": frames, "width": width, "height": height, "codec": "h264 yuv420p"},
        "unit": "video frames per second (16 per C3D clip; VGG on 2 frames per clip; all with flips)",
        "target": f"pipeline >= {TARGET_PIPELINE_FRACTION} x min(decode, networks) "
                  "(the slower stage kept busy)",
        "rows": rows,
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},  # > cores: contended
        "machine": _common.machine_description(),
        "peak_rss": _common.peak_rss(),
        "peak_gpu_memory_mb": _common.peak_gpu_memory_mb("cuda") if "cuda" in devices else None,
    }
    _common.write_json(out, payload)
    print(_common.format_table(rows, [
        ("device", "device", "s"), ("precision", "precision", "s"), ("decode", "decode", ".0f"),
        ("vgg_fc6", "VGG fc6", ".2f"), ("c3d_fc6", "C3D fc6", ".2f"), ("networks", "both nets", ".2f"),
        ("networks_expected", "1/(1/V+1/C)", ".2f"),
        ("pipeline", "pipeline", ".2f"), ("pipeline_vs_networks", "pipe/nets", ".2f"),
        ("pipeline_vs_slower_network", "pipe/slower", ".2f"), ("pipeline_vs_bound", "pipe/bound", ".2f"),
        ("speedup_vs_float32", "vs float32", ".2f"), ("networks_peak_fraction", "nets of peak", ".2f"),
    ]))
    print(f"frames/s of video; target: pipeline ≥ {TARGET_PIPELINE_FRACTION:.0%} of its slower stage "
          f"(decoding, or both networks on decoded clips); load average {load_before[0]:.1f} → "
          f"{os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
