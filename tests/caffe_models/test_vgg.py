"""VGG-19 against direct numpy computations: the layer chain, in-place ReLUs, Caffe's preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.caffe_files import net_bytes, network_layers
from helpers.caffe_reference import bilinear_resize, forward

from caffe_models import VGG19, VGG_MEAN_BGR, load_caffemodel, preprocess_vgg

pytestmark = pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")

BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))  # (width, convolutions) of VGG-19
ORDER = tuple(name for block, (_, convs) in enumerate(BLOCKS, 1)
              for name in [f"conv{block}_{i}" for i in range(1, convs + 1)] + [f"pool{block}"]) + (
    "fc6", "fc7", "fc8", "prob")
POOLS = {f"pool{block}": (2, 2) for block in range(1, 6)}


def test_release_architecture_has_the_release_shapes():
    net = VGG19(device="meta")
    expected, width = {}, 3
    for block, (out, convs) in enumerate(BLOCKS, 1):
        for i in range(1, convs + 1):
            expected[f"conv{block}_{i}"] = (out, width, 3, 3)
            width = out
    expected.update(fc6=(4096, 25088), fc7=(4096, 4096), fc8=(1000, 4096))  # docs/formats.md, "VGG-19"
    assert {name: tuple(w.shape) for name, (w, _) in net.caffe_parameters().items()} == expected
    assert net.layer_names == ORDER
    blobs = net.features(torch.empty(1, 3, 224, 224, device="meta"), ("pool5", "prob"))
    assert tuple(blobs["pool5"].shape) == (1, 512, 7, 7) and tuple(blobs["prob"].shape) == (1, 1000)


@pytest.mark.parametrize("style,legacy,pre_relu",
                         [("v1", True, False), ("v1", True, True), ("new", False, False)])
def test_every_layer_matches_a_direct_computation(tmp_path, style, legacy, pre_relu):
    # 36×36 images: 36 → 18 → 9 → 5 (ceil: the last window is clipped) → 3 → 2.
    net = VGG19(5, conv_channels=(2, 3, 3, 2, 2), fc_dim=6, image_size=36)
    rng = np.random.default_rng(0)
    layers = network_layers(net, style=style, rng=rng)
    path = tmp_path / "vgg.caffemodel"
    path.write_bytes(net_bytes(layers, style=style, legacy=legacy))
    load_caffemodel(net, path)
    params = {name: blobs for name, _, blobs in layers if blobs}
    images = rng.standard_normal((2, 3, 36, 36)).astype(np.float32) * 50

    blobs = net.features(torch.from_numpy(images), ORDER, pre_relu=pre_relu)

    assert tuple(blobs["pool3"].shape[2:]) == (5, 5)
    for index, image in enumerate(images):
        reference = forward(image, params, POOLS, ORDER)
        assert (reference["fc6"][0] < 0).any() and (reference["fc7"][0] < 0).any()  # the ReLU matters
        for name in ORDER:
            pre, post = reference[name]
            want = pre if pre_relu and (name.startswith("conv") or name in ("fc6", "fc7")) else post
            got = blobs[name][index].double().numpy()
            scale = np.abs(want).max()
            np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("mirror", [False, True])
def test_preprocessing_is_bgr_minus_the_mean_pixel(mirror):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)  # already 224×224: no resize
    out = preprocess_vgg(frames, mirror=mirror).numpy()
    assert VGG_MEAN_BGR == (103.939, 116.779, 123.68)
    cols = (223 - np.arange(224)) if mirror else np.arange(224)
    expected = np.stack([frames[:, :, cols, 2 - c].astype(np.float32) - np.float32(VGG_MEAN_BGR[c])
                         for c in range(3)], axis=1)
    np.testing.assert_array_equal(out, expected)


def test_frames_are_resized_bilinearly_in_float():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, 100, 150, 3), dtype=np.uint8)
    out = preprocess_vgg(torch.from_numpy(frames), (0.0, 0.0, 0.0)).numpy()
    for index in range(2):
        expected = bilinear_resize(frames[index], 224, 224)[..., ::-1].transpose(2, 0, 1)  # BGR, no rounding
        # torch computes source coordinates in float32: relative deviations of about 1e-5.
        np.testing.assert_allclose(out[index], expected, rtol=1e-4, atol=1e-3)
