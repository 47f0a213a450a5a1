"""Feature datasets: the HDF5 layout (and legacy Fuel files), its writer, and the training/test streams.

Modules, lowest first (each imports only those before it, never this package):
``errors``, ``fuel_split``, ``superblock``; ``layout`` (the file format and ``FeatureDataset``);
``video_check`` and ``writer`` (``FeatureWriter``); ``legacy`` (Fuel files); ``opening``
(``open_dataset``: our layout or a legacy file); then ``streams``, ``merge``, ``synthetic``,
``feature_inputs``, ``build`` and the annotation readers ``activitynet``, ``hollywood2``; ``info``
(``describe``: what a file holds).

One call per job, each returning typed results: ``describe`` (`DatasetInfo`), ``convert_legacy``
(`Conversion`), ``repair`` (`Repair`), ``build_activitynet`` / ``build_hollywood2`` (`BuildSummary`).

The streams (which import torch) are imported on first use, so that reading a file does not load torch.
"""

from fuel_datasets.build import BuildSummary, build_activitynet, build_hollywood2
from fuel_datasets.errors import DatasetError
from fuel_datasets.info import DatasetInfo, describe
from fuel_datasets.layout import FeatureDataset
from fuel_datasets.legacy import Conversion, convert_legacy
from fuel_datasets.opening import open_dataset
from fuel_datasets.repair import Repair, repair
from fuel_datasets.writer import FeatureWriter

_STREAMS = ("Batch", "TestWindows", "TrainWindows", "WindowSpec", "keep_batch")

__all__ = ["BuildSummary", "Conversion", "DatasetError", "DatasetInfo", "FeatureDataset", "FeatureWriter",
           "Repair", "build_activitynet", "build_hollywood2", "convert_legacy", "describe", "open_dataset",
           "repair",
           *_STREAMS]


def __getattr__(name: str):
    # streams.py imports torch; it imports the modules above, never this package, so this is no cycle
    if name in _STREAMS:
        from fuel_datasets import streams

        return getattr(streams, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
