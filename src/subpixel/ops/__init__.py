"""Array operations: MATLAB-compatible resize, colour conversion, pixel quantization, tiled inference, optical flow."""

from subpixel.ops.color import rgb_to_y
from subpixel.ops.pixels import quantize, quantize_np
from subpixel.ops.resize import imresize, imresize_np

__all__ = ["imresize", "imresize_np", "quantize", "quantize_np", "rgb_to_y"]
