"""Array operations: MATLAB-compatible resize, colour conversion, tiled inference, optical flow."""

from subpixel.ops.color import rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb
from subpixel.ops.resize import imresize, imresize_np

__all__ = ["imresize", "imresize_np", "rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb"]
