"""Click commands of the core CLI (upscale, eval, models); see :mod:`subpixel.cli`."""
