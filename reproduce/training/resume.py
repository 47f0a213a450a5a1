"""Continuing a run (``alstm train --resume``): what a checkpoint holds and how a run starts from it.

A checkpoint (`reproduce.runs.checkpoint`) holds the model, the optimiser's velocities, the
early-stopping state, every rank's dropout-generator state and the update count; batch k needs nothing
else. A resumed run therefore computes exactly what the uninterrupted run would have, and loses at
most the updates since the last checkpoint. `checkpoint_payload` writes that state; `read_saved` reads
it back and checks that the configuration is the same, up to `RESUMABLE_CHANGES`.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from reproduce.errors import ReproduceError
from reproduce.runs.checkpoint import load_checkpoint
from reproduce.training.config import TrainConfig

# Fields a resumed run may change: they do not alter the updates already done.
RESUMABLE_CHANGES = ("iterations", "patience", "num_workers")


def read_saved(config: TrainConfig, out_dir: str, resume: bool) -> dict[str, Any] | None:
    """The run folder's last.pt when resuming (its config checked against ``config``), None for a new
    run; ReproduceError for a new run in a folder that holds one. Creates ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    last_path = os.path.join(out_dir, "last.pt")
    if resume and os.path.exists(last_path):
        saved = load_checkpoint(last_path)
        check_resume(TrainConfig.from_dict(saved["config"]), config, last_path)
        return saved
    if not resume and os.path.exists(last_path):
        raise ReproduceError(f"{out_dir} already holds a run: pass --resume to continue it, or another --out")
    return None


def check_resume(saved: TrainConfig, given: TrainConfig, path: str) -> None:
    """ReproduceError if ``given`` changes a field outside RESUMABLE_CHANGES (multilabel None = as saved)."""
    given_values = given.to_dict()
    for name in ("multilabel", "flip"):            # None: as the run resolved it
        if given_values[name] is None:
            given_values[name] = saved.to_dict()[name]
    differ = [f for f, v in saved.to_dict().items() if f not in RESUMABLE_CHANGES and given_values[f] != v]
    if differ:
        raise ReproduceError(
            f"cannot resume {path} with a different configuration "
            f"({', '.join('--' + f.replace('_', '-') for f in sorted(differ))}); only "
            f"{', '.join('--' + f.replace('_', '-') for f in RESUMABLE_CHANGES)} may change on resume"
        )


def resumed_config(saved: dict[str, Any], given: TrainConfig) -> TrainConfig:
    """The saved run's configuration, with the `RESUMABLE_CHANGES` of ``given``."""
    return TrainConfig.from_dict(saved["config"]).replace(**{f: getattr(given, f) for f in RESUMABLE_CHANGES})


def checkpoint_payload(config: TrainConfig, data, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       stopping, iteration: int, metrics: dict[str, Any], dropout_rng: torch.Generator,
                       dropout_by_rank: list[torch.Tensor]) -> dict[str, Any]:
    """The checkpoint of update ``iteration`` (the format of `reproduce.runs.checkpoint`): ``data`` the
    run's `reproduce.training.data.TrainData`, ``stopping`` its `EarlyStopping`, ``dropout_by_rank``
    every rank's dropout-generator state (rank 0's is ``dropout_rng``'s)."""
    return {"config": config.to_dict(), "model_args": data.model_args, "model": model.state_dict(),
            "class_names": data.class_names, "input_source": config.input_source,
            "attended_source": config.attended_source, "spec": data.spec_dict, "iteration": iteration,
            "metrics": metrics, "optimizer": optimizer.state_dict(),
            "early_stopping": stopping.state_dict(),
            "rng": {"dropout": dropout_rng.get_state(), "dropout_by_rank": dropout_by_rank}}


def dropout_state(saved_rng: dict[str, Any], rank: int, world_size: int) -> torch.Tensor | None:
    """The dropout generator state ``rank`` resumes from: its own saved state when the run had this
    world size, else rank 0's for rank 0 and None for the others (a run resumed on another number of
    processes: they reseed; the batches do not depend on it, the dropout masks do)."""
    by_rank = saved_rng.get("dropout_by_rank")
    if by_rank is not None and len(by_rank) == world_size:
        return by_rank[rank]
    if rank == 0:
        return saved_rng["dropout"]
    return None
