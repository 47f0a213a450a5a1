"""Checkpoint files: weights_only round trip, atomic replacement, clear errors, load_model."""

import os

import pytest
import torch

import reproduce
from bricks import AttentionLSTM
from reproduce.errors import ReproduceError
from reproduce.runs.checkpoint import load_checkpoint, save_checkpoint
from reproduce.training.config import TrainConfig


def _payload(model, iteration=7):
    cfg = TrainConfig(data="d.h5", input_source="c3d_fc6", attended_source="vgg_obj_fc8", hidden_dim=8,
                      match_dim=6)
    return {
        "config": cfg.to_dict(),
        "model_args": dict(model.hyperparameters),
        "model": model.state_dict(),
        "class_names": ["a", "b", "c"],
        "input_source": "c3d_fc6",
        "attended_source": "vgg_obj_fc8",
        "spec": {"frames": 48, "steps": 3, "attended_per_step": 1},
        "iteration": iteration,
        "metrics": {"valid_loss": 1.25},
        "rng": {"torch": torch.get_rng_state()},
    }


def _model(seed=0):
    return AttentionLSTM(5, 4, 3, hidden_dim=8, match_dim=6, generator=torch.Generator().manual_seed(seed))


def test_round_trip_with_weights_only_and_load_model_restores_outputs(tmp_path):
    model = _model().eval()
    path = tmp_path / "best.pt"
    save_checkpoint(path, _payload(model))
    raw = torch.load(path, weights_only=True)  # plain types only: no pickled classes
    assert raw["format"] == "alstm-checkpoint" and raw["iteration"] == 7

    loaded, meta = reproduce.load_model(path)
    assert not loaded.training
    assert meta["class_names"] == ["a", "b", "c"] and meta["attended_source"] == "vgg_obj_fc8"
    assert meta["config"]["hidden_dim"] == 8 and meta["metrics"] == {"valid_loss": 1.25}
    assert "model" not in meta and "rng" not in meta
    g = torch.Generator().manual_seed(1)
    inputs, attended = torch.randn(2, 3, 5, generator=g), torch.randn(2, 3, 4, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs, attended).scores, model(inputs, attended).scores,
                                   rtol=0, atol=0)
        assert not torch.equal(_model(seed=1).eval()(inputs, attended).scores, model(inputs, attended).scores)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(_model(), iteration=3))
    bad = _payload(_model(), iteration=4)
    bad["metrics"] = {"not serialisable": lambda: None}
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.save raises for a lambda
        save_checkpoint(path, bad)
    assert load_checkpoint(path)["iteration"] == 3
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


def test_clear_errors_for_missing_foreign_and_truncated_files(tmp_path):
    with pytest.raises(ReproduceError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(ReproduceError, match="no checkpoint at .*best.pt"):
        load_checkpoint(tmp_path)                  # a run folder stands for its best.pt
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ReproduceError, match="not an alstm checkpoint"):
        load_checkpoint(foreign)
    good = tmp_path / "good.pt"
    save_checkpoint(good, _payload(_model()))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ReproduceError, match="not a readable"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ReproduceError, match="not a readable"):
        load_checkpoint(text)


def test_model_mismatch_is_reported(tmp_path):
    payload = _payload(_model())
    payload["model_args"]["hidden_dim"] = 9
    path = tmp_path / "m.pt"
    save_checkpoint(path, payload)
    with pytest.raises(ReproduceError, match="does not match"):
        reproduce.load_model(path)


def test_a_run_folder_stands_for_its_best_checkpoint(tmp_path):
    from reproduce.runs.checkpoint import checkpoint_path, load_model

    model = _model()
    save_checkpoint(tmp_path / "best.pt", _payload(model, iteration=5))
    assert checkpoint_path(tmp_path) == str(tmp_path / "best.pt")
    assert checkpoint_path(tmp_path / "best.pt") == str(tmp_path / "best.pt")
    assert load_checkpoint(tmp_path)["iteration"] == 5
    loaded, meta = load_model(tmp_path)
    assert meta["iteration"] == 5
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
