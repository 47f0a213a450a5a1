"""The training loop: losses, early stopping, resume, divergence, bad input, fine-tuning."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from helpers.builders import tiny_config, write_synth

from fuel_datasets import FeatureWriter, open_dataset
from fuel_datasets.errors import DatasetError
from reproduce.errors import ReproduceError
from reproduce.runs.checkpoint import load_checkpoint
from reproduce.training.config import TrainConfig, hollywood2_finetune
from reproduce.training.loop import TrainingDiverged, _initialise_from, train
from reproduce.training.loss import EarlyStopping, window_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synth(tmp_path_factory.mktemp("data") / "synth.h5")


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_window_losses_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 3, 5))  # (B, N, C)
    labels = np.array([0, 4, 2, 2])
    lp = _log_softmax(logits)
    per_step = -np.mean([[lp[b, t, labels[b]] for t in range(3)] for b in range(4)], axis=1)
    mean_score = -np.log(np.exp(lp).mean(axis=1)[np.arange(4), labels])
    t_logits, t_labels = torch.from_numpy(logits), torch.from_numpy(labels)
    got = window_loss(t_logits, t_labels, False, "per_step").numpy()
    np.testing.assert_allclose(got, per_step, rtol=1e-12)
    got = window_loss(t_logits, t_labels, False, "mean_score").numpy()
    np.testing.assert_allclose(got, mean_score, rtol=1e-12)
    assert not np.allclose(per_step, mean_score)  # the two choices are different objectives

    multi = (rng.random((4, 5)) < 0.4).astype(np.float64)
    sig = 1 / (1 + np.exp(-logits.mean(axis=1)))
    bce = -(multi * np.log(sig) + (1 - multi) * np.log(1 - sig)).sum(axis=1)  # summed over classes
    np.testing.assert_allclose(window_loss(t_logits, torch.from_numpy(multi), True).numpy(), bce, rtol=1e-10)


def test_early_stopping_counts_validations_without_strict_improvement():
    stop = EarlyStopping(patience=2)
    history = [(3.0, True), (2.0, True), (2.0, False), (2.5, False)]
    for k, (loss, improved) in enumerate(history):
        assert stop.update(loss, 10 * (k + 1)) is improved
    assert stop.stopped and stop.best_loss == 2.0 and stop.best_iteration == 20
    restored = EarlyStopping(patience=3)
    restored.load_state_dict(json.loads(json.dumps(stop.state_dict())))
    assert not restored.stopped and restored.bad_validations == 2  # patience may grow on resume
    assert restored.update(1.5, 50) and restored.bad_validations == 0


def test_config_round_trip_and_presets(tmp_path):
    cfg = TrainConfig(data="d.h5", attended_source="vgg_obj_fc8", variant="b", lr_decay_ratio=0.8)
    cfg.write_json(tmp_path / "config.json")
    assert TrainConfig.read_json(tmp_path / "config.json") == cfg
    assert cfg.attention and not TrainConfig(data="d.h5").attention
    h2 = hollywood2_finetune("h.h5", "c3d_fc6", "vgg_act_fc8", "an.pt")
    assert (h2.batch_size, h2.iterations, h2.lr, h2.momentum, h2.lr_fixed_iterations, h2.lr_decay_every) == \
        (100, 2500, 0.001, 0.6, 1000, 1)
    assert h2.multilabel and h2.init_from == "an.pt" and h2.validate_every == 0
    with pytest.raises(ReproduceError, match="unknown training configuration field"):
        TrainConfig.from_dict({"data": "x", "learning_rate": 1})
    with pytest.raises(ReproduceError, match="--variant b attends"):
        TrainConfig(data="x", variant="b").validate()
    with pytest.raises(ReproduceError, match="--frames .* multiple of --steps"):
        TrainConfig(data="x", frames=100).validate()


def _records(run, kind):
    lines = (run / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_resume_reproduces_the_uninterrupted_run_exactly(synth, tmp_path):
    # 8 updates straight vs 5 + resume 3; the rate decays at updates 4, 6 and 8 and dropout is on, so the
    # velocities, the schedule and the dropout generator must all be restored for the bits to agree.
    straight = train(tiny_config(synth), str(tmp_path / "a"), device="cpu", checkpoint_every=3,
                     progress=False)
    assert straight.iterations == 8 and not straight.stopped_early
    train(tiny_config(synth, iterations=5), str(tmp_path / "b"), device="cpu", checkpoint_every=3,
          progress=False)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["iteration"] == 5
    resumed = train(tiny_config(synth), str(tmp_path / "b"), resume=True, device="cpu", checkpoint_every=3,
                    progress=False)
    assert resumed.iterations == 8
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["iteration"] == b["iteration"] == 8
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    for key, state in a["optimizer"]["state"].items():
        assert torch.equal(state["velocity"], b["optimizer"]["state"][key]["velocity"])
    assert a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.05 * 0.5**3)
    assert a["metrics"]["valid_loss"] == b["metrics"]["valid_loss"]
    # the resumed log continues after update 5: train records at 8 in both, one per update count
    iterations = [r["iteration"] for r in _records(tmp_path / "b", "train")]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 8
    assert _records(tmp_path / "a", "train")[-1]["loss"] == _records(tmp_path / "b", "train")[-1]["loss"]


def test_early_stopping_without_improvement_stops_after_patience(synth, tmp_path):
    # A rate of 1e-30 leaves every validation loss equal to the first: validations at 2 (best), 4 and 6
    # (no strict improvement) → with patience 2 the run stops at update 6 of 20.
    cfg = tiny_config(synth, lr=1e-30, iterations=20, validate_every=2, patience=2)
    result = train(cfg, str(tmp_path / "run"), device="cpu", progress=False)
    assert (result.iterations, result.stopped_early, result.best_iteration) == (6, True, 2)
    valid = _records(tmp_path / "run", "valid")
    assert [r["iteration"] for r in valid] == [2, 4, 6]
    assert [r["best"] for r in valid] == [True, False, False]
    assert load_checkpoint(tmp_path / "run" / "best.pt")["iteration"] == 2
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iteration"] == 6
    # resuming a stopped run with more patience continues it
    more = train(cfg.replace(patience=3), str(tmp_path / "run"), resume=True, device="cpu", progress=False)
    assert (more.iterations, more.stopped_early) == (8, True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(synth, tmp_path, monkeypatch):
    from fuel_datasets.streams import TrainWindows

    original = TrainWindows.__getitem__

    def poisoned(self, k):
        batch = original(self, k)
        if k == 5:  # the 6th update
            batch.inputs[0, 0, 0] = float("nan")
        return batch

    monkeypatch.setattr(TrainWindows, "__getitem__", poisoned)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"became nan at update 6 .* holds update 4"):
        train(tiny_config(synth, iterations=10, validate_every=0), str(run), device="cpu", checkpoint_every=2,
              log_every=100, progress=False)
    last = load_checkpoint(run / "last.pt")
    assert last["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert _records(run, "error") == [{"kind": "error", "iteration": 6, "loss": "nan"}]
    assert [r["iteration"] for r in _records(run, "train")] == []  # log_every=100: none before the stop


def _no_update_happened(run):
    return not (run / "last.pt").exists()


def test_bad_input_stops_before_the_first_update(synth, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(ReproduceError, match="has no source 'vgg_nope_fc8'.* it has .*c3d_fc6"):
        train(tiny_config(synth, attended_source="vgg_nope_fc8"), str(run), progress=False)
    assert _no_update_happened(run)

    no_valid = shutil.copy(synth, tmp_path / "no_valid.h5")
    with open_dataset(no_valid) as ds:
        everything = ds.splits["train"] + ds.splits["valid"]
    with FeatureWriter(no_valid) as writer:
        writer.set_splits({"train": everything, "valid": []})
    with pytest.raises(ReproduceError, match="'valid' split .* is empty .*--validate-every 0"):
        train(tiny_config(no_valid), str(run), progress=False)
    assert _no_update_happened(run)

    bad_label = shutil.copy(synth, tmp_path / "bad_label.h5")
    with open_dataset(bad_label) as ds:
        victim = ds.splits["train"][3]
        index = ds.video_ids.index(victim)
    with h5py.File(bad_label, "r+") as f:
        f["targets"][index, 0] = 7  # only 4 classes
    with pytest.raises(DatasetError, match=f"video '{victim}' .* label 7, outside the 4 classes"):
        train(tiny_config(bad_label), str(run), progress=False)
    assert _no_update_happened(run)

    with pytest.raises((ReproduceError, DatasetError), match="full 480-frame window|shorter"):
        train(tiny_config(synth, frames=480, steps=30), str(run), progress=False)
    assert _no_update_happened(run)


def test_a_second_run_in_the_same_folder_needs_resume(synth, tmp_path):
    # --resume before any checkpoint was written (a run killed early) starts the run afresh
    result = train(tiny_config(synth, iterations=2, validate_every=0), str(tmp_path), resume=True,
                   device="cpu", progress=False)
    assert result.iterations == 2 and load_checkpoint(tmp_path / "last.pt")["iteration"] == 2
    with pytest.raises(ReproduceError, match="already holds a run: pass --resume"):
        train(tiny_config(synth, iterations=2, validate_every=0), str(tmp_path), progress=False)
    with pytest.raises(ReproduceError, match=r"different configuration \(--lr\)"):
        train(tiny_config(synth, iterations=4, validate_every=0, lr=0.5), str(tmp_path), resume=True,
              progress=False)


def test_init_from_copies_everything_but_a_different_classifier(synth, tmp_path):
    source_run = tmp_path / "an"
    train(tiny_config(synth, iterations=2, validate_every=0), str(source_run), device="cpu", progress=False)
    source = load_checkpoint(source_run / "best.pt")
    from bricks import AttentionLSTM

    args = dict(source["model_args"], num_classes=3, multilabel=True)
    fresh = AttentionLSTM(**args, generator=torch.Generator().manual_seed(9))
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    skipped = _initialise_from(fresh, str(source_run / "best.pt"))
    assert sorted(skipped) == ["classifier.bias", "classifier.weight"]
    for name, value in fresh.state_dict().items():
        expected = before[name] if name in skipped else source["model"][name]
        assert torch.equal(value, expected), name
    wider = AttentionLSTM(**dict(args, hidden_dim=10))
    with pytest.raises(ReproduceError, match="does not fit this one"):
        _initialise_from(wider, str(source_run / "best.pt"))


def test_hollywood2_finetuning_runs_multilabel_from_a_checkpoint(synth, tmp_path):
    source_run = tmp_path / "an"
    train(tiny_config(synth, iterations=2, validate_every=0), str(source_run), device="cpu", progress=False)
    multi = write_synth(tmp_path / "multi.h5", multilabel=True, max_labels=2, num_videos=24, seed=5)
    cfg = hollywood2_finetune(str(multi), "c3d_fc6", "vgg_obj_fc8", str(source_run / "best.pt")).replace(
        hidden_dim=8, match_dim=6, frames=48, steps=3, batch_size=4, iterations=3, lr_fixed_iterations=1)
    result = train(cfg, str(tmp_path / "h2"), device="cpu", progress=False)
    best = load_checkpoint(tmp_path / "h2" / "best.pt")
    assert result.iterations == 3 and best["iteration"] == 3 and best["config"]["multilabel"] is True
    assert best["model_args"]["multilabel"] is True
    assert best["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.001 * 0.999**2)
    assert best["optimizer"]["param_groups"][0]["momentum"] == 0.6
