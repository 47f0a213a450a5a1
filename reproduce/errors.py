"""User-facing errors of the training, evaluation and highlighting layer."""


class ReproduceError(Exception):
    """A user mistake in a run's configuration, checkpoint or command line; the message says what to do."""
