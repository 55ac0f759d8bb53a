"""The evaluation protocols reproduce the reference figures (Set5 pinned at every scale)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import subpixel
from subpixel.cli import cli
from subpixel.errors import SubpixelError
from subpixel.eval import evaluate, make_lr, modcrop, score
from subpixel.eval.metrics import psnr, ssim
from subpixel.eval.protocol import load_hr
from subpixel.io.image import write_image

# (scale, protocol) -> (PSNR, SSIM, PSNR tolerance, SSIM tolerance)
SET5 = {
    (2, "default"): (33.6734, 0.93029, 0.005, 0.0003),
    (3, "default"): (30.4033, 0.86891, 0.005, 0.0003),
    (4, "default"): (28.4290, 0.81114, 0.005, 0.0003),
    (2, "legacy-y"): (33.66, 0.9299, 0.01, 0.001),
    (3, "legacy-y"): (30.39, 0.8682, 0.01, 0.001),
    (4, "legacy-y"): (28.42, 0.8104, 0.01, 0.001),
}


@pytest.mark.parametrize("scale,protocol", sorted(SET5))
def test_bicubic_set5_reference(shared_data: Path, scale: int, protocol: str) -> None:
    ref_p, ref_s, tol_p, tol_s = SET5[scale, protocol]
    res = evaluate(subpixel.load("bicubic", scale=scale), shared_data / "benchmarks" / "Set5", protocol=protocol)
    assert len(res.images) == 5
    assert abs(res.psnr - ref_p) <= tol_p, res.psnr
    assert abs(res.ssim - ref_s) <= tol_s, res.ssim


@pytest.mark.parametrize("name,ref_p,ref_s", [("Set14", 26.0884, 0.70480), ("B100", 25.9613, 0.66807)])
def test_bicubic_x4_other_sets(shared_data: Path, name: str, ref_p: float, ref_s: float) -> None:
    """Set14 includes the grayscale bridge (scored as R=G=B); B100 is stored as JPEG."""
    res = evaluate(subpixel.load("bicubic", scale=4), shared_data / "benchmarks" / name)
    assert abs(res.psnr - ref_p) <= 0.005 and abs(res.ssim - ref_s) <= 0.0003, (res.psnr, res.ssim)


def test_legacy_protocol_refuses_networks(tiny_net) -> None:
    model = subpixel.Upscaler(tiny_net, name="tiny", device="cpu")
    with pytest.raises(SubpixelError, match="legacy-y"):
        evaluate(model, Path("."), protocol="legacy-y")


def test_identity_scores_infinite_and_shaving(tmp_path: Path) -> None:
    hr = np.random.default_rng(0).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    assert score(hr, hr, 4)[0] == float("inf")
    noisy = hr.copy()
    noisy[:4] = 0  # damage only the shaved border
    assert score(noisy, hr, 4)[0] == float("inf")
    assert np.isfinite(score(noisy, hr, 3)[0])


def test_modcrop_and_lr_shape() -> None:
    hr = np.zeros((31, 45, 3), np.uint8)
    assert modcrop(hr, 4).shape == (28, 44, 3)
    assert make_lr(modcrop(hr, 4), 4).shape == (7, 11, 3)


def test_psnr_ssim_known_values() -> None:
    a = np.zeros((20, 20))
    b = np.full((20, 20), 255.0 / 10)  # MSE = 25.5^2 -> PSNR 20 dB
    assert psnr(a, b) == pytest.approx(20.0)
    img = np.random.default_rng(1).random((32, 32)) * 255
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, 255 - img) < 0


def test_grayscale_file_scored_as_rgb(tmp_path: Path) -> None:
    g = (np.indices((24, 24)).sum(0) * 5 % 256).astype(np.uint8)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    res = evaluate(subpixel.load("bicubic", scale=2), tmp_path)
    assert np.isfinite(res.psnr) and res.images[0].name == "g"


def test_each_upscale_is_timed_after_one_warm_up_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(2):
        Image.fromarray(np.full((16, 16, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    model = subpixel.load("bicubic", scale=2)
    calls, real = [], model.upscale

    def slow(lr: np.ndarray) -> np.ndarray:
        calls.append(lr.shape)
        time.sleep(0.02)
        return real(lr)

    monkeypatch.setattr(model, "upscale", slow)
    res = evaluate(model, tmp_path)
    assert len(calls) == 3  # one untimed warm-up, then one call per image
    assert all(x.seconds is not None and x.seconds >= 0.02 for x in res.images)
    assert res.seconds_per_image == pytest.approx(np.mean([x.seconds for x in res.images]))
    assert res.to_dict()["seconds_per_image"] == res.seconds_per_image


def _ramp(size: int = 32) -> np.ndarray:
    """A smooth uint8 grey picture, so bicubic is close but not exact."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    return ((0.5 + 0.4 * np.sin(7 * xx) * np.cos(5 * yy)) * 255).round().astype(np.uint8)


def test_an_unreadable_file_is_a_one_line_error_in_both_protocols(tmp_path: Path) -> None:
    Image.fromarray(_ramp()).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not an image")
    for protocol in ("default", "legacy-y"):
        with pytest.raises(SubpixelError, match=r"cannot read .*b\.png"):
            evaluate(subpixel.load("bicubic", scale=2), tmp_path, protocol=protocol)


def test_grey_files_with_alpha_or_a_grey_palette_score_as_grey(tmp_path: Path) -> None:
    g = _ramp()
    grey_palette = Image.fromarray(g, "P")
    grey_palette.putpalette([v for i in range(256) for v in (i, i, i)])
    files = {"L": Image.fromarray(g, "L"), "LA": Image.fromarray(np.stack([g, np.full_like(g, 255)], -1), "LA"),
             "P": grey_palette}
    psnrs = {}
    for mode, im in files.items():
        (tmp_path / mode).mkdir()
        im.save(tmp_path / mode / "g.png")
        psnrs[mode] = [evaluate(subpixel.load("bicubic", scale=2), tmp_path / mode, protocol=p).psnr
                       for p in ("default", "legacy-y")]
    assert psnrs["LA"] == psnrs["L"] and psnrs["P"] == psnrs["L"], psnrs


def test_16_bit_colour_is_rounded_to_8_bits_as_16_bit_grey_is(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(1, 256, (8, 8, 3)).astype(np.uint8)
    wide = rgb.astype(np.uint16) * 257 - 100  # the reviewer's values: truncating gives rgb - 1 for most
    write_image(tmp_path / "rgb16.png", wide)
    write_image(tmp_path / "grey16.png", wide[..., :1])
    assert np.array_equal(load_hr(tmp_path / "rgb16.png"), rgb)
    assert np.array_equal(load_hr(tmp_path / "grey16.png"), np.repeat(rgb[..., :1], 3, axis=2))


def _eval_cli(*args: str) -> str:
    res = CliRunner().invoke(cli, ["eval", "-s", "2", *args])
    assert res.exit_code == 0, res.output
    return res.stdout


def test_eval_rows_keep_sets_apart_from_their_fields_and_record_the_ensemble(tmp_path: Path) -> None:
    for name in ("model", "macs"):  # set folders named as row fields
        (tmp_path / name).mkdir()
        Image.fromarray(_ramp()).save(tmp_path / name / "g.png")
    sets = ["-d", str(tmp_path / "model"), "-d", str(tmp_path / "macs")]
    (row,) = json.loads(_eval_cli(*sets, "--json", "--self-ensemble"))
    assert row["model"] == "bicubic" and row["macs"] is None and set(row["sets"]) == {"model", "macs"}
    assert row["sets"]["model"]["ensemble"] is True and row["sets"]["model"]["dataset"] == "model"
    (row,) = json.loads(_eval_cli(*sets, "--json"))
    assert row["sets"]["macs"]["ensemble"] is False
    assert "| bicubic | x2 | - | - | " in _eval_cli(*sets, "--markdown")


def test_the_set14_footnote_is_for_the_default_protocol_on_y_only(tmp_path: Path) -> None:
    (tmp_path / "Set14").mkdir()
    Image.fromarray(_ramp(), "L").save(tmp_path / "Set14" / "bridge.png")
    markdown = ["-d", str(tmp_path / "Set14"), "--markdown"]
    assert "grayscale bridge" in _eval_cli(*markdown)
    assert "grayscale bridge" not in _eval_cli(*markdown, "--protocol", "legacy-y")
    assert "grayscale bridge" not in _eval_cli(*markdown, "--rgb")
