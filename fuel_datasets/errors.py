"""User-facing errors of the dataset layer."""


class DatasetError(Exception):
    """A problem with a feature file or annotation (missing source, bad shape, NaN rows, not HDF5, ...)."""
