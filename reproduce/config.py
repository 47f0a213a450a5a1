"""One frozen dataclass per training run, with builders for the paper's two training regimes.

`TrainConfig` holds everything that decides what a run computes (data, model, optimisation,
schedule, early stopping, seeds). It is written as `config.json` in the run folder and stored inside
every checkpoint, so a checkpoint says how it was made and `--resume` continues the same run.
Where the device is chosen or how often files are written does not change the numbers, so those
stay arguments of `reproduce.train.train`, not fields.

Defaults follow the paper (SPEC §3); the places where it is silent are marked **[choice]**:

- ``loss="per_step"`` **[choice]**: multi-class training applies softmax cross-entropy to every step's
  prediction y_t and averages over the N steps (test time averages the y_t, so every y_t is trained
  to be a good classifier, as in Sharma et al.'s soft-attention LSTM). ``loss="mean_score"`` instead
  applies the negative log-likelihood to the step-averaged probabilities, i.e. to the very score that
  evaluation uses. Variant (b) has one step, so both are the same. Multi-label runs always use binary
  cross-entropy on the step-averaged logits (SPEC §3).
- ``lr_decay_ratio=0.9`` **[choice]**; the decay schedule is `learning_rate` in `reproduce.optim`.
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

from reproduce.atomic import write_json
from reproduce.errors import ReproduceError

VARIANTS = ("a", "b")
LOSSES = ("per_step", "mean_score")
OPTIMIZERS = ("blocks", "torch")


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Field names are the `alstm train` flags (``input_source`` is ``--input-source``).

    Data: ``data`` (feature HDF5 file), ``input_source`` (v_t, e.g. ``c3d_fc6``), ``attended_source``
    (a_i, e.g. ``vgg_obj_fc8``; None trains the vanilla LSTM). Window: ``frames`` F, ``steps`` N,
    ``attended_per_step`` T/N. ``multilabel`` None means "as the dataset declares".
    ``blocks_compat`` turns on every semantic of the original framework (SPEC §9) in the model, peepholes
    included (``peepholes`` adds them alone).
    ``optimizer``: "blocks" is the original momentum rule (v ← μv + ηg; θ ← θ − v), "torch" is
    `torch.optim.SGD`; they differ once the learning rate decays.
    ``flip``: whether training and validation read the features of flipped frames (``<source>_flip``,
    SPEC §3): None (the default) uses them when the file has them for every source the run reads and
    goes on without them otherwise; True requires them; False never reads them. A run records the
    resolved value. ``flip_prob`` is the probability that a training window is read flipped.
    ``precision`` (`reproduce.precision`): float32 (the paper's tables), bfloat16 or float16 autocast
    of the forward pass (weights, gradients and the momentum update stay float32), or auto (bfloat16 on
    a CPU that multiplies it natively, else float32); a run records the resolved value.
    ``init_from``: a checkpoint whose parameters initialise this model wherever names and shapes
    agree (the Hollywood2 fine-tuning of an ActivityNet model; the classifier is re-initialised when
    the class count differs).
    """

    data: str
    input_source: str = "c3d_fc6"
    attended_source: str | None = None
    variant: str = "a"
    hidden_dim: int = 512
    match_dim: int = 512
    dropout: float = 0.5
    peepholes: bool = False
    blocks_compat: bool = False
    multilabel: bool | None = None
    loss: str = "per_step"
    frames: int = 192
    steps: int = 12
    attended_per_step: int = 1
    batch_size: int = 200
    iterations: int = 10_000
    optimizer: str = "blocks"
    lr: float = 0.01
    momentum: float = 0.9
    lr_fixed_iterations: int = 2512
    lr_decay_every: int = 125
    lr_decay_ratio: float = 0.9
    validate_every: int = 125
    valid_crops: int = 2
    patience: int = 10
    seed: int = 0
    flip: bool | None = None
    flip_prob: float = 0.5
    precision: str = "float32"
    num_workers: int = 0
    init_from: str | None = None

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
    """The ActivityNet regime of SPEC §3: SGD momentum 0.9, minibatch 200, lr 0.01 for 2,512
    iterations then ×0.9 every 125, dropout 0.5, early stopping on the validation loss."""
    config = TrainConfig(data=data, input_source=input_source, attended_source=attended_source)
    return config.replace(**changes)


def hollywood2_finetune(
    data: str, input_source: str, attended_source: str | None, init_from: str | None, **changes: Any
) -> TrainConfig:
    """The Hollywood2 regime of SPEC §3: start from an ActivityNet checkpoint (``init_from``), multi-label
    loss, 2,500 iterations of minibatch 100, lr 0.001 and momentum 0.6 for 1,000 iterations, then the
    rate decays at every iteration. Hollywood2 has no validation split in the paper's protocol, so the
    run has a fixed length (``validate_every=0``) and its final model is also written as `best.pt`."""
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
