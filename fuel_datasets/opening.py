"""``open_dataset``: one entry point for reading a feature file, whichever of the two formats it is.

A file in this project's layout (``layout.FeatureDataset``) or a legacy Fuel ``H5PYDataset`` file
(``legacy.LegacyFuelDataset``, which shares its read interface). This module sits above both readers so
that neither needs the other: ``layout`` is the lowest layer, ``legacy`` builds on it.
"""

from __future__ import annotations

import os

from fuel_datasets.errors import DatasetError
from fuel_datasets.layout import FeatureDataset, file_format, open_h5
from fuel_datasets.legacy import LegacyFuelDataset


def open_dataset(path: str | os.PathLike, **legacy_options) -> FeatureDataset | LegacyFuelDataset:
    """A :class:`FeatureDataset`, or a ``LegacyFuelDataset`` for a Fuel ``H5PYDataset`` file.

    ``legacy_options`` go to the legacy reader (frame strides, fps, class names; see legacy.py).
    """
    h5file = open_h5(path)
    try:
        kind = file_format(h5file)
        if kind == "alstm":
            return FeatureDataset(path, h5file=h5file)
        if kind == "fuel":
            return LegacyFuelDataset(path, h5file=h5file, **legacy_options)
    except BaseException:
        h5file.close()
        raise
    h5file.close()
    raise DatasetError(f"{path} is an HDF5 file but neither a feature dataset nor a Fuel H5PYDataset "
                       "(no 'alstm_layout' or 'split' attribute)")
