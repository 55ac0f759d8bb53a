"""Reading and writing images; video decoding and encoding live in :mod:`subpixel.io.video`."""

from subpixel.io.image import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_EXTENSIONS,
    ImageData,
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    OutputExistsError,
    OutputTooLargeError,
    check_output_size,
    from_float,
    is_image_path,
    read_image,
    to_float,
    write_image,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "ImageData",
    "ImageReadError",
    "ImageTooLargeError",
    "ImageWriteError",
    "OutputExistsError",
    "OutputTooLargeError",
    "check_output_size",
    "from_float",
    "is_image_path",
    "read_image",
    "to_float",
    "write_image",
]
