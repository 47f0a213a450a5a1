"""Writing Caffe weight snapshots (`.caffemodel`) and C3D mean cubes (`.binaryproto`) without Caffe.

A snapshot is a serialized `NetParameter` holding, per layer with parameters, its name, its type and
its blobs (weights, then bias), in one of the two schemas the original tools read (field numbers in
`caffe_pb.py`; docs/formats.md §3, "Caffe weight and mean files"):

- ``"c3d-v1"``, read by the C3D v1.0 tools: ``NetParameter.layers`` (2) of V1 ``LayerParameter``
  (name 4, type 5 as the C3D enum, blobs 6); ``BlobProto`` num 1, channels 2, length 3, height 4,
  width 5, data 6 (packed float). Every blob carries all five dimensions, as C3D's `Blob::ToProto`
  writes them: a 3-D convolution (O, I, kT, kH, kW) as is; a bias (O,) as (1, 1, 1, 1, O); an inner
  product (N, K) as (1, 1, 1, N, K). Types: CONVOLUTION3D (30) and INNER_PRODUCT (14).
- ``"bvlc-v2"``, read by BVLC Caffe (and R-C3D's fork): ``NetParameter.layer`` (100) of
  ``LayerParameter`` (name 1, type 2 a string: "Convolution", "InnerProduct", blobs 7); ``BlobProto``
  data 5 (packed float), shape 7 (``BlobShape.dim`` 1, packed int64) equal to the tensor's shape.

Both tools copy trained layers **by name** (`Net::CopyTrainedLayersFrom`), so the names are the
network's Caffe layer names (C3D's ``conv1a`` … ``fc8``); ``layers`` selects or renames them. Fields
are written in field-number order, as protobuf does; the float data is streamed to the file, never
joined in memory. The write is atomic (`alstm_core.atomic`): a full disk leaves the previous file (or
none) and raises one `CaffeModelError` line naming the file.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from alstm_core.atomic import write_atomically
from caffe_models.errors import CaffeModelError
from caffe_models.protowire import LEN, VARINT

SCHEMAS = ("c3d-v1", "bvlc-v2")
_C3D_TYPES = {nn.Conv3d: 30, nn.Linear: 14}  # C3D v1.0 V1 enum: CONVOLUTION3D, INNER_PRODUCT
_BVLC_TYPES = {nn.Conv3d: "Convolution", nn.Conv2d: "Convolution", nn.Linear: "InnerProduct"}


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # two's complement, as protobuf writes negative int32/int64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Message:
    """A message being encoded: its parts (bytes or memoryviews of arrays) and their total size."""

    def __init__(self):
        self.parts: list = []
        self.size = 0

    def _add(self, part) -> None:
        self.parts.append(part)
        self.size += memoryview(part).nbytes

    def varint(self, field: int, value: int) -> _Message:
        self._add(_varint(field << 3 | VARINT) + _varint(value))
        return self

    def payload(self, field: int, data) -> _Message:
        """A length-delimited field: a string, packed numbers or raw bytes."""
        self._add(_varint(field << 3 | LEN) + _varint(memoryview(data).nbytes))
        if memoryview(data).nbytes:
            self._add(data)
        return self

    def message(self, field: int, child: _Message) -> _Message:
        self._add(_varint(field << 3 | LEN) + _varint(child.size))
        self.parts += child.parts
        self.size += child.size
        return self


def _float_data(tensor: torch.Tensor) -> memoryview:
    array = np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy(), dtype="<f4")
    return memoryview(array).cast("B")


def c3d_blob_dims(shape: tuple[int, ...]) -> tuple[int, ...]:
    """C3D v1.0's five blob dimensions (num, channels, length, height, width): ``shape`` padded on the
    left with ones (a bias (O,) is (1, 1, 1, 1, O), an inner product (N, K) is (1, 1, 1, N, K))."""
    if len(shape) > 5:
        raise CaffeModelError(f"a blob of shape {shape} has more than C3D's five dimensions")
    return (1,) * (5 - len(shape)) + tuple(shape)


def _blob(tensor: torch.Tensor, schema: str) -> _Message:
    shape = tuple(tensor.shape)
    blob = _Message()
    if schema == "c3d-v1":
        for field, dim in enumerate(c3d_blob_dims(shape), start=1):
            blob.varint(field, dim)  # num 1, channels 2, length 3, height 4, width 5
        return blob.payload(6, _float_data(tensor))
    blob.payload(5, _float_data(tensor))
    return blob.message(7, _Message().payload(1, b"".join(_varint(d) for d in shape)))


def _layer_type(module: nn.Module, name: str, schema: str):
    table = _C3D_TYPES if schema == "c3d-v1" else _BVLC_TYPES
    for cls, layer_type in table.items():
        if isinstance(module, cls):
            return layer_type
    if schema == "c3d-v1" and isinstance(module, nn.Conv2d):
        raise CaffeModelError(f"layer {name!r} is a 2-D convolution: VGG-19 is fine-tuned with BVLC Caffe; "
                              "write it with schema='bvlc-v2'")
    raise CaffeModelError(f"layer {name!r} is a {type(module).__name__}, which has no Caffe layer type here "
                          "(Conv3d, Conv2d and Linear do)")


def network_layers(net: nn.Module) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """{Caffe layer name: (module, blobs in Caffe's order)} of a network whose modules carry Caffe names.

    A `caffe_models` network (C3D, VGG19) gives its `caffe_parameters()`; any other model gives each
    module that owns parameters (weight, then bias), named by its module path.
    """
    if hasattr(net, "caffe_parameters"):
        return {name: (getattr(net, name), tuple(blobs)) for name, blobs in net.caffe_parameters().items()}
    found = {}
    for name, module in net.named_modules():
        params = dict(module.named_parameters(recurse=False))
        if params:
            ordered = [params.pop(key) for key in ("weight", "bias") if key in params]
            found[name] = (module, tuple(ordered + list(params.values())))
    return found


def _select(net: nn.Module, available: dict, layers) -> list[tuple[str, str]]:
    """[(network layer, name written)] in order: all layers, a subset, or a {layer: file name} map."""
    if layers is None:
        return [(name, name) for name in available]
    if isinstance(layers, str) or not isinstance(layers, (Mapping, Iterable)):
        raise CaffeModelError(f"layers must be layer names or a {{layer: name in the file}} map, got "
                              f"{layers!r}")
    pairs = list(layers.items()) if isinstance(layers, Mapping) else [(name, name) for name in layers]
    aliases = getattr(net, "caffe_aliases", {})
    chosen = []
    for given, written in pairs:
        layer = aliases.get(given, given)
        if layer not in available:
            raise CaffeModelError(f"the network has no layer {given!r} with parameters; its layers are "
                                  f"{', '.join(available)}")
        chosen.append((layer, str(written)))
    names = [written for _, written in chosen]
    if len(set(names)) != len(names):
        raise CaffeModelError(f"two layers would be written under one name: {names}")
    return chosen


def encode_caffemodel(net: nn.Module, *, schema: str = "c3d-v1", layers=None, name: str | None = None):
    """The NetParameter of ``net``'s parameters as a list of byte parts (see `save_caffemodel`)."""
    if schema not in SCHEMAS:
        raise CaffeModelError(f"unknown snapshot schema {schema!r}; use one of {', '.join(SCHEMAS)}")
    available = network_layers(net)
    netparam = _Message().payload(1, (name if name is not None else type(net).__name__).encode())
    for layer, written in _select(net, available, layers):
        module, blobs = available[layer]
        layer_type = _layer_type(module, layer, schema)
        message = _Message()
        if schema == "c3d-v1":
            message.payload(4, written.encode()).varint(5, layer_type)
            for blob in blobs:
                message.message(6, _blob(blob, schema))
            netparam.message(2, message)
        else:
            message.payload(1, written.encode()).payload(2, layer_type.encode())
            for blob in blobs:
                message.message(7, _blob(blob, schema))
            netparam.message(100, message)
    return netparam.parts


def _write(path, parts) -> str:
    def write(file):
        for part in parts:
            file.write(part)
    try:
        return write_atomically(path, write, binary=True, fsync=True)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise CaffeModelError(f"{os.fspath(path)}: cannot be written: the disk is full (any previous "
                                  "version is kept); free some space and run the same command "
                                  "again") from None
        raise CaffeModelError(f"{os.fspath(path)}: cannot be written ({error.strerror or error})") from None


def save_caffemodel(net: nn.Module, path, *, schema: str = "c3d-v1", layers=None,
                    name: str | None = None) -> str:
    """Write the parameters of ``net`` as a Caffe snapshot at ``path``; returns the path.

    ``schema``: "c3d-v1" (for the C3D v1.0 tools, e.g. ``<prefix>_iter_<N>`` of a C3D fine-tuning) or
    "bvlc-v2" (BVLC Caffe; VGG-19). ``layers``: None for every layer with parameters; layer names (in
    the order to write; a release alias such as ``fc6-1`` writes that layer under the alias); or
    ``{network layer: name in the file}``. ``name``: the NetParameter's name (default the class name).
    `caffemodel.load_caffemodel` reads both schemas back.
    """
    return _write(path, encode_caffemodel(net, schema=schema, layers=layers, name=name))


def save_mean(array, path) -> str:
    """Write a C3D volume mean as a C3D v1.0 `.binaryproto` (one BlobProto, num 1); returns the path.

    ``array``: (3, L, H, W) or (1, 3, L, H, W), channels BGR (C3D's 3×16×128×171), as
    `compute_volume_mean_from_list` writes it; `caffemodel.load_mean` reads it back as (3, L, H, W).
    """
    mean = np.asarray(array, dtype=np.float32)
    if mean.ndim == 5 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.ndim != 4:
        raise CaffeModelError(f"a C3D mean is (channels, length, height, width), got shape {np.shape(array)}")
    blob = _Message()
    for field, dim in enumerate((1, *mean.shape), start=1):
        blob.varint(field, dim)
    blob.payload(6, memoryview(np.ascontiguousarray(mean, dtype="<f4")).cast("B"))
    return _write(path, blob.parts)
