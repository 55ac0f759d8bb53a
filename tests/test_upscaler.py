"""The Python API: subpixel.load and Upscaler.upscale on arrays, PIL images and tensors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from PIL import Image

import subpixel
from subpixel.engine import make_engine
from subpixel.errors import SubpixelError
from subpixel.io.image import luma
from subpixel.models import build
from subpixel.ops.pixels import quantize
from subpixel.ops.resize import apply_taps, imresize_np
from subpixel.ops.tiling import MIN_TILE, tile_size_for_budget
from subpixel.upscaler import Upscaler


def test_load_bicubic_any_scale_and_unknown_model() -> None:
    assert subpixel.load("bicubic", scale=3).scale == 3
    with pytest.raises(SubpixelError, match="unknown model"):
        subpixel.load("no-such-model", scale=2)


def test_array_kinds_keep_dtype_and_channels(tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu")
    rng = np.random.default_rng(0)
    for arr in (rng.integers(0, 256, (9, 7, 3), dtype=np.uint8),
                rng.integers(0, 65536, (9, 7, 3), dtype=np.uint16),
                rng.integers(0, 256, (9, 7), dtype=np.uint8),
                rng.integers(0, 256, (9, 7, 1), dtype=np.uint8),
                rng.random((9, 7, 3)).astype(np.float32)):
        out = m.upscale(arr)
        assert out.dtype == arr.dtype
        assert out.shape[:2] == (18, 14) and out.shape[2:] == arr.shape[2:]


def test_pil_and_tensor_inputs(tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu")
    pil = Image.new("RGB", (7, 5), (10, 200, 30))
    assert m.upscale(pil).size == (14, 10)
    assert m.upscale(Image.new("P", (7, 5))).size == (14, 10)
    t = torch.rand(3, 5, 6)
    assert m.upscale(t).shape == (3, 10, 12)
    assert m.upscale(t[None]).shape == (1, 3, 10, 12)


@pytest.mark.parametrize("model", ["bicubic", "espcn"])
def test_pil_images_keep_their_depth(model: str) -> None:
    m = subpixel.load(model, scale=2, device="cpu")
    ramp = np.linspace(0, 1, 8 * 6, dtype=np.float32).reshape(6, 8)
    g16 = m.upscale(Image.fromarray((ramp * 65535).astype(np.uint16)))
    assert g16.mode == "I;16" and np.asarray(g16).max() > 60000  # not clipped to 255
    i32 = m.upscale(Image.fromarray((ramp * 40000).astype(np.int32)))
    assert i32.mode == "I" and np.asarray(i32).max() > 30000
    f = m.upscale(Image.fromarray(ramp))
    assert f.mode == "F" and 0.9 < np.asarray(f).max() < 1.2  # float in [0, 1] stays float
    assert [m.upscale(Image.new(mode, (8, 6))).mode for mode in ("1", "L", "RGBa", "LA", "P")] == \
        ["L", "L", "RGBA", "LA", "RGB"]


@pytest.mark.parametrize("model", ["bicubic", "tiny"])
def test_bad_arrays_and_tensors_are_refused_alike(model: str, tiny_net) -> None:
    m = subpixel.load("bicubic", scale=2) if model == "bicubic" else Upscaler(tiny_net, name="tiny", device="cpu")
    for bad in (np.zeros((8, 8), np.int64), np.zeros((8, 8), bool), np.zeros(8, np.uint8), np.zeros((8, 8, 2)),
                torch.zeros(1, 8, 8), torch.zeros(3, 8, 8, dtype=torch.int32)):
        with pytest.raises(ValueError):
            m.upscale(bad)
    u8 = torch.randint(0, 256, (3, 5, 6), dtype=torch.uint8)
    out = m.upscale(u8)
    assert out.dtype == torch.uint8 and out.shape == (3, 10, 12)
    assert torch.equal(out, quantize(m.upscale(u8.float() / 255)))  # rounded half up, as arrays are


def test_load_refuses_bad_scales_and_devices() -> None:
    for scale in ("2", 2.5, 0, -2, True):
        with pytest.raises(SubpixelError, match="scale"):
            subpixel.load("bicubic", scale=scale)  # type: ignore[arg-type]
    assert subpixel.load("bicubic", scale=np.int64(2)).scale == subpixel.load("bicubic", scale=2.0).scale == 2
    with pytest.raises(SubpixelError, match="device"):
        subpixel.load("bicubic", scale=2, device="tpu")


def test_alpha_is_premultiplied_so_transparent_colour_does_not_bleed() -> None:
    m = subpixel.load("bicubic", scale=4)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:, :4] = (255, 0, 0, 255)  # opaque red on the left
    rgba[:, 4:] = (0, 255, 0, 0)  # fully transparent *green* on the right
    out = m.upscale(rgba)
    assert out.shape == (32, 32, 4)
    visible = out[..., 3] > 0
    assert out[..., 1][visible].max() <= 2  # no green halo where anything is visible


def test_bicubic_uint8_path_is_matlab_exact() -> None:
    from subpixel.ops.resize import imresize_np

    img = np.random.default_rng(3).integers(0, 256, (11, 13, 3), dtype=np.uint8)
    np.testing.assert_array_equal(subpixel.load("bicubic", scale=2).upscale(img), imresize_np(img, scale=2))


def test_precision_falls_back_to_fp32_when_unsupported(tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu", precision="fp16")
    out = m.upscale(np.zeros((6, 6, 3), np.uint8))
    assert out.shape == (12, 12, 3)
    assert m.engine.precision in ("fp16", "fp32")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_constant_alpha_is_kept_exactly_and_varying_alpha_is_upscaled(dtype: type) -> None:
    m = subpixel.load("espcn", scale=2, device="cpu", engine="torch")
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    rgb = (np.random.default_rng(4).random((48, 48, 3)) * top).astype(dtype)
    for value in (top, 0):  # opaque, and fully transparent
        out = m.upscale(np.concatenate([rgb, np.full((48, 48, 1), value, dtype)], axis=2))
        assert out.dtype == dtype and (out[..., 3] == value).all()
        np.testing.assert_array_equal(out[..., :3], m.upscale(rgb))
    rgba = np.concatenate([rgb, np.zeros((48, 48, 1), dtype)], axis=2)
    rgba[:, :24, 3] = top  # an edge: the model upscales the alpha, clamped to the valid range
    alpha = m.upscale(rgba)[..., 3].astype(np.float64)
    assert alpha.min() >= 0 and alpha.max() <= top and alpha[:, 8:40].max() == top
    assert 0 < alpha[:, 47:49].mean() < top


def test_float_arrays_and_pil_f_images_come_back_within_0_1() -> None:
    m = subpixel.load("espcn", scale=2, device="cpu", engine="torch")
    noise = np.random.default_rng(5).random((16, 16, 3)).astype(np.float32)
    out = m.upscale(noise)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    f = np.asarray(m.upscale(Image.fromarray(noise[..., 0])))
    assert f.min() >= 0 and f.max() <= 1
    t = m.upscale(torch.from_numpy(noise).permute(2, 0, 1))
    assert t.min() < 0 or t.max() > 1  # tensors stay unclamped, as documented


@pytest.mark.parametrize("model", ["bicubic", "tiny"])
def test_float_arrays_out_of_range_come_back_clamped_on_every_path(model: str, tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu") if model == "tiny" else subpixel.load("bicubic", scale=2)
    rgba = np.full((8, 6, 4), 0.5)
    rgba[..., 3] = 1.5  # a constant alpha, copied rather than resampled
    for outscale in (None, 1.5):
        assert m.upscale(rgba, outscale=outscale)[..., 3].max() == 1.0
    if model == "bicubic":  # outscale 1: the input's own size, nothing resampled
        assert m.upscale(np.full((8, 6, 3), 1.7, np.float32), outscale=1).max() == 1.0


def test_float_dtypes_beyond_float64_are_refused() -> None:
    m = subpixel.load("bicubic", scale=2)
    for dtype in (np.float16, np.float32, np.float64):
        assert m.upscale(np.zeros((8, 6, 3), dtype), outscale=1.5).dtype == dtype
    if np.dtype(np.longdouble) != np.float64:  # float128 where the platform has it
        with pytest.raises(ValueError, match="float16/32/64"):
            m.upscale(np.zeros((8, 6, 3), np.longdouble), outscale=1.5)


def test_architecture_arguments_are_refused_with_weights() -> None:
    weights = Path(subpixel.__file__).parent / "weights" / "espcn_x2.safetensors"
    for name in ("espcn", weights):
        with pytest.raises(SubpixelError, match="foo.*pretrained=False"):
            subpixel.load(name, scale=2, foo=1)


def test_pretrained_false_is_refused_with_a_weights_file() -> None:
    weights = Path(subpixel.__file__).parent / "weights" / "espcn_x2.safetensors"
    for arch_args in ({}, {"channels": 8}):
        with pytest.raises(SubpixelError, match="pretrained=False does not apply to a weights file"):
            subpixel.load(weights, pretrained=False, **arch_args)


def test_pil_16_bit_grey_with_a_transparent_value_keeps_it(tmp_path: Path) -> None:
    grey = np.tile(np.arange(0, 65535, 4096, dtype=np.uint16), (4, 1))  # 0 is the transparent value
    with open(tmp_path / "g.png", "wb") as f:
        png.Writer(16, 4, greyscale=True, bitdepth=16, transparent=0).write(f, grey.tolist())
    with Image.open(tmp_path / "g.png") as im:
        out = subpixel.load("bicubic", scale=2).upscale(im)
    assert out.mode == "LA" and out.size == (32, 8)
    assert np.asarray(out)[:, 0, 1].max() == 0 and np.asarray(out)[:, 8:, 1].min() == 255


def test_outscale_resizes_the_model_output_to_any_factor(tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu")  # x2
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (10, 8, 3), dtype=np.uint8)
    out = m.upscale(arr, outscale=1.5)
    assert out.shape == (15, 12, 3) and out.dtype == np.uint8
    assert np.array_equal(out, imresize_np(m.upscale(arr), size=(15, 12)))  # MATLAB bicubic, antialiased
    assert m.upscale(rng.random((10, 8)).astype(np.float32), outscale=3).shape == (30, 24)
    assert m.upscale(Image.fromarray(arr), outscale=2.5).size == (20, 25)
    t = torch.from_numpy(arr).permute(2, 0, 1)
    assert m.upscale(t, outscale=1.5).shape == (3, 15, 12) and m.upscale(t, outscale=1.5).dtype == torch.uint8
    assert np.array_equal(m.upscale(arr, outscale=2), m.upscale(arr))  # the model's own scale: no resize
    for bad in (0, -1.5, float("nan"), float("inf"), "2"):
        with pytest.raises(ValueError, match="outscale"):
            m.upscale(arr, outscale=bad)


def test_outscale_keeps_transparent_pixels_out_of_the_colour() -> None:
    m = subpixel.load("bicubic", scale=4)
    arr = np.zeros((16, 16, 4), np.uint8)
    arr[4:12, 4:12] = (255, 0, 0, 255)  # an opaque red square on transparent black
    out = m.upscale(arr, outscale=1.5)
    assert out.shape == (24, 24, 4)
    edge = (out[..., 3] > 16) & (out[..., 3] < 240)
    assert edge.any() and (out[edge][:, 0] >= 250).all()  # straight-alpha resizing would darken the edge


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("alpha", [1.0, 0.7])
def test_outscale_copies_a_constant_alpha_exactly(tiny_net, dtype: type, alpha: float) -> None:
    rng = np.random.default_rng(0)
    arr = rng.random((17, 23, 4))
    arr[..., 3] = alpha
    arr = (arr * 255).round().astype(dtype) if dtype == np.uint8 else arr.astype(dtype)
    for outscale in (1.5, 0.6, 3.3):
        out = Upscaler(tiny_net, name="tiny", device="cpu").upscale(arr, outscale=outscale)
        assert out.dtype == dtype and (out[..., 3] == arr[0, 0, 3]).all()


def test_pil_exif_gets_the_output_pixel_dimensions(tiny_net) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769).update({0xA002: 7, 0xA003: 5})  # PixelXDimension, PixelYDimension
    img = Image.new("RGB", (7, 5))
    img.info["exif"] = exif.tobytes()
    out = Upscaler(tiny_net, name="tiny", device="cpu").upscale(img)
    written = Image.Exif()
    written.load(out.info["exif"])
    assert written.get_ifd(0x8769)[0xA002] == 14 and written.get_ifd(0x8769)[0xA003] == 10


def test_pil_images_keep_their_colour_profile_exif_and_dpi(tiny_net) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the pixels stay as stored, so the tag stays true
    img = Image.new("RGB", (7, 5), (10, 200, 30))
    img.info.update({"icc_profile": icc, "exif": exif.tobytes(), "dpi": (300, 300), "comment": b"x"})
    out = Upscaler(tiny_net, name="tiny", device="cpu").upscale(img)
    assert out.info["icc_profile"] == icc and out.info["exif"] == exif.tobytes() and out.info["dpi"] == (300, 300)
    assert "comment" not in out.info


def test_pil_cmyk_with_a_cmyk_profile_is_converted_through_it_as_read_image_does(tmp_path: Path) -> None:
    from subpixel.io.image import read_image
    from tests.test_image_io import _cmyk_icc

    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "c.jpg", icc_profile=_cmyk_icc(), quality=100)
    with Image.open(tmp_path / "c.jpg") as im:
        out = subpixel.load("bicubic", scale=2).upscale(im)
    assert out.mode == "RGB" and "icc_profile" not in out.info  # a CMYK profile does not describe RGB
    assert np.array_equal(np.asarray(out)[0, 0], read_image(tmp_path / "c.jpg").pixels[0, 0])  # grey, not cyan


def test_interpolation_resizes_to_outscale_in_one_pass() -> None:
    arr = np.random.default_rng(3).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    out = subpixel.load("bicubic", scale=3).upscale(arr, outscale=2.5)
    assert np.array_equal(out, imresize_np(arr, size=(25, 30)))  # not bicubic x3, then down to 2.5
    same = subpixel.load("bicubic", scale=2).upscale(arr, outscale=1)
    assert np.array_equal(same, arr) and same is not arr
    for odd in (np.float32(1.5), np.int64(2)):
        assert subpixel.load("bicubic", scale=2).upscale(arr, outscale=odd).shape[0] == int(10 * odd)
    with pytest.raises(ValueError, match="outscale"):
        subpixel.load("bicubic", scale=2).upscale(arr, outscale=True)


@pytest.mark.parametrize("model", ["bicubic", "tiny"])
def test_outscale_resizes_in_tiles_with_the_untiled_pixels(model: str, tiny_net, monkeypatch) -> None:
    from subpixel.ops import tiling

    m = Upscaler(tiny_net, name="tiny", device="cpu") if model == "tiny" else subpixel.load("bicubic", scale=2)
    rng = np.random.default_rng(6)
    arrays = [rng.integers(0, 256, (40, 36, 3), dtype=np.uint8), rng.random((40, 36))]
    for arr in arrays + [rng.integers(0, 256, (40, 36, 4), dtype=np.uint8)] * (model == "bicubic"):  # premultiplied
        if arr.shape[-1] == 4:
            whole = m.upscale(arr, outscale=1.5, tile=0)
        else:  # the untiled resize of the input (interpolation) or of the model's output at that tile
            whole = imresize_np(arr if model == "bicubic" else m.upscale(arr, tile=16), size=(60, 54))
            whole = whole if arr.dtype == np.uint8 else whole.clip(0, 1)
        crops: list[tuple[int, ...]] = []
        monkeypatch.setattr(tiling, "apply_taps", lambda x, *args, seen=crops: seen.append(x.shape) or
                            apply_taps(x, *args))
        tiled = m.upscale(arr, outscale=1.5, tile=16)
        monkeypatch.undo()
        assert np.array_equal(tiled, whole)
        side = 16 * (m.scale if model == "tiny" else 1)  # the resize's input is the model's output
        assert len(crops) > 4 and max(max(c[-2:]) for c in crops) <= side + 8  # tiles of about `tile` LR pixels
        if model == "bicubic":
            assert m.last_tile_info is not None and m.last_tile_info.tile == 16 and m.last_tile_info.tiles_run > 1


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_lanczos_outscale_resizes_with_lanczos_and_array_tensor_and_pil_agree(dtype: type) -> None:
    arr = np.random.default_rng(4).integers(64, 192, (12, 10, 3), dtype=np.uint8)  # rings within [0, 255]
    arr = arr if dtype == np.uint8 else (arr / 255).astype(np.float32)
    m = subpixel.load("lanczos", scale=4)
    out = m.upscale(arr, outscale=1.5)
    expected = imresize_np(arr, size=(18, 15), kernel="lanczos3")
    assert np.array_equal(out, expected if dtype == np.uint8 else expected.clip(0, 1))
    assert not np.array_equal(out, subpixel.load("bicubic", scale=4).upscale(arr, outscale=1.5))
    t = torch.from_numpy(arr).permute(2, 0, 1)
    back = m.upscale(t, outscale=1.5).permute(1, 2, 0).numpy()
    if dtype == np.uint8:
        assert np.abs(back.astype(int) - out).max() <= 1  # float resampling vs MATLAB's rounding per pass
        assert np.array_equal(np.asarray(m.upscale(Image.fromarray(arr), outscale=1.5)), out)
    else:
        assert np.allclose(back.clip(0, 1), out, atol=1e-6)


@pytest.mark.parametrize("model", ["bicubic", "lanczos", "tiny"])
def test_outscale_equal_to_the_model_scale_is_no_outscale(model: str, tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu") if model == "tiny" else subpixel.load(model, scale=2)
    rng = np.random.default_rng(5)
    for arr in (rng.integers(0, 256, (9, 11, 3), dtype=np.uint8), rng.integers(0, 256, (9, 11, 4), dtype=np.uint8),
                rng.random((9, 11)).astype(np.float32)):
        assert np.array_equal(m.upscale(arr, outscale=2), m.upscale(arr))
    t = torch.from_numpy(rng.integers(0, 256, (3, 9, 11), dtype=np.uint8))
    assert torch.equal(m.upscale(t, outscale=2.0), m.upscale(t))
    assert torch.equal(m.upscale(t.float() / 255, outscale=2), m.upscale(t.float() / 255))


@pytest.mark.parametrize("model", ["bicubic", "tiny"])
def test_tile_is_none_zero_or_at_least_min_tile(model: str, tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu") if model == "tiny" else subpixel.load(model, scale=2)
    arr = np.zeros((20, 20, 3), np.uint8)
    for bad in (1, MIN_TILE - 1, -1, 16.0, "32", True, None.__class__):
        with pytest.raises(ValueError, match=f"tile must be None, 0 .* >= {MIN_TILE}") as err:
            m.upscale(arr, tile=bad)
        assert "--" not in str(err.value)
        with pytest.raises(ValueError, match="tile"):
            m.upscale_tensor(torch.zeros(1, 3, 20, 20), tile=bad)
    for good in (None, 0, MIN_TILE, np.int64(MIN_TILE)):
        assert m.upscale(arr, tile=good).shape == (40, 40, 3)


@pytest.mark.parametrize("model", ["bicubic", "tiny"])
def test_big_endian_arrays_are_upscaled_as_native_ones(model: str, tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu") if model == "tiny" else subpixel.load(model, scale=2)
    native = np.random.default_rng(6).integers(0, 65536, (7, 9, 3), dtype=np.uint16)
    for arr in (native, native[..., 0], (native / 65535).astype(np.float32)):
        swapped = arr.astype(arr.dtype.newbyteorder(">" if arr.dtype.isnative and np.little_endian else "<"))
        assert not swapped.dtype.isnative
        out = m.upscale(swapped)
        assert out.dtype == arr.dtype and np.array_equal(out, m.upscale(arr))
        assert np.array_equal(m.upscale(swapped, outscale=1.5), m.upscale(arr, outscale=1.5))


def test_output_size_refuses_what_upscale_refuses(tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu")
    assert m.output_size(10, 15) == (20, 30) and m.output_size(10, 15, 2.5) == (25, 38)
    for bad in (0, -1, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ValueError, match="outscale must be a positive number"):
            m.output_size(10, 15, bad)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_load_leaves_the_global_random_generator_alone(engine: str) -> None:
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    subpixel.load("espcn", scale=2, engine=engine, device="cpu")
    subpixel.load("espcn", scale=2, device="cpu", pretrained=False)  # random weights
    assert torch.equal(torch.rand(4), expected)


def test_grey_with_alpha_pil_images_come_back_grey_with_alpha(tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu")
    rng = np.random.default_rng(7)
    la = np.stack([rng.integers(0, 256, (6, 8)), np.tile(np.linspace(30, 255, 8), (6, 1))], 2).astype(np.uint8)
    for img in (Image.fromarray(la), Image.fromarray(la).convert("La")):
        grey, alpha = np.asarray(img.convert("LA")).transpose(2, 0, 1)
        rgba = m.upscale(np.stack([grey, grey, grey, alpha], 2))
        out = m.upscale(img)
        assert out.mode == "LA" and out.size == (16, 12)
        assert np.array_equal(np.asarray(out), np.concatenate([luma(rgba[..., :3]), rgba[..., 3:]], axis=2))


def test_progress_covers_both_passes_of_varying_alpha(tiny_net) -> None:
    m = Upscaler(tiny_net, name="tiny", device="cpu")
    rgba = np.random.default_rng(8).integers(0, 256, (40, 40, 4), dtype=np.uint8)
    calls: list[tuple[int, int]] = []
    m.upscale(rgba, tile=MIN_TILE, progress=lambda done, total: calls.append((done, total)))
    tiles = m.last_tile_info.tiles_run
    assert calls == [(done, 2 * tiles) for done in range(1, 2 * tiles + 1)]


def test_auto_tile_shares_the_memory_budget_among_a_batch(tiny_net, monkeypatch) -> None:
    widest = tiny_net.widest_activation()
    budget = next(b for b in range(1 << 16, 1 << 30, 1 << 12) if tile_size_for_budget(b, widest, 2) >= 64)
    monkeypatch.setattr("subpixel.upscaler.CPU_TILE_BUDGET", budget)
    m = Upscaler(tiny_net, name="tiny", device="cpu")
    one = tile_size_for_budget(budget, widest, 2)
    four = tile_size_for_budget(budget // 4, widest, 2)
    assert four < one
    m.upscale_tensor(torch.rand(1, 3, 64, 64))
    assert m.last_tile_info.tile == one
    m.upscale_tensor(torch.rand(4, 3, 64, 64))
    assert m.last_tile_info.tile == four


def test_auto_tile_counts_the_feature_maps_an_architecture_keeps(monkeypatch) -> None:
    budget = 8 * 2**20
    monkeypatch.setattr("subpixel.upscaler.CPU_TILE_BUDGET", budget)
    for name, maps in (("sprint", 6), ("sesr-m5", 4), ("espcn", 3)):  # measured at once: ~5.4, ~3.5, ~1.6
        m = subpixel.load(name, scale=2, device="cpu", engine="torch", pretrained=False)
        m.upscale_tensor(torch.rand(1, 3, 160, 160))
        tile = m.last_tile_info.tile
        assert tile < 160 and 4 * (maps * m.net.widest_activation() + 3 + 6 * 4) * tile**2 <= budget, name


def test_a_torch_device_is_checked_like_its_name(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", torch.device("cuda")):
        with pytest.raises(SubpixelError, match="no CUDA GPU"):
            subpixel.load("espcn", scale=2, engine="torch", device=device)
        with pytest.raises(SubpixelError, match="no CUDA GPU"):
            Upscaler(build("bicubic", 2), name="bicubic", device=device)
        with pytest.raises(SubpixelError, match="no CUDA GPU"):
            make_engine(build("espcn", 2), "torch", device)


def test_a_pil_image_opened_by_a_bytes_path_upscales(tiny_net, tmp_path) -> None:
    Image.new("RGB", (6, 5)).save(tmp_path / "a.png")
    with Image.open(os.fsencode(tmp_path / "a.png")) as img:
        assert Upscaler(tiny_net, name="tiny", device="cpu").upscale(img).size == (12, 10)
