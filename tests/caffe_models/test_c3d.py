"""C3D against direct numpy computations: the layer chain, Caffe's ceil-mode pools, Caffe's preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.caffe_files import net_bytes, network_layers
from helpers.caffe_reference import bilinear_resize, forward, max_pool_caffe
from torch import nn

from caffe_models import C3D, C3D_CROP_OFFSET, CaffeModelError, load_caffemodel, preprocess_c3d
from caffe_models.preprocess import center_crop_offset, resize_bilinear

pytestmark = pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")

# docs/formats.md, "C3D Sports-1M": conv (out, in, 3, 3, 3); fc6 (4096, 8192); fc7 (4096, 4096);
# fc8 (487, 4096).
RELEASE_WEIGHTS = {
    "conv1a": (64, 3, 3, 3, 3), "conv2a": (128, 64, 3, 3, 3), "conv3a": (256, 128, 3, 3, 3),
    "conv3b": (256, 256, 3, 3, 3), "conv4a": (512, 256, 3, 3, 3), "conv4b": (512, 512, 3, 3, 3),
    "conv5a": (512, 512, 3, 3, 3), "conv5b": (512, 512, 3, 3, 3),
    "fc6": (4096, 8192), "fc7": (4096, 4096), "fc8": (487, 4096),
}
POOLS = {"pool1": (1, 2, 2), "pool2": (2, 2, 2), "pool3": (2, 2, 2), "pool4": (2, 2, 2), "pool5": (2, 2, 2)}
ORDER = ("conv1a", "pool1", "conv2a", "pool2", "conv3a", "conv3b", "pool3", "conv4a", "conv4b", "pool4",
         "conv5a", "conv5b", "pool5", "fc6", "fc7", "fc8", "prob")


def test_release_architecture_has_the_release_shapes():
    net = C3D(device="meta")  # full size, no memory
    params = net.caffe_parameters()
    assert {name: tuple(weight.shape) for name, (weight, _) in params.items()} == RELEASE_WEIGHTS
    assert all(tuple(bias.shape) == (weight.shape[0],) for weight, bias in params.values())
    blobs = net.features(torch.empty(2, 3, 16, 112, 112, device="meta"), ORDER)
    # 112 → 56 → 28 → 14 → 7 → 4 (ceil), 16 → 16 → 8 → 4 → 2 → 1; 512·1·4·4 = 8192 inputs of fc6.
    assert {name: tuple(blobs[name].shape) for name in POOLS} == {
        "pool1": (2, 64, 16, 56, 56), "pool2": (2, 128, 8, 28, 28), "pool3": (2, 256, 4, 14, 14),
        "pool4": (2, 512, 2, 7, 7), "pool5": (2, 512, 1, 4, 4)}
    assert tuple(blobs["prob"].shape) == (2, 487)


def test_pool5_rounds_up_like_caffe_and_the_padded_port_differs():
    net = C3D(3, conv_channels=(2,) * 8, fc_dim=4)
    clip = torch.randn(1, 3, 16, 112, 112, generator=torch.Generator().manual_seed(0))
    blobs = net.features(clip, ("conv5b", "pool5"))
    conv5b = blobs["conv5b"][0].double().numpy()  # (C, 2, 7, 7)
    assert conv5b.shape[1:] == (2, 7, 7)

    # Caffe: windows {0,1}, {2,3}, {4,5}, {6} on each 7-long spatial axis.
    np.testing.assert_array_equal(blobs["pool5"][0].double().numpy(), max_pool_caffe(conv5b, (2, 2, 2)))

    # The earlier ports: padding (0, 1, 1) in floor mode, windows {0}, {1,2}, {3,4}, {5,6}.
    padded = nn.MaxPool3d(2, 2, padding=(0, 1, 1))(blobs["conv5b"])[0].double().numpy()
    starts = (0, 1, 3, 5)
    stops = (1, 3, 5, 7)
    port = np.array([[[conv5b[c, :, starts[i]:stops[i], starts[j]:stops[j]].max() for j in range(4)]
                      for i in range(4)] for c in range(conv5b.shape[0])])[:, None]
    np.testing.assert_array_equal(padded, port)
    assert padded.shape == blobs["pool5"][0].shape
    assert not np.allclose(padded, blobs["pool5"][0].numpy())


@pytest.mark.parametrize("pre_relu", [False, True])
def test_every_layer_matches_a_direct_computation(tmp_path, pre_relu):
    # 16×24×24 clips: pool4 sees 3×3 (ceil → 2×2, last window clipped) and pool5 2×2×2 → 1×1×1.
    net = C3D(5, conv_channels=(2, 3, 3, 2, 2, 3, 2, 2), fc_dim=6, clip_shape=(16, 24, 24))
    rng = np.random.default_rng(0)
    names = {"fc6": "fc6-1", "fc7": "fc7-1", "fc8": "fc8-1"}
    layers = network_layers(net, names=names, schema="c3d", rng=rng)
    path = tmp_path / "c3d.caffemodel"
    path.write_bytes(net_bytes(layers, schema="c3d", packed=False))
    load_caffemodel(net, path)
    params = {{v: k for k, v in names.items()}.get(name, name): blobs for name, _, blobs in layers if blobs}
    clips = rng.standard_normal((2, 3, 16, 24, 24)).astype(np.float32) * 50

    blobs = net.features(torch.from_numpy(clips), ORDER + ("fc6-1",), pre_relu=pre_relu)

    for index, clip in enumerate(clips):
        reference = forward(clip, params, POOLS, ORDER)
        assert (reference["fc6"][0] < 0).any() and (reference["conv5b"][0] < 0).any()  # ReLU matters
        for name in ORDER:
            pre, post = reference[name]
            want = pre if pre_relu and (name.startswith("conv") or name in ("fc6", "fc7")) else post
            got = blobs[name][index].double().numpy()
            scale = np.abs(want).max()
            np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4 * scale)
    assert torch.equal(blobs["fc6-1"], blobs["fc6"])


def test_unknown_layer_and_wrong_input_are_clear_errors():
    net = C3D(3, conv_channels=(2,) * 8, fc_dim=4, clip_shape=(16, 16, 16))
    with pytest.raises(CaffeModelError, match=r"C3D has no layer 'fc9'; choose from conv1a, pool1, .*, prob"):
        net.features(torch.zeros(1, 3, 16, 16, 16), ("fc9",))
    with pytest.raises(CaffeModelError, match=r"float input \(B, 3, 16, 16, 16\), got \(1, 16, 16, 16, 3\)"):
        net.features(torch.zeros(1, 16, 16, 16, 3), ("fc6",))
    with pytest.raises(CaffeModelError, match=r"torch.uint8; prepare 16-frame clips with .*preprocess_c3d"):
        net(torch.zeros(1, 3, 16, 16, 16, dtype=torch.uint8))


@pytest.mark.parametrize("mirror", [False, True])
def test_preprocessing_is_bgr_minus_the_mean_cube_cropped_at_8_29(mirror):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 16, 128, 171, 3), dtype=np.uint8)  # already 171×128: no resize
    cube = rng.uniform(0, 255, (3, 16, 128, 171)).astype(np.float32)

    out = preprocess_c3d(frames, cube, mirror=mirror).numpy()

    assert center_crop_offset(128, 171, 112) == C3D_CROP_OFFSET == (8, 29)
    rows = 8 + np.arange(112)[:, None]
    cols = 29 + (111 - np.arange(112) if mirror else np.arange(112))[None, :]  # mirror after the mean
    expected = np.stack([frames[:, :, rows, cols, 2 - c] - cube[c][:, rows, cols] for c in range(3)], axis=1)
    assert out.shape == (2, 3, 16, 112, 112)
    np.testing.assert_array_equal(out, expected)


def test_per_channel_mean_is_broadcast():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (1, 16, 128, 171, 3), dtype=np.uint8)
    out = preprocess_c3d(torch.from_numpy(frames), (104.0, 117.0, 128.0)).numpy()
    assert np.array_equal(preprocess_c3d(frames, torch.tensor([104.0, 117.0, 128.0])).numpy(), out)
    crop = frames[0, :, 8:120, 29:141].astype(np.float32)
    expected = np.stack([crop[..., 2] - 104, crop[..., 1] - 117, crop[..., 0] - 128])
    np.testing.assert_array_equal(out[0], expected)


@pytest.mark.parametrize("size", [(90, 120), (240, 320)])
def test_resize_is_bilinear_on_pixel_centres_rounded_like_opencv(size):
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (1, 2) + size + (3,), dtype=np.uint8)
    out = preprocess_c3d(frames, (0.0, 0.0, 0.0)).numpy()[0]  # (3, 2, 112, 112)
    for t in range(2):
        resized = np.floor(bilinear_resize(frames[0, t], 128, 171) + 0.5)  # cv::resize keeps uint8
        expected = resized[8:120, 29:141, ::-1].transpose(2, 0, 1)
        diff = np.abs(out[:, t] - expected)
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # float order can flip an exact .5


def test_resize_gives_opencv_values_on_a_two_pixel_upscale():
    # cv::resize([[0, 255]], (4, 1), INTER_LINEAR) = [[0, 64, 191, 255]]: samples at -0.25 (clamped),
    # 0.25, 0.75, 1.25 (clamped), then rounded.
    image = torch.tensor([[[[0, 0, 0], [255, 255, 255]]]], dtype=torch.uint8)  # (1, 1, 2, 3)
    out = resize_bilinear(image, (1, 4), round_to_uint8=True)
    assert out[0, 0, 0].tolist() == [0, 64, 191, 255]


def test_preprocessing_refuses_a_mean_of_another_size_and_float_frames():
    frames = np.zeros((1, 16, 128, 171, 3), np.uint8)
    with pytest.raises(CaffeModelError, match=r"mean of shape \(3, 16, 112, 112\) does not fit"):
        preprocess_c3d(frames, np.zeros((3, 16, 112, 112), np.float32))
    with pytest.raises(CaffeModelError, match=r"expected RGB uint8 frames \(B, L, H, W, 3\)"):
        preprocess_c3d(frames.astype(np.float32), (0.0, 0.0, 0.0))
