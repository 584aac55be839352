"""Exceptions that the CLI turns into one clear line instead of a traceback."""


class UsageError(Exception):
    """A user mistake: a bad option, a missing file. The message names what is wrong."""
