"""Ensembles of trained models (docs/paper.md §2, Tables 2 and 5): the average of the members' window scores.

Members may read different sources (e.g. aLSTM-VGG_act reads ``vgg_act_fc8`` frames, aLSTM-VGG_obj
reads ``vgg_obj_fc8``), so each member gets its own ``(inputs, attended, attended_mask)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .alstm import AttentionLSTM, AttentionLSTMOutput


class MemberInputs(NamedTuple):
    """One member's batch: inputs (B, N, Dv), attended (B, T, Da) or None, attended_mask (B, T) or None."""

    inputs: torch.Tensor
    attended: torch.Tensor | None = None
    attended_mask: torch.Tensor | None = None


class EnsembleOutput(NamedTuple):
    """scores: (B, C) the average of the members' scores; members: each member's own output."""

    scores: torch.Tensor
    members: tuple[AttentionLSTMOutput, ...]


class Ensemble(nn.Module):
    """Averages the ``scores`` of several ``AttentionLSTM`` models with the same classes.

    The paper averages the softmax outputs; for multi-label members the average is over their sigmoid
    scores. Mixing multi-class and multi-label members is refused because the two kinds of score
    are not on the same scale.
    """

    def __init__(self, models: Sequence[AttentionLSTM]):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("an ensemble needs at least one model, got none")
        classes = {model.num_classes for model in models}
        if len(classes) != 1:
            raise ValueError("ensemble members must share num_classes, got "
                             f"{[model.num_classes for model in models]}")
        if len({model.multilabel for model in models}) != 1:
            raise ValueError("ensemble members must all be multi-label or all multi-class, got "
                             f"{[m.multilabel for m in models]}")
        self.members = nn.ModuleList(models)
        self.num_classes = classes.pop()

    def forward(self, member_inputs: Sequence[MemberInputs | tuple], *,
                generator: torch.Generator | None = None) -> EnsembleOutput:
        """member_inputs[k] is member k's ``(inputs, attended, attended_mask)`` (a shorter tuple leaves
        the rest None); every member must see the same B windows."""
        if len(member_inputs) != len(self.members):
            raise ValueError(f"expected inputs for {len(self.members)} ensemble members, "
                             f"got {len(member_inputs)}")
        outputs = tuple(
            member(*MemberInputs(*batch), generator=generator)
            for member, batch in zip(self.members, member_inputs, strict=True)
        )
        shapes = [tuple(out.scores.shape) for out in outputs]
        if len(set(shapes)) != 1:
            raise ValueError(f"ensemble members returned scores of different shapes {shapes}: "
                             "give every member the same batch of windows")
        scores = torch.stack([out.scores for out in outputs]).mean(dim=0)                 # (B, C)
        return EnsembleOutput(scores, outputs)
