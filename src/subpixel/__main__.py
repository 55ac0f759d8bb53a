"""``python -m subpixel`` (also ``torchrun -m subpixel train ...``)."""

from subpixel.cli import main

main()
