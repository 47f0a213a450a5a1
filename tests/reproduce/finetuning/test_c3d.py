"""Fine-tuning C3D (reproduce.finetuning.c3d and .run): the example's network (copied convolutions, fc
fillers), a small C3D learning two classes of motion, a killed run resumed to the uninterrupted run's
weights, and snapshots that `alstm extract` reads back as the trained network.

The networks are C3D at reduced width (the layer names and clip size of the release), their "pre-trained"
weights random and written by the protobuf package itself (helpers.caffe_files)."""

import json

import numpy as np
import pytest
import torch
from helpers.caffe_files import C3D_CONVOLUTION3D, V1_INNER_PRODUCT, net_bytes
from helpers.networks import assert_features_close, direct_features, small_c3d, use_small_networks
from helpers.videos import write_video

from caffe_models import load_caffemodel
from caffe_models.preprocess import C3D_RESIZE
from caffe_models.writer import save_mean
from fuel_datasets import open_dataset
from reproduce.cli import main
from reproduce.errors import ReproduceError
from reproduce.finetuning.c3d import finetune_c3d, finetune_network
from reproduce.finetuning.run import TrainingNet
from reproduce.finetuning.solver import SolverSettings

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")]
RELEASE_NAMES = {"fc6": "fc6-1", "fc7": "fc7-1", "fc8": "fc8-1"}


def write_pretrained(path, net, skip=()):
    """``net``'s weights as a C3D v1.0 file with the release's layer names (fc6-1 …)."""
    layers = [(RELEASE_NAMES.get(name, name), C3D_CONVOLUTION3D if name[:4] == "conv" else V1_INNER_PRODUCT,
               [p.detach().numpy() for p in params])
              for name, params in net.caffe_parameters().items() if name not in skip]
    path.write_bytes(net_bytes(layers, schema="c3d"))
    return path


def bar_frames(n, direction, start, h=48, w=64):
    """(n, h, w, 3): a bright horizontal bar on grey, moving 4 pixels a frame up (−1) or down (+1)."""
    frames = np.full((n, h, w, 3), 64, np.uint8)
    for t in range(n):
        rows = (start + direction * 4 * t + np.arange(h // 6)) % h
        frames[t, rows] = 224
    return frames


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    """Bars moving up (class 0) or down (class 1): 24 training and 12 validation videos as C3D lists, a
    mean cube, and a 4-wide "pre-trained" C3D."""
    root = tmp_path_factory.mktemp("motion")
    rng = np.random.default_rng(0)
    lists = {}
    for split, count in (("train", 24), ("valid", 12)):
        lines = []
        for i in range(count):
            label = i % 2
            path = root / f"{split}{i}.mkv"
            write_video(path, bar_frames(24, 1 if label else -1, int(rng.integers(48))), "ffv1")
            lines.append(f"{path} {int(rng.integers(9)) if split == 'train' else 4} {label}\n")
        lists[split] = root / f"{split}.lst"
        lists[split].write_text("".join(lines))
    save_mean(np.full((3, 16, *C3D_RESIZE), 100, np.float32), root / "mean.binaryproto")
    weights = write_pretrained(root / "pretrained", small_c3d(3, num_classes=487, width=4, fc_dim=32))
    return root, lists, weights


def test_the_examples_network(motion, tmp_path):
    _, _, weights = motion
    pre = small_c3d(3, num_classes=487, width=4, fc_dim=32)
    net = finetune_network(weights, 5, fc_dim=1024, seed=1)
    for name, (w, b) in net.caffe_parameters().items():
        if name.startswith("conv"):
            assert torch.equal(w, getattr(pre, name).weight) and torch.equal(b, getattr(pre, name).bias)
    assert net.fc6.weight.shape == (1024, 64) and net.fc8.weight.shape == (5, 1024)
    for name, std, bias in (("fc6", 0.005, 1.0), ("fc7", 0.005, 1.0), ("fc8", 0.01, 0.0)):
        layer = getattr(net, name).requires_grad_(False)
        assert float(layer.weight.std()) == pytest.approx(std, rel=0.05)
        assert abs(float(layer.weight.mean())) < std / 10
        assert torch.all(layer.bias == bias)
    kept = finetune_network(weights, 5, keep_fc=True)
    assert kept.fc6.weight.shape == (32, 64) and torch.equal(kept.fc7.weight, pre.fc7.weight)
    with pytest.raises(Exception) as info:
        finetune_network(write_pretrained(tmp_path / "no_conv3b", pre, skip=("conv3b",)), 5)
    assert "lacks layer conv3b" in str(info.value) and "\n" not in str(info.value)


def test_the_training_pass_is_the_networks_pass_with_caffes_dropout():
    net = small_c3d(0, 3)
    clips = torch.randn(2, 3, 16, 112, 112) * 50
    model = TrainingNet(net).eval()
    torch.testing.assert_close(model(clips), net.features(clips, ("fc8",))["fc8"])
    model.train()
    x = torch.ones(20000)
    keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) >= 0.5
    assert float((x * keep / 0.5).mean()) == pytest.approx(1.0, abs=0.03)   # inverted scaling


@pytest.mark.slow
def test_a_small_c3d_learns_two_motions(motion, tmp_path):
    """Fine-tuning from random "pre-trained" convolutions reaches ≥ 90% validation clip accuracy."""
    root, lists, weights = motion
    settings = SolverSettings(base_lr=0.001, lr_policy="fixed", max_iter=60, snapshot=0,
                              snapshot_prefix="motion")
    result = finetune_c3d(tmp_path / "run", weights=weights, mean=root / "mean.binaryproto",
                          list_file=lists["train"], valid_list=lists["valid"], solver=settings, batch_size=4,
                          fc_dim=1024, workers=1, device="cpu")
    assert result.valid_accuracy >= 0.9, result
    assert result.snapshots == (str(tmp_path / "run" / "motion_iter_60.caffemodel"),)
    records = [json.loads(line) for line in open(result.log)]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == list(range(1, 61))
    assert records[-1] == {"kind": "valid", "iteration": 60, "accuracy": result.valid_accuracy,
                           "loss": records[-1]["loss"], "clips": 12}


def small_run(motion, out, **options):
    root, lists, _ = motion
    weights = write_pretrained(out.parent / "pre2", small_c3d(5, num_classes=487, width=2, fc_dim=16))
    settings = SolverSettings(base_lr=1e-4, max_iter=6, stepsize=4, snapshot=3, snapshot_prefix="c3d")
    return finetune_c3d(out, weights=weights, mean=root / "mean.binaryproto", list_file=lists["train"],
                        valid_list=lists["valid"], solver=settings, batch_size=2, fc_dim=16, workers=0,
                        checkpoint_every=2, device="cpu", **options)


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_uninterrupted_runs_weights(motion, tmp_path):
    whole = small_run(motion, tmp_path / "whole")
    names = [p.rsplit("/", 1)[1] for p in whole.snapshots]
    assert names == ["c3d_iter_3.caffemodel", "c3d_iter_6.caffemodel"]

    def kill_at_5(k):
        if k == 5:
            raise Killed
    with pytest.raises(Killed):
        small_run(motion, tmp_path / "killed", callback=kill_at_5)
    assert torch.load(tmp_path / "killed" / "finetune_state.pt", weights_only=False)["iteration"] == 4
    with pytest.raises(ReproduceError, match="pass --resume"):
        small_run(motion, tmp_path / "killed")
    resumed = small_run(motion, tmp_path / "killed", resume=True)
    assert resumed.resumed_from == 4 and resumed.iterations == 6
    for a, b in zip(whole.snapshots, resumed.snapshots, strict=True):
        assert open(a, "rb").read() == open(b, "rb").read()
    assert [json.loads(x) for x in open(whole.log)] == [json.loads(x) for x in open(resumed.log)]
    with pytest.raises(ReproduceError, match=r"with other settings \(batch_size, valid differ\)"):
        root, lists, _ = motion
        finetune_c3d(tmp_path / "killed", weights=tmp_path / "pre2", mean=root / "mean.binaryproto",
                     list_file=lists["train"], solver=SolverSettings(base_lr=1e-4, max_iter=6, stepsize=4,
                                                                     snapshot=3, snapshot_prefix="c3d"),
                     batch_size=4, fc_dim=16, workers=0, resume=True, device="cpu")


def test_the_snapshot_is_what_alstm_extract_reads(motion, tmp_path, monkeypatch, capsys):
    root, _, _ = motion
    result = small_run(motion, tmp_path / "run")
    trained = small_c3d(0, 2, width=2, fc_dim=16)
    trained.load_state_dict(torch.load(result.state, weights_only=False)["net"])
    loaded = small_c3d(9, 2, width=2, fc_dim=16)
    info = load_caffemodel(loaded, result.final)
    assert info.schema == "c3d"
    for (a, b) in zip(trained.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)
    frames = bar_frames(32, 1, 5)
    write_video(tmp_path / "v.mkv", frames, "ffv1")
    use_small_networks(monkeypatch, c3d={"num_classes": 2, "width": 2, "fc_dim": 16})
    assert main(["extract", str(tmp_path / "v.mkv"), "--out", str(tmp_path / "f.h5"), "--c3d", result.final,
                 "--c3d-mean", str(root / "mean.binaryproto"), "--no-vgg-obj", "--layers", "fc6", "fc8",
                 "--no-flip", "--precision", "float32", "--quiet"]) == 0
    mean = np.full((3, 16, *C3D_RESIZE), 100, np.float32)
    expected = direct_features(frames, trained, {}, mean=mean)
    with open_dataset(tmp_path / "f.h5") as ds:
        for source in ("c3d_fc6", "c3d_fc8"):
            assert_features_close(ds.read(source, "v"), expected[source])


def test_bvlc_iter_size_sums_the_gradients_of_several_batches(motion, tmp_path):
    root, lists, _ = motion
    weights = write_pretrained(tmp_path / "pre", small_c3d(5, num_classes=487, width=2, fc_dim=16))
    settings = SolverSettings(base_lr=1e-4, max_iter=2, stepsize=10, iter_size=2, snapshot=0,
                              snapshot_prefix="c3d", semantics="bvlc")
    result = finetune_c3d(tmp_path / "run", weights=weights, mean=root / "mean.binaryproto",
                          list_file=lists["train"], solver=settings, batch_size=1, fc_dim=16, workers=0,
                          device="cpu")
    rates = [json.loads(x)["lr"] for x in open(result.log)]
    assert result.iterations == 2 and rates == pytest.approx([1e-4, 1e-4])     # BVLC's counter from 0
