"""The ground every other package stands on: the storage convention of feature files and the base of all
user errors. It imports nothing of the project, so `caffe_models` (which writes features) and
`fuel_datasets` (which reads them) share one definition without importing each other."""

from alstm_core.errors import UserError
from alstm_core.storage import (
    ATTENDED_STRIDE,
    CHUNK_FRAMES,
    FLIP_SUFFIX,
    LAYERS,
    SPLITS,
    TARGETS,
    VGG_FAMILIES,
    SourceName,
    parse_source,
    row_stride,
    source_name,
)

__all__ = ["ATTENDED_STRIDE", "CHUNK_FRAMES", "FLIP_SUFFIX", "LAYERS", "SPLITS", "TARGETS", "VGG_FAMILIES",
           "SourceName", "UserError", "parse_source", "row_stride", "source_name"]
