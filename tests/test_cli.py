"""The core CLI: upscale (files, folders, errors), models, eval — through the real entry point."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

import subpixel
import subpixel.cli
from subpixel.cli import cli, main
from subpixel.errors import Interrupted, OutOfMemory, SubpixelError
from subpixel.models import build
from subpixel.models.weights import save_weights
from subpixel.ops.resize import imresize_np
from tests.conftest import run_main

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "subpixel" / "assets" / "sample.png"


def _img(path: Path, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def _entry(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed console entry point (real exit codes and stderr)."""
    return subprocess.run([sys.executable, "-c", "from subpixel.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd, env=env)


def test_upscale_sample_writes_file_and_prints_path(tmp_path: Path) -> None:
    out = tmp_path / "sample_x2.png"
    res = CliRunner().invoke(cli, ["upscale", str(SAMPLE), "-s", "2", "-m", "bicubic", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    with Image.open(out) as im:
        assert im.size == (512, 384)


def test_folder_run_continues_past_bad_files_and_lists_them(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _img(src / "a.png")
    _img(src / "b.jpg")
    (src / "broken.png").write_bytes(b"not an image at all")
    good = _img(tmp_path / "t.png")
    (src / "trunc.png").write_bytes(good.read_bytes()[:60])
    res = CliRunner().invoke(cli, ["upscale", str(src), "-s", "2", "-m", "bicubic", "-o", str(tmp_path / "out"),
                                   "--json"])
    assert res.exit_code == 1
    summary = json.loads(res.stdout)
    assert sorted(Path(o["output"]).name for o in summary["outputs"]) == ["a_x2.png", "b_x2.jpg"]
    assert sorted(Path(f["input"]).name for f in summary["failures"]) == ["broken.png", "trunc.png"]


@pytest.mark.parametrize("case", ["missing", "not-image", "truncated", "zero-size", "bad-scale", "unwritable",
                                  "exists"])
def test_bad_input_is_one_line_error_with_nonzero_exit(tmp_path: Path, case: str) -> None:
    good = _img(tmp_path / "good.png")
    args = ["upscale", str(good), "-s", "2", "-m", "bicubic", "-o", str(tmp_path / "o.png")]
    if case == "missing":
        args[1] = str(tmp_path / "nope.png")
    elif case == "not-image":
        (tmp_path / "x.png").write_text("hello")
        args[1] = str(tmp_path / "x.png")
    elif case == "truncated":
        (tmp_path / "t.png").write_bytes(good.read_bytes()[:50])
        args[1] = str(tmp_path / "t.png")
    elif case == "zero-size":
        (tmp_path / "z.png").write_bytes(b"")
        args[1] = str(tmp_path / "z.png")
    elif case == "bad-scale":
        from tests.conftest import TinyConvNet

        w = tmp_path / "tiny_x2.safetensors"
        save_weights(TinyConvNet(2), w, {"name": "tiny", "architecture": "espcn", "scale": 2})
        args[5] = str(w)
        args[3] = "3"
    elif case == "unwritable":
        (tmp_path / "file").write_text("a file, not a folder")
        args[-1] = str(tmp_path / "file" / "dir" / "o.png")
    elif case == "exists":
        (tmp_path / "o.png").write_bytes(b"keep me")
    res = _entry(*args)
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    if case == "exists":
        assert (tmp_path / "o.png").read_bytes() == b"keep me"


def test_existing_outputs_are_refused_before_work_or_skipped(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for n in ("a", "b", "c"):
        _img(tmp_path / "in" / f"{n}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_x2.png").write_bytes(b"keep me")
    base = ["upscale", str(tmp_path / "in"), "-s", "2", "-m", "bicubic", "-o", str(out)]
    res = _entry(*base)
    assert res.returncode == 1 and "--skip-existing" in res.stderr and "100%" not in res.stderr, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["b_x2.png"]  # nothing was written
    res = _entry(*base, "--skip-existing", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["skipped_existing_outputs"] == [str(out / "b_x2.png")]
    assert (out / "b_x2.png").read_bytes() == b"keep me"
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.png", "b_x2.png", "c_x2.png"]
    assert _entry(*base, "--skip-existing", "--overwrite").returncode == 2


def test_overwrite_replaces(tmp_path: Path) -> None:
    good = _img(tmp_path / "g.png")
    out = tmp_path / "o.png"
    out.write_bytes(b"old")
    res = CliRunner().invoke(cli, ["upscale", str(good), "-s", "2", "-m", "bicubic", "-o", str(out), "--overwrite",
                                   "-q"])
    assert res.exit_code == 0 and out.read_bytes()[:4] == b"\x89PNG"


def test_webp_size_limit_checked_before_work(tmp_path: Path) -> None:
    wide = _img(tmp_path / "wide.png", size=(9000, 2))
    res = _entry("upscale", str(wide), "-s", "2", "-m", "bicubic", "--format", "webp", "-o", str(tmp_path))
    assert res.returncode == 1 and "16383" in res.stderr
    assert not list(tmp_path.glob("*.webp"))


def test_glob_and_suffix_and_format(tmp_path: Path) -> None:
    for n in ("p1", "p2"):
        _img(tmp_path / f"{n}.png")
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path / "p*.png"), "-s", "3", "-m", "lanczos",
                                   "--suffix", "_big", "--format", "jpg", "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("*_big.jpg")) == ["p1_big.jpg", "p2_big.jpg"]


def test_models_table_lists_builtins() -> None:
    res = CliRunner().invoke(cli, ["models"])
    assert res.exit_code == 0 and "bicubic" in res.output and "lanczos" in res.output


def test_models_takes_quiet_as_every_command() -> None:
    res = CliRunner().invoke(cli, ["models", "--json", "-q"])
    assert res.exit_code == 0, res.output
    assert any(r["name"] == "bicubic" for r in json.loads(res.stdout))
    full, quiet = (CliRunner().invoke(cli, ["models", *q]).output for q in ([], ["-q"]))
    assert "Y-PSNR (dB)" in full and quiet == full[:full.index("Set5/Urban100: Y-PSNR")]  # -q: the table only


def test_models_json_scales_are_numbers_and_the_table_keeps_its_text() -> None:
    """``scales``: a list of integers, null for any integer scale."""
    res = CliRunner().invoke(cli, ["models", "--json"])
    rows = {(r["name"], None if r["scales"] is None else tuple(r["scales"])): r for r in json.loads(res.stdout)}
    assert ("bicubic", None) in rows and ("espcn", (2,)) in rows
    res = CliRunner().invoke(cli, ["models", "--architectures", "--json"])
    arch = {r["name"]: r["scales"] for r in json.loads(res.stdout)}
    assert arch["bicubic"] is None and arch["espcn"] == [2, 3, 4]
    table = CliRunner().invoke(cli, ["models"]).output.splitlines()
    assert any(line.split()[:2] == ["espcn", "x2"] for line in table)
    assert any(line.split()[:2] == ["bicubic", "any"] for line in table)


def test_a_failed_upscale_json_has_an_error(tmp_path: Path) -> None:
    good = _img(tmp_path / "good.png")
    (tmp_path / "bad.png").write_text("not an image")
    res = CliRunner().invoke(cli, ["upscale", str(good), str(tmp_path / "bad.png"), "-s", "2", "-m", "bicubic",
                                   "-o", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 1
    summary = json.loads(res.stdout)
    assert summary["error"] == "1 of 2 inputs failed" and len(summary["failures"]) == 1


@pytest.mark.parametrize("command", ["upscale", "export"])
def test_a_file_system_refusal_is_one_line_and_a_json_error(command: str, tmp_path: Path) -> None:
    """An OSError no command foresaw (here a file name too long) is an error line, not a traceback."""
    good = _img(tmp_path / "good.png")
    args = {"upscale": ["upscale", str(good), "-m", "bicubic", "-s", "2", "-o", str(tmp_path / ("a" * 300 + ".png"))],
            "export": ["export", "espcn", "-s", "2", "-o", str(tmp_path / ("a" * 300 + ".onnx"))]}[command]
    res = _entry(*args, "--json")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert "too long" in json.loads(res.stdout)["error"]


def test_eval_command_on_folder(tmp_path: Path) -> None:
    _img(tmp_path / "a.png", size=(24, 24))
    res = CliRunner().invoke(cli, ["eval", "-m", "bicubic", "-s", "2", "-d", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)[0]
    assert row["model"] == "bicubic" and np.isfinite(row["sets"][tmp_path.name]["psnr"])


def test_eval_takes_several_models_one_row_each(tmp_path: Path) -> None:
    _img(tmp_path / "a.png", size=(24, 24))
    weights = tmp_path / "w" / "mine_x2.safetensors"
    weights.parent.mkdir()
    save_weights(build("espcn", 2), weights, {"name": "espcn", "architecture": "espcn", "arch_args": {}, "scale": 2})
    res = CliRunner().invoke(cli, ["eval", "-m", "bicubic", "-m", str(weights), "-m", "lanczos", "-s", "2", "-d",
                                   str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert [r["model"] for r in json.loads(res.stdout)] == ["bicubic", "mine_x2", "lanczos"]  # none dropped
    res = CliRunner().invoke(cli, ["eval", "-m", "bicubic", "-m", "lanczos", "--video", "Vid4"])
    assert res.exit_code == 2 and "one model" in res.output
    twin = tmp_path / "v" / "mine_x2.safetensors"  # another run's export of the same file name
    twin.parent.mkdir()
    save_weights(build("espcn", 2), twin, {"name": "espcn", "architecture": "espcn", "arch_args": {}, "scale": 2})
    res = CliRunner().invoke(cli, ["eval", "-m", str(weights), "-m", str(twin), "-m", str(tmp_path / "w/../w/mine_x2"
                                   ".safetensors"), "-s", "2", "-d", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert [r["model"] for r in json.loads(res.stdout)] == [str(weights), str(twin)]  # told apart; one file once
    res = CliRunner().invoke(cli, ["eval", "-m", str(weights), "-m", str(twin), "-s", "2", "-d", str(tmp_path), "-q"])
    assert [line.split(" x2 ")[0] for line in res.stdout.splitlines()] == [str(weights), str(twin)]  # plain too
    doc = json.loads(CliRunner().invoke(cli, ["bench", "--quick", "--jobs", "16x16x2", "--iters", "1", "--threads", "1",
                                              "--models", f"{weights},{twin}", "--peers", "none", "--engines",
                                              "torch", "--out", str(tmp_path / "bench"), "--json"]).stdout)
    assert [r["name"] for r in doc["rows"]] == [str(weights), str(twin)]  # bench tells them apart as eval does


def test_update_card_for_several_models_checks_them_all_before_writing_any(tmp_path: Path) -> None:
    _img(tmp_path / "a.png", size=(24, 24))
    weights = tmp_path / "mine_x2.safetensors"
    save_weights(build("espcn", 2), weights, {"name": "espcn", "architecture": "espcn", "arch_args": {}, "scale": 2})
    card = (tmp_path / "mine_x2.json").read_bytes()
    res = CliRunner().invoke(cli, ["eval", "--update-card", "-m", str(weights), "-m", "rlfn", "-s", "2", "-d", "Set5"])
    assert res.exit_code == 1 and "rlfn" in str(res.exception)
    assert (tmp_path / "mine_x2.json").read_bytes() == card


def test_recursive_run_mirrors_subfolders_and_refuses_collisions(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        _img(tmp_path / "in" / sub / "img.png")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path / "in"), "-r", "-s", "2", "-m", "bicubic", "-o", str(out),
                                   "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a/img_x2.png", "b/img_x2.png"]
    # two inputs, one output name: refused before anything is written, even with --overwrite
    (tmp_path / "c").mkdir()
    _img(tmp_path / "c" / "rgb.png")
    _img(tmp_path / "c" / "rgb.jpg")
    res = _entry("upscale", str(tmp_path / "c"), "-s", "2", "-m", "bicubic", "--format", "png", "-o",
                 str(tmp_path / "c_out"), "--overwrite")
    assert res.returncode == 1 and "both be written" in res.stderr and "Traceback" not in res.stderr
    twice = CliRunner().invoke(cli, ["upscale", str(tmp_path / "c" / "rgb.png"), str(tmp_path / "c"), "-s", "2", "-m",
                                     "bicubic", "-o", str(tmp_path / "twice"), "-q"])  # rgb.png named twice runs once
    assert twice.exit_code == 0, twice.output
    assert sorted(p.name for p in (tmp_path / "twice").iterdir()) == ["rgb_x2.jpg", "rgb_x2.png"]
    assert not (tmp_path / "c_out").exists()
    res = _entry("upscale", str(tmp_path / "c" / "rgb.png"), "-s", "2", "-m", "bicubic", "--suffix", "",
                 "--overwrite")
    assert res.returncode == 1 and "replace the input" in res.stderr
    # a rerun over a folder that holds the first run's outputs redoes them, and does not upscale them again
    (tmp_path / "d").mkdir()
    _img(tmp_path / "d" / "p.png")
    for _ in range(2):
        res = _entry("upscale", str(tmp_path / "d"), "-s", "2", "-m", "bicubic", "--overwrite", "--json")
        assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["p.png", "p_x2.png"]
    assert json.loads(res.stdout)["skipped_outputs_of_other_inputs"] == [str(tmp_path / "d" / "p_x2.png")]


def test_output_arguments_are_checked_before_work(tmp_path: Path) -> None:
    a, b = _img(tmp_path / "a.png"), _img(tmp_path / "b.png")
    base = ["upscale", "-s", "2", "-m", "bicubic"]
    res = _entry(*base, str(a), str(b), "-o", str(tmp_path / "out.png"))
    assert res.returncode == 1 and "output folder" in res.stderr and not (tmp_path / "out.png").exists()
    res = _entry(*base, str(a), "--format", "jpg", "-o", str(tmp_path / "x.png"))
    assert res.returncode == 1 and "contradicts" in res.stderr
    for fmt, name in (("tiff", "x.tif"), ("jpg", "x.jpeg")):  # aliases of one format agree
        res = CliRunner().invoke(cli, [*base, str(a), "--format", fmt, "-o", str(tmp_path / name), "-q"])
        assert res.exit_code == 0, res.output
    for bad in (["--tile", "-5"], ["--tile", "3"], ["--max-pixels", "-1"]):
        res = _entry(*base, str(a), *bad)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    rgba = tmp_path / "t.png"
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(rgba)
    res = _entry(*base, str(rgba), "-o", str(tmp_path / "t.jpg"))
    assert res.returncode == 1 and "cannot store alpha" in res.stderr
    res = CliRunner().invoke(cli, [*base, str(a), "-o", str(tmp_path / "new" / "dir"), "-q"])  # folder made
    assert res.exit_code == 0 and (tmp_path / "new" / "dir" / "a_x2.png").is_file()


def test_an_output_name_without_an_image_extension_gets_a_hint_that_works(tmp_path: Path) -> None:
    a = _img(tmp_path / "a.png")
    for extra, ext in (([], ".png"), (["--format", "jpg"], ".jpg")):
        res = _run(str(a), "-o", str(tmp_path / "my.photos"), *extra)
        assert isinstance(res.exception, SubpixelError), res.output
        assert f"add one ({tmp_path / 'my.photos'}{ext}), or end -o with /" in str(res.exception)
        assert _run(str(a), "-o", str(tmp_path / f"my.photos{ext}"), *extra, "-q").exit_code == 0


@pytest.mark.parametrize("name", ["results.png", "out.v3"])
def test_an_output_with_a_trailing_slash_is_a_folder(name: str, tmp_path: Path) -> None:
    a = _img(tmp_path / "a.png")
    res = CliRunner().invoke(cli, ["upscale", str(a), "-s", "2", "-m", "bicubic", "-q", "-o",
                                   f"{tmp_path / name}{os.sep}"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / name).is_dir() and (tmp_path / name / "a_x2.png").is_file()
    (tmp_path / "f.png").write_bytes(b"a file")
    res = CliRunner().invoke(cli, ["upscale", str(a), "-s", "2", "-m", "bicubic", "-o", f"{tmp_path / 'f.png'}/"])
    assert isinstance(res.exception, subpixel.SubpixelError) and "names a folder" in str(res.exception)


def test_one_file_named_twice_is_one_input(tmp_path: Path) -> None:
    a = _img(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    res = CliRunner().invoke(cli, ["upscale", str(a), str(tmp_path / "sub" / ".." / "a.png"), "-s", "2", "-m",
                                   "bicubic", "-q", "-o", str(tmp_path / "dup.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "dup.png").is_file()


@pytest.mark.parametrize("command", ["upscale", "eval", "video"])
def test_a_numbered_cuda_device_is_taken(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    a = _img(tmp_path / "a.png", size=(24, 24))
    args = {"upscale": [str(a)], "eval": ["-d", str(tmp_path)], "video": [str(a), "-o", str(tmp_path / "o.mp4")]}
    base = [command, *args[command], "-m", "bicubic", "-s", "2", "--device"]
    res = CliRunner().invoke(cli, [*base, "cuda:1"])  # parsed, then found missing
    assert isinstance(res.exception, subpixel.SubpixelError) and "no CUDA GPU" in str(res.exception)
    res = CliRunner().invoke(cli, [*base, "cuda:one"])
    assert res.exit_code == 2 and "cuda:N" in res.output
    res = CliRunner().invoke(cli, [*base, "CPU", "--json"])
    assert command == "video" or res.exit_code == 0, res.output


def test_eval_reads_16_bit_grey_and_refuses_tiny_images(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:32, 0:32] / 32
    ramp = 0.5 + 0.4 * np.sin(7 * xx) * np.cos(5 * yy)  # smooth, so bicubic is close but not exact
    (tmp_path / "e8").mkdir()
    (tmp_path / "e16").mkdir()
    Image.fromarray((ramp * 255).round().astype(np.uint8)).save(tmp_path / "e8" / "g.png")
    Image.fromarray((ramp * 65535).round().astype(np.uint16)).save(tmp_path / "e16" / "g.png")
    for protocol in ("default", "legacy-y"):
        psnr = {}
        for d in ("e8", "e16"):
            res = CliRunner().invoke(cli, ["eval", "-s", "2", "-d", str(tmp_path / d), "--protocol", protocol,
                                           "--json"])
            assert res.exit_code == 0, res.output
            psnr[d] = json.loads(res.stdout)[0]["sets"][d]["psnr"]
        assert abs(psnr["e8"] - psnr["e16"]) < 0.5, protocol  # the same picture, not one clipped to white
    (tmp_path / "tiny").mkdir()
    _img(tmp_path / "tiny" / "t.png", size=(1, 4000))
    res = _entry("eval", "-s", "2", "-d", str(tmp_path / "tiny"))
    assert res.returncode == 1 and "too small" in res.stderr and "Traceback" not in res.stderr


def test_eval_update_card_and_all_refuse_contradicting_options(tmp_path: Path) -> None:
    for extra in (["--rgb"], ["--self-ensemble"], ["--protocol", "legacy-y"], ["-d", str(tmp_path)]):
        res = CliRunner().invoke(cli, ["eval", "-m", "espcn", "-s", "2", "--update-card", *extra])
        assert res.exit_code == 2 and "--update-card" in res.output, (extra, res.output)
    res = CliRunner().invoke(cli, ["eval", "--all", "-m", "espcn"])
    assert res.exit_code == 2 and "--all" in res.output


def test_eval_sets_are_told_apart_and_json_stays_strict(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub / "imgs").mkdir(parents=True)
    _img(tmp_path / "a" / "imgs" / "x.png", size=(32, 32))
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "b" / "imgs" / "flat.png")
    a, b = str(tmp_path / "a" / "imgs"), str(tmp_path / "b" / "imgs")
    res = _entry("eval", "-s", "2", "-d", a, "-d", b, "-d", a, "--json")  # same folder name twice, one set twice
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))[0]
    sets = row["sets"]
    assert np.isfinite(sets[a]["psnr"]) and sets[b]["psnr"] == "inf" and sets[b]["ssim"] == 1.0  # identical: no noise
    assert set(row) == {"model", "scale", "params", "macs", "engine", "precision", "sets"}
    assert set(row["sets"]) == {a, b}
    (tmp_path / "small").mkdir()
    _img(tmp_path / "small" / "s.png", size=(18, 18))  # 10 px left after shaving 4 per border: no SSIM window
    res = _entry("eval", "-s", "4", "-d", str(tmp_path / "small"))
    assert res.returncode == 1 and "too small" in res.stderr and "Traceback" not in res.stderr
    res = _entry("eval", "-d", "Set5", env={**os.environ, "SUBPIXEL_DATA": str(tmp_path / "nowhere")})
    assert res.returncode == 1 and "SUBPIXEL_DATA" in res.stderr


def test_eval_option_conflicts_are_refused_before_work(tmp_path: Path) -> None:
    for args in (["-m", "bicubic", "-s", "2", "--update-card", "-d", "Set5"],
                 ["-m", "espcn", "-s", "2", "--update-card", "-d", "Set5", "--precision", "bf16"],
                 ["--all", "--protocol", "legacy-y"], ["--video", "Vid4", "--rgb"], ["--video", "Vid4", "-d", "Set5"],
                 ["--markdown", "--json"]):
        res = CliRunner().invoke(cli, ["eval", *args])
        assert res.exit_code == 2, (args, res.output)


@pytest.mark.parametrize("opencv", [True, False])
def test_eval_video_scores_clips_and_without_opencv_skips_only_the_warping_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opencv: bool) -> None:
    if opencv:
        pytest.importorskip("cv2")
    monkeypatch.setattr("subpixel.eval.video.has_opencv", lambda: opencv)
    for clip in ("one", "two"):
        (tmp_path / "vid" / clip).mkdir(parents=True)
        for t in range(3):
            _img(tmp_path / "vid" / clip / f"{t:03d}.png", size=(40, 32))
    res = CliRunner().invoke(cli, ["eval", "--video", str(tmp_path / "vid"), "-m", "bicubic", "-s", "2", "--json"])
    assert res.exit_code == 0, res.output
    (report,) = json.loads(res.stdout)  # bicubic alongside itself: one report
    assert len(report["clips"]) == 2 and np.isfinite(report["psnr"])
    assert (report["warp_error"] is not None) == opencv
    assert ("warping error is not measured" in res.stderr) != opencv


def test_eval_engine_onnx_applies_to_the_named_models_not_the_bicubic_rows_eval_adds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from subpixel.models.weights import shipped_models

    (tmp_path / "vid" / "clip").mkdir(parents=True)
    for t in range(3):
        _img(tmp_path / "vid" / "clip" / f"{t:03d}.png", size=(48, 48))
    res = CliRunner().invoke(cli, ["eval", "--video", str(tmp_path / "vid"), "-m", "espcn", "-s", "2",
                                   "--engine", "onnx", "--json"])
    assert res.exit_code == 0, res.output
    assert [r["model"] for r in json.loads(res.stdout)] == ["espcn", "bicubic"]
    espcn_x2 = [m for m in shipped_models() if m.name == "espcn" and m.scale == 2]
    monkeypatch.setattr("subpixel.commands.evaluate.shipped_models", lambda: espcn_x2)
    res = CliRunner().invoke(cli, ["eval", "--all", "-d", str(tmp_path / "vid" / "clip"), "--engine", "onnx",
                                   "--json"])
    assert res.exit_code == 0, res.output
    assert [(r["model"], r["engine"]) for r in json.loads(res.stdout)] == [("bicubic", "torch"), ("espcn", "onnx")]
    res = CliRunner().invoke(cli, ["eval", "-d", str(tmp_path / "vid" / "clip"), "-s", "2", "--engine", "onnx",
                                   "--json"])  # no -m: the bicubic row is eval's own
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["engine"] == "torch"
    res = CliRunner().invoke(cli, ["eval", "-d", str(tmp_path / "vid" / "clip"), "-s", "2", "-m", "bicubic",
                                   "--engine", "onnx"])
    assert res.exit_code == 1 and "interpolation and runs on torch" in str(res.exception)  # as asked for


def test_eval_says_which_engine_and_precision_made_its_figures(tmp_path: Path) -> None:
    """JSON rows name both; the text lines and the markdown footnote mention them where not eager torch fp32."""
    pytest.importorskip("onnxruntime")
    (tmp_path / "set").mkdir()
    _img(tmp_path / "set" / "a.png", size=(48, 48))
    args = ["eval", "-d", str(tmp_path / "set"), "-s", "2", "-m", "espcn", "--engine"]
    rows = json.loads(CliRunner().invoke(cli, [*args, "torch", "-m", "bicubic", "--json"]).stdout)
    assert [(r["model"], r["engine"], r["precision"]) for r in rows] == [("espcn", "torch", "fp32"),
                                                                         ("bicubic", "torch", "fp32")]
    assert "(Y, default, 1 images)" in CliRunner().invoke(cli, [*args, "torch"]).stdout
    (row,) = json.loads(CliRunner().invoke(cli, [*args, "onnx", "--json"]).stdout)
    assert (row["engine"], row["precision"], sorted(row["sets"])) == ("onnx", "fp32", ["set"])
    assert "(Y, default, onnx, 1 images)" in CliRunner().invoke(cli, [*args, "onnx"]).stdout
    assert "Not eager torch fp32: espcn x2 (onnx)." in CliRunner().invoke(cli, [*args, "onnx", "--markdown"]).stdout


def test_a_set_name_means_the_shared_set_even_beside_a_local_folder_of_that_name(
        tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Set5").mkdir()
    _img(tmp_path / "Set5" / "mine.png", size=(40, 40))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUBPIXEL_DATA", str(shared_data))
    res = CliRunner().invoke(cli, ["eval", "-s", "4", "-d", "Set5", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)[0]["sets"]["Set5"]["images"]) == 5
    res = CliRunner().invoke(cli, ["eval", "-s", "4", "-d", "./Set5", "--json"])  # the local one, as a path
    assert res.exit_code == 0 and [i["name"] for i in json.loads(res.stdout)[0]["sets"]["Set5"]["images"]] == ["mine"]
    res = CliRunner().invoke(cli, ["eval", "-m", "espcn", "-s", "4", "-d", "./Set5", "--update-card"])
    assert res.exit_code == 2 and "shared standard sets" in res.output
    (tmp_path / "train").mkdir()  # a bare name that is no benchmark or video set: the local folder wins
    _img(tmp_path / "train" / "t.png", size=(40, 40))
    res = CliRunner().invoke(cli, ["eval", "-s", "4", "-d", "train", "--json"])
    assert res.exit_code == 0 and [i["name"] for i in json.loads(res.stdout)[0]["sets"]["train"]["images"]] == ["t"]
    monkeypatch.setenv("SUBPIXEL_DATA", str(tmp_path / "nowhere"))  # a path does not consult SUBPIXEL_DATA
    assert CliRunner().invoke(cli, ["eval", "-s", "4", "-d", "./train", "-q"]).exit_code == 0


def test_update_card_of_auto_writes_the_card_of_the_model_it_chose(
        shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = []
    monkeypatch.setattr("subpixel.commands.evaluate.write_card_metrics", lambda path, results: written.append(path))
    monkeypatch.setenv("SUBPIXEL_DATA", str(shared_data))
    res = CliRunner().invoke(cli, ["eval", "-m", "auto", "-s", "4", "-d", "Set5", "--update-card", "-q"])
    assert res.exit_code == 0, res.output
    best = subpixel.load("auto", scale=4, device="cpu", engine="torch")
    assert [p.name for p in written] == [f"{best.name}_x4.safetensors"]


def test_json_errors_reach_stdout_and_model_names_ignore_case(tmp_path: Path) -> None:
    good = _img(tmp_path / "g.png")
    res = _entry("upscale", str(good), "-m", "no-such-model", "--json")
    assert res.returncode == 1 and "unknown model" in json.loads(res.stdout)["error"]
    res = _entry("upscale", str(good), "--tile", "3", "--json")  # a usage error too
    assert res.returncode == 2 and "--tile" in json.loads(res.stdout)["error"]
    res = CliRunner().invoke(cli, ["upscale", str(good), "-m", "ESPCN", "-s", "2", "-q"])
    assert res.exit_code == 0 and (tmp_path / "g_x2.png").is_file()


def test_the_cli_and_its_help_import_no_torch_so_an_early_ctrl_c_meets_main() -> None:
    """``import subpixel.cli`` runs before ``main()`` can catch a Ctrl-C: it and ``--help`` leave torch unloaded,
    while ``from subpixel import load, Upscaler`` still works."""
    code = ("import sys, subpixel.cli as c\n"
            "c.cli.main(['--help'], standalone_mode=False)\n"
            "print('torch' in sys.modules)\n"
            "from subpixel import load, Upscaler\n"
            "print('torch' in sys.modules, load.__module__, Upscaler.__module__)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-2:] == ["False", "True subpixel.models.loader subpixel.upscaler"]


def test_help_lists_each_command_as_its_own_help_sums_it_up() -> None:
    ctx = click.Context(cli, terminal_width=60)
    ours, clicks = ctx.make_formatter(), ctx.make_formatter()
    cli.format_commands(ctx, ours)
    click.Group.format_commands(cli, ctx, clicks)  # imports every command
    assert ours.getvalue() == clicks.getvalue() and "eval" in ours.getvalue()


@pytest.mark.parametrize("raised, expected", [("KeyboardInterrupt", "\ninterrupted\n"),
                                               ("Interrupted", "\n")])
def test_ctrl_c_in_a_command_says_interrupted_once(raised: str, expected: str) -> None:
    """A command's Ctrl-C ends with one message and exit status 130; a command that already said what was
    kept and how to continue (``Interrupted``) is not followed by a second word."""
    code = ("import sys, click, subpixel.cli as c, subpixel.errors as e\n"
            f"def boom(): raise {'e.' if raised == 'Interrupted' else ''}{raised}\n"
            "cmd = click.Command('boom', callback=boom)\n"
            "c.LAZY_COMMANDS['boom'] = '__main__:cmd'\n"
            "sys.argv = ['subpixel', 'boom']\n"
            "c.main()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 130
    assert res.stderr == expected


_RAISED: list[BaseException] = []


@click.command("boom")
@click.option("--json", "as_json", is_flag=True)
def _boom(as_json: bool) -> None:
    raise _RAISED[0]


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run the console entry point in this process: (exit status, stdout, stderr). Ctrl-C is ignored
    after an interrupt (a second one must not break the exit), then restored here."""
    monkeypatch.setitem(subpixel.cli.LAZY_COMMANDS, "boom", f"{__name__}:_boom")
    monkeypatch.setattr(sys, "argv", ["subpixel", *args])
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as code:
            subpixel.cli.main()
        out, err = capsys.readouterr()
        interrupted = isinstance(_RAISED[0], KeyboardInterrupt)
        assert signal.getsignal(signal.SIGINT) is (signal.SIG_IGN if interrupted else handler)
    finally:
        signal.signal(signal.SIGINT, handler)
    return code.value.code, out, err


_HINT = "interrupted: 20 frames kept; rerun with --resume"


@pytest.mark.parametrize("raised, error, said", [
    (KeyboardInterrupt(), "interrupted", "interrupted"),
    (Interrupted(), "interrupted", ""),
    (Interrupted(_HINT), _HINT, ""),
    (EOFError(), "aborted", "aborted"),
])
def test_ctrl_c_with_json_prints_the_error_on_stdout(raised: BaseException, error: str, said: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    """Scripts reading --json get an error object after Ctrl-C too, with the command's resume hint."""
    monkeypatch.setattr(sys.modules[__name__], "_RAISED", [raised])
    code, out, err = _main(monkeypatch, capsys, "boom", "--json")
    assert code == 130 and json.loads(out) == {"error": error}
    assert err.strip() == said
    code, out, err = _main(monkeypatch, capsys, "boom")
    assert code == 130 and out == "" and err.strip() == said


@pytest.mark.parametrize("raised, code", [
    (SubpixelError("nothing was measured", details={"notes": ["a: skipped"]}), 1),
    (Interrupted("interrupted", details={"outputs": [], "not_attempted": ["b.png"]}), 130),
])
def test_an_error_with_details_prints_one_json_object_with_them(raised: BaseException, code: int,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    """A command's error carries what it did before it stopped: the CLI prints it in its one JSON error."""
    monkeypatch.setattr(sys.modules[__name__], "_RAISED", [raised])
    status, out, err = _main(monkeypatch, capsys, "boom", "--json")
    assert status == code and json.loads(out) == {"error": str(raised), **raised.details}  # one document
    assert err.strip() == ("error: nothing was measured" if code == 1 else "")  # Interrupted: said already
    status, out, _ = _main(monkeypatch, capsys, "boom")
    assert status == code and out == ""


@pytest.mark.parametrize("raised, code", [(SubpixelError("no such recipe"), 1), (KeyboardInterrupt(), 130)])
def test_under_torchrun_only_rank_0_prints_the_json_error(raised: BaseException, code: int,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    """Every rank fails alike: stdout gets one error object, from rank 0, while every rank's status says it."""
    monkeypatch.setattr(sys.modules[__name__], "_RAISED", [raised])
    monkeypatch.setenv("RANK", "1")
    assert _main(monkeypatch, capsys, "boom", "--json")[:2] == (code, "")
    monkeypatch.setenv("RANK", "0")
    status, out, _ = _main(monkeypatch, capsys, "boom", "--json")
    assert status == code and json.loads(out) == {"error": str(raised) or "interrupted"}


@pytest.mark.parametrize("args", [["models"], ["models", "--json"]])
def test_a_reader_that_stops_early_ends_the_run_quietly(args: list[str]) -> None:
    """``subpixel models | head -1``: no traceback or message, status 141 as for a program killed by SIGPIPE."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        res = subprocess.run([sys.executable, "-c", "from subpixel.cli import main; main()", *args], stdout=write,
                             stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write)
    assert (res.returncode, res.stderr) == (141, "")


def test_no_order_of_arguments_lets_an_output_replace_an_input(tmp_path: Path) -> None:
    _img(tmp_path / "photo.jpg", size=(12, 10))
    _img(tmp_path / "photo.png", size=(9, 7))
    original = (tmp_path / "photo.png").read_bytes()
    for first, second in (("photo.jpg", "photo.png"), ("photo.png", "photo.jpg")):
        res = CliRunner().invoke(cli, ["upscale", str(tmp_path / first), str(tmp_path / second), "--format", "png",
                                       "--suffix", "", "-m", "bicubic", "-s", "2", "--overwrite", "-q"])
        assert res.exit_code == 1 and "replace the input" in str(res.exception), (first, res.output)
        assert (tmp_path / "photo.png").read_bytes() == original


def test_out_of_memory_fails_that_image_and_the_batch_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b", "c", "d"):
        _img(tmp_path / f"{name}.png")
    real = subpixel.Upscaler.upscale
    errors = {"a.png": RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                                    "allocate memory: you tried to allocate 8192000000 bytes."),
              "b.png": MemoryError(),
              "c.png": OutOfMemory("ONNX Runtime cannot run an input of shape (1, 3, 8, 8): Failed to allocate")}

    def upscale(self, image, tile=None, progress=None, outscale=None):
        if errors:
            raise errors.pop(min(errors))
        return real(self, image, tile, progress, outscale)

    monkeypatch.setattr(subpixel.Upscaler, "upscale", upscale)
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path), "-m", "bicubic", "-s", "2", "-o", str(tmp_path / "o"),
                                   "--json"])
    assert res.exit_code == 1, res.output
    summary = json.loads(res.stdout)
    assert [Path(o["input"]).name for o in summary["outputs"]] == ["d.png"]
    assert [Path(f["input"]).name for f in summary["failures"]] == ["a.png", "b.png", "c.png"]
    assert all("out of memory" in f["error"] and "halved" in f["error"] and "\n" not in f["error"]
               for f in summary["failures"])
    errors["a.png"] = RuntimeError("shape mismatch")  # any other error is a bug, not a failing image
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path / "a.png"), "-m", "bicubic", "-s", "2", "-o",
                                   str(tmp_path / "o"), "--overwrite", "-q"])
    assert isinstance(res.exception, RuntimeError) and "shape mismatch" in str(res.exception)


def test_json_tile_is_the_tile_each_image_used(tmp_path: Path) -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:, :20] = 255  # alpha that varies: run through the float path
    Image.fromarray(rgba).save(tmp_path / "a.png")
    _img(tmp_path / "b.png", size=(12, 10))  # within one tile
    _img(tmp_path / "c.png", size=(40, 40))  # exact interpolation, tiled too
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path), "-m", "bicubic", "-s", "2", "--tile", "16", "-o",
                                   str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    assert {Path(o["input"]).name: o["tile"] for o in json.loads(res.stdout)["outputs"]} == \
        {"a.png": 16, "b.png": None, "c.png": 16}


def test_one_tiled_image_shows_tile_progress(tmp_path: Path) -> None:
    image = _img(tmp_path / "a.png", size=(40, 40))
    base = ["upscale", str(image), "-m", "bicubic", "-s", "2", "--tile", "16", "--overwrite"]
    res = CliRunner().invoke(cli, base)
    assert res.exit_code == 0 and "9/9" in res.stderr and "tile" in res.stderr, res.stderr
    assert "9/9" not in CliRunner().invoke(cli, [*base, "-q"]).stderr


def test_a_folder_without_images_is_an_error_unless_other_inputs_have_some(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path / "empty"), "-m", "bicubic", "-s", "2"])
    assert res.exit_code == 1 and f"no images found in {tmp_path / 'empty'}" in str(res.exception)
    image = _img(tmp_path / "a.png")
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path / "empty"), str(image), "-m", "bicubic", "-s", "2",
                                   "-o", str(tmp_path / "o")])
    assert res.exit_code == 0 and "warning: no images found in" in res.stderr, res.output
    assert (tmp_path / "o" / "a_x2.png").is_file()
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path / "empty"), str(tmp_path / "missing.png"), "-m",
                                   "bicubic", "-s", "2", "-o", str(tmp_path / "o2"), "--json"])
    summary = json.loads(res.stdout)  # a missing file is still reported beside the empty folder
    assert res.exit_code == 1 and [Path(f["input"]).name for f in summary["failures"]] == ["missing.png"]
    assert summary["empty_folders"] == [str(tmp_path / "empty")]


def test_outscale_gives_any_output_factor(tmp_path: Path) -> None:
    src = _img(tmp_path / "a.png", size=(12, 10))
    res = CliRunner().invoke(cli, ["upscale", str(src), "-m", "bicubic", "--outscale", "2.5", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["scale"] == 3 and summary["outscale"] == 2.5  # the smallest whole scale >= 2.5
    assert Image.open(tmp_path / "a_x2.5.png").size == (30, 25) == tuple(summary["outputs"][0]["size"])
    res = CliRunner().invoke(cli, ["upscale", str(src), "-m", "bicubic", "-s", "4", "--outscale", "1.5", "-o",
                                   str(tmp_path / "b.png"), "-q"])
    assert res.exit_code == 0, res.output
    lr = np.asarray(Image.open(src))  # an interpolation model resizes to --outscale in one pass
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), imresize_np(lr, size=(15, 18)))
    res = CliRunner().invoke(cli, ["upscale", str(src), "--outscale", "0"])
    assert res.exit_code == 2


def test_outscale_picks_the_nearest_shipped_scale_above_else_the_largest(tmp_path: Path) -> None:
    src = _img(tmp_path / "a.png", size=(12, 10))
    for outscale, scale in (("1.5", 2), ("2.5", 3), ("4.5", 4)):
        res = CliRunner().invoke(cli, ["upscale", str(src), "-m", "espcn", "--outscale", outscale, "--json",
                                       "--overwrite"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["scale"] == scale  # x4.5 is ESPCN x4 enlarged, not bicubic x5


def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from subpixel.commands import upscale as upscale_cmd

    src = _img(tmp_path / "a.png")
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(upscale_cmd, "_writable", lambda folder: folder.name != "ro")  # root writes anywhere
    monkeypatch.setattr(subpixel.Upscaler, "upscale", lambda *a, **k: pytest.fail("upscaled before the check"))
    res = CliRunner().invoke(cli, ["upscale", str(src), "-m", "bicubic", "-s", "2", "-o", str(tmp_path / "ro/")])
    assert res.exit_code == 1 and "cannot write into the output folder" in str(res.exception)


def test_files_in_input_folders_that_are_not_images_are_reported(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.gif").write_bytes(b"GIF89a")
    (tmp_path / "in" / "notes").write_text("x")
    (tmp_path / "in" / ".hidden").write_text("x")
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path / "in"), "-m", "bicubic", "-s", "2", "-o",
                                   str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "left out 2 file(s)" in res.stderr and "((no extension), .gif)" in res.stderr
    res = CliRunner().invoke(cli, ["upscale", str(tmp_path / "in"), "-m", "bicubic", "-s", "2", "-o",
                                   str(tmp_path / "out"), "--json", "--overwrite"])
    assert sorted(Path(p).name for p in json.loads(res.stdout)["not_images"]) == ["b.gif", "notes"]


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    from subpixel.commands import models as models_cmd

    def broken(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(models_cmd, "shipped_models", broken)
    monkeypatch.setattr("sys.argv", ["subpixel", "models"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1 and "error: broken pipe" in capsys.readouterr().err


def _run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, ["upscale", *args, "-m", "bicubic", "-s", "2"])


@pytest.mark.parametrize("code, wrapped", [("ENOSPC", False), ("EDQUOT", True), ("EROFS", True)])
def test_a_full_disk_stops_the_batch_at_once(code: str, wrapped: bool, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from subpixel.commands import upscale as upscale_cmd
    from subpixel.io.image import ImageWriteError

    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        _img(tmp_path / "in" / f"{name}.png")
    upscaled: list[tuple[int, int]] = []
    real_upscale, real_write = subpixel.Upscaler.upscale, upscale_cmd.write_image
    monkeypatch.setattr(subpixel.Upscaler, "upscale",
                        lambda self, image, *a, **k: upscaled.append(image.shape) or real_upscale(self, image, *a, **k))

    def write(path, *args, **kwargs):
        if path.name.startswith("b"):
            err = OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
            if wrapped:  # as write_image raises it
                raise ImageWriteError(f"{path}: cannot write image ({err})") from err
            raise err
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(upscale_cmd, "write_image", write)
    res = _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--json")
    assert res.exit_code == 1, res.output
    summary = json.loads(res.stdout)
    assert len(upscaled) == 2  # c.png was never read nor upscaled
    assert [Path(o["input"]).name for o in summary["outputs"]] == ["a.png"]
    assert [Path(f["input"]).name for f in summary["failures"]] == ["b.png"]
    assert [Path(p).name for p in summary["not_attempted"]] == ["c.png"]
    assert "--skip-existing" in summary["error"] and "1 input(s) not attempted" in summary["error"]
    res = _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--skip-existing")
    assert res.exit_code == 1 and len(upscaled) == 3
    assert ("writable" if code == "EROFS" else "free space") in res.stderr and "--skip-existing" in res.stderr


def test_earlier_outputs_in_an_output_folder_inside_the_input_are_not_upscaled(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _img(tmp_path / "in" / "a.png")
    out = tmp_path / "in" / "up"
    assert _run(str(tmp_path / "in"), "-r", "-o", str(out), "-q").exit_code == 0
    res = _run(str(tmp_path / "in"), "-r", "-o", str(out), "--suffix", "_big")  # another suffix: not this run's
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.rglob("*")) == ["a_big.png", "a_x2.png"]  # no up/a_x2_big.png
    assert "left out 1 file(s) under the output folder" in res.stderr
    res = _run(str(tmp_path / "in"), "-r", "-o", str(out), "--format", "jpg", "--json")
    summary = json.loads(res.stdout)
    assert [Path(o["input"]).name for o in summary["outputs"]] == ["a.png"]
    assert sorted(Path(p).name for p in summary["skipped_under_output_folder"]) == ["a_big.png", "a_x2.png"]


def test_symlinked_folders_and_broken_links_are_reported_and_real_names_win(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "real").mkdir(parents=True)
    _img(src / "real" / "a.png")
    (src / "link").symlink_to("real", target_is_directory=True)
    (src / "gone.png").symlink_to("nowhere.png")
    (src / "0alias.png").symlink_to("real/a.png")  # sorts before real/a.png
    res = _run(str(src), "-r", "-o", str(tmp_path / "out"), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert [o["input"] for o in summary["outputs"]] == [str(src / "real" / "a.png")]  # not the alias
    assert (tmp_path / "out" / "real" / "a_x2.png").is_file()
    assert sorted(Path(p).name for p in summary["skipped_links"]) == ["gone.png", "link"]
    res = _run(str(src), "-r", "-o", str(tmp_path / "out"), "--overwrite")
    assert "left out 2 symlinked sub-folder(s) (not followed) and broken link(s)" in res.stderr


def test_a_glob_does_not_follow_symlinked_folders(tmp_path: Path) -> None:
    (tmp_path / "gl" / "a").mkdir(parents=True)
    _img(tmp_path / "gl" / "a" / "x.png")
    (tmp_path / "gl" / "a" / "loop").symlink_to("..", target_is_directory=True)
    (tmp_path / "named").symlink_to("gl", target_is_directory=True)  # named by the pattern: followed
    for pattern in ("gl/**/*.png", "named/*/*.png"):
        res = _run(str(tmp_path / pattern), "-r", "-o", str(tmp_path / "out/"), "--json", "--overwrite")
        assert res.exit_code == 0, res.output
        summary = json.loads(res.stdout)
        root = tmp_path / pattern.split("/")[0]
        assert [o["input"] for o in summary["outputs"]] == [str(root / "a" / "x.png")]
        assert summary["skipped_links"] == ([str(root / "a" / "loop")] if "**" in pattern else [])
    (tmp_path / "p1").mkdir()
    (tmp_path / "p1" / "cur").symlink_to(tmp_path / "gl" / "a", target_is_directory=True)  # named after a wildcard
    res = _run(str(tmp_path / "p*/cur/*.png"), "-o", str(tmp_path / "out2/"), "--json")
    assert res.exit_code == 0, res.output
    assert [o["input"] for o in json.loads(res.stdout)["outputs"]] == [str(tmp_path / "p1" / "cur" / "x.png")]
    res = _run(str(tmp_path / "gl/*/loop/a/*.png"), "-o", str(tmp_path / "out3/"), "--json")  # loop named: followed
    assert res.exit_code == 0, res.output
    res = _run(str(tmp_path / "p1/*/*.png"), "-o", str(tmp_path / "out4/"), "--json")  # only a link matches
    assert "its matches lie in symlinked folders" in json.loads(res.stdout)["failures"][0]["error"]


def test_hidden_and_synology_folders_are_left_out(tmp_path: Path) -> None:
    for sub in (".thumbnails", ".git/objects", "@eaDir/a.png", "keep"):
        (tmp_path / "in" / sub).mkdir(parents=True)
    for f in (".thumbnails/t.png", ".git/objects/o.png", "@eaDir/a.png/SYNOPHOTO_THUMB_M.jpg", "keep/k.png",
              "keep/.h.png"):
        _img(tmp_path / "in" / f)
    res = _run(str(tmp_path / "in"), "-r", "-o", str(tmp_path / "out"), "--json")
    assert res.exit_code == 0, res.output
    assert [Path(o["input"]).name for o in json.loads(res.stdout)["outputs"]] == ["k.png"]


def test_glob_matches_that_are_not_images_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "notes.txt").write_text("x")
    (tmp_path / "in" / "Thumbs.db").write_bytes(b"\0")
    res = _run(str(tmp_path / "in" / "*"), "-o", str(tmp_path / "out"), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert [Path(o["input"]).name for o in summary["outputs"]] == ["a.png"]
    assert sorted(Path(p).name for p in summary["not_images"]) == ["Thumbs.db", "notes.txt"]
    res = _run(str(tmp_path / "in" / "notes.txt"), "-o", str(tmp_path / "out/"))  # named: still an error
    assert res.exit_code == 1


@pytest.mark.parametrize("flag", ["--skip-existing", "--overwrite"])
def test_an_original_named_like_an_output_is_not_taken_for_one(flag: str, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _img(tmp_path / "in" / "page.png", (12, 10))
    scan = _img(tmp_path / "in" / "page_x2.png", (30, 40)).read_bytes()  # an original scan, not 24x20
    res = _run(str(tmp_path / "in"), flag)
    assert res.exit_code == 1 and "would replace the input" in str(res.exception)
    assert (tmp_path / "in" / "page_x2.png").read_bytes() == scan
    _img(tmp_path / "in" / "page_x2.png", (24, 10 * 2))  # an earlier output is still left out
    res = _run(str(tmp_path / "in"), flag, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert [Path(p).name for p in summary["skipped_outputs_of_other_inputs"]] == ["page_x2.png"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_turned_tiff_s_earlier_output_is_recognised(dtype: type, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype(dtype)  # shown 20x30: orientation 6
    tifffile.imwrite(tmp_path / "in" / "scan.tiff", pixels, photometric="rgb", extratags=[(0x0112, "H", 1, 6, True)])
    assert _run(str(tmp_path / "in"), "-q").exit_code == 0
    with Image.open(tmp_path / "in" / "scan_x2.tiff") as im:
        assert im.size == (40, 60)
    res = _run(str(tmp_path / "in"), "--overwrite", "--json")
    assert res.exit_code == 0, res.output
    assert [Path(p).name for p in json.loads(res.stdout)["skipped_outputs_of_other_inputs"]] == ["scan_x2.tiff"]


def test_an_interrupted_batch_says_what_it_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        _img(tmp_path / "in" / f"{name}.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    real = subpixel.Upscaler.upscale
    calls: list[int] = []

    def upscale(self, image, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, image, *args, **kwargs)

    monkeypatch.setattr(subpixel.Upscaler, "upscale", upscale)
    res = _run(str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)  # click's Abort
    assert res.stdout.count("wrote ") == 2 and "error:" in res.stderr and "bad.png" in res.stderr
    assert "interrupted: 2 of 4 written; rerun with --skip-existing" in res.stderr
    calls.clear()
    monkeypatch.setattr(sys, "argv", ["subpixel", "upscale", str(tmp_path / "in"), "-m", "bicubic", "-s", "2",
                                      "-o", str(tmp_path / "out2"), "--json"])
    exit_code = run_main()
    out, err = capsys.readouterr()
    summary = json.loads(out)  # one JSON object: what was done, beside the error
    assert exit_code == 130 and summary["error"] == "interrupted" and "interrupted" in err
    assert [Path(o["input"]).name for o in summary["outputs"]] == ["a.png", "b.png"]
    assert [Path(f["input"]).name for f in summary["failures"]] == ["bad.png"]
    assert [Path(p).name for p in summary["not_attempted"]] == ["c.png"]


def test_update_card_of_a_shipped_model_is_refused_in_an_installed_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package's cards live in site-packages: --update-card does not rewrite them."""
    import subpixel.commands.evaluate as evaluate_command

    monkeypatch.setattr(evaluate_command, "IN_CHECKOUT", False)
    res = CliRunner().invoke(cli, ["eval", "-m", "espcn", "-s", "2", "-d", "Set5", "--update-card"])
    assert res.exit_code == 2 and "only in a source checkout" in res.output, res.output
