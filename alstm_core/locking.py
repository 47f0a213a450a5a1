"""One writer at a time: an exclusive ``flock`` on a file, held while the writer works.

Used by the feature-file writer (on the file itself: HDF5 drops its own lock in SWMR mode) and by
``alstm dataset build`` (on ``OUT.lock``). The lock goes with the process: a killed writer leaves no
lock behind, only (for a lock file) the empty file, which the next holder reuses.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager


def try_lock(path: str | os.PathLike) -> int | None:
    """Open (creating it, and its folder) and lock ``path`` exclusively; the descriptor to close to
    release it, or None when another process holds the lock."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def lock_file(path: str | os.PathLike, busy: Exception) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` for the ``with`` block, then remove the file;
    raise ``busy`` when another process holds it."""
    fd = try_lock(path)
    if fd is None:
        raise busy
    try:
        try:
            yield
        finally:
            if os.path.exists(path):          # still ours: removed however the block ended
                os.unlink(path)
    finally:
        os.close(fd)
