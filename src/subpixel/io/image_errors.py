"""The errors of image reading and writing (raised by :mod:`subpixel.io.image` and :mod:`subpixel.io.image16`)."""

from __future__ import annotations

from subpixel.errors import SubpixelError

__all__ = ["ImageReadError", "ImageTooLargeError", "ImageWriteError", "OutputExistsError", "OutputTooLargeError"]


class ImageReadError(SubpixelError):
    """An input image is missing, not an image, truncated, empty or undecodable."""


class ImageTooLargeError(ImageReadError):
    """An input image has more pixels than the read limit (decompression-bomb guard)."""


class ImageWriteError(SubpixelError):
    """An output image cannot be written (unsupported extension, encoder or disk failure)."""


class OutputExistsError(ImageWriteError):
    """The output file exists and overwriting was not requested."""


class OutputTooLargeError(ImageWriteError):
    """The output dimensions exceed what the output format can store."""
