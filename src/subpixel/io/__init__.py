"""File I/O: still images in :mod:`subpixel.io.image` (with :mod:`~subpixel.io.image_meta`,
:mod:`~subpixel.io.image16` and :mod:`~subpixel.io.image_errors`), video in :mod:`subpixel.io.video_decode`,
:mod:`~subpixel.io.video_encode` and :mod:`~subpixel.io.video_mux`, atomic writes in :mod:`subpixel.io.atomic`."""
