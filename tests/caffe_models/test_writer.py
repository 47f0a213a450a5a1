"""Caffe snapshots written by `caffe_models.writer`, read back by the project's reader, by protobuf itself
and by a minimal C3D v1.0 decoder written here; R-C3D-like BVLC files loaded into C3D; a full disk."""

from __future__ import annotations

import errno
import os
import subprocess
import warnings

import numpy as np
import pytest
import torch
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from caffe_models import C3D, VGG19, CaffeModelError, RandomWeightsWarning, load_caffemodel, load_mean
from caffe_models.writer import save_caffemodel, save_mean

CONVS = ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")


def tiny_c3d(seed=0, **kwargs) -> C3D:
    """C3D with its layer names at test size: 2-wide convolutions, 6-wide fc6/fc7, 4×16×16 clips."""
    options = {"conv_channels": (2,) * 8, "fc_dim": 6, "clip_shape": (4, 16, 16)} | kwargs
    return C3D(5, generator=torch.Generator().manual_seed(seed), **options)


def params_of(net) -> dict[str, tuple[np.ndarray, ...]]:
    return {name: tuple(p.detach().numpy().copy() for p in blobs)
            for name, blobs in net.caffe_parameters().items()}


def assert_same_params(a: dict, b: dict, layers=None):
    for name in layers or a:
        for x, y in zip(a[name], b[name], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)


# --- an independent minimal decoder of the C3D v1.0 schema (field numbers from C3D-v1.0's caffe.proto) ---

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    """[(field, wire type, int or bytes)] of one message; only varints and length-delimited fields."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise AssertionError(f"unexpected wire type {wire} of field {field}")
        out.append((field, wire, value))
    return out


def decode_c3d_v1(data: bytes) -> tuple[str, list[tuple[str, int, list[tuple[tuple[int, ...], np.ndarray]]]]]:
    """(net name, [(layer name, V1 type, [(five dims, float32 data)])]) of a C3D v1.0 NetParameter:
    NetParameter name 1, layers 2; V1LayerParameter name 4, type 5, blobs 6; BlobProto num 1,
    channels 2, length 3, height 4, width 5, data 6 (packed float)."""
    name, layers = "", []
    for field, _, value in _fields(data):
        assert field in (1, 2), f"NetParameter field {field} is not C3D v1.0's"
        if field == 1:
            name = value.decode()
            continue
        layer_name, layer_type, blobs = None, None, []
        for lfield, _, lvalue in _fields(value):
            assert lfield in (4, 5, 6), f"V1LayerParameter field {lfield}"
            if lfield == 4:
                layer_name = lvalue.decode()
            elif lfield == 5:
                layer_type = lvalue
            else:
                dims, values = {}, None
                for bfield, bwire, bvalue in _fields(lvalue):
                    if bfield in (1, 2, 3, 4, 5):
                        assert bwire == 0
                        dims[bfield] = bvalue
                    else:
                        assert (bfield, bwire) == (6, 2), f"BlobProto field {bfield}"
                        values = np.frombuffer(bvalue, dtype="<f4")
                assert sorted(dims) == [1, 2, 3, 4, 5], f"{layer_name}: every blob has its five dimensions"
                blobs.append((tuple(dims[k] for k in range(1, 6)), values))
        layers.append((layer_name, layer_type, blobs))
    return name, layers


# --- BVLC messages declared at run time, so protobuf itself parses the V2 files ---------------------------

def bvlc_messages() -> dict[str, type]:
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="writer_test_bvlc.proto", package="t", syntax="proto2")
    spec = {"BlobShape": [("dim", 1, F.TYPE_INT64, True, None)],
            "BlobProto": [("num", 1, F.TYPE_INT32, False, None), ("data", 5, F.TYPE_FLOAT, True, None),
                          ("shape", 7, F.TYPE_MESSAGE, False, "BlobShape")],
            "LayerParameter": [("name", 1, F.TYPE_STRING, False, None),
                               ("type", 2, F.TYPE_STRING, False, None),
                               ("blobs", 7, F.TYPE_MESSAGE, True, "BlobProto")],
            "NetParameter": [("name", 1, F.TYPE_STRING, False, None),
                             ("layer", 100, F.TYPE_MESSAGE, True, "LayerParameter")]}
    for message_name, entries in spec.items():
        message = proto.message_type.add(name=message_name)
        for name, number, kind, repeated, type_name in entries:
            field = message.field.add(name=name, number=number, type=kind,
                                      label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if type_name:
                field.type_name = f".t.{type_name}"
            if repeated and kind != F.TYPE_MESSAGE:
                field.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"t.{name}")) for name in spec}


def bvlc_file(layers) -> bytes:
    """A BVLC V2 NetParameter of [(name, type, [arrays])], written by protobuf."""
    classes = bvlc_messages()
    net = classes["NetParameter"](name="activitynet")
    for name, kind, arrays in layers:
        layer = net.layer.add(name=name, type=kind)
        for array in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(array.ravel().tolist())
    return net.SerializeToString()


# --- round trips -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("schema,detected", [("c3d-v1", "c3d"), ("bvlc-v2", "bvlc")])
def test_snapshot_loads_back_into_c3d_in_both_schemas(tmp_path, schema, detected):
    net = tiny_c3d(seed=1)
    path = save_caffemodel(net, tmp_path / "c3d_iter_5000", schema=schema)
    other = tiny_c3d(seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # everything loads: nothing to report
        info = load_caffemodel(other, path)
    assert info.schema == detected and info.layers == CONVS + ("fc6", "fc7", "fc8")
    assert_same_params(params_of(net), params_of(other))


def test_c3d_v1_snapshot_has_c3d_field_numbers_and_five_dimensions(tmp_path):
    net = tiny_c3d(seed=3)
    path = save_caffemodel(net, tmp_path / "snap", schema="c3d-v1", name="C3D-finetune")
    name, layers = decode_c3d_v1((tmp_path / "snap").read_bytes())
    assert path == str(tmp_path / "snap") and name == "C3D-finetune"
    params = params_of(net)
    assert [layer[0] for layer in layers] == list(params)
    for layer_name, layer_type, blobs in layers:
        weight, bias = params[layer_name]
        assert layer_type == (30 if layer_name.startswith("conv") else 14)  # CONVOLUTION3D, INNER_PRODUCT
        (wdims, wdata), (bdims, bdata) = blobs
        if layer_name.startswith("conv"):
            assert wdims == weight.shape  # (out, in, 3, 3, 3)
        else:
            assert wdims == (1, 1, 1) + weight.shape  # InnerProduct (1, 1, 1, N, K)
        assert bdims == (1, 1, 1, 1, bias.shape[0])
        np.testing.assert_array_equal(wdata, weight.ravel())
        np.testing.assert_array_equal(bdata, bias.ravel())


def test_bvlc_v2_snapshot_is_read_by_protobuf(tmp_path):
    net = tiny_c3d(seed=4)
    save_caffemodel(net, tmp_path / "v2.caffemodel", schema="bvlc-v2")
    parsed = bvlc_messages()["NetParameter"].FromString((tmp_path / "v2.caffemodel").read_bytes())
    params = params_of(net)
    assert parsed.name == "C3D" and [layer.name for layer in parsed.layer] == list(params)
    for layer in parsed.layer:
        assert layer.type == ("Convolution" if layer.name.startswith("conv") else "InnerProduct")
        for blob, array in zip(layer.blobs, params[layer.name], strict=True):
            assert tuple(blob.shape.dim) == array.shape and not blob.HasField("num")
            np.testing.assert_array_equal(np.array(blob.data, dtype=np.float32), array.ravel())


def test_vgg_writes_in_bvlc_schema_only(tmp_path):
    vgg = VGG19(5, conv_channels=(2, 2, 3, 3, 2), fc_dim=6, image_size=32,
                generator=torch.Generator().manual_seed(5))
    other = VGG19(5, conv_channels=(2, 2, 3, 3, 2), fc_dim=6, image_size=32,
                  generator=torch.Generator().manual_seed(6))
    load_caffemodel(other, save_caffemodel(vgg, tmp_path / "vgg.caffemodel", schema="bvlc-v2"))
    assert_same_params(params_of(vgg), params_of(other))
    with pytest.raises(CaffeModelError, match="'conv1_1' is a 2-D convolution.*schema='bvlc-v2'"):
        save_caffemodel(vgg, tmp_path / "vgg_c3d", schema="c3d-v1")
    assert not (tmp_path / "vgg_c3d").exists()


def test_layers_choose_and_rename_what_is_written(tmp_path):
    net = tiny_c3d(seed=7)
    save_caffemodel(net, tmp_path / "a", layers=[*CONVS, "fc6-1", "fc7-1"])
    _, layers = decode_c3d_v1((tmp_path / "a").read_bytes())
    assert [layer[0] for layer in layers] == [*CONVS, "fc6-1", "fc7-1"]
    save_caffemodel(net, tmp_path / "b", layers={"fc8": "fc8_activitynet", "conv1a": "conv1a"})
    _, layers = decode_c3d_v1((tmp_path / "b").read_bytes())
    assert [layer[0] for layer in layers] == ["fc8_activitynet", "conv1a"]
    with pytest.raises(CaffeModelError, match="no layer 'pool5' with parameters; its layers are conv1a"):
        save_caffemodel(net, tmp_path / "c", layers=["pool5"])
    with pytest.raises(CaffeModelError, match="unknown snapshot schema 'bvlc'"):
        save_caffemodel(net, tmp_path / "c", schema="bvlc")


def test_mean_cube_round_trip_in_the_c3d_layout(tmp_path):
    mean = np.random.default_rng(0).uniform(80, 140, (3, 16, 8, 9)).astype(np.float32)
    save_mean(mean, tmp_path / "mean.binaryproto")
    np.testing.assert_array_equal(load_mean(tmp_path / "mean.binaryproto"), mean)
    fields = _fields((tmp_path / "mean.binaryproto").read_bytes())
    assert [(f, v) for f, _, v in fields[:5]] == [(1, 1), (2, 3), (3, 16), (4, 8), (5, 9)]
    assert fields[5][0] == 6 and len(fields) == 6
    save_mean(mean[None], tmp_path / "mean5.binaryproto")
    assert (tmp_path / "mean5.binaryproto").read_bytes() == (tmp_path / "mean.binaryproto").read_bytes()
    with pytest.raises(CaffeModelError, match=r"a C3D mean is \(channels, length, height, width\)"):
        save_mean(mean[0], tmp_path / "bad.binaryproto")


# --- R-C3D's BVLC-format C3D -----------------------------------------------------------------------------

def rc3d_layers(net, rng, *, fc_names=("fc6",), drop=()):
    """An R-C3D-like file (experiments/activitynet/test.prototxt): data, conv1a…conv5b with 5-D shape
    blobs and their ReLUs, the RPN's convolutions, roi_pool5, the fc layers named, cls_score and
    twin_pred; `drop` leaves layers out."""
    params = {name: [p.detach().numpy() for p in blobs] for name, blobs in net.caffe_parameters().items()}
    random = lambda shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    layers = [("data", "Input", [])]
    for name in CONVS:
        layers += [(name, "Convolution", [random(p.shape) for p in params[name]]),
                   (f"relu{name[4:]}", "ReLU", [])]
    width = params["conv5b"][0].shape[0]
    layers += [("rpn_conv/3x3", "Convolution", [random((4, width, 3, 3, 3)), random((4,))]),
               ("rpn_cls_score", "Convolution", [random((6, 4, 1, 1, 1)), random((6,))]),
               ("roi_pool5", "ROIPooling", [])]
    for name in fc_names:
        module = {"fc6": "fc6", "fc6-1": "fc6", "fc7": "fc7", "fc7-1": "fc7"}[name]
        layers.append((name, "InnerProduct", [random(p.shape) for p in params[module]]))
    layers += [("cls_score", "InnerProduct", [random((7, params["fc6"][0].shape[0])), random((7,))]),
               ("twin_pred", "InnerProduct", [random((14, params["fc6"][0].shape[0])), random((14,))]),
               ("cls_prob", "Softmax", [])]
    return [layer for layer in layers if layer[0] not in drop]


def test_rc3d_like_v2_file_loads_its_convolutions_and_fc6_and_says_so(tmp_path):
    net = tiny_c3d(seed=8)
    before = params_of(net)
    layers = rc3d_layers(net, np.random.default_rng(9))
    path = tmp_path / "activitynet_iter_30000_3fps.caffemodel"
    path.write_bytes(bvlc_file(layers))
    with pytest.warns(RandomWeightsWarning) as record:
        info = load_caffemodel(net, path)
    assert info.schema == "bvlc" and info.layers == CONVS + ("fc6",)
    file_params = {name: blobs for name, _, blobs in layers if blobs}
    assert_same_params(params_of(net), file_params, CONVS + ("fc6",))
    assert_same_params(params_of(net), before, ("fc7", "fc8"))  # not in the file: kept
    message = str(record[0].message)
    assert "\n" not in message and message.startswith(f"{path}: loaded conv1a, ")
    assert "fc7, fc8 are not in the file and keep their random initialisation" in message
    assert "ignored as Caffe does: rpn_conv/3x3, rpn_cls_score, cls_score, twin_pred" in message


def test_rc3d_like_file_with_release_fc_names_maps_them_onto_fc6_fc7(tmp_path):
    net = tiny_c3d(seed=10)
    layers = rc3d_layers(net, np.random.default_rng(11), fc_names=("fc6-1", "fc7-1"))
    path = tmp_path / "rc3d.caffemodel"
    path.write_bytes(bvlc_file(layers))
    with pytest.warns(RandomWeightsWarning, match="fc8 is not in the file"):
        info = load_caffemodel(net, path)
    assert info.layers == CONVS + ("fc6", "fc7")
    blobs = {name: b for name, _, b in layers}
    np.testing.assert_array_equal(net.fc7.weight.detach().numpy(), blobs["fc7-1"][0])


@pytest.mark.parametrize("drop,missing", [(CONVS, ", ".join(CONVS)), (("conv5b",), "conv5b")])
def test_file_without_the_convolutions_is_a_one_line_error(tmp_path, drop, missing):
    net = tiny_c3d(seed=12)
    before = params_of(net)
    path = tmp_path / "fc_only.caffemodel"
    path.write_bytes(bvlc_file(rc3d_layers(net, np.random.default_rng(13), drop=drop)))
    with pytest.raises(CaffeModelError) as error:
        load_caffemodel(net, path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path} does not match C3D as built: it lacks layer")
    assert f" {missing} (its layers with weights: " in message
    assert net.weights is None
    assert_same_params(params_of(net), before)


def test_matched_layer_of_another_shape_is_still_an_error(tmp_path):
    net = tiny_c3d(seed=14)
    wide = tiny_c3d(seed=14, fc_dim=8)
    path = tmp_path / "wide.caffemodel"
    path.write_bytes(bvlc_file(rc3d_layers(wide, np.random.default_rng(15))))
    with pytest.raises(CaffeModelError, match=r"layer 'fc6': weight shape \(8, 2\) in the file, \(6, 2\)"):
        load_caffemodel(net, path)


# --- a full disk -----------------------------------------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path, monkeypatch):
    """A 64 KiB tmpfs where this process may mount one (root), else a disk whose writes past 64 KiB fail
    with ENOSPC (the file object's write, as a full filesystem reports it)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True).returncode == 0
    if not mounted:
        import alstm_core.atomic as atomic

        real_open = open

        class Small:
            def __init__(self, file):
                self.file, self.written = file, 0

            def write(self, data):
                self.written += memoryview(data).nbytes
                if self.written > 64 * 1024:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return self.file.write(data)

            def __getattr__(self, name):
                return getattr(self.file, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self.file.__exit__(*exc)

        monkeypatch.setattr(atomic, "open", lambda *a, **k: Small(real_open(*a, **k)), raising=False)
    yield folder
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)


def test_full_disk_is_one_line_and_keeps_the_previous_snapshot(tiny_disk):
    path = tiny_disk / "c3d_iter_5000"
    save_caffemodel(tiny_c3d(seed=16), path)  # small: fits
    previous = path.read_bytes()
    big = tiny_c3d(seed=17, conv_channels=(4,) * 8, fc_dim=160)  # fc7 alone is 100 KiB
    with pytest.raises(CaffeModelError) as error:
        save_caffemodel(big, path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: cannot be written: the disk is full")
    assert path.read_bytes() == previous
    assert sorted(os.listdir(tiny_disk)) == ["c3d_iter_5000"]  # no temporary file left behind
