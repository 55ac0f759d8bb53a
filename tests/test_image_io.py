"""Tests for subpixel.io.image: formats, depth, modes, metadata, limits, atomic writes, alpha."""

from __future__ import annotations

import itertools
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
from PIL import Image, ImageCms, ImageFile, PngImagePlugin

from subpixel.errors import SubpixelError
from subpixel.io.image import (
    DEFAULT_MAX_PIXELS,
    ImageData,
    ImageReadError,
    ImageTooLargeError,
    ImageWriteError,
    OutputExistsError,
    OutputTooLargeError,
    check_output_size,
    from_float,
    is_image_path,
    pil_to_array,
    read_image,
    write_image,
)

RNG = np.random.default_rng(0)
ORIENTATION, MAKE, EXIF_IFD, DATE_TIME_ORIGINAL = 0x0112, 0x010F, 0x8769, 0x9003


def _rgb(h: int = 6, w: int = 8) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth_rgb(h: int = 16, w: int = 16) -> np.ndarray:
    """A gradient, which lossy codecs keep close (unlike noise)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 128)], axis=2).astype(np.uint8)


def _open(path: Path) -> Image.Image:
    """Fully loaded Pillow image with its file closed."""
    with Image.open(path) as im:
        im.load()
        return im


def _png_bytes(width: int, height: int, rows: list[bytes], color_type: int = 0, bit_depth: int = 8) -> bytes:
    """A minimal PNG whose header may claim any size (for bomb and zero-size tests)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\0" + row for row in rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[MAKE] = "TestCam"
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = "2020:01:02 03:04:05"
    return exif


# --- formats and bit depth -------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"])
def test_round_trip_each_format(tmp_path: Path, ext: str) -> None:
    pixels = _smooth_rgb(16, 12)
    out = write_image(tmp_path / f"a{ext}", pixels)
    data = read_image(out)
    assert data.pixels.shape == pixels.shape and data.pixels.dtype == np.uint8
    assert data.mode_hint == "RGB" and data.bit_depth == 8 and not data.has_alpha
    assert (data.width, data.height) == (12, 16) and data.path == out
    diff = np.abs(data.pixels.astype(int) - pixels).max()
    assert diff == 0 if ext in (".png", ".tif", ".tiff", ".bmp") else diff < 16


@pytest.mark.parametrize("ext", [".png", ".webp", ".tif"])
def test_rgba_round_trip(tmp_path: Path, ext: str) -> None:
    pixels = np.concatenate([_rgb(), np.full((6, 8, 1), 200, np.uint8)], axis=2)
    data = read_image(write_image(tmp_path / f"a{ext}", pixels))
    assert data.mode_hint == "RGBA" and data.has_alpha and data.pixels.shape == (6, 8, 4)
    np.testing.assert_array_equal(data.pixels[..., 3], 200)


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    out = write_image(tmp_path / "a.out", _rgb(), format="png")
    assert _open(out).format == "PNG"


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_grayscale_kept(tmp_path: Path, ext: str) -> None:
    pixels = (np.arange(12, dtype=np.uint16).reshape(3, 4, 1) * 5000 + 7).astype(np.uint16)
    data = read_image(write_image(tmp_path / f"g{ext}", pixels))
    assert data.pixels.dtype == np.uint16 and data.bit_depth == 16 and data.mode_hint == "L"
    np.testing.assert_array_equal(data.pixels, pixels)


def test_16bit_to_8bit_only_format_is_rounded(tmp_path: Path) -> None:
    pixels = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    data = read_image(write_image(tmp_path / "g.bmp", pixels))
    assert data.pixels.dtype == np.uint8
    np.testing.assert_array_equal(data.pixels[..., 0], [[0, 100, 255]])


def _wide(h: int = 5, w: int = 7, c: int = 3) -> np.ndarray:
    """16-bit values 257*k+1 over the full range: never a multiple of 257, so an 8-bit path cannot keep them."""
    k = (np.arange(h * w * c) * 37) % 255
    return (k * 257 + 1).reshape(h, w, c).astype(np.uint16)


def _png_header(path: Path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR."""
    data = path.read_bytes()
    return data[24], data[25]


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_round_trip(tmp_path: Path, ext: str, channels: int) -> None:
    pixels = _wide(c=channels)
    out = write_image(tmp_path / f"c{ext}", pixels)
    if ext == ".png":
        assert _png_header(out) == (16, 6 if channels == 4 else 2)
    else:
        with tifffile.TiffFile(out) as tif:
            assert tif.pages[0].bitspersample == 16 and tif.pages[0].samplesperpixel == channels
    data = read_image(out)
    assert data.pixels.dtype == np.uint16 and data.bit_depth == 16 and data.pixels.shape == pixels.shape
    assert data.mode_hint == ("RGBA" if channels == 4 else "RGB") and data.has_alpha == (channels == 4)
    np.testing.assert_array_equal(data.pixels, pixels)


def test_16bit_colour_to_8bit_only_format_is_rounded(tmp_path: Path) -> None:
    pixels = np.array([[[0, 257 * 100, 65535]]], dtype=np.uint16)
    data = read_image(write_image(tmp_path / "c.bmp", pixels))
    assert data.pixels.dtype == np.uint8
    np.testing.assert_array_equal(data.pixels, [[[0, 100, 255]]])


def test_16bit_png_from_other_writers(tmp_path: Path) -> None:
    rgb = _wide(3, 4, 3)
    rows = [row.astype(">u2").tobytes() for row in rgb.reshape(3, -1)]
    (tmp_path / "rgb.png").write_bytes(_png_bytes(4, 3, rows, color_type=2, bit_depth=16))
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png").pixels, rgb)

    la = rgb[..., :2]  # grey + alpha becomes RGBA pixels, as 8-bit 'LA' does, hinted 'LA'
    rows = [row.astype(">u2").tobytes() for row in la.reshape(3, -1)]
    (tmp_path / "la.png").write_bytes(_png_bytes(4, 3, rows, color_type=4, bit_depth=16))
    data = read_image(tmp_path / "la.png")
    assert data.mode_hint == "LA" and data.has_alpha and data.pixels.dtype == np.uint16
    np.testing.assert_array_equal(data.pixels, la[..., [0, 0, 0, 1]])

    with open(tmp_path / "trns.png", "wb") as f:  # tRNS colour key, interlaced
        writer = png.Writer(4, 3, greyscale=False, bitdepth=16, transparent=tuple(rgb[1, 2]), interlace=True)
        writer.write(f, rgb.reshape(3, -1).tolist())
    data = read_image(tmp_path / "trns.png")
    assert data.mode_hint == "RGBA"
    np.testing.assert_array_equal(data.pixels[..., :3], rgb)
    expected_alpha = np.full((3, 4), 65535)
    expected_alpha[1, 2] = 0
    np.testing.assert_array_equal(data.pixels[..., 3], expected_alpha)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"compression": "zlib", "predictor": True},
        {"planarconfig": "separate"},
        {"extrasamples": ["assocalpha"]},
        {"extrasamples": ["unspecified"]},
    ],
    ids=["deflate", "planar", "premultiplied", "extra-sample"],
)
def test_16bit_tiff_from_tifffile(tmp_path: Path, kwargs: dict) -> None:
    extra = "extrasamples" in kwargs
    pixels = _wide(c=4 if extra else 3)
    if kwargs.get("extrasamples") == ["assocalpha"]:
        pixels[..., 3] = 32768
        pixels[0, 0, 3] = 0
        pixels[..., :3] //= 2  # premultiplied by alpha 1/2 (about)
    stored = np.moveaxis(pixels, -1, 0) if "planarconfig" in kwargs else pixels
    tifffile.imwrite(tmp_path / "t.tif", stored, photometric="rgb", **kwargs)
    data = read_image(tmp_path / "t.tif")
    assert data.pixels.dtype == np.uint16
    if kwargs.get("extrasamples") == ["assocalpha"]:
        assert data.mode_hint == "RGBA"
        np.testing.assert_allclose(data.pixels[..., :3][1:].astype(int), (pixels[..., :3][1:] * 2).astype(int), atol=2)
        np.testing.assert_array_equal(data.pixels[0, 0], [0, 0, 0, 0])
    elif extra:  # an unspecified extra sample is dropped, as Pillow does ('RGBX')
        assert data.mode_hint == "RGB"
        np.testing.assert_array_equal(data.pixels, pixels[..., :3])
    else:
        np.testing.assert_array_equal(data.pixels, pixels)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16bit_orientation_matches_8bit(tmp_path: Path, orientation: int) -> None:
    pixels8 = RNG.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    like = ImageData(pixels=pixels8, mode_hint="RGB", exif=_exif(orientation).tobytes())
    via8 = read_image(write_image(tmp_path / "a8.png", pixels8, like=like))
    via16 = read_image(write_image(tmp_path / "a16.png", pixels8.astype(np.uint16) * 257, like=like))
    assert via16.pixels.dtype == np.uint16
    np.testing.assert_array_equal(via16.pixels, via8.pixels.astype(np.uint16) * 257)
    assert via16.exif == via8.exif


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_colour_metadata(tmp_path: Path, ext: str) -> None:
    pixels = _wide(4, 6, 4)
    icc = _srgb_icc()
    like = ImageData(pixels=pixels, mode_hint="RGBA", icc_profile=icc, exif=_exif(6).tobytes())
    data = read_image(write_image(tmp_path / f"s{ext}", pixels, like=like))
    np.testing.assert_array_equal(data.pixels, np.rot90(pixels, -1))  # orientation 6 applied
    assert data.icc_profile == icc
    exif = Image.Exif()
    exif.load(data.exif)
    assert exif[ORIENTATION] == 1 and exif[MAKE] == "TestCam"
    # 16-bit colour TIFF is written without the EXIF sub-IFD (tifffile cannot write one).
    expected = "2020:01:02 03:04:05" if ext == ".png" else None
    assert exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL) == expected


def test_16bit_png_exif_after_pixel_data(tmp_path: Path) -> None:
    src = write_image(tmp_path / "a.png", _wide())
    chunks = list(png.Reader(filename=src).chunks())
    chunks.insert(-1, (b"eXIf", _exif(3).tobytes()[6:]))  # before IEND, after IDAT
    with open(tmp_path / "b.png", "wb") as f:
        png.write_chunks(f, chunks)
    data = read_image(tmp_path / "b.png")
    np.testing.assert_array_equal(data.pixels, _wide()[::-1, ::-1])  # orientation 3: rotated 180
    assert data.exif is not None


def test_16bit_colour_bomb_limit_checked_before_decoding(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(_png_bytes(20000, 10000, [], color_type=2, bit_depth=16))
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        read_image(tmp_path / "bomb.png")
    small = write_image(tmp_path / "a.tif", _wide())
    with pytest.raises(ImageTooLargeError, match="34"):
        read_image(small, max_pixels=34)
    assert read_image(small, max_pixels=35).pixels.dtype == np.uint16


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_colour_truncated_raises(tmp_path: Path, ext: str) -> None:
    data = write_image(tmp_path / f"a{ext}", _wide(40, 40)).read_bytes()
    (tmp_path / f"t{ext}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"t{ext}"):
        read_image(tmp_path / f"t{ext}")


def test_16bit_tiff_with_damaged_compressed_data_raises(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", _wide(20, 30), photometric="rgb", compression="zlib", rowsperstrip=4)
    data = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(data[: len(data) * 3 // 5])  # imagecodecs' DeflateError: a RuntimeError
    with pytest.raises(ImageReadError, match="t.tif: cannot decode image"):
        read_image(tmp_path / "t.tif")


@pytest.mark.parametrize("compression", ["lzw", "zstd"])
def test_16bit_tiff_from_scanners_keeps_16_bits(tmp_path: Path, compression: str) -> None:
    tifffile.imwrite(tmp_path / "scan.tif", _wide(), photometric="rgb", compression=compression)  # imagecodecs
    data = read_image(tmp_path / "scan.tif")
    assert data.pixels.dtype == np.uint16
    np.testing.assert_array_equal(data.pixels, _wide())


def test_16bit_tiff_without_codec_falls_back_to_8bit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tifffile.imwrite(tmp_path / "t.tif", _wide(), photometric="rgb", compression="zlib")
    monkeypatch.setattr(tifffile.TIFF, "DECOMPRESSORS", {1: tifffile.TIFF.DECOMPRESSORS[1]})  # as without imagecodecs
    with pytest.warns(UserWarning, match="imagecodecs"):
        data = read_image(tmp_path / "t.tif")
    assert data.pixels.dtype == np.uint8
    np.testing.assert_array_equal(data.pixels, _wide() >> 8)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_failed_16bit_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str) -> None:
    out = write_image(tmp_path / f"a{ext}", _wide())
    before = out.read_bytes()

    def failing(*args, **kwargs) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(png.Writer, "write_packed", failing)
    monkeypatch.setattr(tifffile, "imwrite", failing)
    with pytest.raises(ImageWriteError, match="disk full"):
        write_image(out, _wide(c=4), overwrite=True)
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == [f"a{ext}"]


# --- colour modes ----------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".bmp"])
def test_grayscale_stays_grayscale(tmp_path: Path, ext: str) -> None:
    Image.fromarray(RNG.integers(0, 256, (5, 4), dtype=np.uint8)).save(tmp_path / f"g{ext}")
    data = read_image(tmp_path / f"g{ext}")
    assert data.pixels.shape == (5, 4, 1) and data.mode_hint == "L"


def test_grayscale_like_writes_rgb_back_as_grayscale(tmp_path: Path) -> None:
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3, 1) * 40
    data = ImageData(pixels=gray, mode_hint="L")
    out = write_image(tmp_path / "g.png", np.repeat(gray, 3, axis=2), like=data)
    assert _open(out).mode == "L"
    np.testing.assert_array_equal(read_image(out).pixels, gray)


def test_palette_with_transparency_becomes_rgba(tmp_path: Path) -> None:
    im = Image.new("P", (2, 1))
    im.putpalette([0, 255, 0, 255, 0, 0])
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "p.png", transparency=0)
    data = read_image(tmp_path / "p.png")
    assert data.mode_hint == "RGBA"
    np.testing.assert_array_equal(data.pixels[0], [[0, 255, 0, 0], [255, 0, 0, 255]])


def test_palette_without_transparency_and_la(tmp_path: Path) -> None:
    Image.new("P", (2, 2)).save(tmp_path / "p.png")
    Image.new("LA", (2, 2), (10, 20)).save(tmp_path / "la.png")
    assert read_image(tmp_path / "p.png").mode_hint == "RGB"
    la = read_image(tmp_path / "la.png")
    assert la.mode_hint == "LA" and la.has_alpha
    np.testing.assert_array_equal(la.pixels[0, 0], [10, 10, 10, 20])


def test_cmyk_jpeg_becomes_rgb_and_drops_cmyk_profile(tmp_path: Path) -> None:
    fake_cmyk_icc = bytes(16) + b"CMYK" + bytes(108)
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg", icc_profile=fake_cmyk_icc)
    with pytest.warns(UserWarning, match="CMYK ICC profile cannot be used"):  # converted without it
        data = read_image(tmp_path / "c.jpg")
    assert data.mode_hint == "RGB" and data.pixels.shape == (4, 4, 3) and data.icc_profile is None
    assert data.pixels[0, 0, 0] > 240 and data.pixels[0, 0, 1:].max() < 15


def test_float_image_is_rejected(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((2, 2), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match="floating-point"):
        read_image(tmp_path / "f.tif")


# --- orientation and metadata ------------------------------------------------------------------


@pytest.mark.parametrize("src_ext", [".jpg", ".png", ".tif"])
@pytest.mark.parametrize("out_ext", [".jpg", ".png", ".webp", ".tif"])
def test_orientation_applied_and_metadata_copied(tmp_path: Path, src_ext: str, out_ext: str) -> None:
    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[0, 0] = 255  # top-left marker
    icc = _srgb_icc()
    Image.fromarray(pixels).save(tmp_path / f"s{src_ext}", exif=_exif(6).tobytes(), icc_profile=icc)
    data = read_image(tmp_path / f"s{src_ext}")
    assert data.pixels.shape == (6, 4, 3)  # orientation 6: rotated 90 degrees clockwise
    assert data.pixels[0, -1].min() > 200  # the marker moved to the top-right
    assert data.icc_profile == icc

    out = _open(write_image(tmp_path / f"o{out_ext}", data.pixels, like=data))
    exif = out.getexif()
    assert out.info.get("icc_profile") == icc
    assert exif[ORIENTATION] == 1 and exif[MAKE] == "TestCam"
    assert exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "2020:01:02 03:04:05"


def test_bmp_output_has_no_metadata(tmp_path: Path) -> None:
    Image.fromarray(_rgb()).save(tmp_path / "s.png", exif=_exif(1).tobytes(), icc_profile=_srgb_icc())
    data = read_image(tmp_path / "s.png")
    out = _open(write_image(tmp_path / "o.bmp", data.pixels, like=data))
    assert not out.getexif() and "icc_profile" not in out.info


# --- read limits and errors --------------------------------------------------------------------


def test_bomb_limit_by_default(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(_png_bytes(20000, 10000, []))  # header only: 200 MP
    assert 20000 * 10000 > DEFAULT_MAX_PIXELS
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLargeError, match="max_pixels"):
        read_image(tmp_path / "bomb.png")
    assert Image.MAX_IMAGE_PIXELS == pillow_limit and ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("limit", [5000, 100])  # Pillow's warning zone and its error zone (> 2x)
def test_bomb_limit_override(tmp_path: Path, limit: int) -> None:
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    with pytest.raises(ImageTooLargeError, match=f"{limit:,}"):
        read_image(tmp_path / "a.png", max_pixels=limit)
    assert read_image(tmp_path / "a.png", max_pixels=10_000).pixels.shape == (100, 100, 3)
    assert read_image(tmp_path / "a.png", max_pixels=None).pixels.shape == (100, 100, 3)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_truncated_file_raises(tmp_path: Path, ext: str) -> None:
    Image.fromarray(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"a{ext}")
    data = (tmp_path / f"a{ext}").read_bytes()
    (tmp_path / f"t{ext}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=f"t{ext}"):
        read_image(tmp_path / f"t{ext}")


def test_unreadable_inputs_raise(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "zero.png").write_bytes(_png_bytes(0, 2, [b"", b""]))
    Image.new("RGB", (2, 2)).save(tmp_path / "a.gif")
    for name in ("text.png", "empty.jpg", "zero.png", "a.gif", "missing.png"):
        with pytest.raises(ImageReadError, match=name):
            read_image(tmp_path / name)
    with pytest.raises(ImageReadError, match="not a file"):
        read_image(tmp_path)
    assert issubclass(ImageReadError, SubpixelError) and issubclass(ImageWriteError, SubpixelError)


# --- writing ------------------------------------------------------------------------------------


def test_existing_output_refused_unless_overwrite(tmp_path: Path) -> None:
    out = write_image(tmp_path / "a.png", _rgb())
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_image(out, _rgb())
    new = _rgb()
    write_image(out, new, overwrite=True)
    np.testing.assert_array_equal(read_image(out).pixels, new)


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = write_image(tmp_path / "a.png", _rgb())
    before = out.read_bytes()

    def failing_save(self: Image.Image, fp, *args, **kwargs) -> None:
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(ImageWriteError, match="disk full"):
        write_image(out, _rgb(), overwrite=True)
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.png"]


def test_written_file_has_normal_permissions(tmp_path: Path) -> None:
    (tmp_path / "ref").write_bytes(b"")
    out = write_image(tmp_path / "a.png", _rgb())
    assert out.stat().st_mode == (tmp_path / "ref").stat().st_mode


def test_output_size_checked_before_work(tmp_path: Path) -> None:
    check_output_size("out.webp", 16383, 16383)
    check_output_size(tmp_path / "out.tif", 10**6, 10**6)
    with pytest.raises(OutputTooLargeError, match="16383"):
        check_output_size("out.webp", 16384, 10)
    with pytest.raises(OutputTooLargeError, match="JPEG"):
        check_output_size("jpg", 10, 70000)
    with pytest.raises(OutputTooLargeError):
        write_image(tmp_path / "wide.webp", np.zeros((1, 16384, 3), np.uint8))
    assert not list(tmp_path.iterdir())


def test_unsupported_outputs(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match="unsupported"):
        write_image(tmp_path / "a.gif", _rgb())
    with pytest.raises(ImageWriteError, match="unsupported"):
        check_output_size("a.xyz", 1, 1)
    for ext in (".jpg", ".bmp"):
        with pytest.raises(ImageWriteError, match="alpha"):
            write_image(tmp_path / f"a{ext}", np.zeros((2, 2, 4), np.uint8))
    with pytest.raises(ValueError, match="from_float"):
        write_image(tmp_path / "a.png", np.zeros((2, 2, 3), np.float32))


def test_is_image_path() -> None:
    assert is_image_path("a/B.JPG") and is_image_path(Path("x.tiff"))
    assert not is_image_path("a.gif") and not is_image_path(".a.png") and not is_image_path("a.png.1f.tmp")


# --- float conversion and alpha -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_float_round_trip(dtype: type) -> None:
    top = np.iinfo(dtype).max
    pixels = np.array([0, 1, top // 2, top - 1, top], dtype=dtype)
    as_float = np.divide(pixels, top, dtype=np.float32)
    assert as_float.dtype == np.float32 and as_float.max() == 1.0
    np.testing.assert_array_equal(from_float(as_float, dtype), pixels)
    np.testing.assert_array_equal(from_float(np.array([-0.5, np.nan, 2.0]), dtype), [0, 0, top])


def test_tifffile_layout_note_is_not_copied_as_a_caption(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "t.tif", _wide(c=3), photometric="rgb")  # writes ImageDescription {"shape": ...}
    data = read_image(tmp_path / "t.tif")
    out = write_image(tmp_path / "o.tif", np.repeat(np.repeat(data.pixels, 2, 0), 2, 1), like=data)
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].shape == (2 * data.height, 2 * data.width, 3)
        assert '"shape"' not in (tif.pages[0].description or "")


def test_atomic_writes_replace_whole_files_or_leave_the_old_one(tmp_path: Path) -> None:
    from subpixel.io.atomic import write_atomic

    target = tmp_path / "card.json"
    write_atomic(target, "old\n")
    assert target.read_text() == "old\n"

    def half_then_fail(f) -> None:
        f.write(b"half")
        raise KeyboardInterrupt  # Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["card.json"]
    old_umask = os.umask(0o022)
    try:
        write_atomic(target, b"new")
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o644


def test_16bit_grey_with_a_transparent_value_reads_as_grey_plus_alpha(tmp_path: Path) -> None:
    grey = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)  # 0 is the transparent value
    with open(tmp_path / "g.png", "wb") as f:
        png.Writer(4, 3, greyscale=True, bitdepth=16, transparent=0).write(f, grey.tolist())
    data = read_image(tmp_path / "g.png")
    assert data.mode_hint == "LA" and data.pixels.dtype == np.uint16
    np.testing.assert_array_equal(data.pixels[..., :3], np.repeat(grey[..., None], 3, axis=2))
    np.testing.assert_array_equal(data.pixels[..., 3], np.where(grey == 0, 0, 65535))
    again = read_image(write_image(tmp_path / "o.png", data.pixels, like=data))
    np.testing.assert_array_equal(again.pixels, data.pixels)


XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'


@pytest.mark.parametrize("src_ext", [".png", ".jpg", ".tif"])
def test_dpi_and_xmp_are_carried_unchanged(tmp_path: Path, src_ext: str) -> None:
    png_info = PngImagePlugin.PngInfo()
    png_info.add_itxt("XML:com.adobe.xmp", XMP)
    xmp = {".png": {"pnginfo": png_info}, ".jpg": {"xmp": XMP}, ".tif": {"tiffinfo": {700: XMP}}}[src_ext]
    Image.fromarray(_rgb()).save(tmp_path / f"s{src_ext}", dpi=(300, 300), **xmp)
    data = read_image(tmp_path / f"s{src_ext}")
    assert data.dpi == pytest.approx((300, 300), abs=0.01) and data.xmp == XMP
    for ext, dtype in ((".png", np.uint8), (".png", np.uint16), (".jpg", np.uint8), (".tif", np.uint8),
                       (".tif", np.uint16), (".webp", np.uint8)):
        pixels = np.repeat(np.repeat(data.pixels, 2, 0), 2, 1).astype(dtype) * (257 if dtype == np.uint16 else 1)
        out = read_image(write_image(tmp_path / f"o{ext}", pixels, like=data, overwrite=True))
        assert out.xmp == XMP, (ext, dtype)
        if ext == ".webp":  # WebP has no resolution
            assert out.dpi is None
        else:  # the same resolution, not 2x: the picture is twice as large
            assert out.dpi == pytest.approx((300, 300), abs=0.01), (ext, dtype)


def test_missing_resolution_stays_missing(tmp_path: Path) -> None:
    Image.fromarray(_rgb()).save(tmp_path / "s.tif")  # Pillow would read it as 1 dpi
    data = read_image(tmp_path / "s.tif")
    assert data.dpi is None and data.xmp is None
    assert "dpi" not in _open(write_image(tmp_path / "o.png", data.pixels, like=data)).info


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_an_applied_rotation_turns_the_resolution_and_leaves_xmp_upright(tmp_path: Path, dtype: type) -> None:
    """EXIF orientation 6 (a quarter turn): the upright pixels' x and y resolution swap, and XMP's copy of the
    orientation goes with EXIF's, so no viewer turns the output a second time (8-bit: Pillow; 16-bit: pypng)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = XMP.replace(b"<rdf:RDF", b'<rdf:Description tiff:Orientation="6"/><rdf:RDF')
    like = ImageData(pixels=_rgb(), mode_hint="RGB", exif=exif.tobytes(), dpi=(300.0, 150.0), xmp=turned)
    pixels = _rgb().astype(dtype) * (257 if dtype == np.uint16 else 1)
    data = read_image(write_image(tmp_path / "s.png", pixels, like=like))
    assert data.pixels.shape[:2] == (8, 6) and data.pixels.dtype == dtype
    assert data.dpi == pytest.approx((150, 300), abs=0.02)  # PNG counts pixels per metre
    assert data.xmp is not None and b"Orientation" not in data.xmp and b"rdf:Description" in data.xmp


def test_atomic_writes_work_when_the_new_file_is_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under umask 0o222 (or a writer that makes its file read-only) the temporary file cannot be opened for
    writing again by a normal user; flushing it to disk must not need that (simulated: tests may run as root)."""
    from subpixel.io import atomic

    real_open = os.open

    def as_a_normal_user(path, flags, *args, **kwargs):
        if str(path).endswith(".tmp") and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    def read_only_writer(tmp: Path) -> None:
        tmp.write_text("hi")
        tmp.chmod(0o444)

    monkeypatch.setattr(atomic.os, "open", as_a_normal_user)
    with atomic.replacing(tmp_path / "out.txt") as tmp:
        read_only_writer(tmp)
    assert (tmp_path / "out.txt").read_text() == "hi"


# --- orientation of every TIFF layout, frames, unsupported formats -------------------------------


TURNED_XMP = XMP.replace(b"<rdf:RDF", b'<rdf:Description tiff:Orientation="6"/><rdf:RDF')


@pytest.mark.parametrize(
    ("channels", "dtype", "kwargs"),
    [
        (1, np.uint8, {}),  # uncompressed single strip: Pillow memory-maps these
        (4, np.uint8, {"extrasamples": ["unassalpha"]}),
        (1, np.uint16, {}),
        (1, np.uint8, {"compression": "lzw"}),
        (3, np.uint8, {}),
        (3, np.uint16, {"compression": "zlib"}),  # tifffile's 16-bit colour path
    ],
    ids=["grey8", "rgba8", "grey16", "grey8-lzw", "rgb8", "rgb16-deflate"],
)
@pytest.mark.parametrize("orientation", [6, 8])
def test_tiff_orientation_applied_once_for_every_layout(
    tmp_path: Path, channels: int, dtype: type, kwargs: dict, orientation: int
) -> None:
    upright = RNG.integers(0, 256, (6, 10, channels), dtype=np.uint8).astype(dtype) * (257 if dtype == np.uint16 else 1)
    stored = np.rot90(upright, 1 if orientation == 6 else -1)  # as a camera held sideways stores it
    tifffile.imwrite(
        tmp_path / "t.tif", np.ascontiguousarray(stored if channels > 1 else stored[..., 0]),
        photometric="minisblack" if channels == 1 else "rgb", resolution=(300, 150), resolutionunit="INCH",
        extratags=[(ORIENTATION, "H", 1, orientation, True), (700, "B", len(TURNED_XMP), TURNED_XMP, True)],
        metadata=None, **kwargs,
    )
    data = read_image(tmp_path / "t.tif")
    np.testing.assert_array_equal(data.pixels, upright)
    assert data.dpi == pytest.approx((150, 300))  # turned with the pixels
    assert data.xmp is not None and b"Orientation" not in data.xmp


def test_multi_frame_inputs_warn_that_only_the_first_is_used(tmp_path: Path) -> None:
    frames = [Image.fromarray(_rgb()) for _ in range(3)]
    frames[0].save(tmp_path / "a.png", save_all=True, append_images=frames[1:])  # APNG
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], lossless=True)
    frames[0].save(tmp_path / "a.tif", save_all=True, append_images=frames[1:2])
    for name, text in [("a.png", "3 frames"), ("a.webp", "3 frames"), ("a.tif", "2 pages")]:
        with pytest.warns(UserWarning, match=f"{name} has {text}; only the first is upscaled"):
            data = read_image(tmp_path / name)
        assert data.frames == int(text[0])
        np.testing.assert_array_equal(data.pixels, np.asarray(frames[0]))

    with tifffile.TiffWriter(tmp_path / "preview.tif") as tif:  # a reduced-resolution preview is not a page
        tif.write(_rgb(), photometric="rgb")
        tif.write(_rgb(3, 4), photometric="rgb", subfiletype=1)
    Image.fromarray(_rgb()).save(tmp_path / "one.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "preview.tif").frames == read_image(tmp_path / "one.png").frames == 1


def test_unsupported_formats_are_named(tmp_path: Path) -> None:
    Image.new("RGB", (2, 2)).save(tmp_path / "a.gif")
    (tmp_path / "a.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64))
    (tmp_path / "a.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    for name, fmt in [("a.gif", "GIF"), ("a.avif", "AVIF"), ("a.heic", "HEIC")]:
        with pytest.raises(ImageReadError, match=f"{name}: {fmt} images are not supported") as err:
            read_image(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(ImageWriteError, match="no file extension.*--format png"):
        write_image(tmp_path / "noextension", _rgb())


# --- carried within a format: WebP losslessness, TIFF compression, PNG chunks, JPEG COM and IPTC ---


def _webp_kind(path: Path) -> bytes:
    """The image chunk of a simple WebP: b'VP8L' (lossless) or b'VP8 ' (lossy)."""
    return path.read_bytes()[12:16]


def test_lossless_webp_stays_lossless(tmp_path: Path) -> None:
    pixels = _rgb(16, 16)
    Image.fromarray(pixels).save(tmp_path / "l.webp", lossless=True)
    Image.fromarray(pixels).save(tmp_path / "q.webp", quality=90)
    lossless, lossy = read_image(tmp_path / "l.webp"), read_image(tmp_path / "q.webp")
    out = write_image(tmp_path / "o.webp", lossless.pixels, like=lossless, quality=80)
    assert _webp_kind(out) == b"VP8L"
    np.testing.assert_array_equal(read_image(out).pixels, pixels)
    assert _webp_kind(write_image(tmp_path / "p.webp", lossy.pixels, like=lossy)) == b"VP8 "
    assert _webp_kind(write_image(tmp_path / "n.webp", pixels)) == b"VP8 "  # no like: lossy as before
    assert (lossless.compression, lossy.compression) == ("lossless", "lossy")


@pytest.mark.parametrize(
    ("dtype", "channels", "compression"),
    [
        (np.uint8, 3, "tiff_lzw"),
        (np.uint8, 3, "tiff_adobe_deflate"),
        (np.uint8, 1, "packbits"),
        (np.uint8, 4, "tiff_lzw"),
        (np.uint16, 1, "tiff_adobe_deflate"),
        (np.uint16, 3, "tiff_lzw"),  # tifffile
        (np.uint16, 3, "tiff_adobe_deflate"),
        (np.uint8, 3, "raw"),
    ],
)
def test_tiff_compression_is_carried(tmp_path: Path, dtype: type, channels: int, compression: str) -> None:
    pixels = np.repeat(np.repeat(_smooth_rgb(8, 8), 4, axis=0), 4, axis=1).astype(dtype)  # compressible
    pixels = pixels[..., :1] if channels == 1 else pixels
    if channels == 4:
        pixels = np.concatenate([pixels, np.full_like(pixels[..., :1], 99)], axis=2)
    if dtype == np.uint16:
        pixels = pixels * 257 + 1
    if dtype == np.uint16 and channels > 1:
        names = {"tiff_lzw": "lzw", "tiff_adobe_deflate": "zlib"}
        tifffile.imwrite(tmp_path / "s.tif", pixels, photometric="rgb", compression=names[compression])
    else:
        Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(tmp_path / "s.tif", compression=compression)
    data = read_image(tmp_path / "s.tif")
    out = write_image(tmp_path / "o.tif", data.pixels, like=data)
    assert _open(out).info["compression"] == compression
    np.testing.assert_array_equal(read_image(out).pixels, pixels)
    assert data.compression == compression


@pytest.mark.parametrize("compression", ["tiff_lzw", "tiff_adobe_deflate", "packbits"])
def test_compressed_tiff_keeps_exif_and_xmp(tmp_path: Path, compression: str) -> None:
    exif = Image.Exif()
    exif[MAKE] = "TestCam"
    like = ImageData(_rgb(20, 30), "RGB", exif=exif.tobytes(), format="TIFF", xmp=b"<x:xmpmeta/>",
                     compression=compression)
    written = _open(write_image(tmp_path / "o.tif", like.pixels, like=like))
    assert written.info["compression"] == compression and written.getexif()[MAKE] == "TestCam"
    assert written.info["xmp"] == b"<x:xmpmeta/>"
    like.exif = _exif(1).tobytes()  # with an EXIF sub-IFD, which Pillow's compressed writer would drop
    with pytest.warns(UserWarning, match="o2.tif: writing this TIFF uncompressed to keep its EXIF"):
        written = _open(write_image(tmp_path / "o2.tif", like.pixels, like=like))
    assert written.info["compression"] == "raw" and written.info["xmp"] == b"<x:xmpmeta/>"
    assert written.getexif().get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] == "2020:01:02 03:04:05"
    np.testing.assert_array_equal(read_image(tmp_path / "o2.tif").pixels, like.pixels)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_text_and_colour_chunks_are_carried(tmp_path: Path, dtype: type) -> None:
    pixels = _rgb().astype(dtype) * (257 if dtype == np.uint16 else 1)  # 16 bits: written by pypng
    chunks = list(png.Reader(filename=write_image(tmp_path / "plain.png", pixels)).chunks())
    extra = [(b"tEXt", b"Author\x00Jane"), (b"zTXt", b"Description\x00\x00" + zlib.compress(b"Archive scan 42")),
             (b"iTXt", "Title\x00\x00\x00fr\x00Titre\x00Café – 写真".encode()),
             (b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP),
             (b"gAMA", struct.pack(">I", 100000)),
             (b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)),
             (b"cICP", bytes([9, 16, 0, 1]))]  # BT.2020 primaries, PQ: an HDR picture
    with open(tmp_path / "s.png", "wb") as f:
        png.write_chunks(f, chunks[:1] + extra + chunks[1:])
    data = read_image(tmp_path / "s.png")
    out = write_image(tmp_path / "o.png", data.pixels, like=data)
    with Image.open(out) as im:
        im.load()
        assert im.text == {"Author": "Jane", "Description": "Archive scan 42", "Title": "Café – 写真",
                           "XML:com.adobe.xmp": XMP.decode()}
        assert im.text["Title"].lang == "fr" and im.text["Title"].tkey == "Titre"
        assert im.info["gamma"] == 1.0 and im.info["chromaticity"][0] == pytest.approx(0.3127)
    kinds = [kind for kind, _ in png.Reader(filename=out).chunks()]
    assert kinds.count(b"iTXt") == 2 and kinds.index(b"gAMA") < kinds.index(b"IDAT")
    assert (b"cICP", bytes([9, 16, 0, 1])) in list(png.Reader(filename=out).chunks())
    np.testing.assert_array_equal(read_image(out).pixels, pixels)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_xmp_and_exif_text_after_the_pixel_data_are_read(tmp_path: Path, dtype: type) -> None:
    """Valid PNG, as older ExifTool and ImageMagick write it: Pillow sees such chunks only once it decodes."""
    pixels = _rgb().astype(dtype) * (257 if dtype == np.uint16 else 1)
    chunks = list(png.Reader(filename=write_image(tmp_path / "plain.png", pixels)).chunks())
    exif = Image.Exif()
    exif[ORIENTATION], exif[MAKE] = 6, "CamMake"  # turned
    raw = exif.tobytes().hex()
    profile = f"\nexif\n{len(raw) // 2:8d}\n" + "\n".join(raw[i:i + 72] for i in range(0, len(raw), 72)) + "\n"
    late = [(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP),
            (b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(profile.encode()))]
    with open(tmp_path / "late.png", "wb") as f:
        png.write_chunks(f, chunks[:-1] + late + chunks[-1:])
    data = read_image(tmp_path / "late.png")
    assert data.xmp == XMP and data.pixels.shape[:2] == pixels.shape[1::-1]  # turned once
    with Image.open(write_image(tmp_path / "o.png", data.pixels, like=data)) as out:
        assert out.getexif()[MAKE] == "CamMake" and out.getexif().get(ORIENTATION, 1) == 1


def _iptc_app13(caption: bytes) -> bytes:
    iptc = b"\x1c\x02\x78" + struct.pack(">H", len(caption)) + caption
    thumbnail = b"8BIM\x04\x0c\x00\x00" + struct.pack(">I", 4) + b"JPEG"  # stale after upscaling: not carried
    irb = b"Photoshop 3.0\x00" + thumbnail + b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc
    irb += b"\x00" * (len(irb) & 1)
    return b"\xff\xed" + struct.pack(">H", len(irb) + 2) + irb


def test_jpeg_comment_and_iptc_are_carried(tmp_path: Path) -> None:
    Image.fromarray(_smooth_rgb()).save(tmp_path / "c.jpg", comment=b"scanned by the archive")
    body = (tmp_path / "c.jpg").read_bytes()
    (tmp_path / "s.jpg").write_bytes(body[:2] + _iptc_app13(b"A caption") + body[2:])
    data = read_image(tmp_path / "s.jpg")
    out = _open(write_image(tmp_path / "o.jpg", data.pixels, like=data))
    assert out.info["comment"] == b"scanned by the archive"
    assert out.info["photoshop"] == {0x0404: b"\x1c\x02\x78\x00\x09A caption"}
    png_out = _open(write_image(tmp_path / "o.png", data.pixels, like=data))
    assert "comment" not in png_out.info and "photoshop" not in png_out.info


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif"])
def test_exif_pixel_dimensions_follow_the_output(tmp_path: Path, ext: str) -> None:
    exif = _exif(6)  # stored 8 wide and 6 high, upright 6 wide and 8 high
    exif.get_ifd(EXIF_IFD).update({0xA002: 8, 0xA003: 6})
    Image.fromarray(_smooth_rgb(6, 8)).save(tmp_path / "s.jpg", exif=exif.tobytes())
    data = read_image(tmp_path / "s.jpg")
    bigger = np.repeat(np.repeat(data.pixels, 2, axis=0), 2, axis=1)  # 12 wide, 16 high
    written = _open(write_image(tmp_path / f"o{ext}", bigger, like=data)).getexif()
    sub = written.get_ifd(EXIF_IFD)
    assert (sub[0xA002], sub[0xA003]) == (12, 16) and sub[DATE_TIME_ORIGINAL] == "2020:01:02 03:04:05"
    plain = read_image(write_image(tmp_path / f"p{ext}", _smooth_rgb(), like=ImageData(_smooth_rgb(), "RGB",
                                                                                        exif=_exif(1).tobytes())))
    assert plain.exif is not None and 0xA002 not in _open(plain.path).getexif().get_ifd(EXIF_IFD)  # not added


def test_exif_too_large_for_jpeg_is_dropped_with_a_warning(tmp_path: Path) -> None:
    exif = _exif(1)
    exif[0x010E] = "x" * 70_000  # ImageDescription: no JPEG APP1 segment holds it
    png_in = tmp_path / "in.png"
    Image.fromarray(_rgb(20, 30)).save(png_in, exif=exif.tobytes())
    data = read_image(png_in)
    with pytest.warns(UserWarning, match="in.png: its EXIF .* over the 64 KB a JPEG holds"):
        out = write_image(tmp_path / "o.jpg", data.pixels, like=data)
    assert not _open(out).getexif()
    assert _open(write_image(tmp_path / "o.png", data.pixels, like=data)).getexif()[0x010E] == "x" * 70_000


# --- CMYK through its profile, premultiplied PIL modes, grey plus alpha ---------------------------------


def _cmyk_icc() -> bytes:
    """A minimal CMYK output profile with neutral inks: each of C, M and Y darkens to grey, K to black."""

    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))

    def mft1(inputs: int, outputs: int, clut: list[int]) -> bytes:  # lut8Type, 2 grid points, identity curves
        identity = b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
        ramp = bytes(range(256))
        head = b"mft1\0\0\0\0" + bytes([inputs, outputs, 2, 0]) + identity
        return head + ramp * inputs + bytes(clut) + ramp * outputs

    a2b = []  # CMYK -> Lab (8-bit: L* 0-100 as 0-255, a* and b* at 128)
    for c, m, y, k in itertools.product((0, 1), repeat=4):
        a2b += [round(255 * (1 - 0.3 * c) * (1 - 0.3 * m) * (1 - 0.3 * y) * (1 - k)), 128, 128]
    b2a = [v for lab in itertools.product((0, 1), repeat=3) for v in (0, 0, 0, 255 * (1 - lab[0]))]
    d50 = s15(0.9642) + s15(1.0) + s15(0.8249)
    tags = [(b"desc", b"desc\0\0\0\0" + struct.pack(">I", 5) + b"test\0" + bytes(79)), (b"wtpt", b"XYZ \0\0\0\0" + d50),
            (b"A2B0", mft1(4, 3, a2b)), (b"B2A0", mft1(3, 4, b2a))]
    offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for sig, body in tags:
        body += bytes(-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (struct.pack(">I", offset + len(data)) + b"none" + bytes([2, 0x10, 0, 0]) + b"prtrCMYKLab " + bytes(12)
              + b"acsp" + bytes(24) + struct.pack(">I", 1) + d50 + bytes(48))
    return header + table + data


def test_cmyk_jpeg_with_a_cmyk_profile_is_converted_through_it(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "c.jpg", icc_profile=_cmyk_icc(), quality=100)
    data = read_image(tmp_path / "c.jpg")
    assert data.mode_hint == "RGB" and data.icc_profile is None  # sRGB now, untagged
    r, g, b = data.pixels[4, 4].astype(int)
    assert 130 < r < 175 and abs(r - g) < 4 and abs(r - b) < 4  # this profile's cyan ink is grey, not (0, 255, 255)
    with pytest.warns(UserWarning, match="CMYK ICC profile cannot be used"):  # a broken profile: converted as before
        Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "b.jpg", icc_profile=bytes(16) + b"CMYK" + bytes(108))
        assert read_image(tmp_path / "b.jpg").pixels[4, 4, 0] < 15


def test_premultiplied_pil_modes_are_unpremultiplied() -> None:
    grey, grey_alpha = pil_to_array(Image.new("La", (2, 1), (50, 128)))  # Pillow cannot convert 'La' to RGBA
    assert grey_alpha == "LA"
    np.testing.assert_allclose(grey[0, 0], [100, 100, 100, 128], atol=1)
    colour, hint = pil_to_array(Image.new("RGBa", (2, 1), (50, 25, 0, 128)))
    assert hint == "RGBA"
    np.testing.assert_allclose(colour[0, 0], [100, 50, 0, 128], atol=1)


@pytest.mark.parametrize(("ext", "dtype"), [(".png", np.uint8), (".tif", np.uint8), (".png", np.uint16)])
def test_grey_plus_alpha_is_written_back_as_grey_plus_alpha(tmp_path: Path, ext: str, dtype: type) -> None:
    la = RNG.integers(0, 256, (5, 6, 2), dtype=np.uint8).astype(dtype) * (257 if dtype == np.uint16 else 1)
    if dtype == np.uint8:
        Image.fromarray(la).save(tmp_path / f"s{ext}")
    else:
        with open(tmp_path / "s.png", "wb") as f:
            png.Writer(6, 5, greyscale=True, alpha=True, bitdepth=16).write(f, la.reshape(5, -1).tolist())
    data = read_image(tmp_path / f"s{ext}")
    assert data.mode_hint == "LA" and data.pixels.shape == (5, 6, 4)
    out = write_image(tmp_path / f"o{ext}", data.pixels, like=data)
    if dtype == np.uint8:
        assert _open(out).mode == "LA"
    else:
        assert png.Reader(filename=out).read()[3]["planes"] == 2
    np.testing.assert_array_equal(read_image(out).pixels, data.pixels)
    wide = data.pixels if dtype == np.uint16 else data.pixels.astype(np.uint16) * 257
    for name, pixels in [("o.webp", data.pixels), ("o16.tif", wide)]:  # WebP has no grey; Pillow cannot read
        written = read_image(write_image(tmp_path / name, pixels, like=data))  # 16-bit grey + alpha TIFF
        assert written.mode_hint == "RGBA" and written.pixels.shape == (5, 6, 4)


@pytest.mark.parametrize("name", ["a" * 236 + ".png", "é" * 118 + ".png", "b" * 251 + ".png", "€" * 83 + ".png"])
def test_a_long_file_name_writes_atomically(name: str, tmp_path: Path) -> None:
    """The temporary name (``.NAME.RANDOM.tmp``) stays within 255 bytes however long the target's name is."""
    from subpixel.io.atomic import replacing, write_atomic

    assert 240 <= len(name.encode()) <= 255
    target = tmp_path / name
    write_atomic(target, b"x")
    assert target.read_bytes() == b"x"
    with replacing(target) as tmp:
        assert tmp.name.startswith(".") and tmp.name.endswith(".tmp") and len(tmp.name.encode()) <= 255
        assert tmp.name[1:].startswith(name[:50])
        tmp.write_bytes(b"y")  # whole characters kept: the name is still valid UTF-8 (encode would fail)
        tmp.name.encode()
    assert target.read_bytes() == b"y"
    assert sorted(tmp_path.iterdir()) == [target]
