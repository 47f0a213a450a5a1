"""Caffe weight (`.caffemodel`) and mean (`.binaryproto`) files, read without Caffe.

A `.caffemodel` is a serialized `NetParameter`; a `.binaryproto` mean file is one `BlobProto`. The BVLC
and C3D-v1.0 schemas number their fields differently (`caffe_pb.py`); the schema is detected from the
file, or taken from the network being loaded when the file does not tell (no blob holds data).

The wire reader (`protowire.py`) treats the file as untrusted; every failure is a `CaffeModelError` that
names the file. Blob arrays are views of the file's buffer where possible (no copy of the weights).
Loading into a network (``caffenet.CaffeSequential``: C3D, VGG19) is by Caffe layer name with shape
checks, all or nothing, and leaves a ``caffenet.WeightsInfo`` on it (re-exported here). A C3D stored by
BVLC Caffe (R-C3D's) loads its convolutions and whichever fc layers it has (`copy_trained_layers`).
Snapshots are written by `writer.py`.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from caffe_models.caffe_pb import SCHEMAS, CaffeLayer, CaffeNet, decode_blob, decode_net, detect_schema
from caffe_models.caffenet import CaffeSequential, RandomWeightsWarning, WeightsInfo
from caffe_models.errors import CaffeModelError
from caffe_models.protowire import WireError

__all__ = ["CaffeLayer", "CaffeNet", "WeightsInfo", "parse_net", "parse_mean", "load_mean", "load_caffemodel",
           "match_layers", "copy_trained_layers", "file_sha256"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def parse_net(data, schema: str | None = None, *, default_schema: str = "bvlc",
              source: str = "<bytes>") -> CaffeNet:
    """Parse a serialized NetParameter (the content of a .caffemodel).

    `schema`: "bvlc", "c3d" or None to detect it (falling back to `default_schema`). `data` is bytes,
    bytearray or memoryview; the returned arrays share its memory where the file stores packed floats.
    """
    for value in (schema, default_schema):
        if value is not None and value not in SCHEMAS:
            raise CaffeModelError(f"unknown Caffe schema {value!r}; use one of {SCHEMAS}")
    if bytes(data[:8]) == _HDF5_MAGIC:
        raise CaffeModelError(f"{source}: an HDF5 Caffe snapshot (.caffemodel.h5) is not supported; "
                              "use the binary .caffemodel of the release")
    try:
        if schema is None:
            evidence = detect_schema(data)
            if len(evidence) > 1:
                raise CaffeModelError(f"{source}: its blobs mix the BVLC and C3D-v1.0 layouts; pass "
                                      "schema='bvlc' or schema='c3d' if you know which one it is")
            schema = evidence.pop() if evidence else default_schema
        return decode_net(data, schema)
    except WireError as error:
        raise CaffeModelError(f"{source}: not a valid Caffe weight file: {error} (a .caffemodel is binary "
                              "protobuf; a text .prototxt holds no weights)") from None


def parse_mean(data, schema: str | None = None, *, source: str = "<bytes>") -> np.ndarray:
    """The mean blob of a .binaryproto (one BlobProto), float32, without its leading num = 1 axis.

    C3D's `sport1m_train16_128_mean.binaryproto` gives (3, 16, 128, 171) (channels BGR, length, height,
    width); a BVLC image mean gives (3, H, W).
    """
    if schema is not None and schema not in SCHEMAS:
        raise CaffeModelError(f"unknown Caffe schema {schema!r}; use one of {SCHEMAS}")
    try:
        mean, _ = decode_blob(data, schema)
    except WireError as error:
        raise CaffeModelError(f"{source}: not a valid .binaryproto mean file: {error}") from None
    if mean.size == 0:
        raise CaffeModelError(f"{source}: the mean blob holds no values")
    if mean.ndim < 2 or mean.shape[0] != 1:
        raise CaffeModelError(f"{source}: expected one mean blob (num = 1) but its shape is {mean.shape}")
    return np.array(mean[0], dtype=np.float32)  # a copy: the caller owns it


def _read_file(path) -> tuple[bytearray, str]:
    """The file's bytes (writable, so blob views of it are too) and its sha256."""
    path = Path(path)
    if not path.is_file():
        raise CaffeModelError(f"{path}: no such file")
    size = path.stat().st_size
    buf = bytearray(size)
    with open(path, "rb") as file:
        read = file.readinto(buf)
    if read != size:
        raise CaffeModelError(f"{path}: read {read} of {size} bytes; was the file changed while reading?")
    return buf, hashlib.sha256(buf).hexdigest()


def output_width(path, layers: Sequence[str] = ("fc8", "fc8-1")) -> int | None:
    """The outputs of the first of ``layers`` (by Caffe name) in the weight file ``path``, None when the
    file has none of them: how many classes a fine-tuned network scores. Reads only what it parses (the
    file is memory-mapped), so asking costs little beside loading it."""
    import mmap

    path = Path(path)
    if not path.is_file():
        raise CaffeModelError(f"{path}: no such file")
    with open(path, "rb") as file:
        if path.stat().st_size == 0:
            return None
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        net = parse_net(memoryview(mapped), source=str(path))
        widths = {layer.name: _outputs(layer) for layer in net.layers if layer.name in layers and layer.blobs}
        del net
    finally:
        try:
            mapped.close()
        except BufferError:                # a view of it is still alive somewhere: the GC closes it
            pass
    return next((widths[name] for name in layers if name in widths), None)


def _outputs(layer: CaffeLayer) -> int:
    """An inner-product layer's outputs: its bias's size, else its weights' first dimension other than the
    leading 1s that V1 and C3D-v1.0 blobs carry ((1, 1, out, in), (1, 1, 1, out, in))."""
    if len(layer.blobs) > 1:
        return int(layer.blobs[1].size)
    dims = [d for d in layer.blobs[0].shape if d != 1]
    return int(dims[0]) if dims else 1


def file_sha256(path) -> str:
    """The sha256 of a file (weights or mean), as extraction records it."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise CaffeModelError(f"{path}: cannot be read ({error.strerror})") from None
    return digest.hexdigest()


def load_mean(path, schema: str | None = None) -> np.ndarray:
    """Read a .binaryproto mean file; see `parse_mean`."""
    buf, _ = _read_file(path)
    return parse_mean(buf, schema, source=str(path))


def _drop_leading_ones(shape) -> tuple[int, ...]:
    """Caffe's legacy blobs pad shapes on the left to 4 (BVLC) or 5 (C3D) axes: (4096,) is (1, 1, 1, 4096)."""
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _blob_problems(name: str, shapes, wanted) -> list[str]:
    """What keeps a file layer's blobs (`shapes`) from a network layer's (`wanted`): count, then shapes."""
    if len(shapes) != len(wanted):
        return [f"layer {name!r}: the file has {len(shapes)} blobs {shapes}, the network expects "
                f"{len(wanted)} {wanted}"]
    kinds = ("weight", "bias", "blob 2", "blob 3")[:len(shapes)]
    return [f"layer {name!r}: {kind} shape {tuple(have)} in the file, {tuple(want)} in the network"
            for kind, have, want in zip(kinds, shapes, wanted, strict=False)
            if _drop_leading_ones(have) != _drop_leading_ones(want)]


def match_layers(expected, net: CaffeNet, aliases=MappingProxyType({}), rename=None, *,
                 source: str = "the file", target: str = "the network") -> dict[str, tuple[np.ndarray, ...]]:
    """Map a file's weights onto a network's layers by name, checking every shape.

    `expected`: {layer: (weight shape, bias shape)} of the network; `aliases`: the network's names for
    release names (C3D's `fc6-1` is `fc6`); `rename`: the caller's own {file name: network name}, applied
    first. Shapes match when equal after dropping leading axes of size 1 (Caffe's legacy 4-D/5-D blobs).
    Every missing, extra or mismatched layer is reported in one CaffeModelError, with both shapes.
    """
    rename = rename or {}
    found: dict[str, tuple[np.ndarray, ...]] = {}
    seen = set()
    problems = []
    for layer in net.layers:
        if not layer.blobs:
            continue  # ReLU, pooling, data, softmax…
        renamed = rename.get(layer.name, layer.name)
        name = aliases.get(renamed, renamed)
        shapes = tuple(blob.shape for blob in layer.blobs)
        if name in seen:
            problems.append(f"layer {name!r} appears twice in the file")
            continue
        seen.add(name)
        if name not in expected:
            problems.append(f"extra layer {layer.name!r} with blob shapes {shapes} (the network has no such "
                            "layer; pass rename={...} to map it)")
        else:
            mismatched = _blob_problems(name, shapes, expected[name])
            problems += mismatched
            if not mismatched:
                found[name] = layer.blobs
    if not any(layer.blobs for layer in net.layers):
        raise CaffeModelError(f"{source} holds no layer with weights; is it a .caffemodel of the release?")
    problems += [f"missing layer {name!r} (the network expects blob shapes {shapes})"
                 for name, shapes in expected.items() if name not in seen]
    if problems:
        raise CaffeModelError(f"{source} does not match {target}: " + "; ".join(problems))
    return found


def copy_trained_layers(expected, net: CaffeNet, required, aliases=MappingProxyType({}), rename=None, *,
                        source: str = "the file", target: str = "the network"
                        ) -> tuple[dict[str, tuple[np.ndarray, ...]], list[str]]:
    """Caffe's `Net::CopyTrainedLayersFrom`: ({network layer: blobs}, [file layers ignored]).

    Layers are matched by name (after `rename` and `aliases`, as in `match_layers`); a file layer the
    network lacks is ignored, a network layer the file lacks keeps its values, a matched layer whose
    blobs differ is an error. Unlike Caffe, every layer of `required` must be in the file. All
    problems are reported in one CaffeModelError line.
    """
    rename = rename or {}
    if not any(layer.blobs for layer in net.layers):
        raise CaffeModelError(f"{source} holds no layer with weights; is it a .caffemodel of the release?")
    found: dict[str, tuple[np.ndarray, ...]] = {}
    seen: set[str] = set()
    ignored, problems = [], []
    for layer in net.layers:
        if not layer.blobs:
            continue
        renamed = rename.get(layer.name, layer.name)
        name = aliases.get(renamed, renamed)
        if name not in expected:
            ignored.append(layer.name)
        elif name in seen:
            problems.append(f"layer {name!r} appears twice in the file")
        else:
            seen.add(name)
            mismatched = _blob_problems(name, tuple(blob.shape for blob in layer.blobs), expected[name])
            problems += mismatched
            if not mismatched:
                found[name] = layer.blobs
    missing = [name for name in required if name not in seen]
    if missing:
        have = [layer.name for layer in net.layers if layer.blobs]
        problems.insert(0, f"it lacks layer{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                           f"(its layers with weights: {', '.join(have)})")
    if problems:
        raise CaffeModelError(f"{source} does not match {target}: " + "; ".join(problems))
    return found, ignored


def load_caffemodel(net: CaffeSequential, path, *, rename=None, schema: str | None = None) -> WeightsInfo:
    """Load a .caffemodel into `net` (C3D or VGG19) by Caffe layer name, all or nothing.

    The schema is detected from the file, or taken from the network (C3D: "c3d") when the file does not
    tell; `schema` forces it. Returns the WeightsInfo also stored as `net.weights`; its `layers` are the
    layers loaded.

    A file in the release's schema must match the network exactly (`match_layers`). A C3D in BVLC's
    schema, such as R-C3D's `activitynet_iter_30000_3fps.caffemodel` (V2 `Convolution` layers with 5-D
    `shape` blobs, conv1a … conv5b, fc6, then detection layers), is copied as Caffe copies trained
    layers (`copy_trained_layers`): every convolution must be there, fc6/fc7/fc8 (or fc6-1/fc7-1/fc8-1)
    load when present, other layers are ignored. A warning then says what was loaded, what was ignored,
    and which layers keep random weights (a RandomWeightsWarning when some do).
    """
    buf, digest = _read_file(path)
    caffe = parse_net(buf, schema, default_schema=net.caffe_schema, source=str(path))
    params = net.caffe_parameters()
    expected = {name: tuple(tuple(p.shape) for p in group) for name, group in params.items()}
    target = type(net).__name__ + " as built"
    ignored: list[str] = []
    if net.caffe_schema == "c3d" and caffe.schema == "bvlc":  # a C3D trained with BVLC Caffe (R-C3D's)
        convolutions = [name for name in expected if name.startswith("conv")]
        found, ignored = copy_trained_layers(expected, caffe, convolutions, net.caffe_aliases, rename,
                                             source=str(path), target=target)
    else:
        found = match_layers(expected, caffe, net.caffe_aliases, rename, source=str(path), target=target)
    with torch.no_grad():
        for name, blobs in found.items():
            for param, blob in zip(params[name], blobs, strict=True):
                param.copy_(torch.from_numpy(blob.reshape(param.shape)))
    info = WeightsInfo(Path(path).name, digest, caffe.schema, tuple(found), str(Path(path).resolve()))
    net.weights = info
    kept = [name for name in expected if name not in found]
    if kept or ignored:
        loaded = ", ".join(found)
        message = f"{path}: loaded {loaded}"
        if kept:
            message += (f"; {', '.join(kept)} {'are' if len(kept) > 1 else 'is'} not in the file and keep "
                        "their random initialisation: their features are not real")
        if ignored:
            message += (f"; file layers not in {type(net).__name__}, ignored as Caffe does: "
                        f"{', '.join(ignored)}")
        warnings.warn(message, RandomWeightsWarning if kept else UserWarning, stacklevel=2)
    return info
