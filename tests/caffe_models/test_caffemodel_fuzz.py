"""The reader on untrusted bytes: truncated, mutated and random input gives a valid parse or a
CaffeModelError, never another exception, a hang, or memory out of proportion to the bytes given."""

from __future__ import annotations

import functools
import struct
import tracemalloc

import numpy as np
import pytest
from helpers.caffe_files import messages, net_bytes, network_layers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caffe_models import VGG19, CaffeModelError, parse_mean, parse_net

pytestmark = pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")
FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
SCHEMAS = st.sampled_from([None, "bvlc", "c3d"])
# Python objects per parsed layer cost about 100 bytes for a 2-byte empty layer: proportional, never more.
BYTES_FACTOR, BASE = 128, 512 * 1024


@functools.cache
def valid_files() -> tuple[bytes, ...]:
    net = VGG19(5, conv_channels=(2, 2, 2, 2, 2), fc_dim=4, image_size=32)
    rng = np.random.default_rng(0)
    files = []
    for schema, style, packed in (("bvlc", "v1", True), ("bvlc", "new", False), ("c3d", "v1", False),
                                  ("c3d", "v0", True)):
        layers = network_layers(net, style=style, schema=schema, rng=rng)
        files.append(net_bytes(layers, schema=schema, style=style, packed=packed, legacy=schema == "bvlc"))
    return tuple(files)


def parse_within_budget(data: bytes, schema, parser=parse_net):
    """Parse; the result (or None after a CaffeModelError) must stay within memory proportional to data."""
    tracemalloc.start()
    try:
        try:
            result = parser(data, schema)
        except CaffeModelError as error:
            assert str(error)
            result = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= BASE + BYTES_FACTOR * len(data), (peak, len(data))
    if result is not None and parser is parse_net:
        assert sum(blob.size for layer in result.layers for blob in layer.blobs) * 4 <= len(data)
    return result


@FUZZ
@given(data=st.binary(max_size=4096), schema=SCHEMAS)
def test_random_bytes(data, schema):
    parse_within_budget(data, schema)
    parse_within_budget(data, schema, parse_mean)


@FUZZ
@given(data=st.data(), schema=SCHEMAS)
def test_truncated_files(data, schema):
    valid = data.draw(st.sampled_from(valid_files()))
    cut = data.draw(st.integers(0, len(valid) - 1))
    parse_within_budget(valid[:cut], schema)


@FUZZ
@given(data=st.data(), schema=SCHEMAS)
def test_mutated_files(data, schema):
    valid = bytearray(data.draw(st.sampled_from(valid_files())))
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), min_size=1,
                               max_size=6))
    for position, value in edits:
        valid[position] = value
    parse_within_budget(bytes(valid), schema)


def test_valid_files_parse_whole():
    for data in valid_files():
        net = parse_within_budget(data, None)
        assert net is not None and sum(bool(layer.blobs) for layer in net.layers) == 19  # 16 conv + 3 fc


def test_declared_sizes_are_checked_before_allocating():
    classes = messages("bvlc")
    big = classes["NetParameter"]()
    blob = big.layer.add(name="bomb").blobs.add()
    blob.shape.dim.extend([2**31 - 1] * 3)  # ~1e28 values declared, 1 present
    blob.data.append(1.0)
    cases = {
        big.SerializeToString(): r"needs \d+ values but holds 1",
        b"\x12" + b"\xff" * 8 + b"\x3f": r"declares \d+ bytes but only 0 remain",  # a 2**62-byte layer
        b"\x08" + b"\xff" * 11: "varint longer than 10 bytes",
        b"\x13\x00": "wire type 3 \\(start-group\\)",
        b"\x00\x00": "field number 0",
        b"\xa2\x06\x09\x3a\x07\x2a\x05" + b"\x00" * 5: "not a whole number of 4-byte values",
    }
    legacy = classes["NetParameter"]()
    legacy.layer.add(name="bomb").blobs.add(num=-1, channels=1, height=1, width=1)
    cases[legacy.SerializeToString()] = r"negative dimension \(-1, 1, 1, 1\)"
    for data, message in cases.items():
        with pytest.raises(CaffeModelError, match=message):
            parse_net(data, "bvlc")
        assert parse_within_budget(data, "bvlc") is None


def test_floods_of_small_fields_cost_memory_in_proportion():
    layers = b"\x12\x00" * 50_000  # 50,000 empty V1 layers
    net = parse_within_budget(layers, None)
    assert len(net.layers) == 50_000
    values = np.arange(200_000, dtype=np.float32)
    unpacked = b"".join(b"\x2d" + struct.pack("<f", v) for v in values)  # BVLC data, one record each
    framed = b"\x3a" + _varint(len(unpacked)) + unpacked
    data = b"\xa2\x06" + _varint(len(framed)) + framed
    (layer,) = parse_within_budget(data, None).layers
    assert np.array_equal(layer.blobs[0], values)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)
