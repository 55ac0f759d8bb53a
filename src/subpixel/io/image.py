"""Still images: read and write PNG, JPEG, WebP, TIFF and BMP as HxWxC numpy arrays.

Reading applies EXIF orientation, keeps 8/16-bit depth and grayscale, and refuses
decompression bombs; writing is atomic and carries ICC profile, EXIF, XMP and resolution (dpi) across,
and within a format PNG text and colour chunks, a JPEG's comment and IPTC record, WebP losslessness
and TIFF compression (helpers in :mod:`subpixel.io.image_meta`).

Pillow does the work, except for 16-bit colour (RGB, RGBA, grey plus alpha), which Pillow
decodes at 8 bits and cannot write: PNG goes through pypng and TIFF through tifffile
(:mod:`subpixel.io.image16`). Written 16-bit colour TIFF keeps the ICC profile and descriptive tags but
not the EXIF/GPS sub-IFDs.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png
from numpy.typing import DTypeLike
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from subpixel.io.atomic import write_atomic
from subpixel.io.image16 import read_16bit_colour, write_png16, write_tiff16
from subpixel.io.image_errors import (
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    OutputExistsError,
    OutputTooLargeError,
)
from subpixel.io.image_meta import (
    ORIENTATION,
    Metadata,
    apply_cmyk_profile,
    carried_metadata,
    descriptive_tiff_exif,
    format_details,
    frame_count,
    header_exif,
    matching_icc,
    pillow_params,
    png_xmp,
    read_dpi,
    read_xmp,
    unsupported_format,
)
from subpixel.ops.pixels import quantize_np

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
    "pil_to_array",
    "from_float",
    "is_image_path",
    "luma",
    "read_image",
    "u16_to_u8",
    "write_image",
]

DEFAULT_MAX_PIXELS = 178_956_970
"""Default read limit in pixels: Pillow's own hard decompression-bomb limit (about 179 MP)."""
_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
SUPPORTED_EXTENSIONS = frozenset(_FORMATS)
"""Lower-case file extensions (with the dot) that can be read and written."""
_READ_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_METADATA_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "TIFF"})
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})  # Pillow writes BMP alpha that readers ignore
# Where grey plus alpha is written as such; RGBA elsewhere (WebP has no grayscale, and Pillow cannot read
# the 16-bit grey plus alpha TIFF that tifffile would write).
_GREY_ALPHA_FORMATS = {"PNG": (np.uint8, np.uint16), "TIFF": (np.uint8,)}
# Largest width or height each encoder accepts; JPEG is 65500 in libjpeg, not 65535.
_MAX_SIDE = {"WEBP": 16383, "JPEG": 65500, "PNG": 2**31 - 1, "BMP": 2**31 - 1}
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# EXIF orientation -> the numpy equivalent of the transpose ImageOps.exif_transpose applies.
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
    5: lambda a: a.transpose(1, 0, 2),  # TRANSPOSE
    6: lambda a: np.rot90(a, -1),  # ROTATE_270
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # TRANSVERSE
    8: lambda a: np.rot90(a, 1),  # ROTATE_90
}
# XMP's copy of the EXIF orientation, as an attribute or an element (removed as ImageOps.exif_transpose does)
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation="[0-9]"|<tiff:Orientation>[0-9]</tiff:Orientation>')
# Pillow's bomb limit and truncation flag are module globals: swap them only under this lock.
_PILLOW_GLOBALS_LOCK = threading.Lock()


@dataclass
class ImageData:
    """Decoded pixels plus what is needed to write them back faithfully.

    ``pixels`` is HxWxC (C = 1, 3 or 4) uint8 or uint16. ``mode_hint`` ('L', 'LA', 'RGB' or 'RGBA')
    records the source layout, so an output passed ``like=`` this is written back as grayscale
    ('LA': grayscale plus alpha, where the format has it) even if the pixels were expanded to RGB or
    RGBA for processing. ``dpi`` is the file's (x, y) resolution in dots per inch, ``xmp`` its XMP
    packet, each None when absent.

    Carried only to an output of the same format: ``compression`` (TIFF: Pillow's name, such as
    'tiff_lzw' or 'tiff_adobe_deflate'; WebP: 'lossless' or 'lossy'), ``png_chunks`` (a PNG's tEXt,
    zTXt, iTXt, gAMA, cHRM and sRGB chunks as (type, data)), ``comment`` (a JPEG's COM) and ``iptc``
    (a JPEG's APP13 Photoshop block, cut to its IPTC record). ``frames`` counts the frames of an
    animation or the pages of a TIFF, of which only the first is read.
    """

    pixels: np.ndarray
    mode_hint: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str | None = None
    path: Path | None = None
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None
    compression: str | None = None
    png_chunks: tuple[tuple[bytes, bytes], ...] = ()
    comment: bytes | None = None
    iptc: bytes | None = None
    frames: int = 1

    @property
    def bit_depth(self) -> int:
        """Bits per channel: 8 or 16."""
        return 8 * self.pixels.dtype.itemsize

    @property
    def has_alpha(self) -> bool:
        """Whether the source had an alpha channel (or transparency)."""
        return self.mode_hint in ("RGBA", "LA")

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.pixels.shape[1]

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.pixels.shape[0]


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a supported image by its extension (hidden files excluded).

    Looks at the name only; the file system is not touched.
    """
    p = Path(path)
    return p.suffix.lower() in SUPPORTED_EXTENSIONS and not p.name.startswith(".")


@contextmanager
def _pillow_guard(max_pixels: int | None) -> Iterator[None]:
    """Make Pillow enforce ``max_pixels`` (as an error, never a warning) and refuse truncation."""
    with _PILLOW_GLOBALS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = max_pixels, False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def read_image(path: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageData:
    """Read an image as HxWxC uint8/uint16 with EXIF orientation applied.

    Grayscale ('1', 'L', 16-bit 'I;16', 32-bit 'I' clipped to 16 bits) stays one channel;
    anything with alpha or transparency (palette, 'LA', ...) becomes RGBA (hinted 'LA' when grey);
    other modes (palette, CMYK, YCbCr, ...) become RGB. CMYK with a CMYK ICC profile is converted to
    sRGB through it (littleCMS); an ICC profile that no longer matches the converted colours is dropped.
    The returned EXIF has orientation 1; the resolution (dpi) and XMP packet are returned as the file
    gives them (turned with the pixels). Of an animation or a multi-page TIFF only the first frame is
    read, with a warning. GIF, AVIF, HEIC and the like are refused by name.

    8-bit images stay uint8 and 16-bit PNG and TIFF stay uint16, colour included: 16-bit RGB,
    RGBA and grey-plus-alpha PNG are decoded with pypng and 16-bit RGB/RGBA TIFF with tifffile,
    with the same orientation, ICC, EXIF and size-limit handling. pypng is pure Python: PNG
    written with row filters (as most encoders do) decodes at only a few seconds per megapixel.
    Compressed 16-bit colour TIFF (LZW, ZSTD, JPEG... from scanners) needs the ``imagecodecs``
    package, a dependency; where it is missing (no wheel for the platform) such a file is decoded by
    Pillow at 8 bits instead, with a warning. 16-bit signed, CMYK or YCbCr TIFF is read by Pillow as before.

    Images with more than ``max_pixels`` pixels raise :class:`ImageTooLargeError` (checked
    from the header, before decoding); ``max_pixels=None`` disables the limit. Reading holds a
    module lock while decoding, because Pillow's limits are process-wide settings.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be positive or None, got {max_pixels}")
    try:
        # Opened from a file object, not the path: Pillow memory-maps an uncompressed single-strip TIFF
        # opened by name, and maps one with orientation 5 to 8 at the turned size, scrambling its rows.
        with open(path, "rb") as f, _pillow_guard(max_pixels), Image.open(f, formats=_READ_FORMATS) as im:
            if im.mode == "F":
                raise ImageReadError(f"{path}: floating-point images are not supported")
            frames = frame_count(im, path)
            wide = read_16bit_colour(im, path)
            dpi, xmp = read_dpi(im), read_xmp(im) or (png_xmp(path) if im.format == "PNG" else None)
            if wide is None:
                # A TIFF's orientation, read before loading: Pillow applies it and drops the tag while loading.
                turned = im.getexif().get(ORIENTATION) if im.format == "TIFF" else None
                im.load()
                orientation = turned or im.getexif().get(ORIENTATION, 1)
                ImageOps.exif_transpose(im, in_place=True)  # whatever Pillow has not applied yet
                exif = im.getexif()
                pixels, mode_hint = pil_to_array(apply_cmyk_profile(im, path))
            else:
                pixels, mode_hint = wide
                exif = header_exif(im, path)
                orientation = exif.get(ORIENTATION, 1)
                if orientation in _ORIENT:  # as exif_transpose: transpose, then drop the tag
                    pixels = np.ascontiguousarray(_ORIENT[orientation](pixels))
                    del exif[ORIENTATION]
            if orientation in _ORIENT:  # the pixels are upright now: so are their resolution and XMP
                dpi = dpi[::-1] if dpi and orientation >= 5 else dpi
                xmp = _XMP_ORIENTATION.sub(b"", xmp) if xmp else xmp
            if im.format == "TIFF":
                exif = descriptive_tiff_exif(exif)
            if exif:
                exif[ORIENTATION] = 1
            data = ImageData(
                pixels=pixels,
                mode_hint=mode_hint,
                icc_profile=matching_icc(im.info.get("icc_profile"), 1 if mode_hint in ("L", "LA") else 3),
                exif=exif.tobytes() if exif else None,
                format=im.format,
                path=path,
                dpi=dpi,
                xmp=xmp,
                frames=frames,
                **format_details(im, path),
            )
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise ImageTooLargeError(
            f"{path}: image is over the limit of {max_pixels:,} pixels (decompression-bomb guard); "
            "pass a larger max_pixels, or None for no limit (CLI: --max-pixels N, or --max-pixels 0 for no limit)"
        ) from e
    except UnidentifiedImageError as e:
        name = unsupported_format(path)
        if name is not None:
            raise ImageReadError(
                f"{path}: {name} images are not supported (only PNG, JPEG, WebP, TIFF and BMP); convert it to PNG first"
            ) from e
        raise ImageReadError(
            f"{path}: not a PNG, JPEG, WebP, TIFF or BMP image, or its header is damaged or gives zero size"
        ) from e
    except (OSError, SyntaxError, ValueError, EOFError, png.Error, zlib.error) as e:
        raise ImageReadError(f"{path}: cannot decode image ({e})") from e
    if frames > 1:  # after the guard, which would otherwise reset the once-per-file warning registry
        unit = "pages" if data.format == "TIFF" else "frames"
        warnings.warn(f"{path} has {frames} {unit}; only the first is upscaled", stacklevel=2)
    return data


def pil_to_array(im: Image.Image) -> tuple[np.ndarray, str]:
    """Pixels of a PIL image (any mode but 'F') as HxWxC uint8/uint16 and the matching mode hint:
    grayscale stays one channel (16-bit and 32-bit integer as uint16), alpha or transparency gives RGBA
    (16-bit grey with a transparent value: the grey three times and a uint16 alpha, 0 at that value),
    premultiplied alpha ('La', 'RGBa') un-premultiplied. Grayscale with alpha or transparency is
    hinted 'LA', other alpha 'RGBA'."""
    if im.mode.startswith("I;16") or im.mode == "I":
        grey = np.asarray(im)
        pixels = np.clip(grey, 0, 65535).astype(np.uint16)[..., None]
        if not isinstance(im.info.get("transparency"), int):
            return pixels, "L"
        alpha = (grey != im.info["transparency"]).astype(np.uint16)[..., None] * np.uint16(65535)
        return np.concatenate([pixels, pixels, pixels, alpha], axis=2), "LA"
    if im.mode == "La":  # Pillow converts premultiplied grey only to 'LA' (un-premultiplying it)
        im = im.convert("LA")
    has_alpha = im.mode in _ALPHA_MODES or "transparency" in im.info
    if im.mode in ("1", "L") and not has_alpha:
        return np.array(im.convert("L"))[..., None], "L"
    mode = "RGBA" if has_alpha else "RGB"
    return np.array(im.convert(mode)), "LA" if im.mode in ("1", "L", "LA") and has_alpha else mode


def _output_format(path: Path | None, format: str | None) -> str:
    """Pillow format name from an explicit ``format`` (e.g. 'png', '.jpg') or ``path``'s extension."""
    key = f".{format.lower().lstrip('.')}" if format else (path.suffix.lower() if path else "")
    if key not in _FORMATS:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        if format:
            raise ImageWriteError(f"{format}: unsupported output format (use one of {supported})")
        what = f"unsupported output format {key}" if key else "no file extension to choose the output format by"
        raise ImageWriteError(f"{path}: {what}; name it with one of {supported}, or pass a format (CLI: --format png)")
    return _FORMATS[key]


def check_output_size(path_or_format: str | os.PathLike[str], width: int, height: int, alpha: bool = False) -> None:
    """Raise :class:`OutputTooLargeError` if the format cannot store a ``width`` x ``height`` image.

    ``path_or_format`` is an output path or a format name such as 'webp'. Limits per side:
    WebP 16383, JPEG 65500, PNG and BMP 2**31 - 1; TIFF is not limited here. With ``alpha``,
    a format without an alpha channel (JPEG, BMP) raises :class:`ImageWriteError`. Call this
    before upscaling so the error comes before any work.
    """
    text = os.fspath(path_or_format)
    is_name = f".{text.lower().lstrip('.')}" in _FORMATS
    fmt = _output_format(None, text) if is_name else _output_format(Path(text), None)
    limit = _MAX_SIDE.get(fmt)
    if limit is not None and max(width, height) > limit:
        raise OutputTooLargeError(
            f"{text}: {width}x{height} is too large for {fmt} (at most {limit} pixels per side); "
            "use PNG or TIFF or a smaller scale"
        )
    if alpha and fmt not in _ALPHA_FORMATS:
        raise ImageWriteError(f"{text}: {fmt} cannot store alpha; write PNG, WebP or TIFF instead")


def write_image(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    *,
    like: ImageData | None = None,
    format: str | None = None,
    quality: int = 95,
    overwrite: bool = False,
) -> Path:
    """Write HxWxC (or HxW) uint8/uint16 ``pixels`` atomically and return the path.

    The format comes from ``format`` or the extension. ``like`` supplies the ICC profile, EXIF and
    XMP (copied for PNG, JPEG, WebP and TIFF; not to JPEG over 64 KB, EXIF with a warning) and the
    resolution (dpi, for PNG, JPEG and TIFF; WebP has none), and, when its ``mode_hint`` is 'L', turns
    3-channel pixels back into grayscale (BT.601 luma). The dpi is kept as it is, not multiplied by the
    upscaling factor: the image gets physically larger at the same resolution, as GIMP's "Scale Image" does. uint16 is
    written as 16-bit to PNG and TIFF, grayscale and colour alike, and converted to 8-bit for JPEG,
    WebP and BMP. 16-bit colour is written by pypng (PNG, unfiltered, so larger than Pillow's files;
    ICC profile, EXIF, XMP and dpi are carried) and tifffile (uncompressed TIFF; the ICC profile, XMP,
    dpi, orientation and the descriptive IFD0 tags such as Make, Model, Artist, Copyright and DateTime
    are carried, the EXIF and GPS sub-IFDs are not). EXIF PixelXDimension/PixelYDimension, where present,
    are set to the output's size. Into the input's own format ``like`` also carries: PNG text, gAMA, cHRM
    and sRGB chunks; a JPEG's comment and IPTC record; a lossless WebP's losslessness; a TIFF's LZW, Deflate
    or PackBits compression (LZW and Deflate with the horizontal predictor; other TIFF compressions are
    written uncompressed, and so, with a warning, is a TIFF written by Pillow whose EXIF has EXIF or GPS
    sub-IFDs, which its compressed writer drops). Grey plus alpha ('LA' hint, RGBA pixels) goes back to grey
    plus alpha (luma) in PNG and 8-bit TIFF.
    ``quality`` applies to JPEG (written without chroma subsampling) and WebP (lossy; for lossless WebP it
    is the compression effort). The file is written
    to a temporary file in the same folder and moved into place, so on failure an existing file is
    untouched.

    Raises :class:`OutputExistsError` if the file exists and ``overwrite`` is false,
    :class:`OutputTooLargeError` if the format cannot hold the size, and :class:`ImageWriteError`
    for an unsupported format, alpha in JPEG or BMP, or a failed write.
    """
    path = Path(path)
    fmt = _output_format(path, format)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4) or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"expected HxWxC uint8/uint16 pixels with C in (1, 3, 4), got {pixels.shape} {pixels.dtype}"
            " (use from_float for float arrays)"
        )
    if like is not None and like.mode_hint == "L" and pixels.shape[2] == 3:
        pixels = luma(pixels)
    check_output_size(path if format is None else fmt, pixels.shape[1], pixels.shape[0])
    if not overwrite and path.exists():
        raise OutputExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
    if pixels.shape[2] == 4 and fmt not in _ALPHA_FORMATS:
        raise ImageWriteError(f"{path}: {fmt} cannot store alpha; write PNG, WebP or TIFF instead")

    grey_alpha = like is not None and like.mode_hint == "LA" and pixels.shape[2] == 4
    if grey_alpha and pixels.dtype in _GREY_ALPHA_FORMATS.get(fmt, ()):  # grey plus alpha, as read
        pixels = np.concatenate([luma(pixels[..., :3]), pixels[..., 3:]], axis=2)
    if pixels.dtype == np.uint16 and fmt not in _SIXTEEN_BIT_FORMATS:
        pixels = u16_to_u8(pixels)
    if fmt == "WEBP" and pixels.shape[2] == 1:  # WebP has no grayscale; a gray ICC profile would not fit
        pixels = np.repeat(pixels, 3, axis=2)
    meta = carried_metadata(like, fmt, pixels.shape) if like is not None and fmt in _METADATA_FORMATS else Metadata()

    if pixels.dtype == np.uint16 and pixels.shape[2] > 1:  # 16-bit colour: Pillow would drop to 8 bits
        write16 = write_png16 if fmt == "PNG" else write_tiff16
        _atomic_save(path, lambda f: write16(f, pixels, meta))
        return path

    im = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
    params = pillow_params(fmt, meta, path)
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = quality
    if fmt == "JPEG":
        params["subsampling"] = 0
    _atomic_save(path, lambda f: im.save(f, format=fmt, **params))
    return path


def luma(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8/uint16 to HxWx1 of the same dtype with BT.601 weights."""
    y = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(np.rint(y), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)[..., None]


def u16_to_u8(pixels: np.ndarray) -> np.ndarray:
    """uint16 pixels as the nearest uint8 ones: round(x * 255 / 65535), computed as (x + 128) // 257."""
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _atomic_save(path: Path, save: Callable[[BinaryIO], object]) -> None:
    """Call ``save`` on a hidden temporary file beside ``path``, then rename it over ``path``."""
    try:
        write_atomic(path, save)
    except (OSError, ValueError, png.Error) as e:
        raise ImageWriteError(f"{path}: cannot write image ({e})") from e


def from_float(arr: np.ndarray, dtype: DTypeLike = np.uint8) -> np.ndarray:
    """Float pixels in [0, 1] to uint8/uint16: clipped, scaled and rounded half up as everywhere else
    (:func:`~subpixel.ops.pixels.quantize_np`); NaN becomes 0."""
    return quantize_np(np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=0.0), dtype)
