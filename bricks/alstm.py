"""AttentionLSTM: the attention-based LSTM decoder of Torabi & Sigal (docs/paper.md §2), variants (a), (b),
vanilla.

Data flow of variant (a), one window of N input steps and T attended frames::

    inputs v_t (B, N, Dv)                         attended a_i (B, T, Da), attended_mask (B, T)
      │ input_dropout                               │                    │
      ▼                                             ▼                    ▼
    input_mlp: v'_t = σ(W_m v_t + b_m) (§4.1)     attention.preprocess   lstm.distribute
      │ feature_dropout (default mode)              U_a a_i + b_a          D a_i
      ▼                                             (B, T, M)              (B, T, 4H)
    lstm.input_to_gates: W v'_t + b                 │  once per window     │
      │ (B, N, 4H), all steps in one matmul         │                      │
      │ gate_input_dropout (blocks_compat)          │                      │
      ▼                                             ▼                      ▼
    for t = 1..N:  ┌── weights w_{t,·} = softmax_i(w^T tanh(W_h h_{t-1} + U_a a_i + b_a))   Eq. 3–4
                   │   D k_t = Σ_i w_{t,i} D a_i                                              Eq. 5
                   └── h_t, c_t = LSTM(W v'_t + b + D k_t, h_{t-1}, c_{t-1})                 Eq. 7–12
      │ states h_t (B, N, H)
      │ hidden_dropout
      ▼
    classifier: logits W_y h_t + b_y (B, N, C)  Eq. 13
      ▼
    scores: mean_t softmax(logits_t)  or  sigmoid(mean_t logits_t) with multilabel

D a_i is computed once for the T frames because D k_t = Σ_i w_{t,i} D a_i, which takes the
(B, Da)×(Da, 4H) product out of the recurrence; when T exceeds the number of attending steps (variant
(b) attends once), the glimpse k_t is computed first and distributed at each attending step instead.

Variant (b) runs the first N−1 steps without context, attends once from h_{N−1} and classifies h_N
only. ``attention=False`` (the vanilla LSTM) drops the attention and the context.

Dropout [choice]: inverted dropout with p = ``dropout`` on the non-recurrent connections, with masks
drawn independently at each time step (``StepDropout``), training mode only. Sites:
- ``input_dropout``: v_t into the input MLP (the paper's "fully-connected layer"), both modes;
- ``feature_dropout``: v'_t into the gate projection W (default mode, the usual place for an LSTM's
  input connection);
- ``gate_input_dropout``: the gate projection's output W v'_t + b (``blocks_compat`` only, in place of
  ``feature_dropout``: Blocks can only drop variables outside its scan, i.e. the 4H projection);
- ``hidden_dropout``: h_t into the classifier, both modes.
The context path h_{t-1} → attention → D k_t is part of the recurrence and is never dropped.

``blocks_compat=True`` switches on the original framework's semantics (docs/paper.md §9, docs/framework.md
§1–2):
peepholes (the output gate reading the new cell), learned h_0/c_0, attention from both h_{t-1} and
c_{t-1}, Blocks' masked softmax (an all-masked row gets zero weights instead of an error), and the
dropout sites above. The gate biases sit in the input projection and the distribute projection has no
bias in both modes, as in the original.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from .attention import SequenceContentAttention
from .lstm import LSTMCell, StepDropout


class AttentionLSTMOutput(NamedTuple):
    """step_logits: (B, N, C), (B, 1, C) for variant "b"; scores: (B, C) the window's class scores;
    attention: (B, N, T) weights, (B, 1, T) for "b", None for the vanilla LSTM."""

    step_logits: torch.Tensor
    scores: torch.Tensor
    attention: torch.Tensor | None


class AttentionLSTM(nn.Module):
    """The decoder of Figure 4: input MLP, LSTM with attention context, per-step classifier.

    Dimensions: ``input_dim`` Dv (4096 for C3D fc6), ``attended_dim`` Da, ``num_classes`` C,
    ``hidden_dim`` H = 512, ``match_dim`` M = 512. ``peepholes`` None means: on with
    ``blocks_compat``, off otherwise. ``multilabel`` [choice]: scores are the sigmoid of the
    step-averaged logits (Hollywood2); otherwise the average over steps of softmax(y_t) (Eq. 13).
    ``generator`` seeds the initial weights (see ``reset_parameters`` of the children).
    """

    def __init__(self, input_dim: int, attended_dim: int, num_classes: int, hidden_dim: int = 512,
                 match_dim: int = 512, variant: str = "a", attention: bool = True, dropout: float = 0.5,
                 peepholes: bool | None = None, multilabel: bool = False, blocks_compat: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        if variant not in ("a", "b"):
            raise ValueError(f'variant must be "a" (attend at every step) or "b" (last step only), '
                             f"got {variant!r}")
        if peepholes is None:
            peepholes = blocks_compat
        if blocks_compat and not peepholes:
            raise ValueError("blocks_compat=True implies peepholes (Blocks' LSTM always has them): "
                             "leave peepholes unset or set it to True")
        sizes = dict(input_dim=input_dim, attended_dim=attended_dim, num_classes=num_classes,
                     hidden_dim=hidden_dim, match_dim=match_dim)
        for name, value in sizes.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        # Everything needed to rebuild the model: AttentionLSTM(**model.hyperparameters).
        self.hyperparameters = dict(sizes, variant=variant, attention=attention, dropout=dropout,
                                    peepholes=peepholes, multilabel=multilabel, blocks_compat=blocks_compat)
        self.input_dim, self.attended_dim, self.num_classes = input_dim, attended_dim, num_classes
        self.variant, self.multilabel, self.blocks_compat = variant, multilabel, blocks_compat

        self.input_mlp = nn.utils.skip_init(nn.Linear, input_dim, input_dim)                 # W_m, b_m
        self.lstm = LSTMCell(input_dim, hidden_dim, context_dim=attended_dim if attention else None,
                             peepholes=peepholes, learn_initial_state=blocks_compat)
        self.attention = (
            SequenceContentAttention(hidden_dim, attended_dim, match_dim,
                                     cell_dim=hidden_dim if blocks_compat else None,
                                     blocks_compat=blocks_compat)
            if attention else None
        )
        self.classifier = nn.utils.skip_init(nn.Linear, hidden_dim, num_classes)             # W_y, b_y
        self.input_dropout = StepDropout(dropout)
        self.feature_dropout = None if blocks_compat else StepDropout(dropout)
        self.gate_input_dropout = StepDropout(dropout) if blocks_compat else None
        self.hidden_dropout = StepDropout(dropout)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """[choice] Every matrix ~ U(−1/√fan_in, 1/√fan_in), every bias 0, in a fixed order."""
        for linear in (self.input_mlp, self.classifier):
            bound = 1.0 / math.sqrt(linear.in_features)
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.zero_()
        self.lstm.reset_parameters(generator)
        if self.attention is not None:
            self.attention.reset_parameters(generator)

    def forward(self, inputs: torch.Tensor, attended: torch.Tensor | None = None,
                attended_mask: torch.Tensor | None = None, *,
                generator: torch.Generator | None = None) -> AttentionLSTMOutput:
        """inputs (B, N, Dv); attended (B, T, Da) (ignored by the vanilla LSTM); attended_mask (B, T)
        bool, True = a real frame (None: all real). ``generator`` draws the dropout masks."""
        attended_mask = self._check(inputs, attended, attended_mask)
        batch_size, num_steps, _ = inputs.shape

        inputs = self.input_dropout(inputs, generator)                                      # (B, N, Dv)
        features = torch.sigmoid(self.input_mlp(inputs))                                    # v'_t (§4.1)
        if self.feature_dropout is not None:
            features = self.feature_dropout(features, generator)
        gate_inputs = self.lstm.project_inputs(features)                                    # (B, N, 4H)
        if self.gate_input_dropout is not None:
            gate_inputs = self.gate_input_dropout(gate_inputs, generator)

        attending = range(num_steps) if self.variant == "a" else range(num_steps - 1, num_steps)
        if self.attention is not None:
            preprocessed = self.attention.preprocess(attended)                              # (B, T, M)
            # D k_t = Σ_i w_{t,i} D a_i: mapping the T frames once costs T (B, Da)×(Da, 4H) products
            # against one per attending step, so distribute the frames first when T ≤ steps attending.
            distribute_first = attended.shape[1] <= len(attending)
            glimpse_values = self.lstm.distribute(attended) if distribute_first else attended

        states, cells = self.lstm.initial_states(batch_size, like=gate_inputs)              # (B, H) each
        all_states, all_weights = [], []
        # unbind, not gate_inputs[:, t]: its backward writes the N step gradients into one tensor
        # instead of materialising a zero-filled (B, N, 4H) gradient per step.
        for t, step_inputs in enumerate(gate_inputs.unbind(dim=1)):                       # (B, 4H) each
            if self.attention is not None and t in attending:
                glimpses, weights = self.attention.take_glimpses(
                    glimpse_values, preprocessed, attended_mask, states,
                    cells if self.blocks_compat else None)                                  # Eq. 3–5
                context = glimpses if distribute_first else self.lstm.distribute(glimpses)  # D k_t (B, 4H)
                step_inputs = step_inputs + context
                all_weights.append(weights)                                                 # (B, T)
            states, cells = self.lstm.step(step_inputs, states, cells)                      # Eq. 7–12
            all_states.append(states)
        if self.variant == "b":
            all_states = all_states[-1:]
        hidden = torch.stack(all_states, dim=1)                                             # (B, N or 1, H)

        step_logits = self.classifier(self.hidden_dropout(hidden, generator))               # Eq. 13 (B, N, C)
        if self.multilabel:
            scores = torch.sigmoid(step_logits.mean(dim=1))                                 # (B, C)
        else:
            scores = torch.softmax(step_logits, dim=-1).mean(dim=1)                         # (B, C)
        attention = torch.stack(all_weights, dim=1) if self.attention is not None else None  # (B, N, T)
        return AttentionLSTMOutput(step_logits, scores, attention)

    def _check(self, inputs, attended, attended_mask):
        """Validate shapes and dtypes (ValueError naming expected and received shapes); returns the
        mask as bool or None."""
        dtype = self.input_mlp.weight.dtype
        _check_tensor("inputs", inputs, ("B", "N", self.input_dim), dtype)
        if self.attention is None:
            return None
        if attended is None:
            raise ValueError(f"attended: expected a tensor (B, T, {self.attended_dim}) for this attention "
                             "model, got None (use attention=False for the vanilla LSTM)")
        _check_tensor("attended", attended, (inputs.shape[0], "T", self.attended_dim), dtype)
        if attended_mask is None:
            return None
        _check_tensor("attended_mask", attended_mask, tuple(attended.shape[:2]), None)
        return attended_mask if attended_mask.dtype == torch.bool else attended_mask != 0

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.hyperparameters.items())


def _check_tensor(name: str, tensor, expected: tuple, dtype: torch.dtype | None) -> None:
    """Raise ValueError unless ``tensor`` is a tensor matching ``expected`` (ints must be equal,
    letters match any non-zero size) of ``dtype`` (None: any)."""
    shape_text = "(" + ", ".join(str(size) for size in expected) + ")"
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor of shape {shape_text}, got {type(tensor).__name__}")
    received = tuple(tensor.shape)
    matches = len(received) == len(expected) and all(
        got >= 1 and (isinstance(want, str) or got == want)
        for got, want in zip(received, expected, strict=True))
    if not matches:
        raise ValueError(f"{name}: expected shape {shape_text}, got {received}")
    if dtype is not None and tensor.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {dtype} (the model's parameters), got {tensor.dtype}; "
                         f"convert it with .to({dtype})")
