"""LSTMCell against a numpy version of Eq. 7–12 (and Graves 2013 peepholes); the step dropout's masks."""

import math

import numpy as np
import pytest
import torch

from bricks import LSTMCell, StepDropout, bernoulli_keep_mask

B, DV, DA, H = 4, 5, 3, 6


def make_cell(peepholes: bool, learn_initial_state: bool = False, seed: int = 0) -> LSTMCell:
    generator = torch.Generator().manual_seed(seed)
    cell = LSTMCell(DV, H, context_dim=DA, peepholes=peepholes, learn_initial_state=learn_initial_state)
    cell.double()
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.uniform_(-0.7, 0.7, generator=generator)
    return cell


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_step(cell, v, k, h, c):
    """Eq. 7–12 gate by gate, with weights sliced in the documented order [in | forget | cell | out]."""
    W = cell.input_to_gates.weight.detach().numpy()
    b = cell.input_to_gates.bias.detach().numpy()
    D = cell.distribute.weight.detach().numpy()
    U = cell.state_to_gates.weight.detach().numpy()
    rows = {gate: slice(n * H, (n + 1) * H) for n, gate in enumerate(("i", "f", "c", "o"))}

    def pre(gate):
        r = rows[gate]
        return v @ W[r].T + k @ D[r].T + h @ U[r].T + b[r]

    peep = {g: getattr(cell, f"cell_to_{name}").detach().numpy() if cell.peepholes else np.zeros(H)
            for g, name in (("i", "in"), ("f", "forget"), ("o", "out"))}
    i = sigmoid(pre("i") + peep["i"] * c)                                    # Eq. 7 (+ Graves peephole)
    f = sigmoid(pre("f") + peep["f"] * c)                                    # Eq. 8
    g = np.tanh(pre("c"))                                                    # Eq. 10
    c_new = f * c + i * g                                                    # Eq. 11
    o = sigmoid(pre("o") + peep["o"] * c_new)                                # Eq. 9, peephole on c_t
    return o * np.tanh(c_new), c_new                                         # Eq. 12


@pytest.mark.parametrize("peepholes", [False, True], ids=["no-peepholes", "peepholes"])
def test_step_matches_numpy(peepholes):
    cell = make_cell(peepholes)
    rng = np.random.default_rng(1)
    v, k = rng.normal(size=(B, DV)), rng.normal(size=(B, DA))
    h, c = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    t = torch.from_numpy
    gate_inputs = cell.project_inputs(t(v)[:, None])[:, 0] + cell.distribute(t(k))
    states, cells = cell.step(gate_inputs, t(h), t(c))
    expected_states, expected_cells = numpy_step(cell, v, k, h, c)
    np.testing.assert_allclose(states.detach().numpy(), expected_states, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cells.detach().numpy(), expected_cells, rtol=1e-12, atol=1e-14)


def test_initial_states_are_zero_or_the_learned_vectors():
    like = torch.zeros(1, dtype=torch.float64)
    h0, c0 = make_cell(False).initial_states(3, like)
    assert torch.equal(h0, torch.zeros(3, H, dtype=torch.float64)) and torch.equal(c0, h0)
    learned = make_cell(True, learn_initial_state=True)
    h0, c0 = learned.initial_states(3, like)
    assert torch.equal(h0, learned.initial_state.detach().expand(3, H))
    assert torch.equal(c0, learned.initial_cells.detach().expand(3, H))
    assert h0.requires_grad and c0.requires_grad


def test_step_gradcheck():
    cell = make_cell(peepholes=True)
    rng = np.random.default_rng(2)
    inputs = tuple(torch.from_numpy(rng.normal(size=shape)).requires_grad_()
                   for shape in ((B, 4 * H), (B, H), (B, H)))
    names = ("state_to_gates.weight", "cell_to_in", "cell_to_forget", "cell_to_out")
    params = tuple(cell.get_parameter(name).detach().clone().requires_grad_() for name in names)

    def step(gate_inputs, h, c, *weights):
        return torch.func.functional_call(cell, dict(zip(names, weights, strict=True)), (gate_inputs, h, c),
                                          strict=False)

    assert torch.autograd.gradcheck(step, inputs + params, fast_mode=True)


def test_parameter_names_and_shapes_are_stable():
    cell = LSTMCell(DV, H, context_dim=DA, peepholes=True, learn_initial_state=True)
    shapes = {name: tuple(p.shape) for name, p in cell.state_dict().items()}
    assert shapes == {
        "input_to_gates.weight": (4 * H, DV), "input_to_gates.bias": (4 * H,),
        "distribute.weight": (4 * H, DA), "state_to_gates.weight": (4 * H, H),
        "cell_to_in": (H,), "cell_to_forget": (H,), "cell_to_out": (H,),
        "initial_state": (H,), "initial_cells": (H,),
    }
    plain = LSTMCell(DV, H)
    assert set(plain.state_dict()) == {"input_to_gates.weight", "input_to_gates.bias",
                                       "state_to_gates.weight"}


@pytest.mark.parametrize("keep_prob", [0.5, 0.7, 0.1])
def test_keep_mask_is_bernoulli_with_independent_elements(keep_prob):
    generator = torch.Generator().manual_seed(3)
    n = 400_000
    mask = bernoulli_keep_mask((n,), keep_prob, generator).numpy()
    q = round(keep_prob * 2**15) / 2**15
    sigma = math.sqrt(q * (1 - q) / n)
    assert abs(mask.mean() - q) < 5 * sigma
    for lane in range(4):                                   # each 16-bit lane of the 64-bit words
        assert abs(mask[lane::4].mean() - q) < 10 * sigma
    # Neighbours share a 64-bit word: their joint keep rate must still be q² (independent lanes).
    for lag in (1, 2, 3, 4):
        both = (mask[:-lag] & mask[lag:]).mean()
        assert abs(both - q * q) < 5 * math.sqrt(q * q * (1 - q * q) / n)


def test_keep_mask_follows_the_generator():
    first = bernoulli_keep_mask((1000,), 0.5, torch.Generator().manual_seed(4))
    again = bernoulli_keep_mask((1000,), 0.5, torch.Generator().manual_seed(4))
    other = bernoulli_keep_mask((1000,), 0.5, torch.Generator().manual_seed(5))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_step_dropout_is_inverted_and_only_in_training(p):
    dropout = StepDropout(p)
    x = torch.from_numpy(np.random.default_rng(6).uniform(1.0, 2.0, size=(50, 8, 40)))
    out = dropout(x, torch.Generator().manual_seed(7))
    ratio = (out / x).numpy()
    kept = ratio != 0
    np.testing.assert_allclose(ratio[kept], 1.0 / (1.0 - p), rtol=1e-4)     # inverted scaling 1/(1−p)
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / kept.size)
    dropout.eval()
    assert dropout(x) is x
    assert StepDropout(0.0).train()(x) is x


@pytest.mark.parametrize("p", [1.0, -0.1, 0.99999])
def test_step_dropout_rejects_probabilities_that_drop_everything(p):
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        StepDropout(p)
