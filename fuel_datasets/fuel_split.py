"""Fuel's ``split`` attribute: the structured array by which an HDF5 file declares its splits.

Fuel's ``H5PYDataset`` (fuel/datasets/hdf5.py, docs/framework.md §4.1) reads a file's splits from one root
attribute, ``split``: a 1-D packed compound array with one row per (split, source) pair, fields

    split (S), source (S), start (<i8), stop (<i8), indices (object reference), available (bool),
    comment (S)

A row whose ``indices`` reference is non-null means "the examples listed in the referenced int
dataset" (``start``/``stop`` are ignored; Fuel's docs write -1); a null reference means
``slice(start, stop)``; an unavailable pair is ``(0, 0, null, False, b'.')``.

Fuel spells the scalar fields ``('start', numpy.int64, 1)``, which NumPy 2 reads as a (1,)-subarray, a
different HDF5 type from the files Fuel wrote; we write ``'<i8'`` and read either form.
"""

from __future__ import annotations

import h5py
import numpy as np

from fuel_datasets.errors import DatasetError


def split_array(split_dict: dict[str, dict[str, tuple]]) -> np.ndarray:
    """``H5PYDataset.create_split_array``: ``{split: {source: (start, stop[, ref[, comment]])}}``.

    Rows come in ``product(split order, sorted(sources))`` order; the string widths are the longest
    names, as Fuel computes them. Pairs missing from a split's dict become unavailable rows.
    """
    sources = sorted({source for per_split in split_dict.values() for source in per_split})
    if not split_dict or not sources:
        raise ValueError("a split array needs at least one split and one source")
    comments = [v[3] for d in split_dict.values() for v in d.values() if len(v) == 4 and v[3]]
    dtype = np.dtype([
        ("split", f"S{max(len(s.encode()) for s in split_dict)}"),
        ("source", f"S{max(len(s.encode()) for s in sources)}"),
        ("start", "<i8"), ("stop", "<i8"),
        ("indices", h5py.ref_dtype),
        ("available", np.bool_),
        ("comment", f"S{max([1] + [len(c.encode()) for c in comments])}"),
    ])
    rows = []
    for split, per_split in split_dict.items():
        for source in sources:
            value = per_split.get(source)
            if value is None:
                rows.append((split.encode(), source.encode(), 0, 0, h5py.Reference(), False, b"."))
                continue
            ref = value[2] if len(value) > 2 and value[2] is not None else h5py.Reference()
            comment = value[3] if len(value) > 3 and value[3] else "."
            rows.append((split.encode(), source.encode(), value[0], value[1], ref, True, comment.encode()))
    return np.array(rows, dtype=dtype)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | np.bytes_) else str(value)


def _scalar(value) -> int:
    # Fuel-era files hold a scalar; NumPy 2 reads `('start', int64, 1)` files as a (1,)-subarray.
    return int(np.ravel(value)[0])


def read_split_attribute(h5file: h5py.File) -> dict[str, dict[str, np.ndarray]]:
    """``{split: {source: sorted unique example indices (int64)}}`` for every *available* pair.

    Follows Fuel's reader: a non-null ``indices`` reference wins over ``start``/``stop``; the
    referenced list is sorted and de-duplicated, as ``Subset`` does.
    """
    if "split" not in h5file.attrs:
        raise DatasetError(f"{h5file.filename} has no Fuel 'split' attribute")
    array = np.asarray(h5file.attrs["split"])
    names = array.dtype.names or ()
    missing = {"split", "source", "start", "stop", "available"} - set(names)
    if missing:
        raise DatasetError(f"{h5file.filename}: the 'split' attribute lacks the fields {sorted(missing)}; "
                           "it is not a Fuel H5PYDataset split array")
    splits: dict[str, dict[str, np.ndarray]] = {}
    for row in np.atleast_1d(array):
        split, source = _text(row["split"]), _text(row["source"])
        per_split = splits.setdefault(split, {})
        if not bool(np.ravel(row["available"])[0]):
            continue
        ref = row["indices"] if "indices" in names else None
        if ref is not None and bool(ref):
            indices = np.unique(np.asarray(h5file[ref][()], dtype=np.int64).ravel())
        else:
            indices = np.arange(_scalar(row["start"]), _scalar(row["stop"]), dtype=np.int64)
        per_split[source] = indices
    return splits
