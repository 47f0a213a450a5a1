"""`alstm train` / `alstm evaluate`: flags, JSON output, one-line errors, SIGKILL then --resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers.builders import TINY_FLAGS, write_synth

from reproduce.cli import main
from reproduce.evaluation.evaluate import evaluate_checkpoints
from reproduce.runs.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synth(tmp_path_factory.mktemp("cli") / "synth.h5")


def test_train_then_evaluate_json(synth, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--data", str(synth), "--out", str(run), *TINY_FLAGS, "--iterations", "6",
                 "--validate-every", "3", "--lr-decay-ratio", "0.5", "--loss", "mean_score"])
    assert code == 0
    assert "finished after 6 updates" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert (config["lr_decay_ratio"], config["loss"], config["attended_source"], config["multilabel"]) == \
        (0.5, "mean_score", "vgg_obj_fc8", False)
    assert load_checkpoint(run / "best.pt")["config"] == config

    out_json, out_npz = tmp_path / "eval.json", tmp_path / "scores.npz"
    code = main(["evaluate", "--data", str(synth), "--checkpoint", str(run), "--crops", "2",
                 "--json", str(out_json), "--scores", str(out_npz), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    evaluation = evaluate_checkpoints(str(synth), [str(run / "best.pt")], crops=2, device="cpu")
    expected, scores = evaluation.to_json(), evaluation.video_scores
    assert report == expected          # the whole report, key for key
    for key in ("accuracy", "mAP", "mAP_interpolated", "num_videos", "per_class_ap"):
        assert report[key] == expected[key], key
    assert f"mAP {100 * report['mAP']:.1f}%" in printed
    saved = np.load(out_npz)
    np.testing.assert_array_equal(saved["scores"], scores.scores)
    assert tuple(saved["video_ids"]) == scores.video_ids


def test_user_errors_are_one_line_with_exit_code_2(synth, tmp_path, capsys):
    train = ["train", "--out", str(tmp_path / "run"), *TINY_FLAGS]
    cases = [
        ([*train, "--data", str(synth), "--attend", "vgg_xyz_fc8"], "has no source 'vgg_xyz_fc8'"),
        ([*train, "--data", str(tmp_path / "missing.h5")], "missing.h5"),
        ([*train, "--data", str(synth), "--momentum", "1.5"], "--momentum must be in [0, 1)"),
        ([*train], "--data is required"),
        (["evaluate", "--data", str(synth), "--checkpoint", str(tmp_path / "no.pt")], "no checkpoint at"),
        (["evaluate", "--data", str(synth)], "give either --checkpoint"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
    assert not (tmp_path / "run" / "last.pt").exists()


def _read_log(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(synth, tmp_path):
    flags = [*TINY_FLAGS, "--iterations", "300", "--validate-every", "50", "--checkpoint-every", "7",
             "--log-every", "5", "--lr-fixed-iterations", "40", "--lr-decay-every", "20"]
    run = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "reproduce.cli", "train", "--data", str(synth),
                             "--out", str(run), *flags], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not any(r["kind"] == "train" and r["iteration"] >= 10 for r in _read_log(run / "log.jsonl")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the training subprocess made no progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert (run / "last.pt").exists()
    killed_at = load_checkpoint(run / "last.pt")["iteration"]
    assert 7 <= killed_at < 300, killed_at  # the kill landed mid-run, after a checkpoint

    # the configuration comes from the run's config.json; output cadences are flags of each call
    assert main(["train", "--out", str(run), "--resume", "--quiet", "--checkpoint-every", "7",
                 "--log-every", "5"]) == 0
    resumed = load_checkpoint(run / "last.pt")
    assert resumed["iteration"] == 300
    from reproduce import load_model

    model, meta = load_model(run / "best.pt")
    assert meta["class_names"] and not model.training

    assert main(["train", "--data", str(synth), "--out", str(tmp_path / "straight"), *flags]) == 0
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    iterations = [r["iteration"] for r in _read_log(run / "log.jsonl") if r["kind"] == "train"]
    assert iterations == list(range(5, 301, 5))  # no record lost or repeated across the kill
