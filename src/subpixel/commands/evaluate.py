"""``subpixel eval``: PSNR/SSIM of a model on benchmark sets, exactly as the literature computes them."""

from __future__ import annotations

import json
from pathlib import Path

import click
from tqdm import tqdm

from subpixel.commands.options import emit_json, output_options, runtime_options
from subpixel.errors import SubpixelError
from subpixel.eval.datasets import STANDARD_SETS, dataset_images, resolve_dataset
from subpixel.eval.protocol import PROTOCOLS, SetResult, evaluate
from subpixel.models.loader import load
from subpixel.models.weights import card_path, shipped_models
from subpixel.upscaler import Upscaler


def run_sets(model: Upscaler, sets: list[str], protocol: str, channel: str, ensemble: bool, quiet: bool
             ) -> list[SetResult]:
    """Evaluate ``model`` on each set with a progress bar over all images."""
    total = sum(len(dataset_images(resolve_dataset(d))) for d in sets)
    results = []
    with tqdm(total=total, unit="img", disable=quiet, dynamic_ncols=True, desc=f"{model.name} x{model.scale}") as bar:
        for d in sets:
            results.append(evaluate(model, d, protocol, channel, ensemble, progress=lambda _: bar.update()))
    return results


def markdown_table(rows: list[dict], sets: list[str]) -> str:
    """Rows of {model, scale, params, macs, <set>: SetResult} as a markdown table."""
    head = "| model | scale | params | GMACs@720p | " + " | ".join(f"{s} PSNR/SSIM" for s in sets) + " |"
    sep = "|---|---|---|---|" + "---|" * len(sets)
    lines = [head, sep]
    for r in rows:
        cells = [f"{r[s].psnr:.2f} / {r[s].ssim:.4f}" if s in r else "-" for s in sets]
        macs = "-" if r.get("macs") is None else f"{r['macs'] / 1e9:.2f}"
        params = "-" if not r.get("params") else f"{r['params']:,}"
        lines.append(f"| {r['model']} | x{r['scale']} | {params} | {macs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(path)  # atomic: a failed write leaves the card as it was


@click.command("eval")
@click.option("-m", "--model", "model_name", default=None, help="Model name or .safetensors path [default: bicubic].")
@click.option("-s", "--scale", type=click.IntRange(1, 16), default=None,
              help="Scale [default: a weights file's own scale, else 4].")
@click.option("-d", "--data", "sets", multiple=True, help="Set name (Set5, Set14, B100, Urban100) or folder; "
              "repeatable [default: all four].")
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
def evaluate_cmd(model_name: str | None, scale: int | None, sets: tuple[str, ...], protocol: str, rgb: bool,
                 self_ensemble: bool, all_models: bool, markdown: bool, update_card: bool, video_set: str | None,
                 device: str, precision: str, engine: str, quiet: bool, as_json: bool) -> None:
    """Score a model with the field's protocol (Y of BT.601, scale pixels shaved, MATLAB bicubic LR)."""
    if all_models and (model_name is not None or scale is not None):
        raise click.UsageError("--all evaluates every shipped model at its own scale; drop -m/-s")
    if update_card and (rgb or self_ensemble or protocol != "default"):
        raise click.UsageError("--update-card records the default protocol's Y figures only "
                               "(no --rgb, --self-ensemble or --protocol)")
    if update_card and any(d not in STANDARD_SETS for d in sets):
        raise click.UsageError(f"--update-card records the standard sets only ({', '.join(STANDARD_SETS)})")
    model_name = model_name or "bicubic"
    if video_set is not None:
        _video_eval(model_name, scale, video_set, device, precision, engine, quiet, as_json)
        return
    names = list(sets) or list(STANDARD_SETS)
    channel = "rgb" if rgb else "y"
    if all_models:
        targets = [("bicubic", s) for s in sorted({m.scale for m in shipped_models()} or {4})]
        targets += [(m.name, m.scale) for m in shipped_models()]
    else:
        targets = [(model_name, scale)]
    rows = []
    for name, s in targets:
        model = load(name, scale=s, device=device, precision=precision, engine=engine)
        s = model.scale
        results = run_sets(model, names, protocol, channel, self_ensemble, quiet or as_json)
        if update_card:
            path = Path(name) if name.endswith(".safetensors") else next(
                (m.weights for m in shipped_models() if m.name == name.lower() and m.scale == s), None)
            if path is None:
                raise SubpixelError(f"--update-card needs a model with weights, not {name!r}")
            write_card_metrics(path, results)
            if not (quiet or as_json):
                click.echo(f"updated {card_path(path)}", err=True)
        params, macs = complexity(model)
        rows.append({"model": model.name, "scale": s, "params": params, "macs": macs,
                     **{r.dataset: r for r in results}})
    labels = [resolve_dataset(d).name for d in names]
    if as_json:
        emit_json([{k: (v.to_dict() if isinstance(v, SetResult) else v) for k, v in r.items()} for r in rows])
    elif markdown or all_models:
        click.echo(markdown_table(rows, labels))
        click.echo(f"\n{channel.upper()}-PSNR (dB) / SSIM, protocol {protocol}{', x8 self-ensemble' * self_ensemble}; "
                   "Set14 includes grayscale bridge as R=G=B (about 0.09 dB kinder than legacy tables).")
    else:
        for r in rows:
            for d in labels:
                res = r[d]
                click.echo(f"{res.model} x{res.scale} {d:<9} PSNR {res.psnr:.4f} dB  SSIM {res.ssim:.5f}  "
                           f"({res.channel.upper()}, {res.protocol}{', x8 self-ensemble' * self_ensemble}, "
                           f"{len(res.images)} images)")


def _video_eval(model_name: str, scale: int | None, video_set: str, device: str, precision: str, engine: str,
                quiet: bool, as_json: bool) -> None:
    """``--video``: Y-PSNR/SSIM per clip and warping error, with bicubic alongside."""
    from subpixel.eval.video import evaluate_video, format_video_report

    root = resolve_dataset(video_set)
    reports = []
    for name in dict.fromkeys([model_name, "bicubic"]):
        model = load(name, scale=scale if name == model_name else reports[0].scale, device=device,
                     precision=precision, engine=engine)
        reports.append(evaluate_video(model, root, scale=model.scale, name=model.name,
                                      progress=not (quiet or as_json)))
    if as_json:
        emit_json([r.to_dict() for r in reports])
        return
    for r in reports:
        click.echo(format_video_report(r) + "\n")
