"""The fine-tuning loop both networks share: Caffe's ``Solver::Solve`` on a `caffe_models` network.

Per update k = 0, 1, … (``solver.cpp``): batch k (`video_data.TrainBatches`, a pure function of the seed
and k; with BVLC's ``iter_size`` n, the gradients of batches k·n … k·n + n − 1 add up) → the training
pass (`TrainingNet`: in-place ReLUs, DROPOUT 0.5 after fc6 and fc7 with inverted scaling, drawn from the
run's own generator) → ``SOFTMAX_LOSS`` (the mean over the batch) → backward → `CaffeSGD` step (the
rate of ``solver.learning_rate``, lr_mult / decay_mult per blob). Then, as Caffe orders them: a test
every ``test_interval`` updates (validation clip accuracy), a snapshot every ``snapshot`` updates and
one after the last update.

Files in OUT::

    <prefix>_iter_<N>.caffemodel   the weights after update N, in the schema the original tool reads
                                   (C3D v1.0 or BVLC V2, `caffe_models.writer`); a relative
                                   snapshot_prefix is taken inside OUT
    finetune_state.pt              what a killed run continues from (`--resume`): weights, the solver's
                                   velocities and iteration, every rank's dropout generator, the
                                   snapshots so far; written atomically at every snapshot, every
                                   ``checkpoint_every`` updates and at the end
    log.jsonl                      {"kind": "train", "iteration", "loss", "lr"} per update and {"kind":
                                   "valid", "iteration", "accuracy", "loss", "clips"} per test

A resumed run computes exactly what the uninterrupted run would have (the batches depend on (seed, k)
only), so its final weights are the same. Under torchrun each of W processes computes B / W clips of
every batch; DDP averages the gradients, so the update is the single-process one up to float rounding
(each rank draws its own dropout masks). Rank 0 writes every file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alstm_core.atomic import write_atomically, write_text
from alstm_core.progress import progress_bar
from caffe_models.writer import save_caffemodel
from reproduce.errors import ReproduceError
from reproduce.finetuning.clips import Samples
from reproduce.finetuning.solver import CaffeSGD, SolverSettings, caffe_param_groups
from reproduce.finetuning.video_data import EvalBatches, TrainBatches, batch_loader, eval_items
from reproduce.runtime.distributed import Distributed, rank_seed, single_process
from reproduce.runtime.precision import autocast
from reproduce.runtime.precision import resolve as resolve_precision

STATE_FILE = "finetune_state.pt"
DROPOUT = 0.5                           # dropout_ratio of drop6 and drop7


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning run left: ``snapshots`` (every ``.caffemodel`` of the run so far, in order),
    the final iteration, the log, the last validation clip accuracy (None without validation samples),
    the resume state file and the iteration this process started from (0 for a new run)."""

    snapshots: tuple[str, ...]
    iterations: int
    log: str
    valid_accuracy: float | None
    state: str
    resumed_from: int = 0

    @property
    def final(self) -> str:
        """The last snapshot: the fine-tuned weights."""
        return self.snapshots[-1]


@dataclass
class Job:
    """One fine-tuning, as c3d.py or vgg.py sets it up: the built and initialised network, the samples and
    their data layer, the solver, the snapshot schema, batch sizes, the seed, and ``identity`` (what a
    resumed run must share with the saved one)."""

    net: nn.Module
    samples: Samples
    layer: Any                                   # VideoDataLayer or ImageDataLayer
    settings: SolverSettings
    lr_mults: dict[str, tuple[float, float]]
    schema: str
    batch_size: int
    valid_batch_size: int
    valid_clips: int
    seed: int
    identity: dict


class TrainingNet(nn.Module):
    """The training pass of a `caffe_models` chain (C3D (B, 3, 16, 112, 112) or VGG-19 (B, 3, 224, 224)
    → fc8 scores (B, C)), with gradients: every convolution and fc6/fc7 followed by its in-place ReLU,
    and in training mode Caffe's DROPOUT (``mask · x / (1 − p)``, the mask drawn from ``generator``).
    ``channels_last``: the input is put in channels_last_3d (5-D) or channels_last (4-D), the layout of
    oneDNN's and cuDNN's fast convolutions (the network should be too: `to_fast_layout`); the values do
    not depend on it (benchmarks/bench_finetune.py measures both layouts against a float64 pass)."""

    def __init__(self, net: nn.Module, dropout: float = DROPOUT, channels_last: bool = True):
        super().__init__()
        self.net, self.dropout, self.channels_last = net, dropout, channels_last
        self.steps = [(name, getattr(net, name)) for name in net.layer_names if hasattr(net, name)]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=fast_layout(x.ndim))
        last = self.steps[-1][0]
        for name, module in self.steps:
            if isinstance(module, nn.Linear) and x.ndim > 2:
                x = x.flatten(1)                 # (B, C·[T·]H·W), Caffe's blob order
            x = module(x)
            if name == last:
                break
            if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
                x = torch.relu(x)
            if isinstance(module, nn.Linear) and self.training and self.dropout:
                keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.dropout
                x = x * keep / (1.0 - self.dropout)
        return x


def fast_layout(ndim: int) -> torch.memory_format:
    """The memory format of fast convolutions for a tensor of ``ndim`` dimensions: channels_last_3d (NDHWC)
    for C3D's 5-D blobs, channels_last (NHWC) for VGG-19's 4-D ones."""
    return torch.channels_last_3d if ndim == 5 else torch.channels_last


def to_fast_layout(net: nn.Module) -> nn.Module:
    """``net`` with its convolution weights in `fast_layout` (in place; the values are unchanged)."""
    three_d = any(isinstance(m, nn.Conv3d) for m in net.modules())
    return net.to(memory_format=fast_layout(5 if three_d else 4))


def snapshot_path(out: str, settings: SolverSettings, iteration: int) -> str:
    """``<prefix>_iter_<N>.caffemodel``; a relative prefix is inside ``out``."""
    prefix = settings.snapshot_prefix or "finetune"
    return os.path.join(out, f"{prefix}_iter_{iteration}.caffemodel")


def run_job(job: Job, out: str, *, resume: bool = False, device: str | None = None,
            precision: str = "float32", workers: int = 2, read_ahead: int = 2, checkpoint_every: int = 500,
            dist: Distributed | None = None, progress: bool = False,
            callback: Callable[[int], None] | None = None) -> FinetuneResult:
    """Run (or continue, ``resume``) ``job`` in the folder ``out``; see the module. ``callback(k)`` is
    called after update k's files are written (tests stop a run there)."""
    if checkpoint_every < 1 or workers < 0 or read_ahead < 1:
        raise ReproduceError("--checkpoint-every and --read-ahead must be >= 1, --workers >= 0")
    dist = dist or single_process(device)
    device = dist.device
    precision = resolve_precision(precision, device)
    settings, net = job.settings, job.net.to(device)
    net = to_fast_layout(net)
    os.makedirs(out, exist_ok=True)
    state_path = os.path.join(out, STATE_FILE)
    saved = _read_state(state_path, resume, job.identity)
    model = TrainingNet(net)
    forward = dist.wrap(model)
    optimizer = CaffeSGD(caffe_param_groups(net, job.lr_mults), settings)
    dropout_rng = torch.Generator(device=device).manual_seed(rank_seed(job.seed + 1, dist.rank))
    start, snapshots, accuracy = 0, [], None
    if saved is not None:
        net.load_state_dict(saved["net"])
        optimizer.load_state_dict(saved["optimizer"])
        by_rank = saved["rng"]["dropout_by_rank"]
        if len(by_rank) == dist.world_size:          # else another number of processes: reseeded
            dropout_rng.set_state(by_rank[dist.rank].cpu())
        else:
            dropout_rng.manual_seed(rank_seed(job.seed + 1 + saved["iteration"], dist.rank))
        start, snapshots, accuracy = saved["iteration"], list(saved["snapshots"]), saved["valid_accuracy"]
    log = JsonLog(os.path.join(out, "log.jsonl"), start if saved is not None else None, dist.is_main)
    train = TrainBatches(job.samples.train, job.layer, batch_size=job.batch_size, seed=job.seed,
                         rank=dist.rank, world_size=dist.world_size)
    passes = settings.iter_size                               # BVLC: batches summed into one update
    stream = batch_loader(train, range(start * passes, settings.max_iter * passes), workers=workers,
                          read_ahead=read_ahead, pin=device.type == "cuda")
    bar = progress_bar(total=settings.max_iter, initial=start, desc="finetune", unit="it",
                       enabled=progress and dist.is_main)
    done = start

    def save_state() -> None:
        rngs = dist.all_gather_object(dropout_rng.get_state())
        payload = {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "iteration": done,
                   "rng": {"dropout": dropout_rng.get_state(), "dropout_by_rank": rngs},
                   "snapshots": snapshots, "valid_accuracy": accuracy, "identity": job.identity}
        if dist.is_main:
            write_atomically(state_path, lambda f: torch.save(payload, f), binary=True, fsync=True)
        dist.barrier()

    def snapshot() -> None:
        path = snapshot_path(out, settings, done)
        if dist.is_main:
            save_caffemodel(net, path, schema=job.schema)
        if path not in snapshots:
            snapshots.append(path)
        save_state()

    try:
        model.train()
        for k in range(start, settings.max_iter):
            rate = optimizer.rate
            optimizer.zero_grad(set_to_none=True)
            losses = []
            for _ in range(passes):                           # gradients add up; CaffeSGD divides
                clips, labels = next(stream)                  # (b, 3, 16, 112, 112) | (b, 3, 224, 224), (b,)
                clips, labels = clips.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                with autocast(precision, device):             # weights, gradients, velocities float32
                    scores = forward(clips, generator=dropout_rng)
                loss = F.cross_entropy(scores.float(), labels)    # SOFTMAX_LOSS: the mean over the batch
                loss.backward()
                losses.append(loss.detach())
            optimizer.step()
            done = k + 1
            value = float(dist.average(torch.stack(losses).mean()))
            if not math.isfinite(value):
                raise ReproduceError(f"the loss became {value} at update {done} (rate {rate:.3g}); lower "
                                     "base_lr in the solver, or check the data and the mean")
            log.write({"kind": "train", "iteration": done, "loss": value, "lr": rate})
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{rate:.2e}", refresh=False)
            if settings.test_interval and done % settings.test_interval == 0 and len(job.samples.valid):
                accuracy = _validate(job, model, dist, log, done, workers, read_ahead, precision)
                model.train()
            if settings.snapshot and done % settings.snapshot == 0:
                snapshot()
            elif done % checkpoint_every == 0:
                save_state()
            if callback is not None:
                callback(done)
        if len(job.samples.valid) and (not settings.test_interval or done % settings.test_interval
                                       or accuracy is None):
            accuracy = _validate(job, model, dist, log, done, workers, read_ahead, precision)
        if not snapshots or snapshots[-1] != snapshot_path(out, settings, done):
            snapshot()                                        # Caffe's snapshot after the last update
    finally:
        stream.close()
        bar.close()
        log.close()
    return FinetuneResult(tuple(snapshots), done, os.path.join(out, "log.jsonl"), accuracy, state_path,
                          start)


@torch.no_grad()
def _validate(job: Job, model: TrainingNet, dist: Distributed, log, done: int, workers: int,
              read_ahead: int, precision: str) -> float:
    """Clip accuracy on the validation samples (centre crop, no mirror, no dropout), sharded over the
    ranks by batch; logged. Caffe's test net: batches of ``valid_batch_size`` (50 in C3D's example)."""
    model.eval()
    items = eval_items(job.samples.valid, job.valid_clips, job.layer.length)
    batches = EvalBatches(job.samples.valid, job.layer, items, job.valid_batch_size)
    mine = range(dist.rank, len(batches), dist.world_size)
    correct, loss_sum, count = 0, 0.0, 0
    for clips, labels in batch_loader(batches, mine, workers=workers, read_ahead=read_ahead):
        clips, labels = clips.to(dist.device), labels.to(dist.device)
        with autocast(precision, dist.device):
            scores = model(clips).float()
        correct += int((scores.argmax(1) == labels).sum())
        loss_sum += float(F.cross_entropy(scores, labels, reduction="sum"))
        count += len(labels)
    correct, loss_sum, count = (sum(v) for v in zip(*dist.all_gather_object((correct, loss_sum, count)),
                                                     strict=True))
    accuracy = correct / max(count, 1)
    log.write({"kind": "valid", "iteration": done, "accuracy": accuracy, "loss": loss_sum / max(count, 1),
               "clips": count})
    return accuracy


class JsonLog:
    """``log.jsonl``: one JSON object per line, flushed as written (rank 0 only). A resumed run keeps the
    records up to its state's iteration (dropping later ones and a line torn by the kill)."""

    def __init__(self, path: str, keep_until: int | None, write: bool = True):
        self.file = None
        if not write:
            return
        kept = []
        if keep_until is not None and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        if json.loads(line).get("iteration", 0) <= keep_until:
                            kept.append(line.rstrip("\n") + "\n")
                    except (json.JSONDecodeError, AttributeError):
                        continue
        write_text(path, "".join(kept))
        self.file = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        if self.file is not None:
            try:
                self.file.write(json.dumps(record) + "\n")
                self.file.flush()
            except OSError as exc:                   # name the file (a full disk, say)
                raise OSError(exc.errno, exc.strerror or str(exc), self.file.name) from None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _read_state(path: str, resume: bool, identity: dict) -> dict | None:
    """The saved state when resuming (checked against ``identity``); None for a new run, which must not
    overwrite a run's state."""
    if not os.path.exists(path):
        return None
    if not resume:
        raise ReproduceError(f"{os.path.dirname(path)} already holds a fine-tuning run ({STATE_FILE}): pass "
                             "--resume to continue it, or another --out")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a damaged file: say which
        raise ReproduceError(f"{path}: cannot be read as a fine-tuning state ({exc})") from None
    differ = sorted(k for k in set(identity) | set(saved["identity"])
                    if identity.get(k) != saved["identity"].get(k))
    if differ:
        raise ReproduceError(f"cannot resume {path} with other settings ({', '.join(differ)} differ); give "
                             "the same inputs, weights, solver and options as the run being continued")
    return saved


def settings_identity(settings: SolverSettings) -> dict:
    """The solver's fields a resumed run must keep (warnings aside)."""
    fields = dataclasses.asdict(settings)
    fields.pop("warnings", None)
    return fields
