"""Runtimes: ONNX export and its parity check, engine selection, precision fallback, uint8 frame pipeline."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import subpixel
from subpixel.cli import cli
from subpixel.engine import FramePipeline, OnnxEngine, TorchEngine, make_engine, onnx_export, select
from subpixel.errors import OutOfMemory, SubpixelError
from subpixel.models import build
from subpixel.models.base import SRNet
from subpixel.models.loader import load
from subpixel.models.weights import save_weights, shipped_models
from subpixel.upscaler import Upscaler
from tests.conftest import TinyConvNet

CPU = torch.device("cpu")


@pytest.fixture
def fresh_choices(monkeypatch) -> None:
    """No cached ``auto`` decision: the next ``auto`` times both engines."""
    monkeypatch.setattr(select, "_CHOICES", {})


class Overflowing(SRNet):
    """Identity-like x2 net whose intermediate exceeds fp16's range when inputs exceed ``limit``."""

    def __init__(self, gain: float) -> None:
        super().__init__(2)
        self.gain = gain
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x * self.gain) / self.gain


class FrozenOnWideInputs(TinyConvNet):
    """Eager output differs on inputs one pixel high (or wide, ``axis`` 3): what a trace at 24x24 freezes."""

    def __init__(self, axis: int) -> None:
        super().__init__(scale=2)
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out + 1 if x.shape[self.axis] == 1 else out


class HalfUnsupported(TinyConvNet):
    """Raises like an operator without a half-precision kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise RuntimeError('"slow_conv2d" not implemented for \'Half\'')
        return super().forward(x)


def test_onnx_export_parity_with_dynamic_shapes(tiny_net, tmp_path) -> None:
    report = onnx_export.export_onnx(tiny_net, tmp_path / "tiny.onnx")
    assert report.opset >= 17 and report.max_abs_error < 1e-3
    engine = OnnxEngine(report.path, threads=1)
    for shape in ((1, 3, 20, 30), (3, 3, 17, 11)):  # batch, height and width all differ from the export
        x = torch.rand(shape)
        out = engine(x)
        with torch.inference_mode():
            ref = tiny_net(x)
        assert out.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)
        assert (out - ref).abs().max().item() < 1e-3


@pytest.mark.parametrize(("name", "args"), [("espcn", {"mode": "y", "skip": "nearest"}),
                                            ("espcn", {"mode": "rgb", "skip": "bicubic"}),
                                            ("sesr-m5", {"mode": "y", "expansion": 4}),
                                            ("rlfn", {"channels": 8, "blocks": 1})])
def test_luma_bicubic_and_attention_networks_export_with_dynamic_shapes(name, args, tmp_path) -> None:
    net = build(name, scale=3, **args).deploy().eval()
    engine = OnnxEngine(onnx_export.export_onnx(net, tmp_path / "net.onnx").path, threads=1)
    for shape in ((2, 3, 13, 19), (1, 3, 1, 9), (1, 3, 7, 1), (1, 3, 2, 2)):  # not baked at the export's 24x24
        x = torch.rand(shape)
        with torch.inference_mode():
            ref = net(x)
        assert (engine(x) - ref).abs().max().item() < 1e-4, shape


@pytest.mark.parametrize("axis", [2, 3])
def test_parity_check_covers_inputs_one_pixel_high_or_wide(axis, tmp_path) -> None:
    with pytest.raises(SubpixelError, match="parity"):
        onnx_export.export_onnx(FrozenOnWideInputs(axis).eval(), tmp_path / "f.onnx")


def test_onnx_runtime_run_errors_are_one_line_user_errors(tiny_net, tmp_path) -> None:
    engine = OnnxEngine(onnx_export.export_onnx(tiny_net, tmp_path / "t.onnx").path, threads=1)
    with pytest.raises(SubpixelError, match=r"^ONNX Runtime cannot run an input of shape \(1, 4, 8, 8\): ") as err:
        engine(torch.rand(1, 4, 8, 8))
    assert "\n" not in str(err.value)


def test_onnx_runtime_out_of_memory_halves_the_tile(tiny_net, tmp_path) -> None:
    engine = OnnxEngine(onnx_export.export_onnx(tiny_net, tmp_path / "t.onnx").path, threads=1)
    session = engine.session

    class Tight:  # ONNX Runtime's allocator failing on tiles with more than 40 input rows
        def run(self, names, feeds):
            if next(iter(feeds.values())).shape[2] > 40:
                raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for "
                                   "requested buffer of size 123456\nmore lines")
            return session.run(names, feeds)

    engine.session = Tight()
    upscaler = Upscaler(tiny_net, name="tiny", engine=engine)
    x = torch.rand(1, 3, 64, 64)
    out = upscaler.upscale_tensor(x, tile=128)  # one whole-image call first, then tiles of 32
    assert upscaler.last_tile_info.halvings == 1 and upscaler.last_tile_info.tile == 32
    assert upscaler.last_tile_info.tiles_run == 4
    with torch.inference_mode():
        assert (out - tiny_net(x)).abs().max().item() < 1e-3
    with pytest.raises(OutOfMemory, match="^ONNX Runtime cannot run an input of shape .*Failed to allocate memory"):
        engine(torch.rand(1, 3, 48, 8))
    out = upscaler.upscale_tensor(torch.rand(1, 3, 80, 80), tile=80)  # tiles of 40 still fail: halved again
    assert upscaler.last_tile_info.halvings == 2 and upscaler.last_tile_info.tile == 20


def test_export_file_is_flushed_to_disk_before_the_rename(tiny_net, tmp_path, monkeypatch) -> None:
    path, real_fsync, synced = tmp_path / "t.onnx", os.fsync, {}

    def spy(fd: int) -> None:
        synced[os.fstat(fd).st_ino] = path.exists()
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    onnx_export.export_onnx(tiny_net, path)
    assert synced.get(path.stat().st_ino) is False  # the very file, synced while still under its temporary name


def test_export_names_its_output_in_the_current_folder_after_the_weights_file(tmp_path, monkeypatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for stem, name in (("evil", "../elsewhere/pwn"), ("numeric", 123)):
        weights = tmp_path / f"{stem}.safetensors"
        save_weights(build("espcn", 2), weights, {"name": name, "architecture": "espcn", "arch_args": {}, "scale": 2})
        res = CliRunner().invoke(cli, ["export", str(weights), "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.output[res.output.index("{"):])["model"] == stem
    assert sorted(p.name for p in work.iterdir()) == ["evil.onnx", "numeric.onnx"]  # the weights file's stem
    res = CliRunner().invoke(cli, ["export", "espcn", "-s", "2", "-q"])  # a shipped model's name: its own file
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in work.iterdir()) == ["espcn_x2.onnx", "evil.onnx", "numeric.onnx"]
    assert not (tmp_path / "elsewhere").exists()


def test_export_fails_and_removes_the_file_when_parity_fails(tiny_net, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_export, "_max_abs_error", lambda net, path: 0.5)
    with pytest.raises(SubpixelError, match="parity"):
        onnx_export.export_onnx(tiny_net, tmp_path / "bad.onnx")
    assert not list(tmp_path.iterdir())  # no temporary file left either


def test_failed_export_keeps_an_existing_output_which_needs_overwrite(tmp_path) -> None:
    keep = tmp_path / "keep.onnx"
    keep.write_text("precious")
    args = ["export", "espcn", "-s", "2", "--random-weights", "-o", str(keep)]
    refused = CliRunner().invoke(cli, args)
    assert isinstance(refused.exception, SubpixelError) and "exists (use --overwrite)" in str(refused.exception)
    failed = CliRunner().invoke(cli, [*args, "--overwrite", "--opset", "99"])
    assert isinstance(failed.exception, SubpixelError) and "99" in str(failed.exception)
    assert keep.read_text() == "precious" and list(tmp_path.iterdir()) == [keep]
    assert CliRunner().invoke(cli, [*args, "--overwrite"]).exit_code == 0
    onnx.checker.check_model(str(keep))
    assert list(tmp_path.iterdir()) == [keep]


def test_exporter_console_output_is_captured_and_logged_on_failure(tiny_net, tmp_path, monkeypatch, capfd,
                                                                    caplog) -> None:
    def noisy_export(*args: object, **kwargs: object) -> None:
        os.write(1, b"native stdout noise\n")
        os.write(2, b"native stderr noise\n")
        print("python noise")
        raise RuntimeError("unsupported thing\nwith a long explanation")

    monkeypatch.setattr(torch.onnx, "export", noisy_export)
    with caplog.at_level(logging.DEBUG, logger=onnx_export.__name__), \
            pytest.raises(SubpixelError) as err:
        onnx_export.export_onnx(tiny_net, tmp_path / "t.onnx", capture=True)
    assert str(err.value) == "ONNX export of TinyConvNet failed: unsupported thing"
    assert capfd.readouterr() == ("", "")
    assert all(s in caplog.text for s in ("native stdout noise", "native stderr noise", "python noise"))


def test_failed_export_with_json_prints_one_json_object(tmp_path) -> None:
    res = subprocess.run([sys.executable, "-c", "from subpixel.cli import main; main()", "export", "espcn", "-s",
                          "2", "--random-weights", "-o", str(tmp_path / "k.onnx"), "--opset", "99", "--json"],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 1
    assert "opset" in json.loads(res.stdout)["error"]  # stdout is exactly one JSON document
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ONNX export of ESPCN failed")


def test_export_refuses_random_weights_with_a_weights_file(tmp_path) -> None:
    weights = next(m for m in shipped_models() if m.name == "espcn").weights
    res = CliRunner().invoke(cli, ["export", str(weights), "--random-weights", "-o", str(tmp_path / "w.onnx")])
    assert res.exit_code == 2 and "--random-weights" in res.output and not list(tmp_path.iterdir())


def test_loading_an_onnx_or_pickle_file_explains_what_loads(tmp_path) -> None:
    with pytest.raises(SubpixelError, match="ONNX files are not loadable as models; pass the .safetensors"):
        load(tmp_path / "exported.onnx", engine="torch")
    (tmp_path / "model.pth").write_bytes(b"not unpickled")
    with pytest.raises(SubpixelError, match=r"only \.safetensors weights with a \.json card.*never pickled"):
        load(tmp_path / "model.pth", engine="torch")
    with pytest.raises(SubpixelError, match="unknown model 'espnc'"):
        load("espnc", engine="torch")


def test_exporting_a_recurrent_model_warns_that_only_its_first_frame_path_is_exported(tmp_path) -> None:
    out = tmp_path / "f.onnx"
    res = CliRunner().invoke(cli, ["export", "frvsr", "-s", "2", "--random-weights", "-q", "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    # a correctness warning: on stderr even with -q; the report and the file say the graph is not recurrent
    assert "frvsr is recurrent" in res.stderr and "single-frame path only" in res.stderr
    assert json.loads(res.stdout)["recurrent"] is False
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["recurrent"] == "false" and meta["graph"] == "single-frame path of a recurrent model"
    plain = CliRunner().invoke(cli, ["export", "espcn", "-s", "2", "--random-weights", "--json", "-o",
                                     str(tmp_path / "e.onnx")])
    assert "recurrent" not in json.loads(plain.stdout) and plain.stderr == ""


def test_export_records_model_weights_card_and_io_contract_in_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shipped = next(m for m in shipped_models() if m.name == "espcn" and m.scale == 2)
    sha = hashlib.sha256(shipped.weights.read_bytes()).hexdigest()
    runs = {"shipped": ["espcn", "-s", "2"], "random": ["espcn", "-s", "2", "--random-weights"],
            "espcn_x2.safetensors": [str(shipped.weights), "-o", "own.onnx"]}
    for weights, args in runs.items():
        res = CliRunner().invoke(cli, ["export", *args, "--json"])
        assert res.exit_code == 0, res.output
        report = json.loads(res.stdout)
        assert report["weights"] == weights
        model = onnx.load(report["path"])
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["model"] == report["model"] and meta["scale"] == "2" and meta["weights"] == weights
        assert meta["subpixel_version"] == subpixel.__version__
        assert "RGB (not BGR) in [0, 1]" in meta["input"] and "not clamped" in meta["output"]
        assert "RGB in [0, 1]" in model.graph.doc_string and "\n" not in model.graph.doc_string
        if weights == "random":  # no card nor weights file to name
            assert "card" not in meta and "weights_sha256" not in meta
        else:
            assert meta["weights_sha256"] == sha and json.loads(meta["card"]) == shipped.card
    # random weights get their own default name: the shipped export is not replaced, nor taken for it
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["espcn_x2.onnx", "espcn_x2_random.onnx", "own.onnx"]


def test_export_help_states_the_io_contract_and_the_graph_does_not_clamp(tmp_path) -> None:
    text = " ".join(CliRunner().invoke(cli, ["export", "--help"]).output.split())
    assert "float32 NCHW RGB (not BGR) in [0, 1]" in text and "NOT clamped" in text and "clamp before" in text
    path = onnx_export.export_onnx(build("espcn", 2), tmp_path / "e.onnx").path
    assert "Clip" not in {node.op_type for node in onnx.load(path).graph.node}  # exact parity with eager


def test_exported_output_declares_three_channels_and_symbolic_sizes(tmp_path) -> None:
    net = load("espcn", scale=2, device="cpu", engine="torch").net  # shipped: the exporter leaves its channels symbolic
    graph = onnx.load(onnx_export.export_onnx(net, tmp_path / "e.onnx").path).graph
    for value, sizes in ((graph.input[0], ("batch", "height", "width")),
                         (graph.output[0], ("batch", "out_height", "out_width"))):
        dims = value.type.tensor_type.shape.dim
        assert dims[1].dim_value == 3 and not dims[1].dim_param
        assert tuple(dims[i].dim_param for i in (0, 2, 3)) == sizes


def test_export_report_says_what_the_parity_check_ran_on(tmp_path) -> None:
    out = tmp_path / "e.onnx"
    res = CliRunner().invoke(cli, ["export", "espcn", "-s", "2", "--random-weights", "--json", "-o", str(out)])
    parity_input = json.loads(res.stdout)["parity_input"]
    assert parity_input.startswith("uniform [0,1) noise, seed 0, shapes ")
    assert all("x".join(map(str, shape)) in parity_input for shape in onnx_export.PARITY_SHAPES)
    text = CliRunner().invoke(cli, ["export", "espcn", "-s", "2", "--random-weights", "--overwrite", "-o", str(out)])
    assert "parity vs PyTorch on uniform [0,1) noise: max abs error" in text.output


def test_export_refuses_interpolation_and_old_opsets(tiny_net, tmp_path) -> None:
    with pytest.raises(SubpixelError, match="interpolation"):
        onnx_export.export_onnx(build("bicubic", 2), tmp_path / "b.onnx")
    with pytest.raises(SubpixelError, match="opset"):
        onnx_export.export_onnx(tiny_net, tmp_path / "t.onnx", opset=13)


def test_export_command_reports_parity(tmp_path) -> None:
    out = tmp_path / "espcn.onnx"
    result = CliRunner().invoke(cli, ["export", "espcn", "--scale", "3", "--random-weights", "-o", str(out),
                                      "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    assert out.is_file() and doc["max_abs_error"] < 1e-3 and doc["opset"] == 17
    text = CliRunner().invoke(cli, ["export", "espcn", "-s", "2", "--random-weights", "-o", str(out), "--overwrite"])
    assert text.exit_code == 0 and "max abs error" in text.output
    failed = CliRunner().invoke(cli, ["export", "bicubic", "-o", str(tmp_path / "b.onnx")])
    assert isinstance(failed.exception, SubpixelError)
    shipped = next(m for m in shipped_models() if m.scale == 2)  # -s defaults to the weights file's own scale
    own = CliRunner().invoke(cli, ["export", str(shipped.weights), "-o", str(tmp_path / "w.onnx"), "--json"])
    assert own.exit_code == 0, own.output
    assert json.loads(own.output[own.output.index("{"):])["scale"] == 2
    wrong = CliRunner().invoke(cli, ["export", "espcn", "--random-weights", "-o", str(tmp_path / "x.png")])
    assert wrong.exit_code == 2 and not (tmp_path / "x.png").exists()


def test_export_into_a_folder_that_is_a_file_is_a_one_line_error(tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(b"an image, not a folder")
    res = CliRunner().invoke(cli, ["export", "espcn", "-s", "2", "--random-weights", "-o",
                                   str(tmp_path / "a.png" / "x.onnx")])
    assert isinstance(res.exception, SubpixelError), res.exception
    assert "cannot create the output folder" in str(res.exception) and str(tmp_path / "a.png") in str(res.exception)


def test_export_quiet_prints_nothing_but_errors(tmp_path) -> None:
    res = CliRunner().invoke(cli, ["export", "espcn", "-s", "2", "--random-weights", "-q", "-o",
                                   str(tmp_path / "f.onnx")])
    assert res.exit_code == 0 and res.output == ""
    assert (tmp_path / "f.onnx").is_file()
    failed = CliRunner().invoke(cli, ["export", "espcn", "-s", "2", "--random-weights", "-q", "-o",
                                      str(tmp_path / "f.onnx")])
    assert isinstance(failed.exception, SubpixelError) and "exists" in str(failed.exception)


def test_auto_on_cpu_times_both_engines_and_caches_the_decision(tiny_net, fresh_choices) -> None:
    first = make_engine(tiny_net, "auto", "cpu")
    assert first.name in ("torch", "onnx")
    choice = first.selection
    assert choice is not None and set(choice.timings_ms) == {"torch", "onnx"}
    assert all(t > 0 for t in choice.timings_ms.values())
    assert choice.engine == min(choice.timings_ms, key=choice.timings_ms.__getitem__) == first.name
    again = make_engine(TinyConvNet(scale=2).eval(), "auto", "cpu")  # same architecture and scale: cached
    assert again.selection is choice and again.name == first.name
    x = torch.rand(1, 3, 9, 13)
    with torch.inference_mode():
        assert (first(x) - tiny_net(x)).abs().max().item() < 1e-3


def test_onnx_engine_with_device_auto_runs_on_the_cpu_beside_a_gpu(tiny_net, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    engine = make_engine(tiny_net, "onnx", "auto", threads=1)
    assert isinstance(engine, OnnxEngine) and engine.device.type == "cpu"
    with pytest.raises(SubpixelError, match="CPU only, not cuda"):  # asking for the GPU stays an error
        make_engine(tiny_net, "onnx", "cuda")


def test_forcing_engines_and_clear_errors(tiny_net) -> None:
    assert isinstance(make_engine(tiny_net, "torch", "cpu"), TorchEngine)
    assert isinstance(make_engine(tiny_net, "onnx", "cpu", threads=1), OnnxEngine)
    assert make_engine(build("bicubic", 2), "auto", "cpu").name == "torch"  # interpolation: always torch
    with pytest.raises(SubpixelError, match="unknown engine 'tensorrt'"):
        make_engine(tiny_net, "tensorrt", "cpu")
    with pytest.raises(SubpixelError, match="interpolation"):
        make_engine(build("bicubic", 2), "onnx", "cpu")
    with pytest.raises(SubpixelError, match="CUDA"):
        make_engine(tiny_net, "torch-cudagraph", "cpu")


def test_compiled_engine_matches_eager_across_shapes(tiny_net) -> None:
    eager = TorchEngine(tiny_net, CPU)
    compiled = make_engine(tiny_net, "torch-compile", CPU)
    assert isinstance(compiled, TorchEngine) and compiled.name == "torch-compile"
    for shape in ((1, 3, 12, 16), (2, 3, 9, 7)):  # the second shape makes it recompile
        x = torch.rand(shape)
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-5)


def test_fp16_unsupported_falls_back_to_fp32(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        engine = TorchEngine(HalfUnsupported(scale=2).eval(), CPU, "fp16")
    assert engine.precision == "fp32" and "probe failed" in caplog.text
    assert engine(torch.rand(1, 3, 8, 8)).dtype == torch.float32


def test_fp16_non_finite_on_probe_falls_back() -> None:
    engine = TorchEngine(Overflowing(gain=1e6), CPU, "fp16")  # 1e6 overflows fp16 (max 65504)
    assert engine.precision == "fp32"
    x = torch.rand(1, 3, 4, 4)
    assert torch.allclose(engine(x), x.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_fp16_non_finite_on_real_data_falls_back(caplog) -> None:
    engine = TorchEngine(Overflowing(gain=1e3), CPU, "fp16")  # probe values <= 1e3: finite in fp16
    assert engine.precision == "fp16"
    x = torch.full((1, 3, 4, 4), 100.0)  # 1e5 overflows fp16
    with caplog.at_level(logging.WARNING):
        out = engine(x)
    assert engine.precision == "fp32" and "fp16 output non-finite (overflowing)" in caplog.text
    assert torch.isfinite(out).all() and torch.allclose(out, torch.full((1, 3, 8, 8), 100.0))


def test_fp16_keeps_its_precision_when_the_input_is_to_blame(caplog) -> None:
    engine = TorchEngine(Overflowing(gain=1e3), CPU, "fp16")
    nan_input = torch.rand(1, 3, 4, 4)
    nan_input[0, 0, 0, 0] = float("nan")
    with caplog.at_level(logging.WARNING):
        for x in (nan_input, torch.full((1, 3, 4, 4), 1e36)):  # 1e39 overflows fp32 too
            assert not torch.isfinite(engine(x)).all()
    assert engine.precision == "fp16" and "using fp32" not in caplog.text


def test_an_absent_cuda_device_is_refused_with_the_ones_there(monkeypatch) -> None:
    from subpixel.engine.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(SubpixelError, match=r"^--device cuda:2: no such GPU; available: cuda:0, cuda:1$"):
        resolve_device("cuda:2")


def test_frame_pipeline_uint8_in_and_out(tiny_net) -> None:
    engine = make_engine(tiny_net, "torch", "cpu")
    frames = np.random.default_rng(0).integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    out = FramePipeline(engine, 2, CPU, batch=2)(frames)
    assert out.shape == (5, 12, 14, 3) and out.dtype == np.uint8
    x = torch.from_numpy(frames[3:4]).permute(0, 3, 1, 2).float() / 255
    ref = engine(x).clamp(0, 1).mul(255).add(0.5).floor().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(out[3:4], ref)


def test_emulated_low_precision_on_the_cpu_warns(tiny_net, monkeypatch, caplog) -> None:
    from subpixel.engine import torch_engine

    for native, precision, warned in ((False, "bf16", True), (True, "bf16", False), (True, "fp16", True),
                                      (False, "fp32", False)):
        monkeypatch.setattr(torch_engine, "cpu_has_native_bf16", lambda native=native: native)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            TorchEngine(tiny_net, CPU, precision)
        assert any("emulated" in r.getMessage() for r in caplog.records) == warned, (native, precision)


def test_exports_from_several_threads_all_succeed(tmp_path) -> None:
    nets = [TinyConvNet(scale=s).eval() for s in (2, 3, 4)] * 2
    start = threading.Barrier(len(nets))
    errors: list[str] = []

    def export(i: int) -> None:
        try:  # any error, not only SubpixelError: one left to the thread would only be a warning
            start.wait()
            onnx_export.export_onnx(nets[i], tmp_path / f"{i}.onnx")
        except Exception as err:
            errors.append(f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=export, args=(i,)) for i in range(len(nets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_auto_does_not_cache_a_choice_made_without_onnx(tiny_net, monkeypatch, fresh_choices) -> None:
    real = OnnxEngine.from_net

    def busy(net: SRNet, threads: int | None = None) -> OnnxEngine:
        raise SubpixelError("exporter busy")

    monkeypatch.setattr(select.OnnxEngine, "from_net", busy)
    first = make_engine(tiny_net, "auto", "cpu")
    assert first.name == "torch" and "onnx not considered: exporter busy" in first.selection.note
    monkeypatch.setattr(select.OnnxEngine, "from_net", real)
    again = make_engine(tiny_net, "auto", "cpu")  # tried again, not the remembered failure
    assert set(again.selection.timings_ms) == {"torch", "onnx"} and again.selection.note == ""
    assert make_engine(tiny_net, "auto", "cpu").selection is again.selection  # a full decision is cached


def test_a_cached_onnx_choice_falls_back_to_torch_for_weights_that_do_not_export(tiny_net, monkeypatch,
                                                                                   fresh_choices) -> None:
    first = make_engine(tiny_net, "auto", "cpu")
    select._CHOICES[next(iter(select._CHOICES))] = dataclasses.replace(first.selection, engine="onnx")

    def refuses(net: SRNet, threads: int | None = None) -> OnnxEngine:
        raise SubpixelError("failed the parity check")

    monkeypatch.setattr(select.OnnxEngine, "from_net", refuses)
    other = make_engine(TinyConvNet(scale=2).eval(), "auto", "cpu")  # same architecture: the cached choice
    assert other.name == "torch" and other.selection.note == "onnx not considered: failed the parity check"


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_an_empty_batch_gives_an_empty_batch_on_every_engine(engine) -> None:
    model = load("espcn", 2, device="cpu", engine=engine)  # ONNX Runtime's Reshape refuses batch 0
    assert tuple(model.upscale(torch.zeros(0, 3, 17, 23)).shape) == (0, 3, 34, 46)
