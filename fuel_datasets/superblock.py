"""Clearing the "open for write" flags that a killed HDF5 writer leaves in a file's superblock.

HDF5 (format v110 and later: superblock version 2 or 3) sets *file consistency flags* in the superblock
while a file is open for writing, and refuses to open a flagged file for writing again ("file is
already open for write (may use <h5clear file> ...)"). A writer that is killed never clears them.
``h5clear -s -i`` is the HDF Group's tool for this; it is not installed with h5py, so this module does
the same two edits, from the published file-format specification (superblock versions 2 and 3):

    offset  size  field
    0       8     signature  \\x89HDF\\r\\n\\x1a\\n
    8       1     superblock version (2 or 3)
    9       1     size of offsets (O)        10  1  size of lengths
    11      1     file consistency flags     (bit 0: open for write, bit 2: open for SWMR write)
    12      O     base address   12+O  O  superblock extension address
    12+2O   O     end-of-file address (EOA)  12+3O  O  root group object header address
    12+4O   4     Jenkins lookup3 checksum of the preceding bytes

1. the consistency flags become 0;
2. the EOA becomes max(stored EOA, size of the file): a SWMR writer flushes objects in dependency
   order but does not rewrite the superblock's EOA at every flush, so objects referenced by the
   file may lie past the stored EOA; without this the next writer would allocate over them.

The stored checksum is verified with our lookup3 before anything is written, so a file that this
module does not understand is never modified. Only call :func:`clear_write_flags` while holding the
writer's lock (see ``fuel_datasets.writer``): on a file that a live writer has open it would be wrong.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from fuel_datasets.errors import DatasetError

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


# lookup3.c's mix(): x -= y; x ^= rot(y, k); y += z, for these (x, y, z) and k; final(): x ^= y;
# x -= rot(y, k). Indices 0, 1, 2 are a, b, c.
_MIX = tuple(zip(((0, 2, 1), (1, 0, 2), (2, 1, 0)) * 2, (4, 6, 8, 16, 19, 4), strict=True))
_FINAL = tuple(zip(((2, 1), (0, 2), (1, 0)) * 2 + ((2, 1),), (14, 11, 25, 16, 4, 14, 24), strict=True))


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' ``hashlittle`` (lookup3.c), byte-wise, as HDF5's ``H5_checksum_lookup3``."""
    length = len(data)
    v = [(0xDEADBEEF + length + initval) & _MASK] * 3
    i = 0
    while length > 12:
        for j in range(3):
            v[j] = (v[j] + int.from_bytes(data[i + 4 * j:i + 4 * j + 4], "little")) & _MASK
        for (x, y, z), k in _MIX:
            v[x] = ((v[x] - v[y]) & _MASK) ^ _rot(v[y], k)
            v[y] = (v[y] + v[z]) & _MASK
        length -= 12
        i += 12
    if length == 0:
        return v[2]
    tail = data[i:i + length].ljust(12, b"\0")
    for j in range(3):
        v[j] = (v[j] + int.from_bytes(tail[4 * j:4 * j + 4], "little")) & _MASK
    for (x, y), k in _FINAL:
        v[x] = ((v[x] ^ v[y]) - _rot(v[y], k)) & _MASK
    return v[2]


def _read_superblock(handle, path) -> tuple[bytearray, int]:
    """(superblock bytes, size of offsets); DatasetError unless a checksummed v2/v3 superblock at 0."""
    head = bytearray(handle.read(12))
    if len(head) < 12 or bytes(head[:8]) != SIGNATURE:
        raise DatasetError(f"{path} is not an HDF5 file (no HDF5 signature at offset 0)")
    if head[8] not in (2, 3):
        raise DatasetError(f"{path} has an HDF5 superblock of version {head[8]}, which has no "
                           "consistency flags (only files written in format v110 or later do)")
    offsets = head[9]
    if offsets not in (2, 4, 8):
        raise DatasetError(f"{path}: unexpected HDF5 offset size {offsets}")
    block = head + bytearray(handle.read(4 * offsets + 4))
    size = 12 + 4 * offsets
    if len(block) != size + 4:
        raise DatasetError(f"{path} is truncated inside its HDF5 superblock")
    if lookup3(bytes(block[:size])) != struct.unpack("<I", block[size:size + 4])[0]:
        raise DatasetError(f"{path}: the HDF5 superblock checksum does not match; the file is damaged")
    return block, offsets


def write_flags(path: str | os.PathLike) -> int:
    """The superblock's file consistency flags (0 once every writer has closed the file; also 0 for
    the superblock versions 0 and 1 of older formats, on which HDF5 does not enforce them)."""
    with open(path, "rb") as handle:
        head = handle.read(9)
        if len(head) == 9 and head[:8] == SIGNATURE and head[8] in (0, 1):
            return 0
        handle.seek(0)
        block, _ = _read_superblock(handle, path)
    return block[11]


def clear_write_flags(path: str | os.PathLike) -> bool:
    """Clear the flags and raise the EOA to the file size (``h5clear -s -i``); False if already clear."""
    path = Path(path)
    with open(path, "r+b") as handle:
        block, offsets = _read_superblock(handle, path)
        if block[11] == 0:
            return False
        fmt = {2: "<H", 4: "<I", 8: "<Q"}[offsets]
        eoa_at = 12 + 2 * offsets
        eoa = struct.unpack(fmt, block[eoa_at:eoa_at + offsets])[0]
        block[11] = 0
        block[eoa_at:eoa_at + offsets] = struct.pack(fmt, max(eoa, os.fstat(handle.fileno()).st_size))
        size = 12 + 4 * offsets
        block[size:size + 4] = struct.pack("<I", lookup3(bytes(block[:size])))
        handle.seek(0)
        handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    return True
