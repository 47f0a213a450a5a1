"""blocks_compat=True against a separate numpy port of docs/framework.md §1–2 (Blocks' LSTM brick,
SequenceContentAttention and AttentionRecurrent), written the way Blocks computes: time-major arrays,
``x·W + b`` with W of shape (in, out), gates sliced [in | forget | cell | out]."""

import math

import numpy as np
import pytest
import torch
from helpers.builders import capture_dropout

from bricks import AttentionLSTM

B, N, DV, DA, D, MATCH, C = 3, 4, 6, 5, 4, 3, 7
MODELS = [("a", True), ("b", True), ("a", False)]
MODEL_IDS = ["variant-a", "variant-b", "vanilla"]


def make_model(variant="a", attention=True, multilabel=False, seed=0) -> AttentionLSTM:
    """Every parameter random, h_0 and c_0 included, so that each Blocks term shows in the output."""
    generator = torch.Generator().manual_seed(seed)
    model = AttentionLSTM(DV, DA, C, hidden_dim=D, match_dim=MATCH, variant=variant, attention=attention,
                          multilabel=multilabel, blocks_compat=True).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.9, 0.9, generator=generator)
    return model.eval()


def make_batch(T=5, seed=1):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(B, N, DV))
    attended = rng.normal(size=(B, T, DA))
    mask = rng.random((B, T)) < 0.6
    mask[:, 0] = True
    return inputs, attended, mask


def blocks_parameters(model):
    """The model's weights in Blocks' layout: Linear W (in, out) = torch weight transposed."""
    P = {name: p.detach().numpy() for name, p in model.state_dict().items()}
    blocks = {
        "mlp_W": P["input_mlp.weight"].T, "mlp_b": P["input_mlp.bias"],
        "fork_W": P["lstm.input_to_gates.weight"].T, "fork_b": P["lstm.input_to_gates.bias"],
        "W_state": P["lstm.state_to_gates.weight"].T,
        "W_cell_to_in": P["lstm.cell_to_in"], "W_cell_to_forget": P["lstm.cell_to_forget"],
        "W_cell_to_out": P["lstm.cell_to_out"],
        "initial_state": P["lstm.initial_state"], "initial_cells": P["lstm.initial_cells"],
        "out_W": P["classifier.weight"].T, "out_b": P["classifier.bias"],
    }
    if model.attention is not None:
        blocks.update({
            "distribute_W": P["lstm.distribute.weight"].T,
            "preprocess_W": P["attention.preprocessor.weight"].T,
            "preprocess_b": P["attention.preprocessor.bias"],
            "transform_states_W": P["attention.transform_states.weight"].T,
            "transform_cells_W": P["attention.transform_cells.weight"].T,
            "energy_W": P["attention.energy_computer.weight"].T,                           # (match, 1)
        })
    return blocks


def logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


def blocks_lstm_apply(p, inputs, h, c):
    """Blocks LSTM.apply for one step (§1): inputs are the projected x_t W_x + b (+ g_t W_d)."""
    a = h @ p["W_state"] + inputs
    i = logistic(a[:, :D] + c * p["W_cell_to_in"])
    f = logistic(a[:, D:2 * D] + c * p["W_cell_to_forget"])
    c_new = f * c + i * np.tanh(a[:, 2 * D:3 * D])
    o = logistic(a[:, 3 * D:] + c_new * p["W_cell_to_out"])            # the NEW cell feeds the output gate
    return o * np.tanh(c_new), c_new


def blocks_take_glimpses(p, A, P, M, h, c):
    """SequenceContentAttention.take_glimpses (§2.1); A (T, B, Da), P (T, B, match), M (T, B)."""
    E = (np.tanh(P + h @ p["transform_states_W"] + c @ p["transform_cells_W"]) @ p["energy_W"])[..., 0]
    u = np.exp(E - E.max(axis=0)) * M                                          # max over ALL positions
    alpha = u / (u.sum(axis=0) + np.all(1 - M, axis=0))
    return (alpha[..., None] * A).sum(axis=0), alpha.T                       # g (B, Da), weights (B, T)


def blocks_forward(model, inputs, attended, mask, dropout_masks=None):
    """The Blocks composition of docs/framework.md §2.2, with dropout (§3.2) on the frame features entering
    the MLP, on the fork's 4D output, and on the hidden sequence entering the classifier."""
    p = blocks_parameters(model)
    drop = {k: v.transpose(1, 0, 2) for k, v in (dropout_masks or {}).items()}     # to time-major
    x = inputs.transpose(1, 0, 2) * drop.get("input_dropout", 1.0)                 # (N, B, Dv)
    features = logistic(x @ p["mlp_W"] + p["mlp_b"])
    fork = (features @ p["fork_W"] + p["fork_b"]) * drop.get("gate_input_dropout", 1.0)   # (N, B, 4D)
    h, c = np.tile(p["initial_state"], (B, 1)), np.tile(p["initial_cells"], (B, 1))
    variant = model.hyperparameters["variant"]
    states, weights = [], []
    if model.attention is not None:
        A, M = attended.transpose(1, 0, 2), mask.T.astype(np.float64)
        P = A @ p["preprocess_W"] + p["preprocess_b"]                                  # preprocess(): once
    for t in range(N):
        step_inputs = fork[t]
        if model.attention is not None and (variant == "a" or t == N - 1):
            g, alpha = blocks_take_glimpses(p, A, P, M, h, c)                          # previous h and c
            step_inputs = step_inputs + g @ p["distribute_W"]                           # Distribute, no bias
            weights.append(alpha)
        h, c = blocks_lstm_apply(p, step_inputs, h, c)
        states.append(h)
    hidden = np.stack(states)[-1:] if variant == "b" else np.stack(states)             # (N, B, D)
    hidden = hidden * drop.get("hidden_dropout", 1.0)
    logits = (hidden @ p["out_W"] + p["out_b"]).transpose(1, 0, 2)                    # (B, N, C)
    if model.multilabel:
        scores = logistic(logits.mean(axis=1))
    else:
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        scores = (e / e.sum(axis=-1, keepdims=True)).mean(axis=1)
    return logits, scores, (np.stack(weights, axis=1) if weights else None)


def run(model, inputs, attended, mask, **kwargs):
    t = torch.from_numpy
    return model(t(inputs), t(attended), t(mask), **kwargs)


@pytest.mark.parametrize("variant,attention", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("multilabel", [False, True], ids=["softmax", "multilabel"])
@pytest.mark.parametrize("T", [3, 5], ids=["T<N", "T>N"])
def test_forward_matches_numpy_blocks(variant, attention, multilabel, T):
    model = make_model(variant, attention, multilabel)
    inputs, attended, mask = make_batch(T)
    out = run(model, inputs, attended, mask)
    logits, scores, weights = blocks_forward(model, inputs, attended, mask)
    np.testing.assert_allclose(out.step_logits.detach().numpy(), logits, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(out.scores.detach().numpy(), scores, rtol=1e-9, atol=1e-11)
    if attention:
        np.testing.assert_allclose(out.attention.detach().numpy(), weights, rtol=1e-9, atol=1e-11)


def test_all_masked_row_gets_zero_weights_and_no_context():
    model = make_model("a")
    inputs, attended, mask = make_batch()
    mask[1] = False
    out = run(model, inputs, attended, mask)
    logits, scores, weights = blocks_forward(model, inputs, attended, mask)
    assert torch.all(out.attention[1] == 0)
    np.testing.assert_allclose(out.scores.detach().numpy(), scores, rtol=1e-9, atol=1e-11)
    # With zero weights the context vanishes, so that row behaves like an attention-free LSTM.
    plain = make_model("a")
    with torch.no_grad():
        plain.lstm.distribute.weight.zero_()
    np.testing.assert_allclose(run(plain, inputs, attended, mask).scores[1].detach().numpy(), scores[1],
                               rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("variant,attention", MODELS, ids=MODEL_IDS)
def test_train_mode_drops_features_gate_projections_and_hidden_states(variant, attention):
    model = make_model(variant, attention).train()
    masks = capture_dropout(model)
    inputs, attended, mask = make_batch()
    out = run(model, inputs, attended, mask, generator=torch.Generator().manual_seed(2))
    assert set(masks) == {"input_dropout", "gate_input_dropout", "hidden_dropout"}
    logits, scores, _ = blocks_forward(model, inputs, attended, mask, masks)
    np.testing.assert_allclose(out.step_logits.detach().numpy(), logits, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(out.scores.detach().numpy(), scores, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_dropout_masks_are_drawn_per_time_step_with_inverted_scaling(p):
    model = AttentionLSTM(96, 8, 5, hidden_dim=32, match_dim=8, dropout=p, blocks_compat=True).train()
    masks = capture_dropout(model)
    model(torch.rand(64, 6, 96) + 0.5, torch.randn(64, 6, 8), generator=torch.Generator().manual_seed(3))
    q = 1.0 - p
    for name, values in masks.items():                                          # (B, N, width)
        kept = values != 0
        np.testing.assert_allclose(values[kept], 1.0 / (1.0 - p), rtol=1e-4)   # inverted dropout
        n = kept[:, 0].size
        for t in range(1, values.shape[1]):
            assert abs(kept[:, t].mean() - q) < 5 * math.sqrt(q * (1 - q) / n), name
            # Independent masks differ at a fraction 2q(1−q) of positions; a mask shared across steps, 0.
            differ = (kept[:, t] != kept[:, 0]).mean()
            assert abs(differ - 2 * q * (1 - q)) < 5 * math.sqrt(0.25 / n), name
    # E[mask] = 1: the expectation of every dropped connection is unchanged.
    everything = np.concatenate([values.ravel() for values in masks.values()])
    assert abs(everything.mean() - 1.0) < 5 * math.sqrt(p / q / everything.size)


def test_initial_states_are_learned():
    model = make_model("a").train()
    inputs, attended, mask = make_batch()
    out = run(model, inputs, attended, mask, generator=torch.Generator().manual_seed(4))
    out.scores[:, 0].sum().backward()
    assert model.lstm.initial_state.grad.abs().sum() > 0 and model.lstm.initial_cells.grad.abs().sum() > 0


def test_blocks_compat_has_the_original_parameters():
    model = AttentionLSTM(DV, DA, C, hidden_dim=D, match_dim=MATCH, blocks_compat=True)
    names = set(model.state_dict())
    assert {"lstm.cell_to_in", "lstm.cell_to_forget", "lstm.cell_to_out", "lstm.initial_state",
            "lstm.initial_cells", "attention.transform_cells.weight"} <= names
    assert "lstm.distribute.bias" not in names and "attention.transform_states.bias" not in names
    assert model.hyperparameters["peepholes"] is True
    assert torch.equal(model.lstm.initial_state, torch.zeros(D))                 # zero-initialised
