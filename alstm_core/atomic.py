"""Files written whole or not at all: a temporary file in the target's folder, then ``os.replace``.

A run killed mid-write (or a full disk) leaves the previous file, or none, never a truncated one; the
temporary file is removed when writing fails. The project's JSON, text, image, report and checkpoint
files go through here (checkpoints add an fsync, `reproduce.runs.checkpoint`); HDF5 feature files have
their own commit protocol (`fuel_datasets.layout`), and the highlight video is encoded to a temporary
file and renamed the same way.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from typing import IO, Any

from alstm_core.disk import is_disk_full


def write_atomically(path: str | os.PathLike, write: Callable[[IO], Any], *, binary: bool = False,
                     fsync: bool = False) -> str:
    """Call ``write(file)`` on a temporary file beside ``path`` (its folder is created), then rename it
    to ``path``. Returns ``path`` as a string."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:   # torch.save reports a failed write as a RuntimeError
        if is_disk_full(exc):
            raise OSError(errno.ENOSPC, "the disk is full: it could not be written, and any previous "
                          "version is kept; free some space and run the same command again", path) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_json(path: str | os.PathLike, payload: Any, *, indent: int = 2, sort_keys: bool = False) -> str:
    """``payload`` as indented JSON with a final newline, atomically."""
    def write(f):
        json.dump(payload, f, indent=indent, sort_keys=sort_keys)
        f.write("\n")
    return write_atomically(path, write)


def write_text(path: str | os.PathLike, text: str) -> str:
    return write_atomically(path, lambda f: f.write(text))


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    return write_atomically(path, lambda f: f.write(data), binary=True)
