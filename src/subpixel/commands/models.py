"""``subpixel models``: the model table, from the registry and the shipped model cards."""

from __future__ import annotations

import click

from subpixel.commands.options import emit_json, output_options
from subpixel.models.registry import architectures
from subpixel.models.weights import shipped_models


def model_rows() -> list[dict]:
    """One row per built-in interpolation and per shipped model x scale; ``scales`` is a list of integers,
    or None for any integer scale."""
    rows = [{"name": n, "scales": None, "params": 0, "weights": "built-in", "Set5": None, "Urban100": None}
            for n, spec in sorted(architectures().items()) if spec.interpolation]
    for m in shipped_models():
        metrics = m.card.get("metrics", {})
        rows.append({"name": m.name, "scales": [m.scale], "params": m.card.get("params"),
                     "weights": m.weights.name,
                     "Set5": metrics.get("Set5", {}).get("psnr"), "Urban100": metrics.get("Urban100", {}).get("psnr")})
    return rows


def _scales_text(scales: list[int] | None, arch: bool) -> str:
    """The table's ``scales`` cell: "any", "x2" for a shipped model, "2,3,4" for an architecture."""
    if scales is None:
        return "any"
    return ",".join(map(str, scales)) if arch else ",".join(f"x{s}" for s in scales)


@click.command()
@output_options
@click.option("--architectures", "show_arch", is_flag=True, help="List every registered architecture instead.")
def models(quiet: bool, as_json: bool, show_arch: bool) -> None:
    """List models: scales, parameters and measured metrics (Y-PSNR, from their cards)."""
    if show_arch:
        rows = [{"name": n, "scales": None if s.scales is None else [int(x) for x in s.scales],
                 "summary": s.summary} for n, s in sorted(architectures().items())]
    else:
        rows = model_rows()
    if as_json:
        emit_json(rows)
        return
    rows = [{**r, "scales": _scales_text(r["scales"], show_arch)} for r in rows]
    keys = list(rows[0]) if rows else []
    fmt = {k: (lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else f"{v:,}"
                                                 if isinstance(v, int) else str(v))) for k in keys}
    table = [[fmt[k](r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(t[i]) for t in table)) for i, k in enumerate(keys)]
    click.echo("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for t in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(t, widths)))
    if not show_arch and not quiet:  # -q: the table only
        click.echo("Set5/Urban100: Y-PSNR (dB) at the model's scale, default protocol (subpixel eval).")
