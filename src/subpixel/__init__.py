"""subpixel: image and video super-resolution."""

from subpixel.errors import SubpixelError
from subpixel.models.loader import load
from subpixel.upscaler import Upscaler

__version__ = "0.1.0"
__all__ = ["load", "Upscaler", "SubpixelError", "__version__"]
