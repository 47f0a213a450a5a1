"""One frozen dataclass per training run, with builders for the paper's two training regimes.

`TrainConfig` holds everything that decides what a run computes (data, model, optimisation,
schedule, early stopping, seeds). It is written as `config.json` in the run folder and stored inside
every checkpoint, so a checkpoint says how it was made and `--resume` continues the same run.
Where the device is chosen or how often files are written does not change the numbers, so those
stay arguments of `reproduce.training.loop.train`, not fields.

Defaults follow the paper (docs/paper.md §3); the places where it is silent are marked **[choice]**:

- ``loss="per_step"`` **[choice]**: multi-class training applies softmax cross-entropy to every step's
  prediction y_t and averages over the N steps (test time averages the y_t, so every y_t is trained
  to be a good classifier, as in Sharma et al.'s soft-attention LSTM). ``loss="mean_score"`` instead
  applies the negative log-likelihood to the step-averaged probabilities, i.e. to the very score that
  evaluation uses. Variant (b) has one step, so both are the same. Multi-label runs always use binary
  cross-entropy on the step-averaged logits (docs/paper.md §3).
- ``lr_decay_ratio=0.9`` **[choice]**; the decay schedule is `learning_rate` in `reproduce.training.optim`.
- ``iterations=10_000`` **[choice]**: an upper bound; early stopping usually ends the run first
  (after 60 decays by 0.9 the learning rate is 1.8e-5 of its start).
- ``validate_every=125`` **[choice]**: once per decay period; ``patience=10`` **[choice]** is counted
  in validations without a strict improvement of the validation loss.
- ``valid_crops=2`` **[choice]**: the validation loss uses 2 + 2 flipped windows per validation
  video at seeded positions, the same windows at every validation.
- Hollywood2 ``lr_decay_ratio=0.999`` **[choice]**: the paper decays "every iteration by a fixed
  ratio" for the last 1,500 of 2,500 iterations; 0.999 ends at 0.22 of the starting rate.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, fields
from typing import Any

from alstm_core.atomic import write_json
from reproduce.errors import ReproduceError

VARIANTS = ("a", "b")
LOSSES = ("per_step", "mean_score")
OPTIMIZERS = ("blocks", "torch")


@dataclass(frozen=True)
class TrainConfig:
    """A training run: what decides the numbers it computes. Each field is an `alstm train` flag of
    the same name (``hidden_dim`` is ``--hidden-dim``), except ``input_source`` and ``attended_source``,
    which are ``--input`` and ``--attend``."""

    # Fields in the order of config.json and of `alstm train --help`.
    # --- data and model (bricks.AttentionLSTM) -----------------------------------------------------
    data: str                             # the feature file (HDF5: this project's layout or legacy Fuel)
    input_source: str = "c3d_fc6"         # v_t, one row per step (e.g. c3d_fc6)
    attended_source: str | None = None    # a_i, the attended frames (e.g. vgg_obj_fc8); None: vanilla LSTM
    variant: str = "a"                    # "a": attend at every step; "b": at the last step only
    hidden_dim: int = 512                 # H, the LSTM's state
    match_dim: int = 512                  # M, the attention MLP's hidden layer
    dropout: float = 0.5                  # on the non-recurrent connections
    peepholes: bool = False               # peephole connections alone
    blocks_compat: bool = False           # every semantic of the original framework (docs/paper.md §9)
    multilabel: bool | None = None        # None: as the file declares (Hollywood2 is multi-label)
    loss: str = "per_step"                # [choice] "per_step" or "mean_score" (module docstring)
    # --- window: F frames = N steps of 16 frames; T = N · attended_per_step attended frames ---------
    frames: int = 192                     # F
    steps: int = 12                       # N
    attended_per_step: int = 1            # T / N (2: every 8-frame row, e.g. the C3D release)
    # --- optimisation ------------------------------------------------------------------------------
    batch_size: int = 200                 # B windows per update (the global batch under torchrun)
    iterations: int = 10_000              # [choice] an upper bound; early stopping usually ends first
    optimizer: str = "blocks"             # "blocks": v ← μv + ηg; θ ← θ − v; "torch": torch.optim.SGD
    lr: float = 0.01                      # η at the start
    momentum: float = 0.9                 # μ
    lr_fixed_iterations: int = 2512       # updates at the starting rate
    lr_decay_every: int = 125             # then ×lr_decay_ratio every this many updates
    lr_decay_ratio: float = 0.9           # [choice]
    # --- validation and early stopping -------------------------------------------------------------
    validate_every: int = 125             # [choice] updates between validations; 0: none (best = last)
    valid_crops: int = 2                  # [choice] windows (and as many flipped) per validation video
    patience: int = 10                    # [choice] validations without a strict improvement
    # --- seeds, flips, precision, start ------------------------------------------------------------
    seed: int = 0                         # the weights, the batches and the dropout masks
    flip: bool | None = None              # read <source>_flip? None: when the file has them for every
                                          # source read; True: required; False: never (recorded resolved)
    flip_prob: float = 0.5                # probability that a training window is read flipped
    precision: str = "float32"            # float32 | bfloat16 | float16 autocast | auto (recorded
                                          # resolved); weights, gradients and the update stay float32
    num_workers: int = 0                  # DataLoader workers reading batches (does not change them)
    init_from: str | None = None          # a checkpoint whose matching parameters start this model
                                          # (Hollywood2 fine-tuning; a new classifier if C differs)

    @property
    def attention(self) -> bool:
        """True for aLSTM, False for the vanilla LSTM (no attended source)."""
        return self.attended_source is not None

    def validate(self) -> None:
        """Raise ReproduceError for values no run can use (checked before any file is opened). The
        message names the `alstm train` flags (``hidden_dim`` is ``--hidden-dim``)."""
        problems = []

        def flag(name: str) -> str:
            return "--" + name.replace("_", "-")

        if self.variant not in VARIANTS:
            problems.append(f"--variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.variant == "b" and not self.attention:
            problems.append("--variant b attends at the last step: give an attended source (--attend)")
        if self.loss not in LOSSES:
            problems.append(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        for name in ("hidden_dim", "match_dim", "frames", "steps", "attended_per_step", "batch_size",
                     "iterations", "lr_decay_every", "valid_crops", "patience"):
            if getattr(self, name) < 1:
                problems.append(f"{flag(name)} must be at least 1, got {getattr(self, name)}")
        for name in ("lr_fixed_iterations", "validate_every", "num_workers"):
            if getattr(self, name) < 0:
                problems.append(f"{flag(name)} must be 0 or more, got {getattr(self, name)}")
        if self.frames % self.steps:
            problems.append(f"--frames ({self.frames}) must be a multiple of --steps ({self.steps})")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.flip_prob <= 1.0:
            problems.append(f"--flip-prob must be in [0, 1], got {self.flip_prob}")
        if self.precision not in ("auto", "float32", "bfloat16", "float16"):
            problems.append(f"--precision must be one of auto, float32, bfloat16, float16, got "
                            f"{self.precision!r}")
        if not self.lr > 0.0:
            problems.append(f"--lr must be positive, got {self.lr}")
        if not 0.0 <= self.momentum < 1.0:
            problems.append(f"--momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 < self.lr_decay_ratio <= 1.0:
            problems.append(f"--lr-decay-ratio must be in (0, 1], got {self.lr_decay_ratio}")
        if problems:
            raise ReproduceError("invalid training configuration: " + "; ".join(problems))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (unknown names raise ReproduceError)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ReproduceError(f"unknown training configuration field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (safe inside a `weights_only` checkpoint)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`. Unknown keys are an error, missing keys take the defaults."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ReproduceError(
                f"unknown training configuration field(s): {', '.join(unknown)} "
                "(was the file written by a newer version?)"
            )
        if "data" not in values:
            raise ReproduceError("training configuration has no 'data' field")
        return cls(**values)

    def write_json(self, path: str | os.PathLike) -> None:
        """Write the config as indented JSON, atomically."""
        write_json(path, self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def read_json(cls, path: str | os.PathLike) -> TrainConfig:
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except json.JSONDecodeError as exc:
            raise ReproduceError(f"{path} is not a JSON training configuration: {exc}") from exc
        if not isinstance(values, dict):
            raise ReproduceError(f"{path} does not hold a JSON object")
        return cls.from_dict(values)


def activitynet(
    data: str, input_source: str, attended_source: str | None = None, **changes: Any
) -> TrainConfig:
    """The ActivityNet regime of docs/paper.md §3: SGD momentum 0.9, minibatch 200, lr 0.01 for 2,512
    iterations then ×0.9 every 125, dropout 0.5, early stopping on the validation loss."""
    config = TrainConfig(data=data, input_source=input_source, attended_source=attended_source)
    return config.replace(**changes)


def hollywood2_finetune(
    data: str, input_source: str, attended_source: str | None, init_from: str | None, **changes: Any
) -> TrainConfig:
    """The Hollywood2 regime of docs/paper.md §3: start from an ActivityNet checkpoint (``init_from``),
    multi-label loss, 2,500 iterations of minibatch 100, lr 0.001 and momentum 0.6 for 1,000 iterations, then
    the rate decays at every iteration. Hollywood2 has no validation split in the paper's protocol, so the run
    has a fixed length (``validate_every=0``) and its final model is also written as `best.pt`."""
    return TrainConfig(
        data=data,
        input_source=input_source,
        attended_source=attended_source,
        init_from=init_from,
        multilabel=True,
        batch_size=100,
        iterations=2500,
        lr=0.001,
        momentum=0.6,
        lr_fixed_iterations=1000,
        lr_decay_every=1,
        lr_decay_ratio=0.999,
        validate_every=0,
    ).replace(**changes)


def run_config(given: dict, out_dir: str, *, resume: bool = False, preset: str | None = None) -> TrainConfig:
    """The TrainConfig of a run from the fields ``given`` (those a user set): over the run's own
    config.json when resuming one in ``out_dir``, else over ``preset``'s regime ("activitynet", the
    default, or "hollywood2": `hollywood2_finetune`) for ``given["data"]``."""
    saved = os.path.join(out_dir, "config.json")
    if resume and os.path.exists(saved):
        return TrainConfig.read_json(saved).replace(**given)
    if "data" not in given:
        raise ReproduceError("--data is required (the feature file to train on)")
    if preset == "hollywood2":
        base = hollywood2_finetune(given["data"], given.get("input_source", "c3d_fc6"),
                                   given.get("attended_source"), given.get("init_from"))
    else:
        base = activitynet(given["data"], given.get("input_source", "c3d_fc6"))
    return base.replace(**given)
