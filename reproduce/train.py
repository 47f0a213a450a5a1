"""The training loop of SPEC §3: momentum SGD on random 192-frame windows, validation, early stopping.

One run = one `TrainConfig` and one folder::

    RUN_DIR/config.json   the resolved configuration
    RUN_DIR/log.jsonl     one JSON object per line: {"kind": "train", "iteration", "loss", "lr",
                          "elapsed_s", "iterations_per_s"} every ``log_every`` updates, and {"kind":
                          "valid", "iteration", "loss", "accuracy", "mAP", "best", "bad_validations"}
                          at each validation
    RUN_DIR/last.pt       the latest checkpoint (every ``checkpoint_every`` updates, at each validation
                          and at the end)
    RUN_DIR/best.pt       the model of the lowest validation loss (strict improvement); without
                          validation (``validate_every=0``) the final model
    RUN_DIR/tensorboard/  the same scalars, when the ``tensorboard`` package is installed

Main loop, per update k = 0, 1, ... (the order of Blocks' MainLoop, BLOCKS_FUEL.md §3.4): take batch k
(a pure function of the seed and k), set the rate `learning_rate(config, k)`, forward with dropout
masks drawn from the run's own generator, backward, step; then ``iterations_done = k + 1`` and the
after-batch work: logging, validation and early stopping, checkpoints. In the code: `train` sets up a
`TrainState` and calls `train_step` (one update) and `after_update` per batch, then `finish`;
`validate`, `save` (a checkpoint) and `check_losses` are the pieces those call, each taking the state.

Resuming: a checkpoint holds the model, the optimiser's velocities, the early-stopping state, the
dropout generator's state and the update count; batch k needs nothing else. A resumed run therefore
computes exactly what the uninterrupted run would have, and loses at most the updates since the
last checkpoint. Log lines written after that checkpoint are dropped on resume.

Validation (every ``validate_every`` updates, and once more at the end if the last updates were not
validated): the model in eval mode (no dropout) on the ``valid`` split, ``valid_crops`` windows per
video at seeded positions plus the same on flipped frames (when the file has them), the same windows
every time. Its loss is the training loss averaged over all those windows; accuracy and mAP come from
the videos' averaged scores. Early stopping watches the loss.

A non-finite loss stops the run with a ReproduceError (`TrainingDiverged`) naming the update. Losses
are checked every ``log_every`` updates and before every checkpoint, and a checkpoint is only written
when they and the parameters are all finite, so `last.pt` always holds the last good state.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch.nn import functional as F

from alstm_core.progress import progress_bar
from reproduce.checkpoint import RunLog, build_model, load_checkpoint, save_checkpoint
from reproduce.config import TrainConfig
from reproduce.distributed import (
    Distributed,
    NullLog,
    dropout_state,
    rank_seed,
    score_sharded,
    single_process,
)
from reproduce.errors import ReproduceError
from reproduce.evaluate import score_videos
from reproduce.legacy_data import readable_data
from reproduce.metrics import classification_report
from reproduce.optim import build_optimizer, learning_rate, set_learning_rate
from reproduce.precision import autocast
from reproduce.precision import resolve as resolve_precision
from reproduce.train_data import TrainData, open_train_data, window_batches

# Fields a resumed run may change: they do not alter the updates already done.
RESUMABLE_CHANGES = ("iterations", "patience", "num_workers")


class TrainingDiverged(ReproduceError):
    """The loss became NaN or infinite."""


class TrainResult(NamedTuple):
    iterations: int            # updates done when the run ended
    stopped_early: bool
    best_iteration: int | None
    best_valid_loss: float | None
    last_checkpoint: str
    best_checkpoint: str


@dataclass
class EarlyStopping:
    """Patience counted in validations (Blocks' FinishIfNoImprovementAfter with TrackTheBest):
    a validation loss strictly below the best resets the count, any other adds one; the run stops
    when ``bad_validations`` reaches ``patience``."""

    patience: int
    best_loss: float = math.inf
    best_iteration: int | None = None
    bad_validations: int = 0

    @property
    def stopped(self) -> bool:
        return self.bad_validations >= self.patience

    def update(self, loss: float, iteration: int) -> bool:
        """Record one validation; True if it is a new best."""
        if loss < self.best_loss:
            self.best_loss, self.best_iteration, self.bad_validations = loss, iteration, 0
            return True
        self.bad_validations += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best_loss": self.best_loss, "best_iteration": self.best_iteration,
                "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss = float(state["best_loss"])
        self.best_iteration = state["best_iteration"]
        self.bad_validations = int(state["bad_validations"])


def window_loss(step_logits: torch.Tensor, targets: torch.Tensor, multilabel: bool,
                loss: str = "per_step") -> torch.Tensor:
    """Per-window training cost → (B,).

    step_logits (B, N, C) (N = 1 for variant b); targets (B,) int64, or (B, C) float multi-hot.
    - multi-label: binary cross-entropy of the step-averaged logits, summed over the C classes
      (Blocks' ``BinaryCrossEntropy``: ``cost_matrix.sum(axis=1)``, then the batch mean);
    - ``"per_step"``: cross-entropy of every step's softmax y_t, averaged over the N steps;
    - ``"mean_score"``: −log of the target's step-averaged probability, mean_t y_t[target].
    """
    if multilabel:
        return F.binary_cross_entropy_with_logits(step_logits.mean(dim=1), targets, reduction="none").sum(1)
    batch, steps, classes = step_logits.shape
    if loss == "per_step":
        per_step = F.cross_entropy(step_logits.reshape(batch * steps, classes),         # (B·N, C)
                                   targets.repeat_interleave(steps), reduction="none")
        return per_step.view(batch, steps).mean(dim=1)
    log_probs = torch.log_softmax(step_logits, dim=-1)                                   # (B, N, C)
    target_log_probs = log_probs.gather(2, targets.view(batch, 1, 1).expand(batch, steps, 1)).squeeze(2)
    return math.log(steps) - torch.logsumexp(target_log_probs, dim=1)                    # −log mean_t y_t


def _initialise_from(model: torch.nn.Module, path: str) -> list[str]:
    """Copy the parameters of checkpoint ``path`` whose names and shapes agree (Hollywood2 fine-tuning);
    returns the names left at their fresh values. Only the classifier may differ (another class count)."""
    source = load_checkpoint(path)["model"]
    own = model.state_dict()
    skipped = [name for name, value in own.items()
               if name not in source or source[name].shape != value.shape]
    mismatched = [name for name in skipped if not name.startswith("classifier.")]
    if mismatched:
        raise ReproduceError(
            f"--init-from {path}: its model does not fit this one ({', '.join(mismatched)} differ); "
            "fine-tune from a checkpoint trained on the same sources, dimensions and options"
        )
    model.load_state_dict({name: source[name] for name in own if name not in skipped}, strict=False)
    return skipped


def _check_resume(saved: TrainConfig, given: TrainConfig, path: str) -> None:
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


@dataclass
class TrainState:
    """What the pieces of the loop (`train_step`, `check_losses`, `save`, `validate`) read and change:
    one per run, passed explicitly. ``done`` is the number of updates done, ``saved_at`` the update
    ``last.pt`` holds, ``pending`` the losses since the last finiteness check, ``metrics`` those of the
    latest validation (saved in checkpoints), ``clock`` (time, update) the start of the current speed
    measurement."""

    config: TrainConfig               # resolved: multilabel and flip from the file, precision
    data: TrainData
    dist: Distributed
    model: torch.nn.Module            # the plain model: its names are the checkpoint's
    forward: torch.nn.Module          # what an update calls: DDP around ``model`` in a torchrun job
    optimizer: torch.optim.Optimizer
    dropout_rng: torch.Generator
    stopping: EarlyStopping
    last_path: str
    best_path: str
    log: RunLog | NullLog             # rank 0 writes log.jsonl, the others a NullLog
    start: int = 0                    # updates done when this process began (resume)
    done: int = 0
    saved_at: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    pending: list[torch.Tensor] = field(default_factory=list)
    clock: tuple[float, int] = (0.0, 0)


def train(config: TrainConfig, out_dir: str, *, resume: bool = False, device: str | None = None,
          checkpoint_every: int = 125, log_every: int = 10, progress: bool = True,
          dist: Distributed | None = None, notice: Callable[[str], None] | None = None) -> TrainResult:
    """Run (or continue, with ``resume``) the training of ``config`` in ``out_dir``. With ``dist`` (a
    process of a torchrun job, see `reproduce.distributed`) the run is data-parallel; its device is
    ``dist.device`` and ``device`` is ignored (None: cuda where available, else cpu). ``notice``
    receives one-line remarks for the user (the main process's): e.g. that the file has no flipped
    features and the run goes on without them, or that ``config.data`` is a legacy Fuel file, converted
    once beside it (`reproduce.legacy_data`) and read instead."""
    config.validate()
    if checkpoint_every < 1 or log_every < 1:
        raise ReproduceError("--checkpoint-every and --log-every must be at least 1")
    dist = dist or single_process(device)
    config = config.replace(precision=resolve_precision(config.precision, dist.device),
                            data=dist.from_main(lambda: readable_data(config.data, notice)))
    saved = dist.from_main(lambda: _read_saved(config, out_dir, resume))   # every rank gets rank 0's
    if saved is not None:
        config = TrainConfig.from_dict(saved["config"]).replace(
            **{f: getattr(config, f) for f in RESUMABLE_CHANGES})
    data = open_train_data(config, dist.rank, dist.world_size)   # every data check, before any update
    if data.notice and notice is not None and dist.is_main:
        notice(data.notice)
    if dist.is_main:
        data.config.write_json(os.path.join(out_dir, "config.json"))
    state = _initial_state(data, dist, out_dir, saved)
    config = state.config
    bar = progress_bar(total=config.iterations, initial=state.start, desc="train", unit="it",
                       enabled=progress and dist.is_main)
    state.clock = (time.perf_counter(), state.start)
    stream = window_batches(data, state.start, config.iterations, config.num_workers, dist.device)
    try:
        state.model.train()
        while state.done < config.iterations and not state.stopping.stopped:
            lr = train_step(state, next(stream))
            bar.update(1)
            after_update(state, lr, bar, checkpoint_every, log_every)
        finish(state, resumed=saved is not None)
    finally:
        stream.close()                              # stops DataLoader workers after an early stop
        data.train.close()
        if data.valid is not None:
            data.valid.close()
        bar.close()
        state.log.close()
    stopping = state.stopping
    return TrainResult(state.done, stopping.stopped, stopping.best_iteration,
                       None if math.isinf(stopping.best_loss) else stopping.best_loss,
                       state.last_path, state.best_path)


def _read_saved(config: TrainConfig, out_dir: str, resume: bool) -> dict[str, Any] | None:
    """The run folder's last.pt when resuming (its config checked against ``config``), None for a new
    run; ReproduceError for a new run in a folder that holds one. Creates ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    last_path = os.path.join(out_dir, "last.pt")
    if resume and os.path.exists(last_path):
        saved = load_checkpoint(last_path)
        _check_resume(TrainConfig.from_dict(saved["config"]), config, last_path)
        return saved
    if not resume and os.path.exists(last_path):
        raise ReproduceError(f"{out_dir} already holds a run: pass --resume to continue it, or another --out")
    return None


def _initial_state(data: TrainData, dist: Distributed, out_dir: str,
                   saved: dict[str, Any] | None) -> TrainState:
    """The model, optimiser and dropout generator of update 0 (seeded), or of the update ``saved``
    holds; a fresh run with ``init_from`` copies that checkpoint's parameters. Opens the log."""
    config, device = data.config, dist.device
    model = build_model(data.model_args, torch.Generator().manual_seed(config.seed)).to(device)
    dropout_rng = torch.Generator(device=device).manual_seed(rank_seed(config.seed + 1, dist.rank))
    optimizer = build_optimizer(config, model.parameters())
    stopping = EarlyStopping(config.patience)
    start, metrics = 0, {}
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        stopping.load_state_dict(saved["early_stopping"])
        start, metrics = int(saved["iteration"]), dict(saved.get("metrics", {}))
        rng = dropout_state(saved["rng"], dist.rank, dist.world_size)
        if rng is None:                             # a rank the saved run did not have
            dropout_rng.manual_seed(rank_seed(config.seed + 1 + start, dist.rank))
        else:
            dropout_rng.set_state(rng.to("cpu"))
    elif config.init_from:
        dist.from_main(lambda: _initialise_from(model, config.init_from))   # DDP broadcasts rank 0's
    forward = dist.wrap(model)                      # DDP in a torchrun job; `model` keeps the plain names
    log = RunLog(out_dir, keep_until=start if saved is not None else None) if dist.is_main else NullLog()
    return TrainState(config, data, dist, model, forward, optimizer, dropout_rng, stopping,
                      os.path.join(out_dir, "last.pt"), os.path.join(out_dir, "best.pt"), log,
                      start=start, done=start, saved_at=start, metrics=metrics)


def train_step(state: TrainState, batch: tuple[torch.Tensor, ...]) -> float:
    """Update k = ``state.done`` on ``batch`` (inputs (B, N, Dv), attended (B, T, Da), mask (B, T),
    targets (B,) or (B, C)): set the rate of update k, forward with dropout masks from the run's
    generator, backward, step. Returns the learning rate; the loss joins ``state.pending``."""
    config, device = state.config, state.dist.device
    inputs, attended, mask, targets = batch
    lr = learning_rate(config, state.done)
    set_learning_rate(state.optimizer, lr)
    with autocast(config.precision, device):       # weights, gradients, momentum stay float32
        out = state.forward(inputs, attended, mask, generator=state.dropout_rng)
    loss = window_loss(out.step_logits.float(), targets, config.multilabel, config.loss).mean()
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    state.pending.append(loss.detach())
    state.done += 1
    return lr


def after_update(state: TrainState, lr: float, bar, checkpoint_every: int, log_every: int) -> None:
    """The after-batch work of update ``state.done``: a train record every ``log_every`` updates (and at
    the last), a validation every ``validate_every``, last.pt at each validation and every
    ``checkpoint_every``."""
    config, done = state.config, state.done
    if done % log_every == 0 or done == config.iterations:
        mean_loss = check_losses(state)
        now, (then, then_at) = time.perf_counter(), state.clock
        state.log.write({"kind": "train", "iteration": done, "loss": mean_loss, "lr": lr,
                         "elapsed_s": now - then, "iterations_per_s": (done - then_at) / (now - then)})
        state.clock = (now, done)
        bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
    validating = config.validate_every and done % config.validate_every == 0
    if validating:
        check_losses(state)
        validate(state)
    if validating or done % checkpoint_every == 0:
        save(state, state.last_path)


def finish(state: TrainState, resumed: bool) -> None:
    """The end of the run: a last validation if updates since the last one went unvalidated, last.pt if
    it is behind (or the run is new), and best.pt = the final model without validation."""
    config, done = state.config, state.done
    check_losses(state)
    if config.validate_every and done > state.start and done % config.validate_every \
            and not state.stopping.stopped:
        validate(state)                             # the updates since the last validation count too
    if done > state.saved_at or not resumed:
        save(state, state.last_path)
    if not config.validate_every:
        save(state, state.best_path)


def check_losses(state: TrainState) -> float | None:
    """Raise TrainingDiverged on a non-finite loss since the last check; return their mean (None if no
    update since). The losses are averaged over the ranks first (a collective)."""
    if not state.pending:
        return None
    losses = state.dist.average(torch.stack(state.pending)).cpu()   # the global batches' losses
    first = state.done - len(state.pending)
    state.pending = []
    bad = torch.nonzero(~torch.isfinite(losses)).flatten()
    if bad.numel():
        at = first + int(bad[0]) + 1
        state.log.write({"kind": "error", "iteration": at, "loss": float(losses[bad[0]])})
        where = (f"{state.last_path} holds update {state.saved_at}, the last good state"
                 if os.path.exists(state.last_path) else "no checkpoint was written before it")
        raise TrainingDiverged(
            f"the loss became {float(losses[bad[0]])} at update {at} (learning rate "
            f"{learning_rate(state.config, at - 1):.3g}); the run stopped and {where}. "
            "Lower --lr or check the data"
        )
    return float(losses.mean())


def save(state: TrainState, path: str) -> None:
    """Check the losses and the parameters, then write a checkpoint of update ``state.done`` to ``path``
    (rank 0 writes; every rank takes part in gathering the dropout states)."""
    check_losses(state)
    broken = [name for name, p in state.model.named_parameters() if not bool(torch.isfinite(p).all())]
    if broken:
        raise TrainingDiverged(
            f"parameters {', '.join(broken)} became NaN or infinite by update {state.done}; the run stopped "
            "and the last checkpoint is the last good state. Lower --lr")
    payload = _payload(state)                       # a collective: every rank takes part
    if state.dist.is_main:
        save_checkpoint(path, payload)
    state.dist.barrier()                            # no rank runs ahead of a checkpoint being written
    if path == state.last_path:
        state.saved_at = state.done


def _payload(state: TrainState) -> dict[str, Any]:
    """The checkpoint of update ``state.done`` (the format of `reproduce.checkpoint`)."""
    config, data, rng = state.config, state.data, state.dropout_rng
    return {"config": config.to_dict(), "model_args": data.model_args, "model": state.model.state_dict(),
            "class_names": data.class_names, "input_source": config.input_source,
            "attended_source": config.attended_source, "spec": data.spec_dict, "iteration": state.done,
            "metrics": state.metrics, "optimizer": state.optimizer.state_dict(),
            "early_stopping": state.stopping.state_dict(),
            "rng": {"dropout": rng.get_state(),
                    "dropout_by_rank": state.dist.all_gather_object(rng.get_state())}}


def validate(state: TrainState) -> None:
    """Score the valid split (eval mode, sharded over the ranks), record the loss with early stopping,
    log it, and write best.pt on a new best. Leaves the model in train mode."""
    config, device = state.config, state.dist.device
    result = score_sharded(state.dist, state.data.valid, lambda windows: score_videos(
        state.model, windows, device=device, window_batch=400, precision=config.precision,
        loss_fn=lambda logits, targets: window_loss(logits, targets, config.multilabel, config.loss)))
    state.model.train()
    report = classification_report(result.scores, result.positives, state.data.class_names)
    stopping, done = state.stopping, state.done
    improved = stopping.update(result.loss, done)
    state.metrics = {"valid_loss": result.loss, "valid_accuracy": report.accuracy, "valid_mAP": report.mAP,
                     "best_valid_loss": stopping.best_loss, "best_iteration": stopping.best_iteration}
    state.log.write({"kind": "valid", "iteration": done, "loss": result.loss, "accuracy": report.accuracy,
                     "mAP": report.mAP, "best": improved, "bad_validations": stopping.bad_validations})
    if improved:
        save(state, state.best_path)
