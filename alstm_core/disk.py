"""Room on the disk: whether a failed write failed for want of space, and how much space is free.

Every writer of the project (feature files, checkpoints, JSON, reports) asks these two questions the
same way, so that a full disk always ends with one line that names the file.
"""

from __future__ import annotations

import errno
import os

# What the writers' libraries say when the disk (or a quota) is full: the OS, HDF5, and torch's zip
# writer ("file write failed", raised while handling the OSError).
_FULL_TEXTS = ("No space left", "Disk quota exceeded", "file write failed")


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from or while handling, says the disk is full
    (ENOSPC) or a quota is reached (EDQUOT)."""
    while exc is not None:
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(
                text in str(exc) for text in _FULL_TEXTS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``folder``."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize
