"""Data-parallel training and sharded evaluation under torchrun (2 CPU processes, gloo on loopback),
compared with single-process runs; and the pure parts of reproduce.runtime.distributed."""

import json
import os

import numpy as np
import pytest
import torch
from helpers.distributed import FLAGS, LOSS_TOLERANCE, TINY, flags, records, torchrun

from fuel_datasets.synthetic import SynthConfig, write_synthetic
from reproduce.cli import device_from_environment, main, torchrun_variables
from reproduce.errors import ReproduceError
from reproduce.evaluation.evaluate import VideoScores
from reproduce.evaluation.sharding import ShardedWindows, merge_video_scores
from reproduce.runs.checkpoint import load_checkpoint
from reproduce.runtime.device import default_device, resolve_device
from reproduce.runtime.distributed import Launch, per_rank_batch_size, rank_seed
from reproduce.training.config import TrainConfig
from reproduce.training.loop import train
from reproduce.training.resume import dropout_state

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synth.h5"
    write_synthetic(path, SynthConfig(**TINY))
    return path


def test_two_processes_follow_the_single_process_loss_curve_and_resume(synth, tmp_path):
    """Global batch 8 = 2 × 4, dropout 0: the 2-process run (3 updates, then resumed to 7) logs the
    losses of the uninterrupted single-process run, and ends with the same parameters."""
    single = tmp_path / "single"
    train(TrainConfig(data=str(synth), iterations=7, **FLAGS), str(single), device="cpu", log_every=1,
          checkpoint_every=3, progress=False)
    ddp = tmp_path / "ddp"
    common = ["train", "--data", synth, "--out", ddp, "--log-every", "1", "--checkpoint-every", "3",
              "--quiet", *flags()]
    first = torchrun(*common, "--iterations", "3")
    assert first.stdout.count("finished after 3 updates") == 1                 # rank 0 alone prints
    written = set(os.listdir(ddp)) - {"tensorboard"}                    # there when tensorboard is installed
    assert written == {"best.pt", "config.json", "last.pt", "log.jsonl"}
    torchrun(*common, "--iterations", "7", "--resume")

    expected, got = records(single, "train"), records(ddp, "train")
    assert [r["iteration"] for r in got] == list(range(1, 8)) == [r["iteration"] for r in expected]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in expected], rtol=0,
                               atol=LOSS_TOLERANCE)
    assert [r["lr"] for r in got] == [r["lr"] for r in expected]
    valid_single, valid_ddp = records(single, "valid"), records(ddp, "valid")
    # the single run validates at 3 and 6 (and 7, the end); the 2-process run also at 3 (end of its
    # first segment), then 6 and 7
    assert [r["iteration"] for r in valid_ddp] == [3, 6, 7] == [r["iteration"] for r in valid_single]
    np.testing.assert_allclose([r["loss"] for r in valid_ddp], [r["loss"] for r in valid_single], rtol=0,
                               atol=LOSS_TOLERANCE)
    a, b = load_checkpoint(single / "last.pt"), load_checkpoint(ddp / "last.pt")
    assert a["iteration"] == b["iteration"] == 7
    for name, value in a["model"].items():
        torch.testing.assert_close(b["model"][name], value, rtol=0, atol=1e-5, msg=name)
    assert len(b["rng"]["dropout_by_rank"]) == 2 and len(a["rng"]["dropout_by_rank"]) == 1


def test_sharded_evaluation_equals_the_single_process_report(synth, tmp_path):
    """A model trained by 2 processes with dropout 0.5 (each rank its own masks), then evaluated on
    17 train videos × 80 windows, groups of 5 videos per forward pass: ranks 0 and 1 score 10 and 7
    videos; the merged JSON report (and the video scores) equal one process's exactly."""
    run = tmp_path / "run"
    torchrun("train", "--data", synth, "--out", run, "--quiet", "--log-every", "1", "--iterations", "2",
             *flags(dropout=0.5, validate_every=0))
    states = load_checkpoint(run / "last.pt")["rng"]["dropout_by_rank"]
    assert len(states) == 2 and not torch.equal(states[0], states[1])
    assert all(np.isfinite(r["loss"]) for r in records(run, "train"))
    args = ["evaluate", "--data", synth, "--checkpoint", run, "--split", "train", "--crops", "40", "--quiet"]
    assert main([*map(str, args), "--json", str(tmp_path / "one.json"),
                 "--scores", str(tmp_path / "one.npz")]) == 0
    torchrun(*args, "--json", tmp_path / "two.json", "--scores", tmp_path / "two.npz")
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one == two and one["num_videos"] == 17
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    for key in ("video_ids", "scores", "positives"):
        np.testing.assert_array_equal(a[key], b[key])


class FakeWindows:
    """A TestWindows stand-in: ``count`` videos of ``crops`` × 2 windows; batch rows carry the index."""

    def __init__(self, count, crops):
        self.count, self.crops, self.flip = count, crops, True

    def __len__(self):
        return self.count

    def __getitem__(self, n):
        return f"v{n}", type("B", (), {"inputs": torch.full((2 * self.crops, 1, 1), float(n))})()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_every_video_once_by_forward_pass_groups(world):
    windows = FakeWindows(11, crops=2)                          # 4 windows a video; groups of 3 in 12
    shares = [ShardedWindows(windows, 3, rank, world) for rank in range(world)]
    seen = sorted(n for share in shares for n in share.indices)
    assert seen == list(range(11))
    for rank, share in enumerate(shares):
        assert share.indices == [n for n in range(11) if n // 3 % world == rank]
        ids = [vid for vid, _ in share]
        assert ids == [f"v{n}" for n in share.indices] and share.windows_read == 4 * len(ids)


def test_merge_restores_the_video_order_and_weights_the_loss_by_windows():
    def part(indices, losses_sum, windows):
        scores = np.array([[n, -n] for n in indices], float)
        ids = tuple(f"v{n}" for n in indices)
        return indices, VideoScores(ids, scores, scores > 0, losses_sum / windows), windows
    merged = merge_video_scores([part([0, 1, 4], 6.0, 12), part([2, 3], 2.0, 8), ([], None, 0)])
    assert merged.video_ids == ("v0", "v1", "v2", "v3", "v4")
    np.testing.assert_array_equal(merged.scores[:, 0], [0, 1, 2, 3, 4])
    assert merged.loss == pytest.approx(8.0 / 20)
    with pytest.raises(ReproduceError, match="no video to evaluate"):
        merge_video_scores([([], None, 0)])


def test_torchrun_variables_and_launch():
    assert torchrun_variables({"PATH": "/bin"}) is None
    found = torchrun_variables({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h",
                                "X": "y"})
    assert found == {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h"}
    assert Launch.from_variables(found) == Launch(1, 2, 1)
    assert Launch.from_variables(None) == Launch(0, 1, 0)
    with pytest.raises(ReproduceError, match="0 <= RANK < WORLD_SIZE"):
        Launch.from_variables({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ReproduceError, match="not all integers"):
        Launch.from_variables({"RANK": "a", "WORLD_SIZE": "2"})


def test_per_rank_batch_size_splits_the_global_batch_or_says_what_divides_it():
    assert per_rank_batch_size(200, 8) == 25 and per_rank_batch_size(200, 1) == 200
    with pytest.raises(ReproduceError, match=r"cannot be split evenly over 3 processes.*1, 2, 4, 5, 8, 10"):
        per_rank_batch_size(200, 3)


def test_dropout_streams_and_their_resume_state():
    assert rank_seed(7, 0) == 7
    seeds = {rank_seed(7, r) for r in range(4)}
    assert len(seeds) == 4
    states = [torch.Generator().manual_seed(s).get_state() for s in (1, 2)]
    saved = {"dropout": states[0], "dropout_by_rank": states}
    assert torch.equal(dropout_state(saved, 1, 2), states[1])
    assert torch.equal(dropout_state(saved, 0, 4), states[0]) and dropout_state(saved, 3, 4) is None
    assert torch.equal(dropout_state({"dropout": states[1]}, 0, 1), states[1])   # a checkpoint before ranks


def test_a_batch_the_processes_cannot_share_is_refused_before_training(synth, tmp_path):
    from reproduce.training.data import open_train_data

    with pytest.raises(ReproduceError, match="cannot be split evenly over 3 processes"):
        open_train_data(TrainConfig(data=str(synth), **FLAGS), rank=0, world_size=3)


def test_the_default_device_is_the_given_one_then_cuda_availability():
    launch = Launch(rank=1, world_size=2, local_rank=1)
    assert default_device("cpu") == "cpu"
    assert default_device() == default_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu", launch.local_rank) == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda", launch.local_rank) == torch.device("cuda:1")      # one GPU per process
        assert resolve_device(None, launch.local_rank) == torch.device("cuda:1")
    else:
        assert resolve_device(None, launch.local_rank) == torch.device("cpu")
        with pytest.raises(ReproduceError, match="no CUDA"):
            resolve_device("cuda", launch.local_rank)


def test_alstm_device_is_read_by_the_command_line_only():
    assert device_from_environment({"ALSTM_DEVICE": " cpu "}) == "cpu"
    assert device_from_environment({"ALSTM_DEVICE": ""}) is None and device_from_environment({}) is None
