"""The report as one self-contained web page, report.html: read offline, sent as a single file.

Tables are HTML, the report's PNG figures are inlined as base64 data URIs, and the per-drug comparison (per cell line
in leave-cell-out) is inline SVG with one circle per drug whose <title> names it: a browser shows the name on hover,
without JavaScript. Nothing is fetched from elsewhere (no scripts, fonts or style sheets), so the page looks the same
on a laptop without network as on the cluster that wrote it.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from fused_train import plots
from fused_train.models.naive import NAIVE
from fused_train.runs import predictions, predictors
from fused_train.splits import split_of
from fused_train.stats import entity_pcc

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
.table { overflow-x: auto; } table { border-collapse: collapse; font-size: 0.8em; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 0.25em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f4f4f4; position: sticky; top: 0; } tr:hover td { background: #f8f8ff; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption, .note { color: #555; font-size: 0.85em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; } svg circle:hover { stroke: #000; stroke-width: 1.5; }
"""


def write_html(
    run_dirs: Sequence[Path], out: Path, sections: dict[str, tuple[pd.DataFrame, str]], figures: Sequence[Path]
) -> Path:
    """Write ``out``: the runs, each non-empty table of ``sections`` (title -> (table, note)), the per-entity
    comparison with names on hover, and ``figures`` (PNG files) inline. Written whole, then renamed into place."""
    parts = [
        f"<h1>fused report</h1><p class='note'>{len(run_dirs)} run{'s' * (len(run_dirs) != 1)}, written "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p>",
        _runs(run_dirs),
    ]
    for title, (table, note) in sections.items():
        if len(table):
            notes = f"<p class='note'>{html.escape(note)}</p>" if note else ""
            parts.append(
                f"<h2>{html.escape(title)}</h2>{notes}<div class='table'>"
                f"{table.to_html(index=False, border=0, na_rep='')}</div>"
            )
    comparisons = [svg for run_dir in run_dirs if (svg := entity_comparison(run_dir)) is not None]
    if comparisons:
        parts.append(
            "<h2>Per drug (per cell line in leave-cell-out): model against the naive reference</h2>"
            "<p class='note'>One circle per drug; hover over it for its name and both PCCs. Blue: the model "
            "ranks its cell lines better than the naive reference.</p>"
            f"<div class='plots'>{''.join(comparisons)}</div>"
        )
    for path in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = path.stem.replace("_", " ")
        parts.append(
            f"<h2>{html.escape(caption)}</h2><figure><img src='data:image/png;base64,{data}' "
            f"alt='{html.escape(caption)}'><figcaption>{html.escape(path.name)}</figcaption></figure>"
        )
    page = (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>fused report</title>"
        f"<style>{STYLE}</style></head><body>\n{chr(10).join(parts)}\n</body></html>\n"
    )
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.rename(out)
    return out


def _runs(run_dirs: Sequence[Path]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(plots.label(c))}</td><td>{html.escape(c['split'])}</td>"
        f"<td>{html.escape(str(c['dataset']))}</td></tr>"
        for r, c in ((r, plots.config_of(r)) for r in run_dirs)
    )
    return (
        f"<h2>Runs</h2><div class='table'><table><tr><th>run</th><th>model · drug · cells</th><th>split</th>"
        f"<th>dataset</th></tr>{rows}</table></div>"
    )


@cache
def names(dataset: str, entity: str) -> dict[str, str]:
    """Drug names (``name``) or cell-line names (``cell_name``) by id, where the dataset has them."""
    from fused_cache import datasets

    ds = datasets.load(dataset)
    table, column = (ds.drugs, "name") if entity == "drug_id" else (ds.cells, "cell_name")
    if column not in table:
        return {}
    return dict(zip(table[entity].astype(str), table[column].fillna("").astype(str), strict=True))


def entity_comparison(run_dir: Path) -> str | None:
    """Inline SVG of a model run: per-entity PCC of the model (y) against the naive reference (x); None for a run of
    naive predictors only."""
    config, frame = plots.config_of(run_dir), predictions(run_dir)
    models = [n for n in predictors(frame) if n not in NAIVE]
    if not models:
        return None
    by = split_of(config["split"]).entity
    reference = plots.BASELINE[by]
    both = pd.concat(
        [entity_pcc(frame, by, f"pred_{models[0]}"), entity_pcc(frame, by, f"pred_{reference}")],
        axis=1,
        keys=["model", "reference"],
    ).dropna()
    labels = names(str(config["dataset"]), by)
    points = [
        (
            row.reference,
            row.model,
            f"{labels.get(str(i)) or i} ({i}): {models[0]} {row.model:.3f}, {reference} {row.reference:.3f}",
        )
        for i, row in both.iterrows()
    ]
    title = f"{split_of(config['split']).title}: {plots.label(config)}"
    unit = "drug" if by == "drug_id" else "cell-line"
    return scatter_svg(points, title, f"per-{unit} PCC, naive {reference}", f"per-{unit} PCC, {models[0]}")


def scatter_svg(
    points: Sequence[tuple[float, float, str]], title: str, xlabel: str, ylabel: str, size: int = 380
) -> str:
    """A square scatter plot with the diagonal, one circle per (x, y, hover text); equal axes from the lowest value
    to 1."""
    pad, top = 48, 36
    values = [v for x, y, _ in points for v in (x, y)]
    lo = float(np.floor(min([*values, 0.0]) * 10) / 10)
    span = size - pad - 12

    def at(v: float) -> float:
        return (v - lo) / (1.0 - lo) * span

    ticks = np.round(np.arange(lo, 1.0001, 0.2 if 1 - lo <= 1.2 else 0.5), 2)
    grid = "".join(
        f"<line x1='{pad + at(t):.1f}' y1='{top}' x2='{pad + at(t):.1f}' y2='{top + span}' stroke='#eee'/>"
        f"<line x1='{pad}' y1='{top + span - at(t):.1f}' x2='{pad + span}' y2='{top + span - at(t):.1f}' "
        "stroke='#eee'/>"
        f"<text x='{pad + at(t):.1f}' y='{top + span + 14}' font-size='10' text-anchor='middle'>{t:g}</text>"
        f"<text x='{pad - 4}' y='{top + span - at(t) + 3:.1f}' font-size='10' text-anchor='end'>{t:g}</text>"
        for t in ticks
    )
    circles = "".join(
        f"<circle cx='{pad + at(x):.1f}' cy='{top + span - at(y):.1f}' r='3.5' "
        f"fill='{'#1f77b4' if y > x else '#d62728'}' fill-opacity='0.65'><title>{html.escape(text)}</title></circle>"
        for x, y, text in points
    )
    higher = sum(y > x for x, y, _ in points)
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{size}' height='{size + top}' role='img' "
        f"font-family='sans-serif'><title>{html.escape(title)}</title>"
        f"<text x='{size / 2}' y='14' font-size='11' text-anchor='middle'>{html.escape(title)}</text>"
        f"<text x='{size / 2}' y='28' font-size='10' text-anchor='middle' fill='#555'>model higher on {higher} of "
        f"{len(points)}</text>{grid}"
        f"<rect x='{pad}' y='{top}' width='{span}' height='{span}' fill='none' stroke='#888'/>"
        f"<line x1='{pad}' y1='{top + span}' x2='{pad + span}' y2='{top}' stroke='#555' stroke-dasharray='4 3'/>"
        f"{circles}<text x='{pad + span / 2}' y='{top + span + 30}' font-size='11' text-anchor='middle'>"
        f"{html.escape(xlabel)}</text><text transform='translate(12 {top + span / 2}) rotate(-90)' font-size='11' "
        f"text-anchor='middle'>{html.escape(ylabel)}</text></svg>"
    )
