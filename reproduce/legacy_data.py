"""Legacy Fuel files where a command expects our layout: converted once, beside the original.

`alstm train` and `alstm evaluate` read the project's layout (row tables, frame grids). Given a Fuel
``H5PYDataset`` file they convert it with `fuel_datasets.legacy.convert_legacy` and its defaults
(sources keep their names, one row per 16 frames, splits named train/valid/test kept, class names
``class_<k>``) into ``<name>.alstm.h5`` in the same folder, and read that. The conversion commits video
by video, so an interrupted one continues on the next call, and a finished one is reused. Other
settings (renamed sources, strides, split names, class names) are `alstm dataset convert`'s flags.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fuel_datasets.errors import DatasetError
from fuel_datasets.layout import is_feature_layout, open_h5
from reproduce.errors import ReproduceError


def converted_path(path: str | os.PathLike) -> Path:
    """Where the conversion of the legacy file ``path`` lives: ``<stem>.alstm.h5`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.alstm.h5")


def readable_data(path: str, notice: Callable[[str], None] | None = None) -> str:
    """``path`` itself when it is in our layout (or cannot be opened: the reader then says why);
    otherwise the path of its conversion, made (or completed) first, with one ``notice`` line."""
    try:
        with open_h5(path) as h5file:
            if is_feature_layout(h5file) or "split" not in h5file.attrs:
                return path
    except DatasetError:       # a missing or damaged file: the dataset reader reports it in one line
        return path
    from fuel_datasets.legacy import convert_legacy

    out = converted_path(path)
    if not os.access(out.parent, os.W_OK):
        raise ReproduceError(f"{path} is a legacy Fuel file and its folder cannot take the converted copy; "
                             f"convert it elsewhere: alstm dataset convert {path} OUT.h5")
    counts = convert_legacy(path, out)
    if notice is not None:
        done = "converted" if counts.written else "already converted"
        notice(f"{path} is a legacy Fuel file: {done} to {out} (this project's layout, one row per 16 "
               "frames; `alstm dataset convert` offers other settings), which is read instead")
    return str(out)
