"""Exception types: every error a user can cause is a SubpixelError with a one-line message."""


class SubpixelError(Exception):
    """Base class for errors reported to the user without a traceback."""
