"""The training loop of docs/paper.md §3: momentum SGD on random 192-frame windows, validation, early
stopping.

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

Main loop, per update k = 0, 1, ... (the order of Blocks' MainLoop, docs/framework.md §3.4): take batch k
(a pure function of the seed and k), set the rate `learning_rate(config, k)`, forward with dropout
masks drawn from the run's own generator, backward, step; then ``iterations_done = k + 1`` and the
after-batch work: logging, validation and early stopping, checkpoints. `train` reads top to bottom
in that order; `validate`, `save` (a checkpoint) and `check_losses` are the pieces it calls, each
taking the run's `TrainState`.

Resuming (`reproduce.training.resume`): a resumed run computes exactly what the uninterrupted run would
have, and loses at most the updates since the last checkpoint. Log lines written after that
checkpoint are dropped on resume.

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

from alstm_core.progress import progress_bar
from fuel_datasets.run_inputs import readable_data
from reproduce.errors import ReproduceError
from reproduce.evaluation.metrics import classification_report
from reproduce.evaluation.scoring import score_videos
from reproduce.evaluation.sharding import score_sharded
from reproduce.runs.checkpoint import build_model, load_checkpoint, save_checkpoint
from reproduce.runs.log import NullLog, RunLog
from reproduce.runtime.distributed import Distributed, rank_seed, single_process
from reproduce.runtime.precision import autocast
from reproduce.runtime.precision import resolve as resolve_precision
from reproduce.training.config import TrainConfig
from reproduce.training.data import TrainData, open_train_data, window_batches
from reproduce.training.loss import EarlyStopping, window_loss
from reproduce.training.optim import build_optimizer, learning_rate, set_learning_rate
from reproduce.training.resume import checkpoint_payload, dropout_state, read_saved, resumed_config


class TrainingDiverged(ReproduceError):
    """The loss became NaN or infinite."""


class TrainResult(NamedTuple):
    iterations: int            # updates done when the run ended
    stopped_early: bool
    best_iteration: int | None
    best_valid_loss: float | None
    last_checkpoint: str
    best_checkpoint: str


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
    process of a torchrun job, see `reproduce.runtime.distributed`) the run is data-parallel; its device is
    ``dist.device`` and ``device`` is ignored (None: cuda where available, else cpu). ``notice``
    receives one-line remarks for the user (the main process's): e.g. that the file has no flipped
    features and the run goes on without them, or that ``config.data`` is a legacy Fuel file, converted
    once beside it (`fuel_datasets.run_inputs`) and read instead."""
    # --- The settings, the processes and the file ----------------------------------------------
    config.validate()
    if checkpoint_every < 1 or log_every < 1:
        raise ReproduceError("--checkpoint-every and --log-every must be at least 1")
    dist = dist or single_process(device)
    device = dist.device
    readable = dist.from_main(lambda: readable_data(config.data))     # a legacy file: its conversion
    _tell(notice, dist, readable.notice)
    config = config.replace(precision=resolve_precision(config.precision, device), data=readable.path)

    # --- Resume: last.pt of the run folder, its configuration checked against this one ---------
    saved = dist.from_main(lambda: read_saved(config, out_dir, resume))   # every rank gets rank 0's
    if saved is not None:
        config = resumed_config(saved, config)

    # --- The data: every check before the first update -----------------------------------------
    data = open_train_data(config, dist.rank, dist.world_size)
    _tell(notice, dist, data.notice)
    if dist.is_main:
        data.config.write_json(os.path.join(out_dir, "config.json"))

    # --- Model, optimiser, dropout generator and log: update 0, or the one last.pt holds -------
    state = _initial_state(data, dist, out_dir, saved)
    config = state.config
    bar = progress_bar(total=config.iterations, initial=state.start, desc="train", unit="it",
                       enabled=progress and dist.is_main)
    state.clock = (time.perf_counter(), state.start)
    stream = window_batches(data, state.start, config.iterations, config.num_workers, device)
    try:
        state.model.train()
        while state.done < config.iterations and not state.stopping.stopped:
            # --- Update k = state.done on batch k (a pure function of the seed and k) -----------
            inputs, attended, mask, targets = next(stream)     # (B, N, Dv), (B, T, Da), (B, T), (B,)|(B, C)
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
            bar.update(1)

            # --- After the batch: log, validate (early stopping, best.pt), last.pt ----------------
            done = state.done
            if done % log_every == 0 or done == config.iterations:
                _log_training(state, lr, bar)
            validating = config.validate_every and done % config.validate_every == 0
            if validating:
                check_losses(state)
                validate(state)
            if validating or done % checkpoint_every == 0:
                save(state, state.last_path)

        # --- The end: validate the updates since the last validation; last.pt and best.pt --------
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


def _tell(notice: Callable[[str], None] | None, dist: Distributed, text: str | None) -> None:
    """``text`` to the user, once (by the main process)."""
    if text and notice is not None and dist.is_main:
        notice(text)


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


def _log_training(state: TrainState, lr: float, bar) -> None:
    """A train record of the losses since the last one: their mean, the rate, the speed."""
    done = state.done
    mean_loss = check_losses(state)
    now, (then, then_at) = time.perf_counter(), state.clock
    state.log.write({"kind": "train", "iteration": done, "loss": mean_loss, "lr": lr,
                     "elapsed_s": now - then, "iterations_per_s": (done - then_at) / (now - then)})
    state.clock = (now, done)
    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", refresh=False)


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
    dropout_by_rank = state.dist.all_gather_object(state.dropout_rng.get_state())   # a collective
    payload = checkpoint_payload(state.config, state.data, state.model, state.optimizer, state.stopping,
                                 state.done, state.metrics, state.dropout_rng, dropout_by_rank)
    if state.dist.is_main:
        save_checkpoint(path, payload)
    state.dist.barrier()                            # no rank runs ahead of a checkpoint being written
    if path == state.last_path:
        state.saved_at = state.done


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
