"""The optimiser of the original framework and the paper's learning-rate schedule.

Blocks' ``Momentum(learning_rate, momentum)`` is ``CompositeRule([Scale(η), BasicMomentum(μ)])``
(docs/framework.md §3.3), i.e. the velocity accumulates already-scaled gradients::

    v ← μ v + η g ;  θ ← θ − v

`torch.optim.SGD` keeps ``b ← μ b + g ; θ ← θ − η b`` instead. With η constant the two are the same
trajectory (v = η b); once η decays, Blocks' velocity still carries the old rates while torch rescales
the whole history by the new one, so the two runs part. `BlocksMomentum` is the default for that
reason (docs/paper.md §9).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from reproduce.training.config import TrainConfig


class BlocksMomentum(torch.optim.Optimizer):
    """``v ← μ v + η g ; θ ← θ − v`` with a zero-initialised velocity per parameter.

    The velocity lives in ``state[p]["velocity"]`` (same shape and dtype as the parameter), so
    ``state_dict`` / ``load_state_dict`` round-trip it like any torch optimiser. Each update is three
    elementwise roundings in the parameter's dtype: ``μ·v``, ``η·g``, their sum, then ``θ − v``.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.9):
        if lr < 0.0:
            raise ValueError(f"learning rate must be non-negative, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                v = state["velocity"]
                v.mul_(mu).add_(p.grad.mul(lr))  # v ← μ v + η g
                p.sub_(v)  # θ ← θ − v
        return loss


def learning_rate(config: TrainConfig, iterations_done: int) -> float:
    """The rate of the update that follows ``iterations_done`` completed updates (docs/paper.md §3).

    ``lr`` for the first ``lr_fixed_iterations`` updates; then the rate is multiplied by
    ``lr_decay_ratio`` at the start of every block of ``lr_decay_every`` updates **[choice]**: the
    update numbered ``lr_fixed_iterations + 1`` (1-based) already uses ``lr · ratio``. For the ActivityNet
    regime updates 1..2512 use 0.01, 2513..2637 use 0.009, 2638..2762 use 0.0081, ...
    """
    if iterations_done < config.lr_fixed_iterations:
        return config.lr
    decays = 1 + (iterations_done - config.lr_fixed_iterations) // config.lr_decay_every
    return config.lr * config.lr_decay_ratio**decays


def build_optimizer(config: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` at the starting rate; `set_learning_rate` updates it."""
    if config.optimizer == "blocks":
        return BlocksMomentum(params, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "torch":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    raise AssertionError(f"unvalidated optimizer {config.optimizer!r}")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
