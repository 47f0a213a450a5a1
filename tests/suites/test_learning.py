"""Learning itself, fast: a few dozen updates on a separable toy file lower the training loss and lift
validation accuracy far above chance, for variants a, b and the vanilla LSTM. A training loop that does
not update the parameters (gradients zeroed after backward, a step skipped, a wrong sign) fails here
in seconds, on every platform, without the slow paper-findings test."""

from __future__ import annotations

import json

import pytest

from reproduce.training.config import TrainConfig
from reproduce.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

# `toy` (tests/conftest.py): a separable file, helpers.builders.write_toy


@pytest.mark.parametrize("variant, attended", [("a", "vgg"), ("b", "vgg"), ("a", None)],
                         ids=["variant-a", "variant-b", "vanilla"])
def test_a_few_dozen_updates_learn_a_separable_file(toy, tmp_path, variant, attended):
    config = TrainConfig(data=str(toy), input_source="c3d", attended_source=attended, variant=variant,
                         hidden_dim=16, match_dim=8, frames=48, steps=3, batch_size=16, iterations=40,
                         lr=0.2, lr_fixed_iterations=40, dropout=0.0, validate_every=40, valid_crops=2,
                         patience=5, seed=1)
    train(config, str(tmp_path), device="cpu", progress=False, checkpoint_every=40, log_every=5)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["kind"] == "train"]
    valid = [r for r in log if r["kind"] == "valid"][-1]
    # chance: loss ln 4 = 1.39, accuracy 0.25
    assert losses[0] > 1.0 and losses[-1] < 0.5 * losses[0], losses
    assert valid["accuracy"] >= 0.8, valid
