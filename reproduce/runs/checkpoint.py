"""The files of a run folder: checkpoints (what `alstm train` writes and `--resume`, evaluation and
highlighting read) and the JSONL log.

A checkpoint is one ``torch.save`` of a dict of tensors and plain Python types, so it loads with
``torch.load(weights_only=True)`` (no pickled classes, nothing executed on load)::

    format          "alstm-checkpoint"          format_version  1
    config          TrainConfig.to_dict() (resolved: multilabel filled in from the dataset)
    model_args      keyword arguments of bricks.AttentionLSTM (input_dim, attended_dim, num_classes, ...)
    model           the model's state_dict
    class_names     [C names], in the order of the model's outputs
    input_source    e.g. "c3d_fc6";  attended_source  e.g. "vgg_obj_fc8" or None
    spec            {"frames": F, "steps": N, "attended_per_step": T/N}
    iteration       updates done when it was written
    metrics         {"valid_loss": ..., "valid_accuracy": ..., ...} of the latest validation, or {}
    optimizer       the optimiser's state_dict (velocities)      ┐
    early_stopping  {"best_loss", "best_iteration",              │ only needed to resume;
                     "bad_validations"}                          │ `load_model` ignores them
    rng             {"dropout": ByteTensor,                      │
                     "dropout_by_rank": [ByteTensor per rank]}:  ┘
                    the dropout generators' states (rank 0's, and every rank's of a torchrun job)

Checkpoint files are written to a temporary name in the same folder, flushed to disk, then renamed
over the target, so a run killed at any moment leaves either the previous checkpoint or the new one.
Wherever a checkpoint is read, a run folder stands for its ``best.pt`` (`checkpoint_path`).
`reproduce.runs.log.RunLog` writes the run's ``log.jsonl``.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from alstm_core.atomic import write_atomically
from reproduce.errors import ReproduceError

FORMAT = "alstm-checkpoint"
FORMAT_VERSION = 1
_REQUIRED = ("config", "model_args", "model", "class_names", "input_source", "attended_source", "spec",
             "iteration")


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format tag) to ``path`` atomically."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    path = write_atomically(path, lambda f: torch.save(data, f), binary=True, fsync=True)
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def checkpoint_path(path: str | os.PathLike) -> str:
    """The checkpoint file ``path`` names: itself, or for a run folder its ``best.pt``."""
    path = os.fspath(path)
    return os.path.join(path, "best.pt") if os.path.isdir(path) else path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (a run folder: its best.pt); ReproduceError if it
    is missing or not one."""
    path = checkpoint_path(path)
    if not os.path.exists(path):
        raise ReproduceError(f"no checkpoint at {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # a damaged file surfaces as any of a dozen unpickler exceptions
        raise ReproduceError(
            f"{path} is not a readable alstm checkpoint ({exc.__class__.__name__}: {exc})"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ReproduceError(f"{path} is not an alstm checkpoint (written by `alstm train`)")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise ReproduceError(
            f"{path} has checkpoint format {data['format_version']}; "
            f"this version reads up to {FORMAT_VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ReproduceError(f"{path} is an incomplete checkpoint (missing {', '.join(missing)})")
    return data


def build_model(model_args: dict[str, Any], generator: torch.Generator | None = None) -> torch.nn.Module:
    """A fresh `bricks.AttentionLSTM` from the ``model_args`` stored in a checkpoint; ``generator``
    draws its initial weights."""
    from bricks import AttentionLSTM

    return AttentionLSTM(**model_args, generator=generator)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """(model in eval mode on ``device``, meta) from a checkpoint (or a run folder: its best.pt); meta is the
    checkpoint without the tensors of the model, optimiser and RNGs (config, class_names, sources, spec,
    iteration, metrics)."""
    data = load_checkpoint(path, map_location="cpu")
    model = build_model(data["model_args"])
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise ReproduceError(f"{path} does not match the model it describes: {exc}") from exc
    model.to(device).eval()
    meta = {k: v for k, v in data.items() if k not in ("model", "optimizer", "rng")}
    return model, meta


