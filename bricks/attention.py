"""Bahdanau content attention over the attended frames of one window (docs/paper.md §2, Eq. 3–5).

Follows the split of Blocks' ``SequenceContentAttention``: ``preprocess(attended)`` computes
U_a a_i + b_a once per window, because it does not depend on the step; ``take_glimpses(...)`` runs at
every step and only adds the transformed decoder state to the preprocessed frames::

    attended a_i (B, T, Da) ──preprocessor (U_a, b_a)──► preprocessed (B, T, M)      once per window
    h_{t-1} (B, H) ──transform_states (W_h)──► (B, 1, M) ─┐
    c_{t-1} (B, H) ──transform_cells──► (B, 1, M) ────────┤  blocks_compat only
                                                           ▼
    energies m_{t,i} = w^T tanh(preprocessed + ...)   (B, T)                          Eq. 3
    weights  w_{t,i} = masked softmax over i          (B, T)                          Eq. 4
    glimpse  k_t     = Σ_i w_{t,i} a_i                 (B, Da)                         Eq. 5

Parameter names follow Blocks' children (``preprocessor``, ``transform_states``, ``transform_cells``,
``energy_computer``), so a Blocks checkpoint maps onto them by a key map and a transpose.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def masked_softmax(energies: torch.Tensor, mask: torch.Tensor | None, blocks_compat: bool = False):
    """Attention weights from energies (B, T) and a mask (B, T) bool (True = a real frame) → (B, T).

    Masked frames get exactly zero weight and every row sums to 1 over its unmasked frames (Eq. 4).

    Default mode: a row without any unmasked frame is a user error (a window with nothing to attend)
    and raises ``ValueError``. ``blocks_compat=True`` reproduces Blocks' normalisation verbatim:
    ``u = exp(E − max_t E) ⊙ M`` with the maximum taken over *all* frames, padding included, and
    ``α = u / (Σ_t u + all_t(1 − M))``, so an all-masked row gets zero weights instead of NaN.
    """
    if mask is None:
        return torch.softmax(energies, dim=-1)
    if blocks_compat:
        keep = mask.to(energies.dtype)                                          # (B, T)
        unnormalized = torch.exp(energies - energies.max(dim=-1, keepdim=True).values) * keep
        all_masked = (~mask).all(dim=-1, keepdim=True).to(energies.dtype)       # (B, 1)
        return unnormalized / (unnormalized.sum(dim=-1, keepdim=True) + all_masked)
    empty_rows = ~mask.any(dim=-1)                                              # (B,)
    if bool(empty_rows.any()):
        rows = empty_rows.nonzero().flatten().tolist()
        raise ValueError(
            f"attended_mask: batch rows {rows} have no unmasked frame, so there is nothing to attend "
            "to; drop these windows or unmask at least one frame per row"
        )
    return torch.softmax(energies.masked_fill(~mask, float("-inf")), dim=-1)


def compute_weighted_averages(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Σ_i weights[b, i] · values[b, i] (Eq. 5): weights (B, T), values (B, T, D) → (B, D)."""
    return torch.bmm(weights.unsqueeze(1), values).squeeze(1)                  # (B, 1, T)·(B, T, D)


class SequenceContentAttention(nn.Module):
    """Content attention of a decoder state over T attended frames.

    ``state_dim`` is H, ``attended_dim`` Da, ``match_dim`` M (the matching-vector size, 512 in the
    paper). With ``cell_dim`` set, the energies also read the LSTM cells c_{t-1} through their own
    bias-free projection ``transform_cells``: Blocks' ``AttentionRecurrent`` hands every transition
    state to the attention, so with an LSTM transition the original attends from both h and c
    (docs/framework.md §2.1). ``blocks_compat`` selects Blocks' masked normalisation
    (see :func:`masked_softmax`). The only bias is b_a, in ``preprocessor``; the state transforms and
    the energy vector w have none, as in Eq. 3 and in Blocks.
    """

    def __init__(self, state_dim: int, attended_dim: int, match_dim: int, cell_dim: int | None = None,
                 blocks_compat: bool = False):
        super().__init__()
        self.state_dim, self.attended_dim, self.match_dim = state_dim, attended_dim, match_dim
        self.cell_dim, self.blocks_compat = cell_dim, blocks_compat
        self.preprocessor = nn.utils.skip_init(nn.Linear, attended_dim, match_dim)               # U_a, b_a
        self.transform_states = nn.utils.skip_init(nn.Linear, state_dim, match_dim, bias=False)  # W_h
        self.transform_cells = (
            nn.utils.skip_init(nn.Linear, cell_dim, match_dim, bias=False) if cell_dim is not None else None
        )
        self.energy_computer = nn.utils.skip_init(nn.Linear, match_dim, 1, bias=False)          # w
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """[choice] Weights ~ U(−1/√fan_in, 1/√fan_in) (torch's ``nn.Linear`` range), bias b_a = 0."""
        linears = [self.preprocessor, self.transform_states, self.transform_cells, self.energy_computer]
        for linear in linears:
            if linear is not None:
                bound = 1.0 / math.sqrt(linear.in_features)
                linear.weight.uniform_(-bound, bound, generator=generator)
        self.preprocessor.bias.zero_()

    def preprocess(self, attended: torch.Tensor) -> torch.Tensor:
        """U_a a_i + b_a for every frame: attended (B, T, Da) → preprocessed (B, T, M). Once per window."""
        return self.preprocessor(attended)

    def compute_energies(self, preprocessed: torch.Tensor, states: torch.Tensor,
                         cells: torch.Tensor | None = None) -> torch.Tensor:
        """m_{t,i} = w^T tanh(W_h h_{t-1} + U_a a_i + b_a) (Eq. 3): states (B, H) → energies (B, T)."""
        match = preprocessed + self.transform_states(states).unsqueeze(1)                # (B, T, M)
        if self.transform_cells is not None:
            if cells is None:
                raise ValueError("this attention reads the LSTM cells (cell_dim is set): pass cells (B, H)")
            match = match + self.transform_cells(cells).unsqueeze(1)                     # (B, T, M)
        return F.linear(torch.tanh(match), self.energy_computer.weight).squeeze(-1)      # (B, T)

    def take_glimpses(self, attended: torch.Tensor, preprocessed: torch.Tensor, mask: torch.Tensor | None,
                      states: torch.Tensor, cells: torch.Tensor | None = None):
        """One attention step → (glimpses (B, D), weights (B, T)).

        attended: (B, T, D) the per-frame vectors to average. The glimpse is linear in them, so a caller
        may pass the frames already mapped by a later linear layer (Σ_i w_i D a_i = D Σ_i w_i a_i);
        ``AttentionLSTM`` does this to move the context-to-gates matmul out of the recurrence.
        preprocessed: (B, T, M) from :meth:`preprocess`; mask: (B, T) bool or None (all frames real);
        states, cells: (B, H) the decoder's previous state h_{t-1} (and c_{t-1} with ``cell_dim``).
        """
        energies = self.compute_energies(preprocessed, states, cells)                    # (B, T)  Eq. 3
        weights = masked_softmax(energies, mask, self.blocks_compat)                     # (B, T)  Eq. 4
        return compute_weighted_averages(weights, attended), weights                     # (B, D)  Eq. 5
