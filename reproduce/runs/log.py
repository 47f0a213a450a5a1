"""A run's ``log.jsonl`` (and TensorBoard scalars when the package is installed)."""

from __future__ import annotations

import json
import math
import os
from typing import Any

from alstm_core.atomic import write_text


class RunLog:
    """``log.jsonl`` of a run folder (one JSON object per line, appended and flushed as written) plus
    TensorBoard scalars under ``tensorboard/`` when the optional ``tensorboard`` package imports.

    ``keep_until`` None starts a new log; an update count keeps the records up to it (a resumed run
    drops what was logged after its checkpoint, and a line torn by a kill)."""

    def __init__(self, out_dir: str, keep_until: int | None):
        self.path = os.path.join(out_dir, "log.jsonl")
        _truncate_log(self.path, keep_until)
        self.file = open(self.path, "a", encoding="utf-8")
        self.board = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            pass
        else:
            self.board = SummaryWriter(os.path.join(out_dir, "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        """One record; a NaN or infinite number is written as the string "nan" / "inf" (standard JSON)."""
        record = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in record.items()}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.board is not None:
            for key, value in record.items():
                if key not in ("kind", "iteration") and isinstance(value, (int, float)) and \
                        not isinstance(value, bool):
                    self.board.add_scalar(f"{record['kind']}/{key}", value, record["iteration"])

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()



def _truncate_log(path: str, keep_until: int | None) -> None:
    """Drop the records after update ``keep_until`` (and a torn last line); None starts a new log."""
    if keep_until is None or not os.path.exists(path):
        if os.path.exists(path):
            os.remove(path)
        return
    kept = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("iteration", 0) <= keep_until:
                kept.append(line if line.endswith("\n") else line + "\n")
    write_text(path, "".join(kept))


class NullLog:
    """The run log of the ranks other than 0: they compute the same records and write none."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
