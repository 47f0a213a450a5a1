"""The training cost of one window (docs/paper.md §3), and early stopping on the validation loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F


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
