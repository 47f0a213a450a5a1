"""Fine-tuning VGG-19 (reproduce.finetuning.vgg): BVLC's ImageData transform (warp to N×N, both ends of the
crop offsets drawn, mirror), the flickr_style network (ImageNet conv1_1 … fc7, a new fc8 at lr_mult
10/20), and BVLC V2 snapshots that `alstm extract --vgg act=…` reads back as the trained network.

The networks are VGG-19 at reduced width and 32×32 input (helpers.networks.small_vgg)."""

import numpy as np
import pytest
import torch
from helpers.caffe_files import net_bytes, network_layers
from helpers.networks import assert_features_close, small_vgg, use_small_networks
from helpers.videos import moving_frames, write_video
from PIL import Image

from caffe_models import load_caffemodel, preprocess_vgg
from caffe_models.caffemodel import parse_net
from fuel_datasets import open_dataset
from reproduce.cli import main
from reproduce.finetuning.clips import Sample, SampleTable
from reproduce.finetuning.run import TrainingNet
from reproduce.finetuning.solver import CaffeSGD, SolverSettings, caffe_param_groups
from reproduce.finetuning.vgg import ImageDataLayer, finetune_vgg, vgg_network

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Eight 24×30 images of two kinds (dark / bright), an ImageData list, and a small "ImageNet" VGG-19."""
    root = tmp_path_factory.mktemp("images")
    lines = []
    for i in range(8):
        image = moving_frames(1, 24, 30, seed=i)[0] // (3 if i % 2 else 1)
        Image.fromarray(image).save(root / f"{i}.png")
        lines.append(f"{root}/{i}.png {i % 2}\n")
    (root / "train.txt").write_text("".join(lines))
    (root / "valid.txt").write_text("".join(lines[:4]))
    rng = np.random.default_rng(0)
    (root / "imagenet.caffemodel").write_bytes(net_bytes(network_layers(small_vgg(1000), rng=rng)))
    return root


def test_image_data_offsets_reach_both_ends_and_mirror_half_the_time(images):
    table = SampleTable([Sample(str(images / "0.png"), "image", 0, 1, 0, "x")])
    layer = ImageDataLayer(resize=40, crop=32)
    frame = np.asarray(Image.open(images / "0.png").convert("RGB"))
    resized = layer._resized(frame)                                    # (3, 40, 40) BGR, warped
    assert resized.shape == (3, 40, 40)
    offsets, mirrors = set(), 0
    for g in range(400):
        rng = np.random.default_rng([0, g])
        item = layer.train_item(table, 0, np.random.default_rng([0, g]))
        rng.integers(1)                                                # the frame (one frame: 0)
        mirror = bool(rng.integers(2))                                 # do_mirror first, then the offsets
        h, w = int(rng.integers(9)), int(rng.integers(9))
        expected = resized[:, h:h + 32, w:w + 32] - torch.tensor([103.939, 116.779, 123.68]).view(3, 1, 1)
        torch.testing.assert_close(item, expected.flip(-1) if mirror else expected)
        offsets.add((h, w))
        mirrors += mirror
    assert {h for h, _ in offsets} == set(range(9))                    # BVLC's Rand(40 − 32 + 1): 0..8
    assert 150 < mirrors < 250
    centre = layer.eval_item(table, 0, 0)
    torch.testing.assert_close(centre, resized[:, 4:36, 4:36] - layer.mean)


def test_the_flickr_style_network(images):
    pre = small_vgg(1000)
    load_caffemodel(pre, images / "imagenet.caffemodel")
    net = vgg_network(images / "imagenet.caffemodel", 3, image_size=32, seed=0)
    for name in ("conv1_1", "conv5_4", "fc6", "fc7"):
        assert torch.equal(getattr(net, name).weight, getattr(pre, name).weight)
    assert net.fc8.weight.shape == (3, 16) and torch.all(net.fc8.bias == 0)
    groups = {(g["layer"], g["blob"]): (g["lr_mult"], g["decay_mult"]) for g in caffe_param_groups(
        net, {"fc8": (10.0, 20.0)})}
    assert groups[("fc8", "weight")] == (10.0, 1.0) and groups[("fc8", "bias")] == (20.0, 0.0)
    assert groups[("fc7", "weight")] == (1.0, 1.0) and groups[("conv1_1", "bias")] == (2.0, 0.0)
    assert isinstance(CaffeSGD(caffe_param_groups(net), SolverSettings(semantics="bvlc")), CaffeSGD)


def test_vgg_sce_from_an_image_list_writes_what_extract_reads(images, tmp_path, monkeypatch):
    settings = SolverSettings(base_lr=1e-3, max_iter=4, stepsize=2, snapshot=2, snapshot_prefix="vgg_sce",
                              semantics="bvlc")
    result = finetune_vgg(tmp_path / "run", weights=images / "imagenet.caffemodel",
                          images=images / "train.txt", valid_images=images / "valid.txt", solver=settings,
                          batch_size=4, resize=40, crop=32, workers=0, device="cpu")
    assert [p.rsplit("/", 1)[1] for p in result.snapshots] == ["vgg_sce_iter_2.caffemodel",
                                                               "vgg_sce_iter_4.caffemodel"]
    assert result.valid_accuracy is not None
    parsed = parse_net(open(result.final, "rb").read())
    assert parsed.schema == "bvlc" and [layer.type for layer in parsed.layers][-1] == "InnerProduct"
    trained = small_vgg(2)
    trained.load_state_dict(torch.load(result.state, weights_only=False)["net"])
    loaded = small_vgg(2, seed=5)
    load_caffemodel(loaded, result.final)
    for a, b in zip(trained.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)
    # `alstm extract --vgg act=SNAPSHOT` with the same small architecture
    frames = moving_frames(32, 24, 30, seed=9)
    write_video(tmp_path / "v.mkv", frames, "ffv1")
    use_small_networks(monkeypatch, vgg={"num_classes": 2})
    assert main(["extract", str(tmp_path / "v.mkv"), "--out", str(tmp_path / "f.h5"), "--no-c3d",
                 "--no-vgg-obj", "--vgg", f"act={result.final}", "--no-flip", "--precision", "float32",
                 "--quiet"]) == 0
    attended = preprocess_vgg(frames[np.arange(0, 32, 8)], size=32)     # one frame every 8
    with open_dataset(tmp_path / "f.h5") as ds:
        for layer in ("fc6", "fc8"):
            assert_features_close(ds.read(f"vgg_act_{layer}", "v"),
                                  trained.features(attended, [layer])[layer].numpy())


def test_the_training_pass_of_vgg_has_dropout_only_in_training():
    net = small_vgg(3)
    x = torch.randn(2, 3, 32, 32) * 50
    model = TrainingNet(net)
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(model(x, g), model(x, g))
    torch.testing.assert_close(model.eval()(x), net.features(x, ("fc8",))["fc8"])


def test_vgg_act_from_a_datasets_frames(tmp_path, monkeypatch, images):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(4):
        write_video(videos / f"c{i}.mkv", moving_frames(20, 24, 30, seed=i) // (1 + i % 2), "ffv1")
    (tmp_path / "labels.csv").write_text("".join(f"c{i},{'ab'[i % 2]},train\n" for i in range(4)))
    use_small_networks(monkeypatch)
    assert main(["extract", str(videos), "--out", str(tmp_path / "f.h5"), "--labels",
                 str(tmp_path / "labels.csv"), "--allow-random-weights", "--quiet"]) == 0
    settings = SolverSettings(base_lr=1e-3, max_iter=2, stepsize=10, snapshot=0, semantics="bvlc")
    result = finetune_vgg(tmp_path / "act", weights=images / "imagenet.caffemodel", data=tmp_path / "f.h5",
                          videos=videos, solver=settings, batch_size=2, resize=40, crop=32, workers=0,
                          device="cpu")
    assert result.iterations == 2 and result.valid_accuracy is None
    assert result.final.endswith("act/vgg19_finetune_iter_2.caffemodel")
