"""The one base class of the project's user-facing errors."""


class UserError(Exception):
    """A mistake the user can fix (a missing file or source, a wrong shape, a bad flag); the message is
    one line that says what is wrong and what to do. Every package's errors derive from it, so the
    command line catches this class alone and prints the message without a traceback."""
