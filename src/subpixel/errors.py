"""Exception types: every error a user can cause is a SubpixelError with a one-line message."""


class SubpixelError(Exception):
    """Base class for errors reported to the user without a traceback."""


class NotResumableError(SubpixelError):
    """An error a rerun of the same job would meet again (e.g. an input whose frame size changes): work
    kept for resuming it is useless and may be removed."""
