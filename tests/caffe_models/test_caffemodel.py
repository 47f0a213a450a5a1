"""The .caffemodel / .binaryproto reader against files written by the protobuf package
(helpers.caffe_files)."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch
from helpers.caffe_files import (
    BVLC_ARGMAX,
    BVLC_THRESHOLD,
    C3D_CONVOLUTION3D,
    C3D_POOLING3D,
    V1_CONVOLUTION,
    V1_INNER_PRODUCT,
    V1_RELU,
    legacy_shape,
    mean_bytes,
    messages,
    net_bytes,
    network_layers,
)

from caffe_models import (
    C3D,
    VGG19,
    CaffeModelError,
    RandomWeightsWarning,
    load_caffemodel,
    load_mean,
    parse_mean,
    parse_net,
)


def tiny_vgg(**kwargs) -> VGG19:
    return VGG19(5, conv_channels=(2, 2, 3, 3, 2), fc_dim=6, image_size=32, **kwargs)


def tiny_c3d(**kwargs) -> C3D:
    return C3D(5, conv_channels=(2, 2, 2, 2, 2, 2, 2, 2), fc_dim=6, clip_shape=(4, 16, 16), **kwargs)


def conv_and_ip(rng, spatial: int):
    kernel = rng.standard_normal((4, 3) + (3,) * spatial).astype(np.float32)
    return [("conv1", None, [kernel, rng.standard_normal(4).astype(np.float32)]),
            ("relu1", None, []),
            ("fc", None, [rng.standard_normal((5, 7)).astype(np.float32),
                          rng.standard_normal(5).astype(np.float32)])]


# (schema, style, packed, legacy 4-D dims, doubles): every layout the reader must accept.
LAYOUTS = [
    ("bvlc", "new", True, False, False),
    ("bvlc", "new", False, False, False),
    ("bvlc", "new", True, False, True),
    ("bvlc", "new", False, False, True),
    ("bvlc", "v1", True, True, False),
    ("bvlc", "v1", False, True, False),
    ("bvlc", "v0", True, True, False),
    ("c3d", "v1", True, False, False),
    ("c3d", "v1", False, False, False),
    ("c3d", "v0", False, False, False),
]


@pytest.mark.parametrize("schema,style,packed,legacy,double", LAYOUTS)
def test_reads_every_layout_written_by_protobuf(schema, style, packed, legacy, double):
    rng = np.random.default_rng(1)
    layers = conv_and_ip(rng, 3 if schema == "c3d" or not legacy else 2)
    types = ((V1_CONVOLUTION, V1_RELU, V1_INNER_PRODUCT) if style == "v1"
             else ("Convolution", "ReLU", "InnerProduct"))
    layers = [(name, kind, arrays) for (name, _, arrays), kind in zip(layers, types, strict=True)]
    data = net_bytes(layers, schema=schema, style=style, packed=packed, legacy=legacy, double=double)

    net = parse_net(data)

    assert net.schema == schema and net.name == "net"
    assert [layer.name for layer in net.layers] == ["conv1", "relu1", "fc"]
    assert [layer.type for layer in net.layers] == (
        ["CONVOLUTION", "RELU", "INNER_PRODUCT"] if style == "v1" else list(types))
    for (_, _, arrays), layer in zip(layers, net.layers, strict=True):
        assert len(layer.blobs) == len(arrays)
        for want, got in zip(arrays, layer.blobs, strict=True):
            axes = 5 if schema == "c3d" else 4 if legacy else want.ndim
            assert got.shape == legacy_shape(want.shape, axes)
            expected = want.astype(np.float64).astype(np.float32) if double else want
            assert got.dtype == np.float32 and np.array_equal(got.reshape(want.shape), expected)


def test_unpacked_runs_split_by_other_fields_are_concatenated():
    # protobuf may interleave a repeated field's records with others; values then arrive in several runs.
    classes = messages("bvlc", packed=False)
    values = np.arange(1, 301, dtype=np.float32)
    parts = []
    for chunk in np.split(values, [1, 130, 131]):
        blob = classes["BlobProto"]()
        blob.data.extend(chunk.tolist())
        parts.append(blob.SerializeToString())
    shape = classes["BlobProto"]()
    shape.shape.dim.extend([3, 100])
    blob_bytes = parts[0] + shape.SerializeToString() + b"".join(parts[1:])  # concatenation = merge
    # The layer (NetParameter.layer = 100, LayerParameter.blobs = 7) is framed by hand to keep that order.
    layer_bytes = (classes["LayerParameter"](name="ip").SerializeToString()
                   + b"\x3a" + _varint(len(blob_bytes)) + blob_bytes)
    data = b"\xa2\x06" + _varint(len(layer_bytes)) + layer_bytes

    (parsed,) = parse_net(data).layers

    assert np.array_equal(parsed.blobs[0], values.reshape(3, 100))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def test_c3d_file_read_with_bvlc_field_numbers_is_a_clear_error():
    rng = np.random.default_rng(2)
    data = net_bytes([("conv1a", C3D_CONVOLUTION3D, conv_and_ip(rng, 3)[0][2])], schema="c3d")
    assert parse_net(data).schema == "c3d"
    # BVLC's numbers read C3D's `width` (field 5, a varint) as `data`: the pitfall docs/formats.md describes.
    with pytest.raises(CaffeModelError, match=r"has wire type varint; is the file in the c3d schema"):
        parse_net(data, schema="bvlc")


def test_v1_type_numbers_are_read_with_the_file_schema():
    c3d = parse_net(net_bytes([("conv1a", C3D_CONVOLUTION3D, [np.ones((2, 3, 3, 3, 3), np.float32)]),
                               ("pool1", C3D_POOLING3D, [])], schema="c3d"))
    bvlc = parse_net(net_bytes([("argmax", BVLC_ARGMAX, []), ("threshold", BVLC_THRESHOLD, [])]))
    assert [layer.type for layer in c3d.layers] == ["CONVOLUTION3D", "POOLING3D"]
    assert [layer.type for layer in bvlc.layers] == ["ARGMAX", "THRESHOLD"]


def test_weighted_layer_of_type_30_marks_a_c3d_file():
    # A blob with data but no dimensions carries no field-5 evidence; the layer type then decides:
    # 30 is C3D's CONVOLUTION3D, while BVLC's 30 (ARGMAX) never has weights. Field 6 is C3D's data
    # (BVLC's diff), so the schema changes what the file holds.
    classes = messages("c3d")
    net = classes["NetParameter"]()
    values = [0.5, -1.0, 2.0]
    net.layers.add(name="conv", type=C3D_CONVOLUTION3D).blobs.add().data.extend(values)
    as_c3d = parse_net(net.SerializeToString())
    net.layers[0].type = V1_CONVOLUTION
    as_bvlc = parse_net(net.SerializeToString())
    assert as_c3d.schema == "c3d" and np.array_equal(as_c3d.layers[0].blobs[0], values)
    assert as_bvlc.schema == "bvlc" and as_bvlc.layers[0].blobs[0].size == 0  # BVLC: those were gradients


def test_file_without_evidence_takes_the_default_schema():
    data = net_bytes([("relu", V1_RELU, [])], schema="c3d")
    assert parse_net(data).schema == "bvlc"
    assert parse_net(data, default_schema="c3d").schema == "c3d"


def test_mixed_layouts_are_refused():
    rng = np.random.default_rng(3)
    arrays = conv_and_ip(rng, 2)[2][2]
    mixed = (net_bytes([("a", V1_INNER_PRODUCT, arrays)], schema="bvlc", legacy=True)
             + net_bytes([("b", V1_INNER_PRODUCT, arrays)], schema="c3d"))  # concatenated = merged
    with pytest.raises(CaffeModelError, match="mix the BVLC and C3D-v1.0 layouts"):
        parse_net(mixed)


def test_blob_whose_shape_disagrees_with_its_values_names_the_layer():
    net = messages("bvlc")["NetParameter"]()
    blob = net.layer.add(name="fc7").blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1.0] * 5)
    with pytest.raises(CaffeModelError, match=r"layer 'fc7', blob 0: blob of shape \(2, 3\) needs 6 values "
                                              r"but holds 5"):
        parse_net(net.SerializeToString())


@pytest.mark.parametrize("schema", ["bvlc", "c3d"])
def test_mean_cube_round_trip(tmp_path, schema):
    rng = np.random.default_rng(4)
    shape = (3, 16, 128, 171) if schema == "c3d" else (3, 7, 9)
    mean = rng.uniform(0, 255, shape).astype(np.float32)
    path = tmp_path / "mean.binaryproto"
    path.write_bytes(mean_bytes(mean, schema))
    if schema == "c3d":
        # Same 17-byte header as the release's fb_train16_128_mean (3,145,745 B = 3·16·128·128·4 + 17).
        assert path.stat().st_size == mean.size * 4 + 17
    loaded = load_mean(path)
    assert loaded.shape == shape and np.array_equal(loaded, mean)
    loaded[0] = 0  # the caller owns a writable copy


def test_mean_file_with_several_blobs_is_refused():
    blob = messages("bvlc")["BlobProto"](num=2, channels=3, height=1, width=1)
    blob.data.extend([1.0] * 6)
    with pytest.raises(CaffeModelError, match=r"expected one mean blob \(num = 1\)"):
        parse_mean(blob.SerializeToString())


def test_load_by_name_copies_every_blob_and_records_the_file(tmp_path):
    rng = np.random.default_rng(5)
    net = tiny_vgg()
    layers = network_layers(net, rng=rng, style="v1")
    path = tmp_path / "vgg.caffemodel"
    path.write_bytes(net_bytes(layers, legacy=True))

    info = load_caffemodel(net, path)

    arrays = {name: blobs for name, _, blobs in layers if blobs}
    for name, (weight, bias) in net.caffe_parameters().items():
        assert np.array_equal(weight.detach().numpy(), arrays[name][0])
        assert np.array_equal(bias.detach().numpy(), arrays[name][1])
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert net.has_real_weights and net.weights is info and info.schema == "bvlc"
    assert net.weights_description == f"vgg.caffemodel (sha256 {info.sha256})"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        net.features(torch.zeros(1, 3, 32, 32), ("fc6",))


def test_c3d_release_names_and_schema(tmp_path):
    rng = np.random.default_rng(6)
    net = tiny_c3d()
    names = {"fc6": "fc6-1", "fc7": "fc7-1", "fc8": "fc8-1"}
    layers = network_layers(net, names=names, schema="c3d", rng=rng)
    path = tmp_path / "c3d"
    path.write_bytes(net_bytes(layers, schema="c3d"))
    info = load_caffemodel(net, path)
    assert info.schema == "c3d" and set(info.layers) == set(net.caffe_parameters())
    fc6 = next(blobs for name, _, blobs in layers if name == "fc6-1")
    assert np.array_equal(net.fc6.weight.detach().numpy(), fc6[0])


def _expect_failure(net, path, pattern):
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    with pytest.raises(CaffeModelError, match=pattern):
        load_caffemodel(net, path)
    assert net.weights is None  # all or nothing
    assert all(torch.equal(p, before[name]) for name, p in net.named_parameters())


def test_missing_extra_and_mismatched_layers_name_the_layer_and_both_shapes(tmp_path):
    rng = np.random.default_rng(7)
    net = tiny_vgg()
    layers = network_layers(net, rng=rng)
    path = tmp_path / "w.caffemodel"

    path.write_bytes(net_bytes([layer for layer in layers if layer[0] != "fc8"], legacy=True))
    _expect_failure(net, path, r"missing layer 'fc8' \(the network expects blob shapes "
                               r"\(\(5, 6\), \(5,\)\)\)")

    renamed = [("fc8_act" if name == "fc8" else name, kind, blobs) for name, kind, blobs in layers]
    path.write_bytes(net_bytes(renamed, legacy=True))
    _expect_failure(net, path, r"extra layer 'fc8_act' with blob shapes \(\(1, 1, 5, 6\), \(1, 1, 1, 5\)\)")
    load_caffemodel(net, path, rename={"fc8_act": "fc8"})
    assert net.has_real_weights

    net = tiny_vgg()
    wide_fc8 = rng.standard_normal((7, 6)).astype(np.float32)
    wider = [(name, kind, [wide_fc8, blobs[1]] if name == "fc8" else blobs) for name, kind, blobs in layers]
    path.write_bytes(net_bytes(wider, legacy=True))
    _expect_failure(net, path, r"layer 'fc8': weight shape \(1, 1, 7, 6\) in the file, \(5, 6\) in the "
                               "network")


def test_files_that_are_not_weights_are_refused(tmp_path):
    net = tiny_vgg()
    path = tmp_path / "deploy.prototxt"
    path.write_text('name: "VGG_ILSVRC_19_layers"\ninput: "data"\nlayers {\n  bottom: "data"\n}\n')
    _expect_failure(net, path, r"deploy.prototxt: not a valid Caffe weight file: .*text \.prototxt")
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    _expect_failure(net, path, "HDF5 Caffe snapshot")
    path.write_bytes(net_bytes([("relu", V1_RELU, [])]))
    _expect_failure(net, path, "holds no layer with weights")
    with pytest.raises(CaffeModelError, match="no such file"):
        load_caffemodel(net, tmp_path / "absent.caffemodel")


def test_truncated_file_error_names_the_file_and_position(tmp_path):
    rng = np.random.default_rng(8)
    net = tiny_vgg()
    data = net_bytes(network_layers(net, rng=rng), legacy=True)
    path = tmp_path / "cut.caffemodel"
    path.write_bytes(data[: len(data) // 2])
    _expect_failure(net, path, r"cut\.caffemodel: not a valid Caffe weight file: .* \(at byte \d+\)")


def test_random_initialisation_is_seeded_and_warns_once():
    first, second = tiny_c3d(), tiny_c3d()
    other = tiny_c3d(generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))
    assert not torch.equal(first.conv1a.weight, other.conv1a.weight)
    assert not first.has_real_weights
    assert first.weights_description == "random initialisation (seed 0); not real C3D features"
    clip = torch.zeros(1, 3, 4, 16, 16)
    with pytest.warns(RandomWeightsWarning, match="C3D runs with random weights"):
        first.features(clip, ("fc8",))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        first.features(clip, ("fc8",))
