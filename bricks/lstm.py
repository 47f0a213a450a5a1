"""The LSTM cell of the decoder (docs/paper.md §2, Eq. 7–12) and the dropout of its non-recurrent connections.

Gate order everywhere is [in | forget | cell | out], Blocks' order and ``nn.LSTM``'s, so a (B, 4H)
pre-activation slices as ``[:, 0:H]`` = i, ``[:, H:2H]`` = f, ``[:, 2H:3H]`` = g, ``[:, 3H:4H]`` = o.
The paper writes the terms of one gate as W v'_t + D k_t + U h_{t-1} + b; here they are three
projections into all four gates at once::

    v'_t (B, N, Dv) ──input_to_gates (W, b)──► (B, N, 4H)     all N steps in one matmul
    k_t  (B, Da)    ──distribute (D, no bias)──► (B, 4H)       the attention context
    h_{t-1} (B, H)  ──state_to_gates (U, no bias)──► (B, 4H)   inside the recurrence

The gate biases b_i, b_f, b_c, b_o live in ``input_to_gates`` in both modes, which is also where Blocks
puts them (its LSTM brick has no bias; docs/framework.md §1).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LSTMCell(nn.Module):
    """One LSTM step with the context distributed into the four gate pre-activations.

    ``context_dim`` None: no ``distribute`` projection (the vanilla LSTM). ``peepholes`` adds the
    diagonal peepholes of Graves 2013 (Eq. 7–9 there): the input and forget gates read c_{t-1}, the
    output gate reads the *new* cell c_t; Blocks' LSTM brick is the same. ``learn_initial_state`` makes
    h_0, c_0 trained parameters (zero-initialised, as Blocks' ``initial_state``/``initial_cells``);
    otherwise [choice] h_0 = c_0 = 0.
    """

    def __init__(self, input_dim: int, hidden_dim: int, context_dim: int | None = None,
                 peepholes: bool = False, learn_initial_state: bool = False):
        super().__init__()
        self.input_dim, self.hidden_dim, self.context_dim = input_dim, hidden_dim, context_dim
        self.peepholes, self.learn_initial_state = peepholes, learn_initial_state
        gates = 4 * hidden_dim
        self.input_to_gates = nn.utils.skip_init(nn.Linear, input_dim, gates)                  # W, b
        self.distribute = (
            nn.utils.skip_init(nn.Linear, context_dim, gates, bias=False) if context_dim is not None else None
        )                                                                                       # D
        self.state_to_gates = nn.utils.skip_init(nn.Linear, hidden_dim, gates, bias=False)    # U
        if peepholes:
            self.cell_to_in = nn.Parameter(torch.empty(hidden_dim))
            self.cell_to_forget = nn.Parameter(torch.empty(hidden_dim))
            self.cell_to_out = nn.Parameter(torch.empty(hidden_dim))
        if learn_initial_state:
            self.initial_state = nn.Parameter(torch.empty(hidden_dim))
            self.initial_cells = nn.Parameter(torch.empty(hidden_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """[choice] Matrices and peepholes ~ U(−1/√fan_in, 1/√fan_in); gate biases and h_0, c_0 zero."""
        for linear in (self.input_to_gates, self.distribute, self.state_to_gates):
            if linear is not None:
                bound = 1.0 / math.sqrt(linear.in_features)
                linear.weight.uniform_(-bound, bound, generator=generator)
        self.input_to_gates.bias.zero_()
        if self.peepholes:
            bound = 1.0 / math.sqrt(self.hidden_dim)
            for peephole in (self.cell_to_in, self.cell_to_forget, self.cell_to_out):
                peephole.uniform_(-bound, bound, generator=generator)
        if self.learn_initial_state:
            self.initial_state.zero_()
            self.initial_cells.zero_()

    def initial_states(self, batch_size: int, like: torch.Tensor):
        """(h_0, c_0), each (B, H), with the dtype and device of ``like``."""
        if self.learn_initial_state:
            return (self.initial_state.expand(batch_size, -1), self.initial_cells.expand(batch_size, -1))
        zeros = like.new_zeros(batch_size, self.hidden_dim)
        return zeros, zeros

    def project_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """W v'_t + b for every step at once: inputs (B, N, Dv) → (B, N, 4H)."""
        return self.input_to_gates(inputs)

    def forward(self, gate_inputs: torch.Tensor, states: torch.Tensor, cells: torch.Tensor):
        """The same as :meth:`step`; lets module hooks and ``torch.func`` see a step of the cell."""
        return self.step(gate_inputs, states, cells)

    def step(self, gate_inputs: torch.Tensor, states: torch.Tensor, cells: torch.Tensor):
        """Eq. 7–12: gate_inputs (B, 4H) = W v'_t + b (+ D k_t); states, cells (B, H) → (h_t, c_t)."""
        pre = torch.addmm(gate_inputs, states, self.state_to_gates.weight.t())            # + U h_{t-1}
        pre_in, pre_forget, pre_cell, pre_out = pre.chunk(4, dim=1)                         # 4 × (B, H)
        if self.peepholes:
            pre_in = pre_in + cells * self.cell_to_in
            pre_forget = pre_forget + cells * self.cell_to_forget
        input_gate = torch.sigmoid(pre_in)                                                  # Eq. 7
        forget_gate = torch.sigmoid(pre_forget)                                             # Eq. 8
        new_cells = forget_gate * cells + input_gate * torch.tanh(pre_cell)                 # Eq. 10, 11
        if self.peepholes:
            pre_out = pre_out + new_cells * self.cell_to_out                                # new cell c_t
        output_gate = torch.sigmoid(pre_out)                                                # Eq. 9
        return output_gate * torch.tanh(new_cells), new_cells                               # Eq. 12


def bernoulli_keep_mask(shape, keep_prob: float, generator: torch.Generator | None = None,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """A bool mask of ``shape``, each element True with probability ``keep_prob`` rounded to k / 2^15.

    Draws 15 random bits per element, four elements from each 64-bit word of ``random_``: about ten
    times faster on CPU than ``bernoulli_``, which matters because the paper's batch drops two
    (B, N, 4096) tensors per training step. The rounding moves the keep probability by at most 2^−16
    (not at all for p = 0.5), and :class:`StepDropout` scales by the rounded value, so the expectation
    stays exact.
    """
    numel = math.prod(shape)
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_(generator=generator)
    # random_ fills 63 bits (the sign bit is 0); clearing bit 15 of every 16-bit lane leaves four
    # uniform 15-bit integers per word, whatever the byte order.
    lanes = (words & 0x7FFF7FFF7FFF7FFF).view(torch.int16)[:numel]                     # (numel,)
    return (lanes < round(keep_prob * 2**15)).view(shape)


class StepDropout(nn.Module):
    """Inverted dropout on a (B, N, D) sequence with a fresh mask at every time step.

    The mask has the tensor's full shape, so it differs between steps, batch rows and features
    (Blocks' ``apply_dropout`` on a (T, B, D) variable does the same; docs/framework.md §3.2). Kept
    values are scaled by 1/q, q = the mask's keep probability (1 − p, rounded as in
    :func:`bernoulli_keep_mask`), so the expectation is unchanged and evaluation needs no scaling.
    Active only in training mode. ``generator`` (passed to ``forward``) makes the masks reproducible.
    """

    def __init__(self, p: float):
        super().__init__()
        keep = round((1.0 - p) * 2**15)
        if not 0.0 <= p < 1.0 or keep == 0:
            raise ValueError(f"dropout probability must be in [0, 1) (and keep some units), got {p}")
        self.p, self.keep_prob = p, keep / 2**15

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = bernoulli_keep_mask(x.shape, self.keep_prob, generator, x.device)
        return (x * keep).mul_(1.0 / self.keep_prob)
