"""16-bit colour images (RGB, RGBA, grey plus alpha) that bypass Pillow, which decodes them at 8 bits and
cannot write them: PNG is read and written with pypng, TIFF with tifffile (for :mod:`subpixel.io.image`).

Written 16-bit colour TIFF keeps the ICC profile and descriptive tags but not the EXIF/GPS sub-IFDs.
"""

from __future__ import annotations

import itertools
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png
import tifffile
from PIL import ExifTags, Image, ImageFile

from subpixel.io.image_errors import ImageReadError
from subpixel.io.image_meta import ORIENTATION, PNG_EXIF_PREFIX, PNG_XMP_KEY, TIFF_EXIF_TAGS, TIFF_XMP, Metadata

__all__ = ["read_16bit_colour", "write_png16", "write_tiff16"]

_PNG_COLOUR_TYPES = frozenset({2, 4, 6})  # RGB, grey + alpha, RGBA: what Pillow reads at 8 bits
_INCH = 0.0254  # metres: PNG's pHYs counts pixels per metre
# IFD0 tags of ``like.exif`` written to 16-bit colour TIFF (tifffile cannot write the EXIF/GPS sub-IFDs).
_TIFF16_ASCII_TAGS = frozenset(TIFF_EXIF_TAGS - {ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo})


def read_16bit_colour(im: ImageFile.ImageFile, path: Path) -> tuple[np.ndarray, str] | None:
    """HxWxC uint16 pixels and mode hint of a 16-bit colour PNG or TIFF, not yet oriented.

    None for everything Pillow decodes at full depth itself (8-bit, 16-bit grayscale, ...).
    Pillow has opened ``im`` and so checked its size against the limit; nothing is decoded yet.
    """
    if im.format == "PNG":
        with open(path, "rb") as f:  # IHDR is the first chunk: bit depth at byte 24, colour type at 25
            header = f.read(26)
        if len(header) == 26 and header[24] == 16 and header[25] in _PNG_COLOUR_TYPES:
            return _read_png16(path, im.size)
    elif im.format == "TIFF" and im.mode in ("RGB", "RGBX", "RGBA"):
        tags = im.tag_v2
        if (
            set(tags.get(258, ())) == {16}  # BitsPerSample
            and tags.get(262) == 2  # PhotometricInterpretation: RGB
            and set(tags.get(339, (1,))) == {1}  # SampleFormat: unsigned
        ):
            return _read_tiff16(path, im)
    return None


def _read_png16(path: Path, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """A 16-bit RGB, RGBA or grey + alpha PNG, decoded with pypng (sBIT is ignored, as by Pillow)."""
    with open(path, "rb") as f:
        width, height, rows, info = png.Reader(file=f).read()
        if (width, height) != size:
            raise ImageReadError(f"{path}: PNG header size changed while reading")
        planes = info["planes"]
        pixels = np.empty((height, width * planes), np.uint16)
        count = 0
        for row in itertools.islice(rows, height):  # array('H') rows in native byte order
            pixels[count] = np.frombuffer(row, np.uint16)
            count += 1
        if count != height:
            raise ImageReadError(f"{path}: cannot decode image (pixel data has {count} of {height} rows)")
    pixels = pixels.reshape(height, width, planes)
    if planes == 2:  # grey + alpha becomes RGBA, as 'LA' does
        return np.concatenate([np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1:]], axis=2), "LA"
    if planes == 3 and "transparent" in info:  # tRNS: one fully transparent colour
        opaque = np.any(pixels != np.array(info["transparent"], np.uint16), axis=2, keepdims=True)
        return np.concatenate([pixels, opaque.astype(np.uint16) * np.uint16(65535)], axis=2), "RGBA"
    return pixels, "RGBA" if planes == 4 else "RGB"


def _read_tiff16(path: Path, im: ImageFile.ImageFile) -> tuple[np.ndarray, str] | None:
    """The first page of a 16-bit RGB(A) TIFF, decoded with tifffile; None if it needs imagecodecs."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        if page.compression not in tifffile.TIFF.DECOMPRESSORS:
            warnings.warn(
                f"{path}: decoding this 16-bit TIFF at 8 bits: its {page.compression.name} compression "
                "needs the 'imagecodecs' package (pip install imagecodecs) to keep 16 bits",
                stacklevel=4,
            )
            return None
        try:
            pixels = page.asarray()
        except Exception as e:  # noqa: BLE001 - imagecodecs' errors (DeflateError...) are RuntimeErrors of its own
            raise ImageReadError(f"{path}: cannot decode image ({e})") from e
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
            pixels = np.moveaxis(pixels, 0, -1)
        premultiplied = page.extrasamples[:1] == (tifffile.EXTRASAMPLE.ASSOCALPHA,)
    channels = 3 if im.mode in ("RGB", "RGBX") else 4  # Pillow's reading of ExtraSamples
    # Pillow gives a TIFF's size after orientation: 5 to 8 swap width and height.
    stored = (im.width, im.height) if im.tag_v2.get(ORIENTATION) in (5, 6, 7, 8) else (im.height, im.width)
    if pixels.ndim != 3 or pixels.shape[:2] != stored or pixels.shape[2] < channels:
        raise ImageReadError(f"{path}: unexpected 16-bit TIFF layout {pixels.shape} for {im.size}")
    pixels = np.ascontiguousarray(pixels[..., :channels], dtype=np.uint16)
    if channels == 4 and premultiplied:  # associated alpha: un-premultiply, as Pillow does
        pixels = _unpremultiply_u16(pixels)
    return pixels, "RGBA" if channels == 4 else "RGB"


def _unpremultiply_u16(rgba: np.ndarray) -> np.ndarray:
    """Associated (premultiplied) uint16 RGBA -> straight alpha; colour is 0 where alpha is 0."""
    alpha = rgba[..., 3:].astype(np.float64)
    rgb = np.divide(rgba[..., :3] * 65535.0, alpha, out=np.zeros(rgba.shape[:2] + (3,)), where=alpha > 0)
    out = rgba.copy()
    out[..., :3] = np.rint(np.clip(rgb, 0, 65535))
    return out


class _PngWriter(png.Writer):
    """pypng's writer plus extra chunks (iCCP, eXIf) right after IHDR, before the pixel data."""

    def __init__(self, *args: object, extra_chunks: list[tuple[bytes, bytes]], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.extra_chunks = extra_chunks

    def write_preamble(self, outfile: BinaryIO) -> None:
        super().write_preamble(outfile)
        for kind, data in self.extra_chunks:
            png.write_chunk(outfile, kind, data)


def write_png16(f: BinaryIO, pixels: np.ndarray, meta: Metadata) -> None:
    """Write HxWx2/3/4 uint16 as a 16-bit grey + alpha, RGB or RGBA PNG with pypng."""
    height, width, channels = pixels.shape
    chunks = [(kind, data) for kind, data in meta.png_chunks if not (kind == b"sRGB" and meta.icc)]  # as Pillow
    if meta.icc:  # profile name, NUL, compression method 0 (zlib), compressed profile
        chunks.append((b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(meta.icc)))
    if meta.exif:
        chunks.append((b"eXIf", meta.exif.removeprefix(PNG_EXIF_PREFIX)))
    if meta.dpi:  # pixels per metre, unit 1 (metre), rounded as Pillow does
        chunks.append((b"pHYs", struct.pack(">IIB", *(int(d / _INCH + 0.5) for d in meta.dpi), 1)))
    if meta.xmp:  # keyword, NUL, uncompressed, method 0, no language, no translated keyword
        chunks.append((b"iTXt", PNG_XMP_KEY + b"\x00\x00\x00\x00\x00" + meta.xmp))
    writer = _PngWriter(width, height, greyscale=channels == 2, alpha=channels in (2, 4), bitdepth=16,
                        extra_chunks=chunks)
    # Rows as big-endian bytes, one at a time (no full-size copy).
    writer.write_packed(f, (pixels[y].astype(">u2").tobytes() for y in range(height)))


def write_tiff16(f: BinaryIO, pixels: np.ndarray, meta: Metadata) -> None:
    """Write HxWx3/4 uint16 as a 16-bit RGB/RGBA TIFF with tifffile, compressed as ``meta`` says (with the
    horizontal predictor), else uncompressed."""
    tags: list[tuple[int, str, int, object, bool]] = []
    if meta.xmp:
        tags.append((TIFF_XMP, "B", len(meta.xmp), meta.xmp, True))
    if meta.exif:
        loaded = Image.Exif()
        loaded.load(meta.exif)
        for tag in sorted(_TIFF16_ASCII_TAGS & loaded.keys()):
            value = loaded[tag]
            if isinstance(value, str):
                value = value.encode("ascii", "replace")  # TIFF ASCII is 7-bit, as Pillow writes it
            if isinstance(value, bytes):
                tags.append((tag, "s", 0, value, True))
        if isinstance(loaded.get(ORIENTATION), int):
            tags.append((ORIENTATION, "H", 1, loaded[ORIENTATION], True))
    compression = meta.tiff_compression[1] if meta.tiff_compression else None
    if compression == "lzw" and tifffile.COMPRESSION.LZW not in tifffile.TIFF.COMPRESSORS:
        compression = "zlib"  # LZW encoding needs imagecodecs; Deflate is built in
    tifffile.imwrite(
        tifffile.FileHandle(f, name="output.tif"),  # named: tifffile cannot use an fd-opened file's int name
        pixels,
        photometric="rgb",
        planarconfig="contig",
        extrasamples=("unassalpha",) if pixels.shape[2] == 4 else None,
        compression=compression,
        predictor=compression in ("lzw", "zlib"),
        iccprofile=meta.icc,
        resolution=meta.dpi,
        resolutionunit="INCH" if meta.dpi else None,
        metadata=None,  # no JSON shape description
        software=False,
        extratags=tags,
    )
