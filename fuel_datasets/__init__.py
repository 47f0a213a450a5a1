"""Feature datasets: the HDF5 layout (and legacy Fuel files), its writer, and the training/test streams.

``open_dataset`` and ``FeatureWriter`` are defined in ``layout`` / ``writer``; the streams (which import
torch) are imported on first use, so that reading a file does not load torch.
"""

from fuel_datasets.errors import DatasetError
from fuel_datasets.layout import FeatureDataset, open_dataset
from fuel_datasets.writer import FeatureWriter

_STREAMS = ("Batch", "TestWindows", "TrainWindows", "WindowSpec", "keep_batch")

__all__ = ["DatasetError", "FeatureDataset", "FeatureWriter", "open_dataset", *_STREAMS]


def __getattr__(name: str):
    if name in _STREAMS:
        from fuel_datasets import streams

        return getattr(streams, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
