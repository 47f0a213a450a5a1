"""Helpers shared by the benchmarks: machine description, matmul peak, timing, JSON and tables.

Benchmarks are scripts (``python benchmarks/bench_X.py``); this module sits beside them and is
imported as ``_common``. Timings on a shared machine are noisy: measure the peak interleaved with the
workload (call :func:`matmul_peak_seconds` between repetitions) so that their ratio is fair.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or platform.processor() elsewhere."""
    from reproduce.runtime.precision import cpu_model

    return cpu_model()


def machine_description() -> dict:
    """What the numbers were measured on: CPU, cores, threads, torch and its BLAS."""
    return {
        "cpu": cpu_model_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "mkl": torch.backends.mkl.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def device_name(device: str | torch.device) -> str:
    """"cpu: <model name>" or "cuda: <GPU name>" for the JSON of a benchmark run on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_model_name()}"


def cuda_or_message(device: str) -> tuple[torch.device, str | None]:
    """A benchmark's ``--device`` as a torch.device, and the message to exit with (None: usable)."""
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        return chosen, f"--device {device}: this machine (or this torch build) has no CUDA"
    return chosen, None


def results_path(name: str, device: str | torch.device) -> Path:
    """Where a benchmark writes its JSON by default: results/<name>.json for the CPU,
    results/cuda/<name>.json for CUDA (so a GPU run never overwrites the CPU figures)."""
    return RESULTS_DIR / ("cuda" if torch.device(device).type == "cuda" else "") / f"{name}.json"


def peak_gpu_memory_mb(device: str | torch.device) -> float | None:
    """Peak memory torch's CUDA allocator held on ``device`` (None for the CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def time_call(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call (CUDA work included when present)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def matmul_peak_operands(size: int, dtype: torch.dtype = torch.float32, seed: int = 0,
                         device: str | torch.device = "cpu"):
    """Two (size, size) random matrices for :func:`matmul_peak_seconds`, drawn on the CPU (the same
    values on every device) and moved to ``device``."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(size, size, generator=generator).to(device, dtype),
            torch.randn(size, size, generator=generator).to(device, dtype))


# How a CUDA benchmark runs its float math: plain float32, float32 tensors with TF32 matrix units
# (10-bit mantissa products, float32 sums), or bfloat16 autocast. The CPU knows only float32 here.
PRECISIONS = ("float32", "tf32", "bfloat16")


@contextlib.contextmanager
def precision_mode(device: torch.device, precision: str):
    """Within the block, matrix products and convolutions on ``device`` run in ``precision`` (one of
    PRECISIONS); the TF32 switches are restored afterwards."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose among {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if precision == "tf32":
            raise ValueError("precision tf32 exists on CUDA only")
        if precision == "bfloat16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                yield
        else:
            yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        if precision == "bfloat16":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """‖value − reference‖ / ‖reference‖, computed in float64 on the CPU."""
    value, reference = value.detach().double().cpu(), reference.detach().double().cpu()
    return float((value - reference).norm() / reference.norm().clamp_min(1e-300))


def matmul_peak_seconds(operands, out: torch.Tensor | None = None) -> float:
    """Seconds of one large square ``torch.mm``; its FLOPs are 2·size³ (see :func:`matmul_flops`)."""
    a, b = operands
    return time_call(lambda: torch.mm(a, b, out=out))


def peak_operands_for(precision: str, size: int, seed: int, device: torch.device):
    """The peak matmul's operands for a benchmark run in ``precision``: bfloat16 matrices for bfloat16
    autocast (what its products run as), float32 otherwise (TF32 or not per `precision_mode`)."""
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
    return matmul_peak_operands(size, dtype, seed, device)


def matmul_flops(size: int) -> float:
    return 2.0 * size**3


def median(values) -> float:
    return float(statistics.median(values))


def peak_rss() -> dict:
    """Peak resident set size in MB (``ru_maxrss``, KiB on Linux) of this process, and the largest of
    its waited-for child processes (DataLoader workers, measurement subprocesses)."""
    return {"self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "measure": "ru_maxrss"}


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically (`alstm_core.atomic`)."""
    from alstm_core.atomic import write_json as write

    write(path, payload, indent=2)


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A plain-text table: columns are (key, header, format spec), e.g. ("gflops", "GFLOP/s", ".1f")."""
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([format(row[key], spec) if row.get(key) is not None else "-"
                      for key, _, spec in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
