"""More than one process: `torchrun` launches, the process group, and sharded scoring of videos.

`alstm train` and `alstm evaluate` run unchanged under ``torchrun --nproc-per-node K`` (and across
machines with torchrun's usual ``--nnodes``/``--rdzv-*`` flags). `reproduce.cli` passes torchrun's
variables down (RANK, WORLD_SIZE, LOCAL_RANK, ...); `setup` turns them into a `Distributed`, this
process's place in the job. Without them (or with WORLD_SIZE=1) the same object describes a single
process and every collective below is the identity, so the callers have one code path.

Backends: ``nccl`` when the device is CUDA (device ``cuda:LOCAL_RANK``, one GPU per process), ``gloo``
on the CPU. The process group is created with ``init_method="env://"``: torch reads MASTER_ADDR and
MASTER_PORT, which torchrun sets, and reuses the store of torchrun's agent when it offers one.

Training (`reproduce.train`): every rank builds the same model from the same seed (DDP broadcasts
rank 0's parameters at wrapping anyway), reads its own 1/W of each global batch of B windows
(`TrainWindows` with rank and world size: the union of the ranks' batches is the single-process batch
k), and DDP averages the gradients. Each rank's loss is the mean over its B/W windows, so with equal
shards the averaged gradient is the single-process mean: the runs agree up to float rounding
(dropout aside: each rank draws its own masks). Rank 0 alone writes logs and checkpoints.

Scoring videos (`score_sharded`): the videos are cut into the groups that one forward pass of
``window_batch`` windows holds in a single process, group c goes to rank c mod W, and the per-video
scores are gathered by every rank. Each forward pass is then the single-process one, so the merged
scores are bitwise those of one process, and every rank takes the same decisions from them (early
stopping). The model is not DDP-wrapped there: ranks may run different numbers of passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reproduce.errors import ReproduceError
from reproduce.scores import NO_VIDEO, VideoScores


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


def default_device(preferred: str | None = None) -> str:
    """The device to use when none is given: ``preferred`` when given (e.g. the ``$ALSTM_DEVICE`` that
    `reproduce.cli` reads onto ``args.default_device``), else ``cuda`` where CUDA is available, else
    ``cpu``. Reads no environment variable: the command line's edge does that."""
    if preferred:
        return preferred
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | None, launch: Launch) -> torch.device:
    """None: `default_device`; a bare "cuda" becomes ``cuda:LOCAL_RANK`` (one GPU per process)."""
    device = default_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ReproduceError(f"--device {device}: this machine (or this torch build) has no CUDA; "
                             "use --device cpu")
    if device == "cuda":
        device = f"cuda:{launch.local_rank}"
    return torch.device(device)


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
    return Distributed(launch, resolve_device(device, launch))


def single_process(device: str | torch.device | None = None) -> Distributed:
    """A one-process `Distributed` (no process group)."""
    launch = Launch()
    return Distributed(launch, resolve_device(None if device is None else str(device), launch))


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


class ShardedWindows:
    """The (video_id, Batch) pairs of the videos of ``windows`` (a TestWindows) that ``rank`` scores:
    groups of ``videos_per_group`` consecutive videos, group c to rank c mod W. Records the video
    indices and the number of windows it handed out."""

    def __init__(self, windows, videos_per_group: int, rank: int, world_size: int):
        self.windows = windows
        count = len(windows)
        self.indices = [n for n in range(count) if (n // videos_per_group) % world_size == rank]
        self.windows_read = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        for n in self.indices:
            video_id, batch = self.windows[n]
            self.windows_read += batch.inputs.shape[0]
            yield video_id, batch


def videos_per_group(windows, window_batch: int) -> int:
    """How many videos one forward pass of at most ``window_batch`` windows holds in
    `reproduce.evaluate.score_videos` (every video of a TestWindows has crops × (1 + flip) windows)."""
    per_video = windows.crops * (2 if windows.flip else 1)
    return max(1, window_batch // per_video)


def score_sharded(dist: Distributed, windows, score: Callable[[Any], VideoScores],
                  window_batch: int = 400) -> VideoScores:
    """``score(iterable of (video_id, Batch)) -> VideoScores`` run on this rank's share of ``windows``,
    then the shares merged (in the order of ``windows``) on every rank. The merged loss is the mean over
    all windows (each rank's mean weighted by its window count)."""
    if dist.world_size == 1:
        return score(windows)
    mine = ShardedWindows(windows, videos_per_group(windows, window_batch), dist.rank, dist.world_size)
    part = score(mine) if len(mine) else None
    return merge_video_scores(dist.all_gather_object((mine.indices, part, mine.windows_read)))


def merge_video_scores(parts: Sequence[tuple[list[int], VideoScores | None, int]]) -> VideoScores:
    """One VideoScores from the ranks' (video indices, VideoScores or None, windows scored)."""
    order, ids, scores, positives = [], [], [], []
    loss_sum, windows, has_loss = 0.0, 0, False
    for indices, part, count in parts:
        if part is None:
            continue
        order.extend(indices)
        ids.extend(part.video_ids)
        scores.append(part.scores)
        positives.append(part.positives)
        if part.loss is not None:
            has_loss = True
            loss_sum += part.loss * count
            windows += count
    if not ids:
        raise ReproduceError(NO_VIDEO)
    rank = np.argsort(np.asarray(order), kind="stable")
    return VideoScores(tuple(ids[i] for i in rank), np.concatenate(scores)[rank],
                       np.concatenate(positives)[rank], loss_sum / windows if has_loss else None)


class NullLog:
    """The run log of the ranks other than 0: they compute the same records and write none."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


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
