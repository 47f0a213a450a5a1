"""User-facing errors of the training, evaluation and highlighting layer."""

from alstm_core.errors import UserError


class ReproduceError(UserError):
    """A user mistake in a run's configuration, checkpoint or command line; the message says what to do."""
