"""Small Caffe files written by the protobuf package itself, for the tests of caffe_models' own reader.

Message classes are declared at run time (descriptor_pb2) with the field numbers of each schema, packed or
not, so the bytes come from an encoder that shares no code with the reader under test.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64, "float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE,
            "string": _F.TYPE_STRING}

# message: "field number type" entries; a type ending in * is repeated, one that is not a scalar a message.
_V0 = "name 1 string, type 2 string, blobs 50 BlobProto*"
_V1 = "layer 1 V0LayerParameter, bottom 2 string*, top 3 string*, name 4 string, type 5 int32, " \
      "blobs 6 BlobProto*, blobs_lr 7 float*"
_SCHEMAS = {
    "bvlc": {
        "BlobShape": "dim 1 int64*",
        "BlobProto": "num 1 int32, channels 2 int32, height 3 int32, width 4 int32, data 5 float*, "
                     "diff 6 float*, shape 7 BlobShape, double_data 8 double*, double_diff 9 double*",
        "V0LayerParameter": _V0,
        "V1LayerParameter": _V1,
        "LayerParameter": "name 1 string, type 2 string, bottom 3 string*, top 4 string*, blobs 7 BlobProto*",
        "NetParameter": "name 1 string, layers 2 V1LayerParameter*, input 3 string*, input_dim 4 int32*, "
                        "layer 100 LayerParameter*",
    },
    "c3d": {
        "BlobProto": "num 1 int32, channels 2 int32, length 3 int32, height 4 int32, width 5 int32, "
                     "data 6 float*, diff 7 float*",
        "V0LayerParameter": _V0,
        "V1LayerParameter": _V1,
        "NetParameter": "name 1 string, layers 2 V1LayerParameter*, input 3 string*, input_dim 4 int32*",
    },
}

# V1 enum numbers used by the tests (they differ between the schemas above 29).
V1_CONVOLUTION, V1_INNER_PRODUCT, V1_POOLING, V1_RELU = 4, 14, 17, 18
C3D_CONVOLUTION3D, C3D_POOLING3D = 30, 31
BVLC_ARGMAX, BVLC_THRESHOLD = 30, 31


def messages(schema: str, packed: bool = True) -> dict[str, type]:
    """{message name: class} of `schema`, with repeated numbers packed or not."""
    proto = descriptor_pb2.FileDescriptorProto(name=f"caffe_{schema}_{int(packed)}.proto", package="caffe",
                                               syntax="proto2")
    for message_name, fields in _SCHEMAS[schema].items():
        message = proto.message_type.add(name=message_name)
        for entry in fields.split(", "):
            name, number, kind = entry.split()
            repeated = kind.endswith("*")
            kind = kind.rstrip("*")
            field = message.field.add(name=name, number=int(number),
                                      label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
                if repeated and kind != "string":
                    field.options.packed = packed
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".caffe.{kind}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}"))
            for name in _SCHEMAS[schema]}


def legacy_shape(shape, axes: int) -> tuple[int, ...]:
    """Caffe's legacy blob dimensions: the shape padded on the left with ones to `axes` axes."""
    return (1,) * (axes - len(shape)) + tuple(shape)


def fill_blob(blob, array: np.ndarray, schema: str, *, legacy: bool = False, double: bool = False) -> None:
    array = np.asarray(array)
    if schema == "c3d":
        blob.num, blob.channels, blob.length, blob.height, blob.width = legacy_shape(array.shape, 5)
    elif legacy:
        blob.num, blob.channels, blob.height, blob.width = legacy_shape(array.shape, 4)
    else:
        blob.shape.dim.extend(array.shape)
    values = array.ravel().tolist()
    if double:
        blob.double_data.extend(values)
    else:
        blob.data.extend(values)


def net_bytes(layers, *, schema: str = "bvlc", style: str = "v1", packed: bool = True, legacy: bool = False,
              double: bool = False, name: str = "net") -> bytes:
    """A serialized NetParameter of `layers`: [(name, type, [arrays])].

    `style`: "new" (the current `layer` field, type a string), "v1" (`layers`, type an enum number) or
    "v0" (a V1 entry wrapping a V0 layer, type a string).
    """
    classes = messages(schema, packed)
    net = classes["NetParameter"](name=name)
    for layer_name, layer_type, arrays in layers:
        if style == "new":
            layer = net.layer.add(name=layer_name, type=layer_type)
        elif style == "v1":
            layer = net.layers.add(name=layer_name, type=layer_type)
            layer.blobs_lr.extend([1.0] * len(arrays))  # a field the reader skips
        else:
            layer = net.layers.add().layer
            layer.name, layer.type = layer_name, layer_type
        for array in arrays:
            fill_blob(layer.blobs.add(), array, schema, legacy=legacy, double=double)
    return net.SerializeToString()


def mean_bytes(array: np.ndarray, schema: str) -> bytes:
    """A .binaryproto: one blob with num = 1 in front of `array`'s shape."""
    blob = messages(schema)["BlobProto"]()
    fill_blob(blob, np.asarray(array)[None], schema, legacy=True)
    return blob.SerializeToString()


def network_layers(net, *, names=None, style: str = "v1", schema: str = "bvlc", rng=None) -> list:
    """[(release name, type, [weight, bias])] for a C3D/VGG19 `net`, with random float32 values.

    `names` maps module names to the file's names (C3D's `fc6` → `fc6-1`).
    """
    names = names or {}
    layers = []
    for name, params in net.caffe_parameters().items():
        arrays = [rng.standard_normal(tuple(p.shape)).astype(np.float32) * 0.5 for p in params]
        if style in ("new", "v0"):
            kind = "Convolution" if name.startswith("conv") else "InnerProduct"
        elif name.startswith("conv"):
            kind = C3D_CONVOLUTION3D if schema == "c3d" else V1_CONVOLUTION
        else:
            kind = V1_INNER_PRODUCT
        layers.append((names.get(name, name), kind, arrays))
        if not name.startswith("fc8"):
            layers.append((f"relu_{name}", "ReLU" if style in ("new", "v0") else V1_RELU, []))
    return layers
