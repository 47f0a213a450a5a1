"""SequenceContentAttention and masked_softmax against numpy versions of the paper's Eq. 3–5 (docs/paper.md
§2) and Blocks' formula."""

import numpy as np
import pytest
import torch

from bricks import SequenceContentAttention, compute_weighted_averages, masked_softmax

B, T, H, DA, M = 5, 7, 4, 6, 3


def make_attention(cells: bool, blocks_compat: bool = False, seed: int = 0) -> SequenceContentAttention:
    generator = torch.Generator().manual_seed(seed)
    attention = SequenceContentAttention(H, DA, M, cell_dim=H if cells else None, blocks_compat=blocks_compat)
    attention.double()
    with torch.no_grad():
        for parameter in attention.parameters():
            parameter.uniform_(-0.8, 0.8, generator=generator)
    return attention


def random_inputs(seed: int = 1):
    rng = np.random.default_rng(seed)
    attended = rng.normal(size=(B, T, DA))
    states, cells = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    mask = rng.random((B, T)) < 0.6
    mask[:, 0] = True                                           # at least one real frame per row
    mask[1] = True                                              # and one row without padding
    return attended, states, cells, mask


def numpy_take_glimpses(attention, attended, mask, states, cells=None):
    """Eq. 3–5 written out: e = tanh(W_h h + U_a a_i + b_a), m = w^T e, softmax over unmasked i, Σ w a."""
    Ua = attention.preprocessor.weight.detach().numpy()
    ba = attention.preprocessor.bias.detach().numpy()
    Wh = attention.transform_states.weight.detach().numpy()
    w = attention.energy_computer.weight.detach().numpy()[0]
    weights = np.zeros((B, T))
    glimpses = np.zeros((B, DA))
    for b in range(B):
        scores = np.empty(T)
        for i in range(T):
            match = Wh @ states[b] + Ua @ attended[b, i] + ba
            if cells is not None:
                match = match + attention.transform_cells.weight.detach().numpy() @ cells[b]
            scores[i] = w @ np.tanh(match)                                          # Eq. 3
        real = np.flatnonzero(mask[b])
        exp = np.exp(scores[real] - scores[real].max())
        weights[b, real] = exp / exp.sum()                                          # Eq. 4
        glimpses[b] = (weights[b, :, None] * attended[b]).sum(axis=0)               # Eq. 5
    return glimpses, weights


@pytest.mark.parametrize("cells", [False, True], ids=["from-h", "from-h-and-c"])
def test_take_glimpses_matches_numpy(cells):
    attention = make_attention(cells)
    attended, states, cell_values, mask = random_inputs()
    t = torch.from_numpy
    preprocessed = attention.preprocess(t(attended))
    glimpses, weights = attention.take_glimpses(t(attended), preprocessed, t(mask), t(states),
                                                t(cell_values) if cells else None)
    expected_glimpses, expected_weights = numpy_take_glimpses(attention, attended, mask, states,
                                                              cell_values if cells else None)
    np.testing.assert_allclose(weights.detach().numpy(), expected_weights, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(glimpses.detach().numpy(), expected_glimpses, rtol=1e-10, atol=1e-12)


def test_weights_sum_to_one_over_unmasked_frames_and_are_zero_on_masked():
    attention = make_attention(cells=False)
    attended, states, _, mask = random_inputs(seed=3)
    t = torch.from_numpy
    _, weights = attention.take_glimpses(t(attended), attention.preprocess(t(attended)), t(mask), t(states))
    weights = weights.detach().numpy()
    assert np.all(weights[~mask] == 0.0)
    assert np.all(weights[mask] > 0.0)
    np.testing.assert_allclose(weights.sum(axis=1), np.ones(B), rtol=0, atol=1e-12)


@pytest.mark.parametrize("blocks_compat", [False, True])
def test_permuting_frames_permutes_weights_and_keeps_the_glimpse(blocks_compat):
    attention = make_attention(cells=blocks_compat, blocks_compat=blocks_compat)
    attended, states, cells, mask = random_inputs(seed=4)
    permutation = np.random.default_rng(5).permutation(T)
    t = torch.from_numpy

    def glimpse(frames, frame_mask):
        return attention.take_glimpses(t(frames), attention.preprocess(t(frames)), t(frame_mask), t(states),
                                       t(cells) if blocks_compat else None)

    glimpses, weights = glimpse(attended, mask)
    permuted_glimpses, permuted_weights = glimpse(attended[:, permutation], mask[:, permutation])
    np.testing.assert_allclose(permuted_weights.detach().numpy(), weights.detach().numpy()[:, permutation],
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(permuted_glimpses.detach().numpy(), glimpses.detach().numpy(),
                               rtol=1e-12, atol=1e-13)


def test_fully_masked_row_is_an_error_by_default():
    mask = torch.ones(4, T, dtype=torch.bool)
    mask[2] = False
    with pytest.raises(ValueError, match=r"rows \[2\] have no unmasked frame"):
        masked_softmax(torch.zeros(4, T), mask)


def numpy_blocks_normalisation(energies, mask):
    """docs/framework.md §2.1: u = exp(E − max over all frames) ⊙ M, α = u / (Σ u + all(1 − M))."""
    unnormalized = np.exp(energies - energies.max(axis=1, keepdims=True)) * mask
    return unnormalized / (unnormalized.sum(axis=1, keepdims=True) + np.all(~mask, axis=1, keepdims=True))


def test_blocks_compat_normalisation_matches_blocks_formula_including_all_masked_rows():
    rng = np.random.default_rng(6)
    energies = rng.normal(scale=3.0, size=(6, T))
    mask = rng.random((6, T)) < 0.5
    mask[0] = False                                             # all masked → zero weights in Blocks
    mask[1] = True
    mask[2:, 1] = True
    energies[3, ~mask[3]] += 20.0                               # padding holds the row maximum
    weights = masked_softmax(torch.from_numpy(energies), torch.from_numpy(mask), blocks_compat=True).numpy()
    np.testing.assert_allclose(weights, numpy_blocks_normalisation(energies, mask), rtol=1e-12, atol=1e-300)
    assert np.all(weights[0] == 0.0)
    # Rows with a real frame agree with the default normalisation (the max shift cancels).
    default = masked_softmax(torch.from_numpy(energies[1:]), torch.from_numpy(mask[1:])).numpy()
    np.testing.assert_allclose(weights[1:], default, rtol=1e-9, atol=1e-15)


def test_blocks_compat_all_masked_row_gives_a_zero_glimpse():
    attention = make_attention(cells=True, blocks_compat=True)
    attended, states, cells, mask = random_inputs(seed=7)
    mask[3] = False
    t = torch.from_numpy
    glimpses, weights = attention.take_glimpses(t(attended), attention.preprocess(t(attended)), t(mask),
                                                t(states), t(cells))
    assert torch.all(weights[3] == 0) and torch.all(glimpses[3] == 0)
    filled = mask.copy()
    filled[3] = True                                            # the numpy version needs a real frame
    expected_glimpses, expected_weights = numpy_take_glimpses(attention, attended, filled, states, cells)
    others = [b for b in range(B) if b != 3]
    np.testing.assert_allclose(weights.detach().numpy()[others], expected_weights[others], rtol=1e-9,
                               atol=1e-14)
    np.testing.assert_allclose(glimpses.detach().numpy()[others], expected_glimpses[others], rtol=1e-9,
                               atol=1e-13)


def test_compute_weighted_averages_matches_einsum():
    rng = np.random.default_rng(8)
    weights, values = rng.random((3, 5)), rng.normal(size=(3, 5, 4))
    result = compute_weighted_averages(torch.from_numpy(weights), torch.from_numpy(values)).numpy()
    np.testing.assert_allclose(result, np.einsum("bt,btd->bd", weights, values), rtol=1e-12)


def test_attention_reading_cells_requires_cells():
    attention = make_attention(cells=True)
    attended, states, _, mask = random_inputs()
    t = torch.from_numpy
    with pytest.raises(ValueError, match="pass cells"):
        attention.take_glimpses(t(attended), attention.preprocess(t(attended)), t(mask), t(states))


def test_parameter_names_and_shapes_are_stable():
    attention = SequenceContentAttention(H, DA, M, cell_dim=H)
    shapes = {name: tuple(p.shape) for name, p in attention.state_dict().items()}
    assert shapes == {
        "preprocessor.weight": (M, DA), "preprocessor.bias": (M,),
        "transform_states.weight": (M, H), "transform_cells.weight": (M, H),
        "energy_computer.weight": (1, M),
    }
