"""User-facing errors (and warnings) of the training, evaluation and highlighting layer."""

import warnings

from alstm_core.errors import UserError


class ReproduceError(UserError):
    """A user mistake in a run's configuration, checkpoint or command line; the message says what to do."""


def python_warning(text: str) -> None:
    """The library's default ``warn``: a `UserWarning` through Python's `warnings` (a notebook shows it,
    a filter can silence it); the commands pass a callback that prints in their own words instead."""
    warnings.warn(text, UserWarning, stacklevel=3)
