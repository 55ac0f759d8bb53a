"""Format details an upscaled image carries over from its input, for :mod:`subpixel.io.image`.

PNG text and colour chunks, a JPEG's comment and IPTC record, whether a WebP is lossless, a TIFF's
compression, the EXIF pixel dimensions; also the frame count of animations and multi-page TIFF,
the name of a recognised but unsupported format, and CMYK to sRGB through the file's ICC profile.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import tifffile
from PIL import ExifTags, Image, ImageCms

__all__ = [
    "TIFF_COMPRESSIONS",
    "cmyk_to_srgb",
    "exif_with_size",
    "frame_count",
    "jpeg_app13",
    "jpeg_iptc",
    "png_chunks",
    "unsupported_format",
    "webp_is_lossless",
]

# Lossless TIFF compressions carried to the output: Pillow's name -> (Pillow's name, tifffile's name) to
# write it. Others (JPEG, WebP: lossy; CCITT: bilevel only; ZSTD, LZMA: not in every libtiff) are written
# uncompressed.
TIFF_COMPRESSIONS = {
    "tiff_lzw": ("tiff_lzw", "lzw"),
    "tiff_adobe_deflate": ("tiff_adobe_deflate", "zlib"),
    "tiff_deflate": ("tiff_adobe_deflate", "zlib"),  # the old code for the same Deflate
    "packbits": ("packbits", "packbits"),
}

_PNG_CARRIED = frozenset({b"tEXt", b"zTXt", b"iTXt", b"gAMA", b"cHRM", b"sRGB"})
_PNG_TEXT = frozenset({b"tEXt", b"zTXt", b"iTXt"})
# Text keywords not copied: XMP (carried on its own, its orientation removed) and ImageMagick's copies
# of the EXIF, ICC and XMP profiles, which would bring back the input's orientation and size.
_PNG_SKIPPED_KEYWORDS = frozenset(
    {b"xml:com.adobe.xmp", b"raw profile type exif", b"raw profile type app1", b"raw profile type icc",
     b"raw profile type icm", b"raw profile type xmp"}
)
_PNG_MAX_CARRIED = 64 * 2**20  # bytes of chunks kept at most, as Pillow's MAX_TEXT_MEMORY

_PHOTOSHOP = b"Photoshop 3.0\x00"
_IPTC_RESOURCES = (0x0404, 0x0425)  # IPTC-NAA record and its MD5 digest; not thumbnails, resolution, EXIF copies
_JPEG_MAX_SEGMENT = 65533  # bytes of data one JPEG marker segment holds

_PIXEL_X_DIMENSION, _PIXEL_Y_DIMENSION = 0xA002, 0xA003

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def png_chunks(path: Path) -> tuple[tuple[bytes, bytes], ...]:
    """The text (tEXt, zTXt, iTXt) and colour (gAMA, cHRM, sRGB) chunks of a PNG, as stored, in file order.

    Walks the chunk headers, skipping the pixel data; stops at IEND or at a short read.
    """
    kept: list[tuple[bytes, bytes]] = []
    total = 0
    with open(path, "rb") as f:
        f.seek(8)
        while (head := f.read(8)) and len(head) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IEND":
                break
            if kind not in _PNG_CARRIED or total + length > _PNG_MAX_CARRIED:
                f.seek(length + 4, io.SEEK_CUR)  # data and CRC
                continue
            data = f.read(length)
            f.seek(4, io.SEEK_CUR)
            if len(data) != length:
                break
            if kind in _PNG_TEXT and data.split(b"\x00", 1)[0].lower() in _PNG_SKIPPED_KEYWORDS:
                continue
            kept.append((kind, data))
            total += length
    return tuple(kept)


def webp_is_lossless(path: Path) -> bool:
    """Whether a WebP's (first) image is VP8L, lossless, rather than VP8 (lossy, alpha or not)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:] != b"WEBP":
            return False
        while len(chunk := f.read(8)) == 8:
            kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind in (b"VP8L", b"VP8 "):
                return kind == b"VP8L"
            # An animation frame: its own chunks (ALPH, VP8 or VP8L) follow its 16-byte header.
            f.seek(16 if kind == b"ANMF" else size + (size & 1), io.SEEK_CUR)
    return False


def jpeg_iptc(photoshop: object) -> bytes | None:
    """The Photoshop resource block of a JPEG's APP13 (Pillow's ``info['photoshop']``) cut to its IPTC
    record (with the record's digest), else None."""
    if not isinstance(photoshop, dict):
        return None
    blocks = b""
    for resource in _IPTC_RESOURCES:
        data = photoshop.get(resource)
        if isinstance(data, bytes):  # type, id, empty name (padded), size, data (padded)
            blocks += b"8BIM" + struct.pack(">HHI", resource, 0, len(data)) + data + b"\x00" * (len(data) & 1)
    block = _PHOTOSHOP + blocks
    return block if blocks and len(block) <= _JPEG_MAX_SEGMENT else None


def jpeg_app13(iptc: bytes) -> bytes:
    """An APP13 marker segment holding ``iptc`` (from :func:`jpeg_iptc`), for Pillow's ``extra=``."""
    return b"\xff\xed" + struct.pack(">H", len(iptc) + 2) + iptc


def exif_with_size(exif: bytes, width: int, height: int) -> bytes:
    """``exif`` with its PixelXDimension and PixelYDimension (where present) giving ``width`` x ``height``."""
    tags = Image.Exif()
    try:
        tags.load(exif)
        sub = tags.get_ifd(ExifTags.IFD.Exif)
    except (SyntaxError, ValueError, TypeError, KeyError, struct.error, OSError):
        return exif  # not EXIF Pillow can parse: left as it is
    stated = {_PIXEL_X_DIMENSION: width, _PIXEL_Y_DIMENSION: height}
    if all(sub.get(tag, size) == size for tag, size in stated.items()):
        return exif
    for tag, size in stated.items():
        if tag in sub:
            sub[tag] = size
    return tags.tobytes()


def frame_count(im: Image.Image, path: Path) -> int:
    """Frames of an animated PNG or WebP, or pages of a TIFF (not counting reduced-resolution previews); 1 for
    other formats (the further images of a JPEG's MPF are previews, depth or gain maps)."""
    frames = int(getattr(im, "n_frames", 1)) if im.format in ("PNG", "WEBP", "TIFF") else 1
    if frames > 1 and im.format == "TIFF":
        try:
            with tifffile.TiffFile(path) as tif:
                frames = sum(1 for page in tif.pages if not int(getattr(page, "subfiletype", 0)) & 1)
        except (OSError, ValueError, tifffile.TiffFileError):
            pass  # Pillow's count stands
    return max(frames, 1)


def unsupported_format(path: Path) -> str | None:
    """The name of a common image format that is not read (GIF, AVIF, HEIC...), from the file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return None
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIC"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "JPEG XL"
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "JPEG 2000"
    if head[:4] == b"8BPS":
        return "PSD"
    if head[:5] == b"%PDF-":
        return "PDF"
    return None


_SRGB: list[ImageCms.ImageCmsProfile] = []  # made on first use


def cmyk_to_srgb(im: Image.Image) -> Image.Image | None:
    """A CMYK image with a CMYK ICC profile converted to sRGB through it with littleCMS (relative
    colorimetric with black point compensation, Photoshop's default); None without such a profile or where
    littleCMS cannot use it."""
    icc = im.info.get("icc_profile")
    if im.mode != "CMYK" or not isinstance(icc, bytes) or icc[16:20] != b"CMYK":
        return None
    try:
        if not _SRGB:
            _SRGB.append(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")))
        return ImageCms.profileToProfile(
            im,
            ImageCms.ImageCmsProfile(io.BytesIO(icc)),
            _SRGB[0],
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            outputMode="RGB",
            flags=ImageCms.Flags.BLACKPOINTCOMPENSATION,
        )
    except (ImportError, OSError, ValueError, ImageCms.PyCMSError):  # ImportError: Pillow built without littleCMS
        return None
