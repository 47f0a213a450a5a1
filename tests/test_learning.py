"""Learning itself, fast: a few dozen updates on a separable toy file lower the training loss and lift
validation accuracy far above chance, for variants a, b and the vanilla LSTM. A training loop that does
not update the parameters (gradients zeroed after backward, a step skipped, a wrong sign) fails here
in seconds, on every platform, without the slow paper-findings test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fuel_datasets import FeatureWriter
from reproduce.config import TrainConfig
from reproduce.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

C, DV, DA = 4, 12, 10              # classes, input and attended feature widths


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Class c adds 3 to input dimension c and 1.5 to attended dimension c, in every row, under unit
    noise: separable from any one window, at chance for a model that does not learn. (Over seeds 1-3
    the runs below end at a training loss of 0.03-0.62 from 1.34-1.40, validation accuracy 0.95-1.)"""
    path = tmp_path_factory.mktemp("toy") / "toy.h5"
    rng = np.random.default_rng(0)
    with FeatureWriter(path, class_names=[f"c{k}" for k in range(C)]) as writer:
        for v in range(120):
            label, chunks = v % C, 8                                  # 128 frames: 5 windows of 48
            inputs = rng.normal(size=(chunks, DV)).astype(np.float32)
            attended = rng.normal(size=(2 * chunks, DA)).astype(np.float32)
            inputs[:, label] += 3.0
            attended[:, label] += 1.5
            split = "train" if v < 80 else "valid"
            writer.add_video(f"v{v:03d}", {"c3d": inputs, "vgg": attended},
                             {"c3d": 16 * np.arange(chunks), "vgg": 8 * np.arange(2 * chunks)},
                             16 * chunks, 30.0, targets=label, split=split)
    return path


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
