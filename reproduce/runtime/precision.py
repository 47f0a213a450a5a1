"""Numeric precision: one ``--precision`` for `extract`, `highlight`, `train` and `evaluate`.

Choices: ``float32``; ``bfloat16`` (autocast: matrix products and convolutions in bfloat16, weights,
optimiser state and reductions in float32); ``float16`` (autocast, CUDA only); ``auto``.

``auto`` picks bfloat16 where the hardware multiplies it natively and float32 elsewhere:
- on a CPU, bfloat16 when the processor has AVX512-BF16 or AMX-BF16 (`native_bfloat16`, read from the
  CPU flags, never from timing): current server and desktop processors run bfloat16 matrix products
  about twice as fast as float32 there;
- on CUDA, float32 for training and evaluation (their tables and golden numbers are float32), while
  extraction's own ``auto`` (`caffe_models.extract`) tries float16 there.
Extraction additionally keeps the low precision only when the first batch stays within its tolerance
of float32 (`caffe_models.extract.AUTO_TOLERANCE`).

On CUDA, float32 means float32: TF32 stays off (the training loop and extraction see to it).
"""

from __future__ import annotations

import contextlib
import os

import torch

from reproduce.errors import ReproduceError

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_field(names: tuple[str, ...], path: str | os.PathLike) -> str | None:
    """The first ``name : value`` line of Linux's ``/proc/cpuinfo`` for one of ``names`` (None elsewhere)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(names):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags(path: str | os.PathLike = "/proc/cpuinfo") -> frozenset[str]:
    """The processor's feature flags (empty where ``/proc/cpuinfo`` does not exist)."""
    return frozenset((_cpuinfo_field(("flags", "Features"), path) or "").split())


def cpu_model(path: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The processor's model name, or what Python's platform module says where /proc/cpuinfo is absent."""
    import platform

    return _cpuinfo_field(("model name",), path) or platform.processor() or "unknown"


def native_bfloat16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX-BF16). ``flags``: the CPU
    flags to judge (default: this machine's, `cpu_flags`)."""
    return bool(set(_BF16_FLAGS) & (cpu_flags() if flags is None else flags))


def resolve(precision: str, device: str | torch.device, *, native: bool | None = None) -> str:
    """The precision a run uses: ``auto`` resolved (see the module docstring), the others checked
    against the device. ``native`` overrides `native_bfloat16` (tests)."""
    if precision not in PRECISIONS:
        raise ReproduceError(f"--precision {precision!r}: choose among {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "float16" and device.type != "cuda":
        raise ReproduceError("--precision float16 needs a CUDA device; on the CPU use bfloat16 or float32")
    if precision != "auto":
        return precision
    if device.type == "cpu" and (native_bfloat16() if native is None else native):
        return "bfloat16"
    return "float32"


def network_autocast_dtype(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The low precision extraction's ``auto`` tries on ``device`` (`caffe_models.extract`): float16 on
    CUDA, bfloat16 on a CPU with native bfloat16, None (float32) otherwise. ``precision`` is checked
    (float16 on a CPU is refused)."""
    resolve(precision, device)
    if torch.device(device).type == "cuda":
        return torch.float16
    return torch.bfloat16 if native_bfloat16() else None


def autocast(precision: str, device: str | torch.device):
    """The context a forward pass runs in: autocast to bfloat16 / float16, or nothing for float32."""
    if precision in _DTYPES:
        return torch.autocast(torch.device(device).type, dtype=_DTYPES[precision])
    return contextlib.nullcontext()
