"""Ensemble: the average of members' scores, each member reading its own sources."""

import re

import numpy as np
import pytest
import torch

from bricks import AttentionLSTM, Ensemble, MemberInputs

B, N, C = 3, 4, 5


def member(input_dim, attended_dim, seed, **kwargs):
    model = AttentionLSTM(input_dim, attended_dim, C, hidden_dim=4, match_dim=3,
                          generator=torch.Generator().manual_seed(seed), **kwargs).double().eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():                                        # non-zero biases: members really differ
        for parameter in model.parameters():
            parameter.add_(torch.empty_like(parameter).uniform_(-0.5, 0.5, generator=generator))
    return model


def batch(input_dim, attended_dim, T, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((B, T)) < 0.7
    mask[:, 0] = True
    return (torch.from_numpy(rng.normal(size=(B, N, input_dim))),
            torch.from_numpy(rng.normal(size=(B, T, attended_dim))), torch.from_numpy(mask))


def test_scores_are_the_mean_of_members_reading_different_sources():
    models = [member(6, 4, 0), member(6, 7, 1, variant="b"), member(5, 3, 2, attention=False)]
    batches = [batch(6, 4, 4, 10), batch(6, 7, 6, 11), batch(5, 3, 4, 12)[:1]]     # vanilla: inputs only
    out = Ensemble(models)(batches)
    separately = np.stack([model(*member_batch).scores.detach().numpy()
                           for model, member_batch in zip(models, batches, strict=True)])
    np.testing.assert_allclose(out.scores.detach().numpy(), separately.mean(axis=0), rtol=1e-12, atol=1e-15)
    assert not np.allclose(separately[0], separately[1])
    np.testing.assert_allclose(out.scores.sum(dim=1).detach().numpy(), np.ones(B), rtol=0, atol=1e-12)
    for member_out, expected in zip(out.members, separately, strict=True):
        np.testing.assert_allclose(member_out.scores.detach().numpy(), expected, rtol=1e-12)


def test_member_inputs_named_tuple_and_single_member():
    model = member(6, 4, 3)
    inputs, attended, mask = batch(6, 4, 4, 13)
    out = Ensemble([model])([MemberInputs(inputs, attended_mask=mask, attended=attended)])
    assert torch.equal(out.scores, model(inputs, attended, mask).scores)


@pytest.mark.parametrize("models,message", [
    (lambda: [], "an ensemble needs at least one model"),
    (lambda: [member(6, 4, 0), AttentionLSTM(6, 4, C + 1, hidden_dim=4, match_dim=3)],
     f"ensemble members must share num_classes, got [{C}, {C + 1}]"),
    (lambda: [member(6, 4, 0), member(6, 4, 1, multilabel=True)], "all be multi-label or all multi-class"),
])
def test_incompatible_members_are_refused(models, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Ensemble(models())


def test_wrong_number_of_member_inputs_or_batch_sizes_raise():
    ensemble = Ensemble([member(6, 4, 0), member(6, 4, 1)])
    first = batch(6, 4, 4, 14)
    with pytest.raises(ValueError, match="expected inputs for 2 ensemble members, got 1"):
        ensemble([first])
    smaller = tuple(x[:2] for x in batch(6, 4, 4, 15))
    with pytest.raises(ValueError, match=re.escape("scores of different shapes [(3, 5), (2, 5)]")):
        ensemble([first, smaller])
