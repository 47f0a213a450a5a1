"""Caffe's messages on the wire: the field numbers of both schemas, and decoding of blobs and layers.

Two schemas give the same messages different field numbers (docs/formats.md, "C3D Sports-1M"):

- BlobProto. BVLC: num 1, channels 2, height 3, width 4, data 5, diff 6, shape 7 (BlobShape: dim 1),
  double_data 8, double_diff 9. C3D-v1.0: num 1, channels 2, length 3, height 4, width 5, data 6, diff 7.
- NetParameter: name 1, layers 2 (V1); BVLC also has layer 100 (the current LayerParameter).
- V1LayerParameter (both): layer 1 (V0), name 4, type 5 (an enum that differs between them), blobs 6.
- LayerParameter (BVLC only): name 1, type 2 (a string), blobs 7.
- V0LayerParameter (both): name 1, type 2 (a string), blobs 50.

`detect_schema` reads the evidence: field 5 is C3D's `width` (a varint) but BVLC's `data` (floats);
fields 8/9 (doubles) and the `layer` field 100 exist only in BVLC; a V1 layer of type 30 that carries
weights is C3D's CONVOLUTION3D (BVLC's 30 is ARGMAX, which has none). Decoding with the wrong schema
fails on a wire type (C3D's varint `width` where BVLC expects float `data`) instead of misreading.
Everything here raises `WireError`; `caffemodel.py` names the file.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from caffe_models.protowire import (
    I32,
    I64,
    LEN,
    VARINT,
    WIRE_NAMES,
    WireError,
    as_int64,
    next_field,
    packed_array,
    packed_varints,
    read_string,
    run_length,
    unpacked_run,
)

SCHEMAS = ("bvlc", "c3d")
_BLOB_ROLES = MappingProxyType({
    "bvlc": MappingProxyType({1: "num", 2: "channels", 3: "height", 4: "width", 5: "data", 6: "diff",
                              7: "shape", 8: "double_data", 9: "double_diff"}),
    "c3d": MappingProxyType({1: "num", 2: "channels", 3: "length", 4: "height", 5: "width", 6: "data",
                             7: "diff"}),
})
_LEGACY_AXES = MappingProxyType({"bvlc": ("num", "channels", "height", "width"),
                                 "c3d": ("num", "channels", "length", "height", "width")})
_MAX_AXES = 32  # Caffe's kMaxBlobAxes
# V1LayerParameter.LayerType, indexed by number. Both enums agree on 0..29 but for 25's name.
_V1_TYPES_COMMON = (
    "NONE", "ACCURACY", "BNLL", "CONCAT", "CONVOLUTION", "DATA", "DROPOUT", "EUCLIDEAN_LOSS", "FLATTEN",
    "HDF5_DATA", "HDF5_OUTPUT", "IM2COL", "IMAGE_DATA", "INFOGAIN_LOSS", "INNER_PRODUCT", "LRN",
    "MULTINOMIAL_LOGISTIC_LOSS", "POOLING", "RELU", "SIGMOID", "SOFTMAX", "SOFTMAX_LOSS", "SPLIT", "TANH",
    "WINDOW_DATA", "ELTWISE", "POWER", "SIGMOID_CROSS_ENTROPY_LOSS", "HINGE_LOSS", "MEMORY_DATA")
_V1_TYPES = MappingProxyType({
    "bvlc": _V1_TYPES_COMMON + ("ARGMAX", "THRESHOLD", "DUMMY_DATA", "SLICE", "MVN", "ABSVAL", "SILENCE",
                                "CONTRASTIVE_LOSS", "EXP", "DECONVOLUTION"),
    "c3d": _V1_TYPES_COMMON[:25] + ("ELTWISE_PRODUCT",) + _V1_TYPES_COMMON[26:] + (
        "CONVOLUTION3D", "POOLING3D", "VOLUME_DATA", "VIDEO_DATA", "DECONVOLUTION3D",
        "VIDEO_SEGMENTATION_DATA", "VOXEL_SOFTMAX", "VOXEL_SOFTMAX_LOSS", "VIDEO_WITH_VOXEL_TRUTH_DATA",
        "VOXEL_CUSTOM_LOSS", "DOWN_SAMPLING"),
})
_C3D_CONVOLUTION3D = 30


class CaffeLayer(NamedTuple):
    name: str
    type: str  # the V1 enum's name (schema-specific) or the current format's type string
    blobs: tuple[np.ndarray, ...]  # float32, in the blob's own shape (weights first, then bias)


class CaffeNet(NamedTuple):
    name: str
    schema: str  # "bvlc" or "c3d"
    layers: tuple[CaffeLayer, ...]


def _fields(buf, start: int, stop: int, wanted) -> dict[int, list[tuple[int, int]]]:
    """{field: [(value or payload start, next position)]} of the `wanted` {field: wire type}.

    Other fields are skipped; a wanted field with another wire type is an error.
    """
    found: dict[int, list[tuple[int, int]]] = {field: [] for field in wanted}
    pos = start
    while pos < stop:
        field, wire, value, nxt = next_field(buf, pos, stop)
        expected = wanted.get(field)
        if expected is not None:
            if wire != expected:
                raise WireError(f"field {field} has wire type {WIRE_NAMES[wire]}, expected "
                                f"{WIRE_NAMES[expected]}", pos)
            found[field].append((value, nxt))
        pos = nxt
    return found


def _skip_run(buf, pos: int, stop: int, field: int, wire: int, value: int, nxt: int) -> int:
    """Skip a whole run of unpacked fixed-width values at once (one Python step per run, not per value)."""
    if wire in (I32, I64) and field < 16:
        width = 4 if wire == I32 else 8
        return value + width + (width + 1) * (run_length(buf, value, stop, (field << 3) | wire, width) - 1)
    return nxt


def blob_evidence(buf, start: int, stop: int) -> str | None:
    pos = start
    while pos < stop:
        field, wire, value, nxt = next_field(buf, pos, stop)
        if field == 5:  # C3D: width (varint); BVLC: data (floats)
            return "c3d" if wire == VARINT else "bvlc"
        if field in (8, 9):  # BVLC doubles
            return "bvlc"
        pos = _skip_run(buf, pos, stop, field, wire, value, nxt)
    return None


def _v1_layer(buf, start: int, stop: int) -> tuple[list, int | str | None, list]:
    """(name entries, type, blob entries) of a V1 layer, completed from a nested V0 layer if it has one.

    The type is the V1 enum's number, or the V0 layer's type string.
    """
    layer = _fields(buf, start, stop, {1: LEN, 4: LEN, 5: VARINT, 6: LEN})
    names, blobs = layer[4], list(layer[6])
    layer_type: int | str | None = layer[5][-1][0] if layer[5] else None
    for v0_start, v0_stop in layer[1]:
        v0 = _fields(buf, v0_start, v0_stop, {1: LEN, 2: LEN, 50: LEN})
        names = names or v0[1]
        if layer_type is None and v0[2]:
            layer_type = read_string(buf, *v0[2][-1])
        blobs += v0[50]
    return names, layer_type, blobs


def _type_name(layer_type: int | str | None, schema: str) -> str:
    if isinstance(layer_type, int):
        names = _V1_TYPES[schema]
        return names[layer_type] if layer_type < len(names) else f"V1 type {layer_type}"
    return layer_type or ""


def detect_schema(buf) -> set[str]:
    evidence = set()
    net = _fields(buf, 0, len(buf), {2: LEN, 100: LEN})
    blobs = []
    for start, stop in net[2]:
        _, layer_type, layer_blobs = _v1_layer(buf, start, stop)
        if layer_blobs and layer_type == _C3D_CONVOLUTION3D:
            evidence.add("c3d")
        blobs += layer_blobs
    for start, stop in net[100]:
        evidence.add("bvlc")
        blobs += _fields(buf, start, stop, {7: LEN})[7]
    for start, stop in blobs:
        found = blob_evidence(buf, start, stop)
        if found:
            evidence.add(found)
    return evidence


def _parse_shape(buf, start: int, stop: int) -> list[int]:
    dims: list[int] = []
    pos = start
    while pos < stop:
        field, wire, value, nxt = next_field(buf, pos, stop)
        if field == 1:
            if wire == LEN:
                dims += [as_int64(v) for v in packed_varints(buf, value, nxt)]
            elif wire == VARINT:
                dims.append(as_int64(value))
            else:
                raise WireError(f"BlobShape.dim has wire type {WIRE_NAMES[wire]}", pos)
            if len(dims) > _MAX_AXES:
                raise WireError(f"blob shape with more than {_MAX_AXES} axes", start)
        pos = nxt
    return dims


def parse_blob(buf, start: int, stop: int, schema: str) -> np.ndarray:
    roles = _BLOB_ROLES[schema]
    dims: dict[str, int] = {}
    shape = None
    chunks = []
    pos = start
    while pos < stop:
        field, wire, value, nxt = next_field(buf, pos, stop)
        role = roles.get(field)
        if role in ("data", "double_data", "diff", "double_diff"):
            dtype, unpacked = ("<f4", I32) if role in ("data", "diff") else ("<f8", I64)
            if wire not in (LEN, unpacked):
                other = "c3d" if schema == "bvlc" else "bvlc"
                raise WireError(f"blob field {field} ({role} in the {schema} schema) has wire type "
                                f"{WIRE_NAMES[wire]}; is the file in the {other} schema?", pos)
            if not role.endswith("data"):  # gradients: validated, not kept
                pos = _skip_run(buf, pos, stop, field, wire, value, nxt)
                continue
            if wire == LEN:
                chunks.append(packed_array(buf, value, nxt, dtype))
            else:
                values, nxt = unpacked_run(buf, value, stop, (field << 3) | wire, dtype)
                chunks.append(values)
        elif role == "shape":
            if wire != LEN:
                raise WireError(f"blob field 7 (shape) has wire type {WIRE_NAMES[wire]}", pos)
            shape = _parse_shape(buf, value, nxt)
        elif role is not None:  # a legacy dimension
            if wire != VARINT:
                raise WireError(f"blob field {field} ({role}) has wire type {WIRE_NAMES[wire]}", pos)
            dims[role] = as_int64(value)
        pos = nxt
    if not chunks:
        data = np.empty(0, dtype=np.float32)
    elif len(chunks) == 1:
        data = chunks[0].astype(np.float32, copy=False)
    else:
        data = np.concatenate(chunks).astype(np.float32, copy=False)
    if shape is not None:
        axes = tuple(shape)
    elif dims:
        axes = tuple(dims.get(axis, 0) for axis in _LEGACY_AXES[schema])
    else:
        axes = (data.size,)
    if any(axis < 0 for axis in axes):
        raise WireError(f"blob with negative dimension {axes}", start)
    if math.prod(axes) != data.size:
        raise WireError(f"blob of shape {axes} needs {math.prod(axes)} values but holds {data.size}", start)
    return data.reshape(axes)


def _make_layer(buf, names, type_name: str, blobs, schema: str) -> CaffeLayer:
    name = read_string(buf, *names[-1]) if names else ""
    arrays = []
    for index, (start, stop) in enumerate(blobs):
        try:
            arrays.append(parse_blob(buf, start, stop, schema))
        except WireError as error:
            raise WireError(f"layer {name!r}, blob {index}: {error.args[0]}", error.position) from None
    return CaffeLayer(name, type_name, tuple(arrays))


def decode_net(data, schema: str) -> CaffeNet:
    """A NetParameter's name and layers, every blob decoded with `schema`."""
    net = _fields(data, 0, len(data), {1: LEN, 2: LEN, 100: LEN})
    if net[2] and net[100]:
        raise WireError("the net has both V1 'layers' and current 'layer' fields, which Caffe rejects", 0)
    layers = []
    for start, stop in net[2]:
        names, layer_type, blobs = _v1_layer(data, start, stop)
        layers.append(_make_layer(data, names, _type_name(layer_type, schema), blobs, schema))
    for start, stop in net[100]:
        layer = _fields(data, start, stop, {1: LEN, 2: LEN, 7: LEN})
        type_name = read_string(data, *layer[2][-1]) if layer[2] else ""
        layers.append(_make_layer(data, layer[1], type_name, layer[7], schema))
    name = read_string(data, *net[1][-1]) if net[1] else ""
    return CaffeNet(name, schema, tuple(layers))


def decode_blob(data, schema: str | None) -> tuple[np.ndarray, str]:
    """A lone BlobProto (a .binaryproto) and its schema, detected when `schema` is None (BVLC if unclear)."""
    schema = schema or blob_evidence(data, 0, len(data)) or "bvlc"
    return parse_blob(data, 0, len(data), schema), schema
