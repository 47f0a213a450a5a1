"""Protocol Buffers wire format, read defensively from untrusted bytes.

Only what Caffe's messages need: varints, 32/64-bit fixed values, length-delimited fields, and packed or
unpacked repeated floats and doubles. The input is never trusted:

- every length is compared with the bytes that remain before anything is sliced, so no array is ever
  larger than the bytes it is read from (np.frombuffer views, copies of at most that size);
- every loop advances by at least one byte, so no input can make the reader spin;
- varints longer than 10 bytes, group wire types (which Caffe never writes) and field number 0 are errors.

Positions are indices into one buffer (bytes, bytearray or memoryview); messages are (start, stop) ranges of
it, so nested messages cost no copies. Errors are `WireError` with the byte position; the callers in
`caffemodel.py` turn them into `CaffeModelError` naming the file.
"""

from __future__ import annotations

import numpy as np

VARINT, I64, LEN, I32 = 0, 1, 2, 5
WIRE_NAMES = ("varint", "64-bit", "length-delimited", "start-group", "end-group", "32-bit", "invalid",
              "invalid")
_MAX_VARINT_BYTES = 10
# Unpacked repeated values are scanned in blocks that double in size, so a run of n values costs O(n)
# vectorised work however the runs are laid out in the file.
_FIRST_BLOCK = 64


class WireError(ValueError):
    """Malformed wire data at byte `position` of the buffer."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} (at byte {position})")
        self.position = position


def read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """The unsigned varint at `pos` and the position after it."""
    result = 0
    shift = 0
    start = pos
    while pos < end:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if pos - start >= _MAX_VARINT_BYTES:
            raise WireError("varint longer than 10 bytes", start)
    raise WireError("truncated varint", start)


def as_int64(value: int) -> int:
    """Two's-complement reading of a varint, as protobuf stores negative int32/int64 values."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def next_field(buf, pos: int, end: int) -> tuple[int, int, int, int]:
    """(field number, wire type, value, next position) of the field starting at `pos`.

    `value` is the integer for a varint, and the payload's start position for the other wire types (the
    payload ends where the next field starts: [value, next position)).
    """
    tag_pos = pos
    tag, pos = read_varint(buf, pos, end)
    field, wire = tag >> 3, tag & 7
    if field == 0:
        raise WireError("field number 0", tag_pos)
    if wire == VARINT:
        value, pos = read_varint(buf, pos, end)
        return field, wire, value, pos
    if wire == LEN:
        length, pos = read_varint(buf, pos, end)
        if length > end - pos:
            raise WireError(f"field {field} declares {length} bytes but only {end - pos} remain", tag_pos)
        return field, wire, pos, pos + length
    if wire in (I32, I64):
        size = 4 if wire == I32 else 8
        if size > end - pos:
            raise WireError(f"truncated {WIRE_NAMES[wire]} value of field {field}", tag_pos)
        return field, wire, pos, pos + size
    raise WireError(f"wire type {wire} ({WIRE_NAMES[wire]}) of field {field} is not supported",
                    tag_pos)


def read_string(buf, start: int, stop: int) -> str:
    try:
        return bytes(buf[start:stop]).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("string that is not UTF-8", start) from None


def packed_array(buf, start: int, stop: int, dtype: str) -> np.ndarray:
    """A read-only (or buffer-sharing) view of a packed repeated float ('<f4') or double ('<f8') field."""
    width = np.dtype(dtype).itemsize
    if (stop - start) % width:
        raise WireError(f"packed field of {stop - start} bytes is not a whole number of {width}-byte values",
                        start)
    return np.frombuffer(buf, dtype=dtype, count=(stop - start) // width, offset=start)


def packed_varints(buf, start: int, stop: int) -> list[int]:
    values = []
    pos = start
    while pos < stop:
        value, pos = read_varint(buf, pos, stop)
        values.append(value)
    return values


def run_length(buf, pos: int, end: int, tag_byte: int, width: int) -> int:
    """How many unpacked values of one field follow each other, the first one's payload starting at `pos`.

    An unpacked repeated fixed-width field is a sequence of records (tag byte, value); the run ends at the
    first record with another tag, or where fewer than a whole record remain.
    """
    stride = width + 1
    u8 = np.frombuffer(buf, dtype=np.uint8)
    count = 1
    p = pos + width  # the tag byte of the second record
    block = _FIRST_BLOCK
    while True:
        n = min(block, (end - p) // stride)
        if n <= 0:
            return count
        mismatch = np.flatnonzero(u8[p : p + n * stride : stride] != tag_byte)
        if mismatch.size:
            return count + int(mismatch[0])
        count += n
        p += n * stride
        block *= 2


def unpacked_run(buf, pos: int, end: int, tag_byte: int, dtype: str) -> tuple[np.ndarray, int]:
    """The values of a run of unpacked records (see `run_length`) and the position after the run."""
    width = np.dtype(dtype).itemsize
    count = run_length(buf, pos, end, tag_byte, width)
    stride = width + 1
    u8 = np.frombuffer(buf, dtype=np.uint8)
    values = np.empty(count, dtype=dtype)
    values[0] = np.frombuffer(buf, dtype=dtype, count=1, offset=pos)[0]
    records = u8[pos + width : pos + width + (count - 1) * stride].reshape(count - 1, stride)  # (n-1, 1+w)
    values[1:] = np.ascontiguousarray(records[:, 1:]).view(dtype).ravel()
    return values, pos + width + (count - 1) * stride
