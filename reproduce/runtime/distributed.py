"""More than one process: `torchrun` launches, the process group, and the collectives the loops use.

`alstm train` and `alstm evaluate` run unchanged under ``torchrun --nproc-per-node K`` (and across
machines with torchrun's usual ``--nnodes``/``--rdzv-*`` flags). `reproduce.cli` passes torchrun's
variables down (RANK, WORLD_SIZE, LOCAL_RANK, ...); `setup` turns them into a `Distributed`, this
process's place in the job. Without them (or with WORLD_SIZE=1) the same object describes a single
process and every collective below is the identity, so the callers have one code path.

Backends: ``nccl`` when the device is CUDA (device ``cuda:LOCAL_RANK``, one GPU per process), ``gloo``
on the CPU. The process group is created with ``init_method="env://"``: torch reads MASTER_ADDR and
MASTER_PORT, which torchrun sets, and reuses the store of torchrun's agent when it offers one.

Training (`reproduce.training.loop`): every rank builds the same model from the same seed (DDP broadcasts
rank 0's parameters at wrapping anyway), reads its own 1/W of each global batch of B windows
(`TrainWindows` with rank and world size: the union of the ranks' batches is the single-process batch
k), and DDP averages the gradients. Each rank's loss is the mean over its B/W windows, so with equal
shards the averaged gradient is the single-process mean: the runs agree up to float rounding
(dropout aside: each rank draws its own masks). Rank 0 alone writes logs and checkpoints.

Scoring videos over the ranks, with the result of one process, is `reproduce.evaluation.sharding`.
The device of each process is chosen by `reproduce.runtime.device`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reproduce.errors import ReproduceError
from reproduce.runtime.device import resolve_device


@dataclass(frozen=True)
class Launch:
    """Where torchrun put this process: global rank, world size W, rank on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_variables(cls, variables: Mapping[str, str] | None) -> Launch:
        """From torchrun's RANK / WORLD_SIZE / LOCAL_RANK (None or no WORLD_SIZE: one process)."""
        if not variables or "WORLD_SIZE" not in variables:
            return cls()
        try:
            rank = int(variables.get("RANK", "0"))
            world_size = int(variables["WORLD_SIZE"])
            local_rank = int(variables.get("LOCAL_RANK", str(rank)))
        except ValueError:
            shown = ", ".join(f"{k}={variables.get(k)!r}" for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
            raise ReproduceError(f"torchrun variables {shown} are not all integers; launch with torchrun") \
                from None
        if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
            raise ReproduceError(f"RANK={rank}, WORLD_SIZE={world_size}: need 0 <= RANK < WORLD_SIZE; "
                                 "launch with torchrun")
        return cls(rank, world_size, local_rank)


class Distributed:
    """This process's rank in a job of ``world_size`` processes, and the collectives the loops need.
    Use as a context manager (or call `close`) so the process group is torn down."""

    def __init__(self, launch: Launch, device: torch.device):
        self.rank, self.world_size, self.local_rank = launch.rank, launch.world_size, launch.local_rank
        self.device = device
        self.backend = None
        if self.world_size > 1:
            import torch.distributed as dist

            self.backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(self.backend, init_method="env://", rank=self.rank,
                                    world_size=self.world_size)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, prints and writes files."""
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around ``model`` (itself, in one process). Keep ``model`` for
        state_dict and evaluation; call the wrapper for training forwards only."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def average(self, tensor: torch.Tensor) -> torch.Tensor:
        """The mean of ``tensor`` over the ranks (a new tensor; ``tensor`` itself in one process)."""
        if self.world_size == 1:
            return tensor
        import torch.distributed as dist

        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world_size

    def all_gather_object(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order, on every rank."""
        if self.world_size == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def from_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on rank 0 and its result given to every rank. An exception it raises is
        raised on every rank, so no rank waits forever in a collective the others never reach."""
        if self.world_size == 1:
            return fn()
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("value", fn())
            except Exception as exc:  # re-raised below, on every rank
                box[0] = ("error", exc)
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def __enter__(self) -> Distributed:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def setup(variables: Mapping[str, str] | None, device: str | None = None) -> Distributed:
    """The `Distributed` of a process launched with torchrun's ``variables`` (None: a single process)."""
    launch = Launch.from_variables(variables)
    return Distributed(launch, resolve_device(device, launch.local_rank))


def single_process(device: str | torch.device | None = None) -> Distributed:
    """A one-process `Distributed` (no process group)."""
    launch = Launch()
    return Distributed(launch, resolve_device(device))


def per_rank_batch_size(batch_size: int, world_size: int) -> int:
    """B / W windows per rank: the global batch (the paper's 200) stays the same for any W."""
    if batch_size % world_size:
        divisors = [w for w in range(1, batch_size + 1) if batch_size % w == 0 and w <= 64]
        raise ReproduceError(
            f"the batch of {batch_size} windows cannot be split evenly over {world_size} processes; "
            f"launch a number of processes that divides it ({', '.join(map(str, divisors))}) or change "
            "--batch-size")
    return batch_size // world_size


def rank_seed(seed: int, rank: int) -> int:
    """The dropout seed of ``rank``: ``seed`` itself for rank 0 (a one-process run is unchanged), an
    independent stream for the others, so the ranks' masks are not copies of each other."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1)


# ------------------------------------------------------------------------------------------------
# Sharded scoring of videos
# ------------------------------------------------------------------------------------------------


