"""Exception types: every error a user can cause is a SubpixelError with a one-line message."""

__all__ = ["SubpixelError", "NotResumableError", "OutOfMemory", "Interrupted", "first_line"]


class SubpixelError(Exception):
    """Base class for errors reported to the user without a traceback. ``details``: further keys of the
    ``{"error": ...}`` object the CLI prints on stdout with ``--json`` (what a command did before it failed)."""

    def __init__(self, *args: object, details: dict | None = None) -> None:
        super().__init__(*args)
        self.details = details


class NotResumableError(SubpixelError):
    """An error a rerun of the same job would meet again (e.g. an input whose frame size changes): work
    kept for resuming it is useless and may be removed."""


class OutOfMemory(SubpixelError, MemoryError):
    """A runtime without an out-of-memory exception of its own (ONNX Runtime) ran out of memory: tiled runs
    treat it as torch's and halve the tile."""


class Interrupted(KeyboardInterrupt):
    """A Ctrl-C that has already told the user what was kept and how to continue (no second message).
    ``details``: further keys of the ``{"error": ...}`` object the CLI prints on stdout with ``--json``."""

    def __init__(self, *args: object, details: dict | None = None) -> None:
        super().__init__(*args)
        self.details = details


def first_line(err: BaseException) -> str:
    """The first non-blank line of ``err``'s message, else its type's name (CUDA and exporter errors run long)."""
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
