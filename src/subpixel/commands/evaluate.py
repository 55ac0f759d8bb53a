"""``subpixel eval``: PSNR/SSIM of a model on benchmark sets, exactly as the literature computes them."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from subpixel.commands.options import emit_json, json_text, output_options, runtime_options
from subpixel.engine.device import engine_device
from subpixel.errors import SubpixelError
from subpixel.eval.datasets import STANDARD_SETS, dataset_images, resolve_dataset, standard_set
from subpixel.eval.protocol import PROTOCOLS, SetResult, check_protocol, evaluate, strict_fp32
from subpixel.io.atomic import write_atomic
from subpixel.models.loader import load
from subpixel.models.weights import card_path, find_shipped, is_weights_path, shipped_models
from subpixel.train.config import IN_CHECKOUT
from subpixel.upscaler import Upscaler


def run_sets(model: Upscaler, sets: list[Path], protocol: str, channel: str, ensemble: bool, quiet: bool
             ) -> list[SetResult]:
    """Evaluate ``model`` on each set folder with a progress bar over all images."""
    total = sum(len(dataset_images(d)) for d in sets)
    results = []
    with tqdm(total=total, unit="img", disable=quiet, dynamic_ncols=True, desc=f"{model.name} x{model.scale}") as bar:
        for d in sets:
            results.append(evaluate(model, d, protocol, channel, ensemble, progress=lambda _: bar.update()))
    return results


def markdown_table(rows: list[dict], sets: list[str]) -> str:
    """Rows of {model, scale, params, macs, sets: {<set>: SetResult}} as a markdown table."""
    head = "| model | scale | params | GMACs@720p | " + " | ".join(f"{s} PSNR/SSIM" for s in sets) + " |"
    sep = "|---|---|---|---|" + "---|" * len(sets)
    lines = [head, sep]
    for r in rows:
        done = r["sets"]
        cells = [f"{done[s].psnr:.2f} / {done[s].ssim:.4f}" if s in done else "-" for s in sets]
        macs = "-" if r.get("macs") is None else f"{r['macs'] / 1e9:.2f}"
        params = "-" if not r.get("params") else f"{r['params']:,}"
        lines.append(f"| {r['model']} | x{r['scale']} | {params} | {macs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _json_row(row: dict) -> dict:
    """A row with its set results as plain dicts."""
    return {**row, "sets": {label: r.to_dict() for label, r in row["sets"].items()}}


def _inf_as_text(obj: Any) -> Any:
    """Infinite floats (the PSNR of an exact reproduction) as ``"inf"``/``"-inf"``, which JSON output
    would otherwise write as null, the mark of a figure not measured."""
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: _inf_as_text(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_inf_as_text(v) for v in obj]
    return obj


def _warn_infinite(what: str, psnrs: list[float], unit: str) -> None:
    """One line on stderr when a mean PSNR is infinite because some images were reproduced exactly."""
    exact = sum(math.isinf(p) for p in psnrs)
    if exact:
        click.echo(f"warning: {what}: mean PSNR is inf: {exact} of {len(psnrs)} {unit} reproduced exactly "
                   "(identical to the ground truth after shaving)", err=True)


def _footnote(protocol: str, channel: str, ensemble: bool, folders: list[Path], rows: list[dict]) -> str:
    """What the markdown table's figures are, and which rows another engine or precision than eager torch fp32
    made."""
    grey = ("; Set14 includes grayscale bridge as R=G=B (about 0.09 dB kinder than legacy tables)"
            if protocol == "default" and channel == "y" and any(f.name == "Set14" for f in folders) else "")
    other = [f"{r['model']} x{r['scale']} ({_runtime(r)})" for r in rows if _runtime(r)]
    ran = f" Not eager torch fp32: {', '.join(other)}." if other else ""
    return f"{channel.upper()}-PSNR (dB) / SSIM, protocol {protocol}{', x8 self-ensemble' * ensemble}{grey}.{ran}"


def _runtime(row: dict) -> str:
    """A row's engine and precision where they are not eager torch and fp32 (else "")."""
    return " ".join(v for v, usual in ((row["engine"], "torch"), (row["precision"], "fp32")) if v != usual)


def complexity(model: Upscaler) -> tuple[int | None, int | None]:
    """Parameters and MACs for a 1280x720 output (None for interpolation)."""
    if model.net.num_parameters() == 0:
        return None, None
    from subpixel.models.complexity import count_macs

    return model.net.num_parameters(), count_macs(model.net, out_hw=(720, 1280))


def write_card_metrics(weights: Path, results: list[SetResult]) -> None:
    """Write measured metrics into the model card beside ``weights``."""
    path = card_path(weights)
    card = json.loads(path.read_text())
    metrics = card.setdefault("metrics", {})
    for r in results:
        metrics[r.dataset] = {"psnr": round(r.psnr, 4), "ssim": round(r.ssim, 5), "protocol": r.protocol,
                              "channel": r.channel}
    write_atomic(path, json_text(card))  # a failed write leaves the card as it was


@click.command("eval")
@click.option("-m", "--model", "model_names", multiple=True,
              help="Model name or .safetensors path; repeatable, one row each [default: bicubic].")
@click.option("-s", "--scale", type=click.IntRange(1, 16), default=None,
              help="Scale [default: a weights file's own scale, else 4].")
@click.option("-d", "--data", "sets", multiple=True, help="Set name (Set5, Set14, B100, Urban100: the shared copy) "
              "or folder of HR images (./Set5 for a local folder of that name); repeatable [default: all four].")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="default", show_default=True,
              help="legacy-y: the SRCNN-era Y-only protocol of published bicubic rows.")
@click.option("--rgb", is_flag=True, help="Score RGB instead of Y.")
@click.option("--self-ensemble", is_flag=True, help="x8 flip/rotation ensemble.")
@click.option("--all", "all_models", is_flag=True, help="Every shipped model x scale (plus bicubic).")
@click.option("--markdown", is_flag=True, help="Print a markdown table.")
@click.option("--update-card", is_flag=True, help="Write the figures into the model's card.")
@click.option("--video", "video_set", default=None, help="Evaluate on a video set instead (e.g. Vid4).")
@runtime_options
@output_options
@strict_fp32()  # loading (engine choice, warm-up) and scoring in true fp32: TF32 off
def evaluate_cmd(model_names: tuple[str, ...], scale: int | None, sets: tuple[str, ...], protocol: str, rgb: bool,
                 self_ensemble: bool, all_models: bool, markdown: bool, update_card: bool, video_set: str | None,
                 device: str, precision: str, engine: str, quiet: bool, as_json: bool) -> None:
    """Score a model with the field's protocol (Y of BT.601, scale pixels shaved, MATLAB bicubic LR)."""
    if all_models and (model_names or scale is not None):
        raise click.UsageError("--all evaluates every shipped model at its own scale; drop -m/-s")
    if markdown and as_json:
        raise click.UsageError("choose one of --markdown and --json")
    if video_set is not None:
        _check_video_options(sets, protocol, rgb, self_ensemble, all_models, markdown, update_card)
        if len(model_names) > 1:
            raise click.UsageError("--video evaluates one model (-m) at a time")
        _video_eval(model_names[0] if model_names else "bicubic", scale, video_set, device, precision, engine, quiet,
                    as_json)
        return
    if all_models and protocol == "legacy-y":
        raise click.UsageError("--protocol legacy-y scores interpolation (-m bicubic) only, not --all")
    implicit = all_models or not model_names  # its bicubic rows are eval's own baseline, not a model named
    model_names = model_names or ("bicubic",)
    if update_card:
        for name in model_names:
            _check_update_card(name, all_models, protocol, rgb, self_ensemble, precision, engine)
        engine = "torch"  # the figures a card records: eager PyTorch fp32 (TF32 off), never another runtime's
    names, folders = _sets(sets or STANDARD_SETS)
    if update_card:
        _check_standard_sets(names, folders)
    labels = _labels(names, folders)
    channel = "rgb" if rgb else "y"
    if all_models:
        targets = [("bicubic", s) for s in sorted({m.scale for m in shipped_models()} or {4})]
        targets += [(m.name, m.scale) for m in shipped_models()]
    else:  # each model once (a weights file named twice by different paths too)
        unique: dict[str, str] = {}
        for name in model_names:
            unique.setdefault(str(Path(name).resolve()) if is_weights_path(name) else name.lower(), name)
        targets = [(name, scale) for name in unique.values()]
    models = []  # every model loaded, and its card found, before any is scored or any card written
    for name, s in targets:
        model = (_load_baseline(s, device, engine) if implicit and name == "bicubic"
                 else load(name, scale=s, device=device, precision=precision, engine=engine))
        shipped = find_shipped(model.name, model.scale)
        weights = Path(name) if is_weights_path(name) else shipped.weights if shipped else None
        if update_card and weights is None and not all_models:
            raise SubpixelError(f"--update-card: no weights file behind {name!r} at x{model.scale}")
        check_protocol(model, protocol, channel, self_ensemble)
        models.append((model, weights))
    rows = []
    for (model, weights), label in zip(models, _model_labels([m for m, _ in models], [n for n, _ in targets])):
        results = run_sets(model, folders, protocol, channel, self_ensemble, quiet or as_json)
        for set_label, res in zip(labels, results):
            if not quiet:
                _warn_infinite(f"{label} x{res.scale} {set_label}", [x.psnr for x in res.images], "images")
        if update_card and weights is not None:
            write_card_metrics(weights, results)
            if not (quiet or as_json):
                click.echo(f"updated {card_path(weights)}", err=True)
        params, macs = complexity(model)
        rows.append({"model": label, "scale": model.scale, "params": params, "macs": macs,
                     "engine": model.engine.name, "precision": getattr(model.engine, "precision", "fp32"),
                     "sets": dict(zip(labels, results))})  # precision as run: an unsupported one falls back
    if as_json:
        emit_json(_inf_as_text([_json_row(r) for r in rows]))
    elif markdown or all_models:
        click.echo(markdown_table(rows, labels))
        click.echo("\n" + _footnote(protocol, channel, self_ensemble, folders, rows))
    else:
        for r in rows:
            runtime = f", {_runtime(r)}" if _runtime(r) else ""
            for d, res in r["sets"].items():
                click.echo(f"{r['model']} x{res.scale} {d:<9} PSNR {res.psnr:.4f} dB  SSIM {res.ssim:.5f}  "
                           f"({res.channel.upper()}, {res.protocol}{', x8 self-ensemble' * res.ensemble}{runtime}, "
                           f"{len(res.images)} images)")


def _sets(given: tuple[str, ...]) -> tuple[list[str], list[Path]]:
    """The sets as named and their folders (absolute, so they are paths, not names, from here on), each once."""
    names, folders = [], []
    for name in given:
        folder = resolve_dataset(name).resolve()
        if folder not in folders:
            names.append(name)
            folders.append(folder)
    return names, folders


def _model_labels(models: list[Upscaler], given: list[str]) -> list[str]:
    """Each model's row label: its name, or the name as given (a path) where two rows of one scale share a name
    (two runs' exports of one file name)."""
    counts = Counter((m.name, m.scale) for m in models)
    return [m.name if counts[(m.name, m.scale)] == 1 else g for m, g in zip(models, given)]


def _labels(names: list[str], folders: list[Path]) -> list[str]:
    """Each set's column: its folder's name, or the path as given where two folders share a name."""
    counts = Counter(f.name for f in folders)
    return [f.name if counts[f.name] == 1 else name for name, f in zip(names, folders)]


def _load_baseline(scale: int, device: str, engine: str) -> Upscaler:
    """The bicubic row eval adds itself: eager fp32 on the named models' device (their ``--engine`` and
    ``--precision`` are not its own, and interpolation refuses onnx)."""
    return load("bicubic", scale=scale, device=str(engine_device(engine, device)), engine="torch")


def _check_update_card(model_name: str, all_models: bool, protocol: str, rgb: bool, self_ensemble: bool,
                       precision: str, engine: str) -> None:
    """``--update-card`` records fp32 default-protocol Y figures of eager PyTorch and needs weights:
    checked before any work (and before the sets are looked up)."""
    if rgb or self_ensemble or protocol != "default":
        raise click.UsageError("--update-card records the default protocol's Y figures only "
                               "(no --rgb, --self-ensemble or --protocol)")
    if precision != "fp32" or engine not in ("auto", "torch"):
        raise click.UsageError("--update-card records fp32 figures of the torch engine (no --precision/--engine)")
    if not all_models and model_name.lower() in ("bicubic", "lanczos"):
        raise click.UsageError(f"--update-card needs a model with weights, not {model_name!r}")
    if not IN_CHECKOUT and (all_models or not is_weights_path(model_name)):
        raise click.UsageError("--update-card rewrites the cards of shipped models only in a source checkout, not "
                               "in an installed package; copy the .safetensors and its .json card and pass that file")


def _check_standard_sets(names: list[str], folders: list[Path]) -> None:
    """``--update-card`` records the shared standard sets only (not local folders of those names)."""
    for name, folder in zip(names, folders):
        shared = standard_set(name)
        if name not in STANDARD_SETS or shared is None or folder != shared.resolve():
            raise click.UsageError(f"--update-card records the shared standard sets only, named as such "
                                   f"({', '.join(STANDARD_SETS)}), not {name}")


def _check_video_options(sets: tuple[str, ...], protocol: str, rgb: bool, self_ensemble: bool, all_models: bool,
                         markdown: bool, update_card: bool) -> None:
    """``--video`` scores Y per clip with bicubic alongside: options of image sets do not apply."""
    given = [flag for flag, on in (("-d", bool(sets)), ("--protocol", protocol != "default"), ("--rgb", rgb),
                                   ("--self-ensemble", self_ensemble), ("--all", all_models),
                                   ("--markdown", markdown), ("--update-card", update_card)) if on]
    if given:
        raise click.UsageError(f"--video does not take {', '.join(given)}")


def _video_eval(model_name: str, scale: int | None, video_set: str, device: str, precision: str, engine: str,
                quiet: bool, as_json: bool) -> None:
    """``--video``: Y-PSNR/SSIM per clip and warping error (needs OpenCV), with bicubic alongside."""
    from subpixel.eval.video import evaluate_video, format_video_report, has_opencv

    root = resolve_dataset(video_set)
    temporal = has_opencv()
    if not temporal and not quiet:
        click.echo("note: the warping error is not measured: it needs OpenCV (pip install 'subpixel[bench]')",
                   err=True)
    reports = []
    for name in [model_name] + ([] if model_name.lower() == "bicubic" else ["bicubic"]):
        model = (load(name, scale=scale, device=device, precision=precision, engine=engine) if name == model_name
                 else _load_baseline(reports[0].scale, device, engine))
        reports.append(evaluate_video(model, root, scale=model.scale, name=model.name, temporal=temporal,
                                      progress=not (quiet or as_json)))
        r = reports[-1]
        if not quiet:
            _warn_infinite(f"{r.model} x{r.scale} {r.dataset}", [p for c in r.clips for p in c.psnr_frames], "frames")
    if as_json:
        emit_json(_inf_as_text([r.to_dict() for r in reports]))
        return
    for r in reports:
        click.echo(format_video_report(r) + "\n")
