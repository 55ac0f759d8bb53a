"""``subpixel models``: the model table, from the registry and the shipped model cards."""

from __future__ import annotations

import click

from subpixel.commands.options import emit_json
from subpixel.models.registry import architectures
from subpixel.models.weights import shipped_models


def model_rows() -> list[dict]:
    """One row per built-in interpolation and per shipped model x scale."""
    rows = [{"name": n, "scales": "any", "params": 0, "weights": "built-in", "Set5": None, "Urban100": None}
            for n, spec in sorted(architectures().items()) if spec.interpolation]
    for m in shipped_models():
        metrics = m.card.get("metrics", {})
        rows.append({"name": m.name, "scales": f"x{m.scale}", "params": m.card.get("params"),
                     "weights": m.weights.name,
                     "Set5": metrics.get("Set5", {}).get("psnr"), "Urban100": metrics.get("Urban100", {}).get("psnr")})
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--architectures", "show_arch", is_flag=True, help="List every registered architecture instead.")
def models(as_json: bool, show_arch: bool) -> None:
    """List models: scales, parameters and measured metrics (Y-PSNR, from their cards)."""
    if show_arch:
        rows = [{"name": n, "scales": "any" if s.scales is None else ",".join(map(str, s.scales)),
                 "summary": s.summary} for n, s in sorted(architectures().items())]
    else:
        rows = model_rows()
    if as_json:
        emit_json(rows)
        return
    keys = list(rows[0]) if rows else []
    fmt = {k: (lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else f"{v:,}"
                                                 if isinstance(v, int) else str(v))) for k in keys}
    table = [[fmt[k](r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(t[i]) for t in table)) for i, k in enumerate(keys)]
    click.echo("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for t in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    if not show_arch:
        click.echo("Set5/Urban100: Y-PSNR (dB) at the model's scale, default protocol (subpixel eval).")
