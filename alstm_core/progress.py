"""Progress of long jobs: tqdm's bar on a terminal, plain lines elsewhere (a log file, a CI job, a pipe).

A bar redrawn with carriage returns turns a log into one endless line, so when the stream is not a
terminal `progress_bar` writes a line like ``extract: 12/40 video (30%), 41 s`` at most every
``interval`` seconds (and a last one at the end) instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any


def _number(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() else f"{value:.1f}"


class LineProgress:
    """tqdm's ``update`` / ``set_postfix_str`` / ``close`` / iteration, written as occasional lines."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, file: IO[str] | None = None, interval: float = 30.0,
                 leave: bool = True, clock=time.monotonic):
        self.iterable, self.desc, self.unit, self.file = iterable, desc, unit, file or sys.stderr
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.interval, self.clock = total, initial, interval, clock
        self.postfix, self.start = "", clock()
        self.last_line, self.closed, self.written = self.start, False, initial
        self.leave = leave                       # False: no closing line (a bar that tqdm would erase)

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.clock() - self.last_line >= self.interval:
            self._line()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self.postfix = text

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **values: Any) -> None:
        values = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self) -> None:
        self.last_line, self.written = self.clock(), self.n
        count = f"{_number(self.n)}/{_number(self.total)}" if self.total else _number(self.n)
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        prefix = f"{self.desc}: " if self.desc else ""
        print(f"{prefix}{count} {self.unit}{share}, {self.clock() - self.start:.0f} s{extra}", file=self.file,
              flush=True)

    def close(self) -> None:
        if self.leave and not self.closed and self.n != self.written:
            self._line()
        self.closed = True

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Silent(LineProgress):
    def _line(self) -> None:
        self.last_line, self.written = self.clock(), self.n


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", enabled: bool = True, initial: float = 0, file: IO[str] | None = None,
                 leave: bool = True, interval: float = 30.0):
    """A progress reporter on ``file`` (stderr by default): tqdm's bar when ``file`` is a terminal, a
    `LineProgress` when it is not, nothing shown when not ``enabled``. Use it like tqdm: as a context
    manager with ``update(n)``, or wrapping an iterable."""
    file = file or sys.stderr
    if not enabled:
        return _Silent(iterable, total=total, desc=desc, unit=unit, initial=initial, file=file)
    if getattr(file, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, file=file, leave=leave,
                    dynamic_ncols=True)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, file=file,
                        interval=interval, leave=leave)


def progress_message(text: str, file: IO[str] | None = None) -> None:
    """Print a line beside a progress bar without breaking it (tqdm's ``write`` on a terminal)."""
    file = file or sys.stderr
    if getattr(file, "isatty", lambda: False)():
        from tqdm import tqdm

        tqdm.write(text, file=file)
    else:
        print(text, file=file, flush=True)
