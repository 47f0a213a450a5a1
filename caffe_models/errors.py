"""User-facing errors of the feature-extraction layer."""

from alstm_core.errors import UserError


class CaffeModelError(UserError):
    """A weight or mean file that cannot be read or does not match the network (names both shapes)."""


class VideoError(UserError):
    """A video that cannot be opened or decoded (says which file and why)."""
