"""The evaluation protocols reproduce the reference figures (Set5 pinned at every scale)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import subpixel
from subpixel.cli import cli
from subpixel.errors import SubpixelError
from subpixel.eval import evaluate, make_lr, modcrop, score
from subpixel.eval import video as video_eval
from subpixel.eval.datasets import dataset_images
from subpixel.eval.metrics import psnr, ssim
from subpixel.eval.protocol import load_hr, strict_fp32
from subpixel.eval.video import ClipScore, VideoResult, evaluate_video, format_video_report
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
    for mode in (*files, "LA16"):
        (tmp_path / mode).mkdir()
        if mode == "LA16":  # Pillow opens a 16-bit grey + alpha PNG as RGBA
            la = np.stack([g.astype(np.uint16) * 257, np.full(g.shape, 65535, np.uint16)], -1)
            with open(tmp_path / mode / "g.png", "wb") as f:
                png.Writer(g.shape[1], g.shape[0], greyscale=True, alpha=True, bitdepth=16).write(
                    f, la.reshape(g.shape[0], -1).tolist())
        else:
            files[mode].save(tmp_path / mode / "g.png")
        psnrs[mode] = [evaluate(subpixel.load("bicubic", scale=2), tmp_path / mode, protocol=p).psnr
                       for p in ("default", "legacy-y")]
    assert psnrs["LA"] == psnrs["L"] and psnrs["P"] == psnrs["L"] and psnrs["LA16"] == psnrs["L"], psnrs


def test_folders_named_like_images_are_skipped_and_a_relative_set_is_named_by_its_folder(tmp_path,
                                                                                        monkeypatch) -> None:
    Image.fromarray(_ramp(), "L").save(tmp_path / "a.png")
    (tmp_path / "sub.png").mkdir()
    assert dataset_images(tmp_path) == [tmp_path / "a.png"]
    monkeypatch.chdir(tmp_path)
    assert evaluate(subpixel.load("bicubic", scale=2), ".").dataset == tmp_path.name


def test_legacy_with_a_network_among_the_models_is_refused_before_any_scoring(tmp_path, monkeypatch) -> None:
    from subpixel.commands import evaluate as command

    scored = []
    monkeypatch.setattr(command, "run_sets", lambda *a, **k: scored.append(a) or [])
    Image.fromarray(_ramp(), "L").save(tmp_path / "a.png")
    res = CliRunner().invoke(cli, ["eval", "-s", "2", "-d", str(tmp_path), "--protocol", "legacy-y", "-m", "bicubic",
                                   "-m", "espcn"])
    assert isinstance(res.exception, SubpixelError) and "legacy-y" in str(res.exception) and scored == []


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


# -- order, hidden files, protocol fields, infinite PSNR ---------------------------------------
class _Recorder:
    """A frame processor that passes frames through and records each one's grey level."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def process(self, batch: torch.Tensor) -> torch.Tensor:
        self.seen.append(round(float(batch[0, 0, 0, 0]) * 255))
        return batch

    def reset(self) -> None:
        pass


def _flat_frames(folder: Path, names: list[str], size: int = 16) -> Path:
    """Flat frames named ``names``, the i-th of grey level 10 * i."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((size, size, 3), 10 * i, np.uint8)).save(folder / name)
    return folder


def test_frames_are_taken_in_natural_order(tmp_path: Path) -> None:
    names = [f"frame{t}.png" for t in range(12)]  # ffmpeg's frame%d.png: frame10 sorts before frame2 as text
    clip = _flat_frames(tmp_path / "vid" / "clip", names)
    assert [p.name for p in dataset_images(clip)] == names
    recorder = _Recorder()
    evaluate_video(recorder, tmp_path / "vid", scale=1, temporal=False, progress=False)
    assert recorder.seen == [10 * t for t in range(12)]
    _flat_frames(tmp_path / "set", ["b.png", "A.png", "img10.png", "img9.png"])
    assert [p.name for p in dataset_images(tmp_path / "set")] == ["A.png", "b.png", "img9.png", "img10.png"]


_NEW_TF32_API = hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision")  # torch >= 2.9


def _tf32() -> tuple[object, object]:
    """(cuDNN conv, CUDA matmul) TF32 settings, read through the API this torch prefers."""
    if _NEW_TF32_API:
        return torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    return torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()


def _set_tf32(conv: object, matmul: object) -> None:
    if _NEW_TF32_API:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = conv, matmul
    else:
        torch.backends.cudnn.allow_tf32 = conv
        torch.set_float32_matmul_precision(matmul)


def test_evaluation_runs_without_tf32_and_restores_the_flags(tmp_path: Path) -> None:
    """TF32 is off while evaluating and restored after, also for a caller that set it through torch's newer
    per-backend API (which refuses the legacy flags once used)."""
    before = _tf32()
    allowed = ("tf32", "tf32") if _NEW_TF32_API else (True, "high")
    strict = ("ieee", "ieee") if _NEW_TF32_API else (False, "highest")
    try:
        _set_tf32(*allowed)
        with pytest.raises(RuntimeError, match="boom"), strict_fp32():
            assert _tf32() == strict
            raise RuntimeError("boom")
        assert _tf32() == allowed

        seen = []
        model = subpixel.load("bicubic", scale=2)
        real = model.upscale

        def upscale(lr: np.ndarray) -> np.ndarray:
            seen.append(_tf32())
            return real(lr)

        model.upscale = upscale  # type: ignore[method-assign]
        Image.fromarray(_ramp()).save(tmp_path / "a.png")
        evaluate(model, tmp_path)
        evaluate_video(model, _flat_frames(tmp_path / "vid" / "c", ["0.png"]).parent, scale=2, temporal=False,
                       progress=False)
        assert seen and set(seen) == {strict}
        assert _tf32() == allowed
    finally:
        _set_tf32(*before)


def test_infinite_psnr_is_inf_in_json_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "flat.png")  # bicubic reproduces it
    Image.fromarray(_ramp()).save(tmp_path / "ramp.png")
    res = CliRunner().invoke(cli, ["eval", "-s", "2", "-d", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    result = row["sets"][tmp_path.name]
    assert result["psnr"] == "inf" and [x["psnr"] == "inf" for x in result["images"]] == [True, False]
    assert "1 of 2 images reproduced exactly" in res.stderr

    monkeypatch.setattr("subpixel.eval.video.has_opencv", lambda: False)
    _flat_frames(tmp_path / "vid" / "c", ["0.png", "1.png"], size=32)
    res = CliRunner().invoke(cli, ["eval", "--video", str(tmp_path / "vid"), "-s", "2", "--json"])
    assert res.exit_code == 0, res.output
    (video,) = json.loads(res.stdout)
    assert video["psnr"] == "inf" and video["clips"][0]["psnr_frames"] == ["inf", "inf"]
    assert "2 of 2 frames reproduced exactly" in res.stderr


def test_hidden_files_and_folders_are_skipped(tmp_path: Path) -> None:
    Image.fromarray(_ramp()).save(tmp_path / "real.png")
    (tmp_path / "._real.png").write_bytes(b"\x00\x05\x16\x07")  # a macOS AppleDouble file
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    assert [x.name for x in evaluate(subpixel.load("bicubic", scale=2), tmp_path).images] == ["real"]
    (tmp_path / "bad.png").write_bytes(b"not an image")  # a real corrupt image still stops evaluation
    with pytest.raises(SubpixelError, match=r"cannot read .*bad\.png"):
        evaluate(subpixel.load("bicubic", scale=2), tmp_path)

    _flat_frames(tmp_path / "vid" / "clip", ["0.png", "1.png"])
    (tmp_path / "vid" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "vid" / ".ipynb_checkpoints" / "0-checkpoint.png").write_bytes(b"junk")
    result = evaluate_video(_Recorder(), tmp_path / "vid", scale=1, temporal=False, progress=False)
    assert [c.name for c in result.clips] == ["clip"]


def test_a_folder_of_frames_is_one_clip(tmp_path: Path) -> None:
    clip = _flat_frames(tmp_path / "walk", ["0.png", "1.png", "2.png"])
    result = evaluate_video(_Recorder(), clip, scale=1, temporal=False, progress=False)
    assert [(c.name, c.frames) for c in result.clips] == [("walk", 3)]
    with pytest.raises(SubpixelError, match="no clip folders"):
        evaluate_video(_Recorder(), _flat_frames(tmp_path / "empty", []), scale=1, temporal=False, progress=False)


def test_video_json_states_the_protocol_and_frame_names(tmp_path: Path) -> None:
    _flat_frames(tmp_path / "c", ["f1.png", "f2.png"])
    out = evaluate_video(_Recorder(), tmp_path, scale=1, temporal=False, progress=False).to_dict()
    assert {k: out[k] for k in ("protocol", "channel", "shave", "degradation", "recurrent")} == {
        "protocol": "default", "channel": "y", "shave": 1, "degradation": "bicubic (MATLAB imresize)",
        "recurrent": True}
    assert out["clips"][0]["frame_names"] == ["f1.png", "f2.png"]
    bicubic = evaluate_video(subpixel.load("bicubic", scale=2), tmp_path, scale=2, temporal=False, progress=False)
    assert bicubic.to_dict()["recurrent"] is False and bicubic.to_dict()["shave"] == 2


def test_images_sharing_a_stem_are_named_by_file_name(tmp_path: Path) -> None:
    for name in ("a.png", "a.jpg", "b.png"):
        Image.fromarray(_ramp()).save(tmp_path / name)
    names = [x.name for x in evaluate(subpixel.load("bicubic", scale=2), tmp_path).images]
    assert names == ["a.jpg", "a.png", "b"]


def test_ssim_of_a_too_small_array_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((10, 30)), np.zeros((10, 30)))
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((30, 8, 3)), np.zeros((30, 8, 3)))


def test_the_warping_error_is_not_called_e_warp() -> None:
    assert "not Lai et al. 2018's E_warp" in (video_eval.__doc__ or "")
    clip = ClipScore("c", 2, 30.0, 0.9, 1.0, 1.0, ["0.png", "1.png"], [30.0] * 2, [0.9] * 2)
    result = VideoResult("v", 1, "m", [clip])
    assert "not Lai et al. 2018's E_warp" in format_video_report(result)
