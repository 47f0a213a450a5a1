"""User-facing errors of the dataset layer."""

from alstm_core.errors import UserError


class DatasetError(UserError):
    """A problem with a feature file or annotation (missing source, bad shape, NaN rows, not HDF5, ...)."""
