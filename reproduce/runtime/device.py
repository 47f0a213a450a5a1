"""The one place a device is chosen: the user's choice, else CUDA where available, else the CPU.

`reproduce.cli` reads ``$ALSTM_DEVICE`` and hands it down as the preferred device; the library reads
no environment variable. In a torchrun job a bare ``cuda`` means this process's GPU,
``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import torch

from reproduce.errors import ReproduceError


def default_device(preferred: str | None = None) -> str:
    """The device to use when none is given: ``preferred`` when given (e.g. the ``$ALSTM_DEVICE`` that
    `reproduce.cli` reads onto ``args.default_device``), else ``cuda`` where CUDA is available, else
    ``cpu``. Reads no environment variable: the command line's edge does that."""
    if preferred:
        return preferred
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """``device`` as a torch.device. None: `default_device`; a bare "cuda" becomes ``cuda:<local_rank>``
    (one GPU per process of a torchrun job; 0 in a single process); ReproduceError for CUDA on a machine
    without it."""
    device = None if device is None else str(device)
    device = default_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ReproduceError(f"--device {device}: this machine (or this torch build) has no CUDA; "
                             "use --device cpu")
    if device == "cuda":
        device = f"cuda:{local_rank}"
    return torch.device(device)
