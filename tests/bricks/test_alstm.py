"""AttentionLSTM (default mode) against a numpy version of docs/paper.md §2 (input MLP, Eq. 3–13), from its
weights."""

import re

import numpy as np
import pytest
import torch
from helpers.builders import capture_dropout

from bricks import AttentionLSTM

B, N, DV, DA, H, M, C = 3, 4, 6, 5, 4, 3, 7
MODELS = [("a", True), ("b", True), ("a", False), ("b", False)]
MODEL_IDS = ["variant-a", "variant-b", "vanilla", "vanilla-last-step"]


def make_model(variant="a", attention=True, peepholes=False, multilabel=False, seed=0, dtype=torch.float64,
               **kwargs) -> AttentionLSTM:
    """A small model with every parameter (biases included) random, so that no term can hide."""
    generator = torch.Generator().manual_seed(seed)
    model = AttentionLSTM(DV, DA, C, hidden_dim=H, match_dim=M, variant=variant, attention=attention,
                          peepholes=peepholes, multilabel=multilabel, **kwargs).to(dtype)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.9, 0.9, generator=generator)
    return model.eval()


def make_batch(T=N, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(B, N, DV)).astype(dtype)
    attended = rng.normal(size=(B, T, DA)).astype(dtype)
    mask = rng.random((B, T)) < 0.6
    mask[:, 1] = True
    mask[0] = True
    return inputs, attended, mask


def weights(model):
    return {name: p.detach().double().numpy() for name, p in model.state_dict().items()}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def numpy_forward(model, inputs, attended, mask, dropout_masks=None):
    """docs/paper.md §2 step by step. ``dropout_masks`` (site → (B, N, D) mask) applies the documented
    default-mode sites: v_t into the input MLP, v'_t into W, h_t into the classifier."""
    P = weights(model)
    hp = model.hyperparameters
    drop = dropout_masks or {}
    gate = {g: slice(n * H, (n + 1) * H) for n, g in enumerate("ifco")}       # [in | forget | cell | out]
    W, b = P["lstm.input_to_gates.weight"], P["lstm.input_to_gates.bias"]
    U = P["lstm.state_to_gates.weight"]
    v = inputs * drop.get("input_dropout", 1.0)
    features = sigmoid(v @ P["input_mlp.weight"].T + P["input_mlp.bias"])                   # input MLP
    features = features * drop.get("feature_dropout", 1.0)
    attend_at = set(range(N)) if hp["variant"] == "a" else {N - 1}
    h, c = np.zeros((B, H)), np.zeros((B, H))
    states, attention = [], []
    for t in range(N):
        pre = {g: features[:, t] @ W[gate[g]].T + h @ U[gate[g]].T + b[gate[g]] for g in "ifco"}
        if hp["attention"] and t in attend_at:
            preprocessed = attended @ P["attention.preprocessor.weight"].T + P["attention.preprocessor.bias"]
            match = np.tanh(preprocessed + (h @ P["attention.transform_states.weight"].T)[:, None])  # Eq. 3
            scores = match @ P["attention.energy_computer.weight"][0]                             # m_{t,i}
            w = np.where(mask, np.exp(scores - np.where(mask, scores, -np.inf).max(1, keepdims=True)), 0.0)
            w = w / w.sum(axis=1, keepdims=True)                                                  # Eq. 4
            context = np.einsum("bi,bid->bd", w, attended)                                        # Eq. 5
            for g in "ifco":
                pre[g] = pre[g] + context @ P["lstm.distribute.weight"][gate[g]].T
            attention.append(w)
        peep = {g: P[f"lstm.cell_to_{name}"] if hp["peepholes"] else 0.0
                for g, name in (("i", "in"), ("f", "forget"), ("o", "out"))}
        i = sigmoid(pre["i"] + peep["i"] * c)                                                     # Eq. 7
        f = sigmoid(pre["f"] + peep["f"] * c)                                                     # Eq. 8
        c = f * c + i * np.tanh(pre["c"])                                                         # Eq. 10–11
        o = sigmoid(pre["o"] + peep["o"] * c)                                                     # Eq. 9
        h = o * np.tanh(c)                                                                        # Eq. 12
        states.append(h)
    hidden = np.stack(states, axis=1)[:, -1:] if hp["variant"] == "b" else np.stack(states, axis=1)
    hidden = hidden * drop.get("hidden_dropout", 1.0)
    logits = hidden @ P["classifier.weight"].T + P["classifier.bias"]                           # Eq. 13
    scores = sigmoid(logits.mean(axis=1)) if hp["multilabel"] else softmax(logits).mean(axis=1)
    return logits, scores, (np.stack(attention, axis=1) if hp["attention"] else None)


def run(model, inputs, attended, mask, **kwargs):
    t = torch.from_numpy
    return model(t(inputs), t(attended), t(mask), **kwargs)


@pytest.mark.parametrize("variant,attention", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("peepholes", [False, True], ids=["no-peepholes", "peepholes"])
@pytest.mark.parametrize("multilabel", [False, True], ids=["softmax", "multilabel"])
@pytest.mark.parametrize("T", [3, 6], ids=["T<N", "T>N"])
def test_forward_matches_numpy_equations(variant, attention, peepholes, multilabel, T):
    model = make_model(variant, attention, peepholes, multilabel)
    inputs, attended, mask = make_batch(T)
    out = run(model, inputs, attended, mask)
    logits, scores, weights_ = numpy_forward(model, inputs, attended, mask)
    np.testing.assert_allclose(out.step_logits.detach().numpy(), logits, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(out.scores.detach().numpy(), scores, rtol=1e-9, atol=1e-11)
    if attention:
        np.testing.assert_allclose(out.attention.detach().numpy(), weights_, rtol=1e-9, atol=1e-11)
    else:
        assert out.attention is None
    steps = N if variant == "a" else 1
    assert out.step_logits.shape == (B, steps, C) and (not attention or out.attention.shape == (B, steps, T))


@pytest.mark.parametrize("variant,attention", MODELS[:3], ids=MODEL_IDS[:3])
def test_float32_forward_matches_numpy_to_1e_5(variant, attention):
    model = make_model(variant, attention, peepholes=True, dtype=torch.float32)
    inputs, attended, mask = make_batch(dtype=np.float32)
    out = run(model, inputs, attended, mask)
    logits, scores, _ = numpy_forward(model, inputs.astype(np.float64), attended.astype(np.float64), mask)
    np.testing.assert_allclose(out.step_logits.detach().numpy(), logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.scores.detach().numpy(), scores, rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant,attention", MODELS[:3], ids=MODEL_IDS[:3])
@pytest.mark.parametrize("blocks_compat", [False, True], ids=["default", "blocks-compat"])
def test_gradcheck_inputs_and_parameters(variant, attention, blocks_compat):
    model = make_model(variant, attention, peepholes=True, multilabel=False, blocks_compat=blocks_compat)
    inputs, attended, mask = (torch.from_numpy(x) for x in make_batch(T=3))
    inputs.requires_grad_()
    attended.requires_grad_()
    names = [name for name, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in model.named_parameters())

    def scores(inputs, attended, *params):
        named = dict(zip(names, params, strict=True))
        out = torch.func.functional_call(model, named, (inputs, attended, mask))
        return out.scores, out.step_logits

    assert torch.autograd.gradcheck(scores, (inputs, attended) + params, fast_mode=True)


@pytest.mark.parametrize("variant", ["a", "b"])
def test_attention_rows_sum_to_one_and_masked_frames_get_zero(variant):
    model = make_model(variant)
    inputs, attended, mask = make_batch(T=6, seed=2)
    attention = run(model, inputs, attended, mask).attention.detach().numpy()     # (B, steps, T)
    expanded = np.broadcast_to(mask[:, None], attention.shape)
    assert np.all(attention[~expanded] == 0.0) and np.all(attention[expanded] > 0.0)
    np.testing.assert_allclose(attention.sum(axis=-1), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("variant", ["a", "b"])
@pytest.mark.parametrize("blocks_compat", [False, True], ids=["default", "blocks-compat"])
def test_permuting_attended_frames_permutes_attention_and_keeps_scores(variant, blocks_compat):
    model = make_model(variant, blocks_compat=blocks_compat, peepholes=True)
    inputs, attended, mask = make_batch(T=6, seed=3)
    permutation = np.random.default_rng(4).permutation(6)
    out = run(model, inputs, attended, mask)
    permuted = run(model, inputs, attended[:, permutation], mask[:, permutation])
    np.testing.assert_allclose(permuted.attention.detach().numpy(),
                               out.attention.detach().numpy()[..., permutation], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(permuted.scores.detach().numpy(), out.scores.detach().numpy(),
                               rtol=1e-10, atol=1e-13)


def test_vanilla_output_does_not_depend_on_attended():
    model = make_model(attention=False)
    inputs, attended, mask = make_batch()
    reference = run(model, inputs, attended, mask).scores
    other = run(model, inputs, attended * 5.0 + 1.0, ~mask | np.eye(B, N, dtype=bool)).scores
    without = model(torch.from_numpy(inputs)).scores
    assert torch.equal(reference, other) and torch.equal(reference, without)


def test_attended_preprocessing_and_distribute_run_once_per_window():
    model = make_model("a")
    calls = {"preprocessor": 0, "distribute": 0}

    def counter(name):
        def count(*_):
            calls[name] += 1
        return count

    model.attention.preprocessor.register_forward_hook(counter("preprocessor"))
    model.lstm.distribute.register_forward_hook(counter("distribute"))
    run(model, *make_batch(T=N))
    assert calls == {"preprocessor": 1, "distribute": 1}


@pytest.mark.parametrize("variant,attention", MODELS[:3], ids=MODEL_IDS[:3])
def test_train_mode_applies_dropout_at_the_documented_sites(variant, attention):
    model = make_model(variant, attention).train()
    masks = capture_dropout(model)
    inputs, attended, mask = make_batch()
    out = run(model, inputs, attended, mask, generator=torch.Generator().manual_seed(5))
    assert set(masks) == {"input_dropout", "feature_dropout", "hidden_dropout"}
    assert all(set(np.unique(m)) == {0.0, 2.0} for m in masks.values())          # p = 0.5, inverted
    logits, scores, _ = numpy_forward(model, inputs, attended, mask, masks)
    np.testing.assert_allclose(out.step_logits.detach().numpy(), logits, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(out.scores.detach().numpy(), scores, rtol=1e-9, atol=1e-11)


def test_eval_is_deterministic_and_train_draws_fresh_reproducible_masks():
    model = make_model()
    batch = make_batch()
    assert torch.equal(run(model, *batch).scores, run(model, *batch).scores)
    model.train()
    first = run(model, *batch, generator=torch.Generator().manual_seed(6)).scores
    again = run(model, *batch, generator=torch.Generator().manual_seed(6)).scores
    other = run(model, *batch, generator=torch.Generator().manual_seed(7)).scores
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert not torch.allclose(first, model.eval()(*(torch.from_numpy(x) for x in batch)).scores)


def test_dropout_masks_differ_between_time_steps():
    model = AttentionLSTM(64, 8, 5, hidden_dim=8, match_dim=8).train()
    masks = capture_dropout(model)
    model(torch.rand(16, 6, 64) + 0.5, torch.randn(16, 6, 8), generator=torch.Generator().manual_seed(8))
    kept = masks["input_dropout"] != 0                                                 # (B, N, Dv)
    for t in range(1, 6):
        differ = (kept[:, t] != kept[:, 0]).mean()
        assert abs(differ - 0.5) < 0.06        # independent masks: P(differ) = 2·q(1−q) = 0.5; shared: 0


def test_fully_masked_row_raises_in_default_mode():
    model = make_model()
    inputs, attended, mask = make_batch()
    mask[2] = False
    with pytest.raises(ValueError, match=r"attended_mask: batch rows \[2\] have no unmasked frame"):
        run(model, inputs, attended, mask)


BAD_INPUTS = {
    "inputs rank": (lambda i, a, m: (i[0], a, m), f"inputs: expected shape (B, N, {DV}), got ({N}, {DV})"),
    "inputs dim": (lambda i, a, m: (i[..., :4], a, m),
                   f"inputs: expected shape (B, N, {DV}), got ({B}, {N}, 4)"),
    "attended batch": (lambda i, a, m: (i, a[:2], m),
                       f"attended: expected shape ({B}, T, {DA}), got (2, {N}, {DA})"),
    "attended dim": (lambda i, a, m: (i, a[..., :2], m),
                     f"attended: expected shape ({B}, T, {DA}), got ({B}, {N}, 2)"),
    "attended rank": (lambda i, a, m: (i, a[:, 0], m),
                      f"attended: expected shape ({B}, T, {DA}), got ({B}, {DA})"),
    "mask shape": (lambda i, a, m: (i, a, m[:, :2]),
                   f"attended_mask: expected shape ({B}, {N}), got ({B}, 2)"),
    "attended missing": (lambda i, a, m: (i, None, None), f"attended: expected a tensor (B, T, {DA})"),
    "dtype": (lambda i, a, m: (i.float(), a, m), "inputs: expected dtype torch.float64"),
}


@pytest.mark.parametrize("make_bad,message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_inputs_raise_value_errors_naming_expected_and_received_shapes(make_bad, message):
    model = make_model()
    batch = tuple(torch.from_numpy(x) for x in make_batch())
    with pytest.raises(ValueError, match=re.escape(message)):
        model(*make_bad(*batch))


@pytest.mark.parametrize("kwargs,message", [
    (dict(variant="c"), 'variant must be "a"'),
    (dict(blocks_compat=True, peepholes=False), "blocks_compat=True implies peepholes"),
    (dict(dropout=1.0), "dropout probability must be in"),
    (dict(hidden_dim=0), "hidden_dim must be a positive int, got 0"),
])
def test_bad_constructor_arguments_raise_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        AttentionLSTM(DV, DA, C, **kwargs)


def test_parameter_names_and_shapes_are_stable():
    names = {
        "input_mlp.weight": (DV, DV), "input_mlp.bias": (DV,),
        "lstm.input_to_gates.weight": (4 * H, DV), "lstm.input_to_gates.bias": (4 * H,),
        "lstm.state_to_gates.weight": (4 * H, H),
        "classifier.weight": (C, H), "classifier.bias": (C,),
    }
    attention = {
        "lstm.distribute.weight": (4 * H, DA),
        "attention.preprocessor.weight": (M, DA), "attention.preprocessor.bias": (M,),
        "attention.transform_states.weight": (M, H), "attention.energy_computer.weight": (1, M),
    }
    peepholes = {"lstm.cell_to_in": (H,), "lstm.cell_to_forget": (H,), "lstm.cell_to_out": (H,)}

    def shapes(**kwargs):
        model = AttentionLSTM(DV, DA, C, hidden_dim=H, match_dim=M, **kwargs)
        return {name: tuple(p.shape) for name, p in model.state_dict().items()}

    assert shapes(attention=False) == names
    assert shapes() == names | attention
    assert shapes(variant="b", peepholes=True) == names | attention | peepholes


def test_hyperparameters_rebuild_the_model_and_the_generator_seeds_it():
    model = AttentionLSTM(DV, DA, C, hidden_dim=H, match_dim=M, variant="b", multilabel=True,
                          generator=torch.Generator().manual_seed(9))
    twin = AttentionLSTM(**model.hyperparameters, generator=torch.Generator().manual_seed(9))
    other = AttentionLSTM(**model.hyperparameters, generator=torch.Generator().manual_seed(10))
    states = (model.state_dict().items(), twin.state_dict().values(), other.state_dict().values())
    for (name, p), q, r in zip(*states, strict=True):
        assert torch.equal(p, q), name
        if "weight" in name:
            assert not torch.equal(p, r), name
