"""Metadata an upscaled image carries over from its input, for :mod:`subpixel.io.image` and
:mod:`subpixel.io.image16`.

Reading it (ICC profile, EXIF, XMP, resolution) and choosing what an output of a given format keeps
(:class:`Metadata`, :func:`carried_metadata`, :func:`pillow_params`); PNG text and colour chunks, a JPEG's
comment and IPTC record, whether a WebP is lossless, a TIFF's compression, the EXIF pixel dimensions; also
the frame count of animations and multi-page TIFF, the name of a recognised but unsupported format, and CMYK
to sRGB through the file's ICC profile.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import tifffile
from PIL import ExifTags, Image, ImageCms, ImageFile, PngImagePlugin

if TYPE_CHECKING:
    from subpixel.io.image import ImageData

__all__ = [
    "ORIENTATION",
    "PNG_EXIF_PREFIX",
    "PNG_XMP_KEY",
    "TIFF_COMPRESSIONS",
    "TIFF_EXIF_TAGS",
    "TIFF_XMP",
    "Metadata",
    "apply_cmyk_profile",
    "carried_metadata",
    "cmyk_to_srgb",
    "descriptive_tiff_exif",
    "exif_with_size",
    "format_details",
    "frame_count",
    "header_exif",
    "png_xmp",
    "jpeg_app13",
    "jpeg_iptc",
    "matching_icc",
    "pillow_params",
    "png_chunks",
    "read_dpi",
    "read_xmp",
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

# colour chunks include cICP (coding-independent code points: BT.2100 PQ/HLG, Display P3) and its HDR companions
_PNG_CARRIED = frozenset({b"tEXt", b"zTXt", b"iTXt", b"gAMA", b"cHRM", b"sRGB", b"cICP", b"mDCv", b"cLLi"})
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

ORIENTATION = ExifTags.Base.Orientation  # the EXIF (and TIFF) tag of how a picture is turned or mirrored
PNG_EXIF_PREFIX = b"Exif\x00\x00"  # Pillow's EXIF bytes start with this; an eXIf chunk does not
PNG_XMP_KEY = b"XML:com.adobe.xmp"  # the iTXt keyword of XMP in PNG
_JPEG_MAX_XMP = 65504  # bytes of XMP one JPEG APP1 marker holds (larger, "extended" XMP is left out)
TIFF_XMP, _TIFF_X_RESOLUTION, _TIFF_PREDICTOR = 700, 282, 317
# A TIFF's "EXIF" is its whole header; only these descriptive IFD0 tags are carried over.
TIFF_EXIF_TAGS = frozenset(
    {
        ExifTags.Base.ImageDescription,
        ExifTags.Base.Make,
        ExifTags.Base.Model,
        ExifTags.Base.Software,
        ExifTags.Base.DateTime,
        ExifTags.Base.Artist,
        ExifTags.Base.Copyright,
        ExifTags.IFD.Exif,
        ExifTags.IFD.GPSInfo,
    }
)


def _png_chunk_data(path: Path, kinds: frozenset[bytes], limit: int) -> Iterator[tuple[bytes, bytes]]:
    """(kind, data) of a PNG's chunks of ``kinds``, in file order, up to ``limit`` bytes of data in all (a chunk that
    would pass it is skipped). Walks the chunk headers, skipping the pixel data; stops at IEND or a short read."""
    total = 0
    with open(path, "rb") as f:
        f.seek(8)
        while (head := f.read(8)) and len(head) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IEND":
                return
            if kind not in kinds or total + length > limit:
                f.seek(length + 4, io.SEEK_CUR)  # data and CRC
                continue
            data = f.read(length)
            f.seek(4, io.SEEK_CUR)
            if len(data) != length:
                return
            total += length
            yield kind, data


def png_chunks(path: Path) -> tuple[tuple[bytes, bytes], ...]:
    """The text (tEXt, zTXt, iTXt) and colour (gAMA, cHRM, sRGB, cICP, mDCv, cLLi) chunks of a PNG, as stored, in
    file order, but for the keywords of ``_PNG_SKIPPED_KEYWORDS``."""
    return tuple((kind, data) for kind, data in _png_chunk_data(path, _PNG_CARRIED, _PNG_MAX_CARRIED)
                 if kind not in _PNG_TEXT or data.split(b"\x00", 1)[0].lower() not in _PNG_SKIPPED_KEYWORDS)


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


def format_details(im: ImageFile.ImageFile, path: Path) -> dict[str, object]:
    """The :class:`ImageData` fields carried only within a format: compression, PNG chunks, JPEG comment and IPTC."""
    if im.format == "TIFF":
        return {"compression": im.info.get("compression")}
    if im.format == "WEBP":
        return {"compression": "lossless" if webp_is_lossless(path) else "lossy"}
    if im.format == "PNG":
        return {"png_chunks": png_chunks(path)}
    if im.format in ("JPEG", "MPO"):  # MPO: a JPEG with further images (MPF) after the first
        comment = im.info.get("comment")
        return {"comment": comment if isinstance(comment, bytes) and comment else None,
                "iptc": jpeg_iptc(im.info.get("photoshop"))}
    return {}


def apply_cmyk_profile(im: Image.Image, path: Path) -> Image.Image:
    """A CMYK image with a CMYK ICC profile as sRGB through that profile, else ``im`` as it is (for the
    plain conversion of :func:`~subpixel.io.image.pil_to_array`, which drops the profile too)."""
    icc = im.info.get("icc_profile")
    if im.mode != "CMYK" or not isinstance(icc, bytes) or icc[16:20] != b"CMYK":
        return im
    converted = cmyk_to_srgb(im)
    if converted is None:
        warnings.warn(f"{path}: its CMYK ICC profile cannot be used; converting to RGB without it", stacklevel=3)
        return im
    return converted


def _png_texts(path: Path) -> Iterator[tuple[bytes, bytes, bytes]]:
    """The text chunks (tEXt, zTXt, iTXt) and eXIf of a PNG, those after the pixel data too, as (kind, keyword,
    text): the text decoded, the eXIf's data with an empty keyword. A damaged text chunk is passed over."""
    for kind, data in _png_chunk_data(path, _PNG_TEXT | {b"eXIf"}, _PNG_MAX_CARRIED):
        if kind == b"eXIf":
            yield kind, b"", data
            continue
        try:
            keyword, text = data.split(b"\x00", 1)
            if kind == b"zTXt":
                text = zlib.decompress(text[1:])
            elif kind == b"iTXt":  # compression flag, method, language, translated keyword, text
                compressed, text = text[0], text[2:].split(b"\x00", 2)[2]
                text = zlib.decompress(text) if compressed else text
        except (ValueError, IndexError, zlib.error):
            continue
        yield kind, keyword, text


def png_xmp(path: Path) -> bytes | None:
    """A PNG's XMP packet wherever its iTXt lies (Pillow sees one after the pixel data only once they decode)."""
    return next((text for kind, key, text in _png_texts(path) if kind == b"iTXt" and key == PNG_XMP_KEY and text),
                None)


def header_exif(im: ImageFile.ImageFile, path: Path) -> Image.Exif:
    """``im.getexif()`` without decoding the pixels (for images decoded by pypng or tifffile)."""
    if im.format != "PNG":
        return im.getexif()  # a TIFF's EXIF is its header
    if "exif" not in im.info and "Raw profile type exif" not in im.info:
        # Pillow finds an eXIf chunk, or ImageMagick's text copy, after the pixel data only while decoding them
        for kind, key, text in _png_texts(path):
            if kind == b"eXIf":
                im.info["exif"] = PNG_EXIF_PREFIX + text
                break
            if key.lower() == b"raw profile type exif":
                im.info["Raw profile type exif"] = text.decode("latin-1")  # hex, which the base getexif decodes
                break
    return Image.Image.getexif(im)  # the base method: PngImageFile's would decode the pixels first


def read_dpi(im: ImageFile.ImageFile) -> tuple[float, float] | None:
    """The (x, y) dots per inch the file states; None for none (Pillow reads a TIFF without any as 1 dpi)."""
    dpi = im.info.get("dpi")
    if not dpi or (im.format == "TIFF" and _TIFF_X_RESOLUTION not in im.tag_v2):
        return None
    x, y = float(dpi[0]), float(dpi[1])
    return (x, y) if 0 < x < float("inf") and 0 < y < float("inf") else None


def read_xmp(im: ImageFile.ImageFile) -> bytes | None:
    """The XMP packet as Pillow finds it (PNG iTXt, JPEG APP1, TIFF tag 700, WebP chunk), else None."""
    xmp = im.info.get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode()
    return xmp if isinstance(xmp, bytes) and xmp else None


def descriptive_tiff_exif(tags: Image.Exif) -> Image.Exif:
    """The descriptive tags and EXIF/GPS sub-IFDs of a TIFF header, without layout tags."""
    kept = Image.Exif()
    for tag in TIFF_EXIF_TAGS & tags.keys():
        kept[tag] = tags.get_ifd(tag) if tag in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo) else tags[tag]
    description = kept.get(ExifTags.Base.ImageDescription)
    if isinstance(description, str) and description.startswith('{"shape":'):  # tifffile's layout note, not a caption
        del kept[ExifTags.Base.ImageDescription]
    return kept


def matching_icc(icc: bytes | None, channels: int) -> bytes | None:
    """``icc`` if its colour space (header bytes 16-20) fits ``channels`` (1 or 2: grey, 3 or 4: RGB), else None."""
    space = b"GRAY" if channels <= 2 else b"RGB "
    return icc if icc and icc[16:20] == space else None


@dataclass(frozen=True)
class Metadata:
    """What an output carries over from its input (each None when absent or unsupported by the format)."""

    icc: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None
    png_chunks: tuple[tuple[bytes, bytes], ...] = ()
    comment: bytes | None = None
    iptc: bytes | None = None
    tiff_compression: tuple[str, str] | None = None  # (Pillow's name, tifffile's name)
    lossless: bool = False  # WebP


def carried_metadata(like: ImageData, fmt: str, shape: tuple[int, ...]) -> Metadata:
    """What an output of ``fmt`` and ``shape`` (HxWxC) carries over from ``like``."""
    same = like.format == fmt or (like.format, fmt) == ("MPO", "JPEG")
    compression = like.compression if same else None
    exif = exif_with_size(like.exif, shape[1], shape[0]) if like.exif else None
    if exif and fmt == "JPEG" and len(exif) > _JPEG_MAX_SEGMENT:  # one APP1 segment: Pillow refuses more
        warnings.warn(f"{like.path or 'input'}: its EXIF ({len(exif):,} bytes) is over the 64 KB a JPEG holds; "
                      "writing the JPEG without it", stacklevel=3)
        exif = None
    return Metadata(
        icc=matching_icc(like.icc_profile, shape[2]),
        exif=exif,
        dpi=like.dpi if fmt != "WEBP" else None,
        xmp=like.xmp if fmt != "JPEG" or len(like.xmp or b"") <= _JPEG_MAX_XMP else None,
        png_chunks=like.png_chunks if same and fmt == "PNG" else (),
        comment=like.comment if same and fmt == "JPEG" else None,
        iptc=like.iptc if same and fmt == "JPEG" else None,
        tiff_compression=TIFF_COMPRESSIONS.get(compression or "") if fmt == "TIFF" else None,
        lossless=fmt == "WEBP" and compression == "lossless",
    )


def pillow_params(fmt: str, meta: Metadata, path: Path) -> dict[str, object]:
    """Pillow ``save`` arguments carrying ``meta`` to ``fmt`` (at ``path``, named in warnings): XMP is an iTXt
    chunk in PNG and tag 700 in TIFF. A TIFF whose EXIF has EXIF or GPS sub-IFDs is written uncompressed, with a
    warning: Pillow's compressed (libtiff) TIFF writer drops them."""
    params: dict[str, object] = {"icc_profile": meta.icc, "exif": meta.exif, "dpi": meta.dpi,
                                 "comment": meta.comment, "lossless": meta.lossless,
                                 "extra": jpeg_app13(meta.iptc) if meta.iptc else None,
                                 "compression": meta.tiff_compression[0] if meta.tiff_compression else None}
    if fmt == "TIFF":  # further tags in the one dict Pillow takes: given tiffinfo=, it ignores exif=
        tags = Image.Exif()
        if meta.exif:
            tags.load(meta.exif)
        if params["compression"] and {ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo} & tags.keys():
            warnings.warn(f"{path}: writing this TIFF uncompressed to keep its EXIF (date taken, exposure, GPS...), "
                          "which Pillow's compressed TIFF writer drops", stacklevel=3)
            params["compression"] = None
        if params["compression"] in ("tiff_lzw", "tiff_adobe_deflate"):
            tags[_TIFF_PREDICTOR] = 2  # horizontal differencing: a third smaller, as tifffile's 16-bit
        if meta.xmp:
            tags[TIFF_XMP] = meta.xmp
        params["exif"] = tags
    elif (meta.xmp or meta.png_chunks) and fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for kind, data in meta.png_chunks:  # Pillow writes these before the pixel data, sRGB only without iCCP
            info.add(kind, data)
        if meta.xmp:
            info.add_itxt(PNG_XMP_KEY, meta.xmp)
        params["pnginfo"] = info
    elif meta.xmp:
        params["xmp"] = meta.xmp
    return {key: value for key, value in params.items() if value}
