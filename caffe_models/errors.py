"""User-facing errors of the feature-extraction layer."""


class CaffeModelError(Exception):
    """A weight or mean file that cannot be read or does not match the network (names both shapes)."""


class VideoError(Exception):
    """A video that cannot be opened or decoded (says which file and why)."""
