"""The paper's tables and figures from finished runs: Markdown/CSV tables and PNG (optionally SVG) plots.

Table rows are predictors (each run's model and its naive baselines) x cell inputs (expression only or multi-omics)
x split. Columns: pooled PCC and RMSE (mean ± sd over seeds where there are several), mean ± sd per-drug PCC (per cell
line in leave-cell-out), bootstrap 95% intervals over drugs of both PCCs, and for each model the paired comparison
with the naive predictor that ranks by the other entity's mean (cell-line mean for per-drug PCC, drug mean for
per-cell-line PCC): mean difference with its interval, drugs won and Wilcoxon p-values (``fused_train.stats``).
A second table pairs every model with every naive predictor (and, on request, models of the same split with each
other). Figures: ``fused_train.plots``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fused_train import plots
from fused_train.models.naive import NAIVE
from fused_train.runs import RunError, predictions, summarise_run
from fused_train.splits import drug_blind
from fused_train.stats import METHOD, holm, paired_test

FIGURES = {
    "learning_curves": plots.learning_curves,
    "predicted_vs_observed": plots.predicted_vs_observed,
    "per_drug_pcc": plots.per_entity_vs_baseline,
    "per_tissue_pcc": plots.per_tissue,
    "pilot_screens": plots.pilot_screens,
    "critical_difference": plots.critical_difference,
}
"""The report's figures: file name (without suffix) -> the function of ``fused_train.plots`` that draws it."""
ENTITY_WORDS = {"drug_id": ("per-drug", "drugs"), "cell_id": ("per-cell", "cell lines")}


def _pm(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def _ci(interval: dict[str, float]) -> str:
    low, high = interval["low"], interval["high"]
    return "n/a" if np.isnan(low) else f"[{low:.3f}, {high:.3f}]"


def _p(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.2g}"


def find_runs(paths: Sequence[Path]) -> tuple[list[Path], dict[Path, str]]:
    """The run directories among ``paths`` (a config.json and at least one finished fold), and why others are not."""
    runs, skipped = [], {}
    for path in paths:
        if not path.is_dir():
            skipped[path] = "not a directory"
        elif not (path / "config.json").is_file():
            skipped[path] = "not a run directory (no config.json)"
        elif not any((path / "folds").glob("*.parquet")):
            skipped[path] = "no finished folds"
        else:
            runs.append(path)
    return runs, skipped


def _statistics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())["statistics"]


def table(run_dirs: list[Path]) -> pd.DataFrame:
    """One row per (run, predictor)."""
    rows = []
    for run_dir in run_dirs:
        config = json.loads((run_dir / "config.json").read_text())
        metrics = summarise_run(run_dir)
        statistics = _statistics(run_dir)
        by = statistics["entity"]
        entity = "per_cell" if by == "cell_id" else "per_drug"
        words, plural = ENTITY_WORDS[by]
        reference = plots.BASELINE[by]
        paired = {(c["a"], c["b"]): c for c in statistics["paired"]}
        for name, part in metrics.groupby("predictor", sort=False):
            sd_col = part[f"{entity}_pcc_sd"]
            per_entity_text = (
                f"{part[f'{entity}_pcc_mean'].iloc[0]:.3f} ± {sd_col.iloc[0]:.3f}"
                if len(part) == 1 and not np.isnan(sd_col.iloc[0])
                else _pm(part[f"{entity}_pcc_mean"])
            )
            interval = statistics["intervals"][name]
            row = {
                "split": config["split"],
                "cells": "expression only" if not config["omics"] else "multi-omics",
                "drug": config["drug_encoder"],
                "cell input": "+".join([config["cell_encoder"], *config["omics"]]),
                "predictor": f"naive: {name}" if name in NAIVE else name,
                "folds": int(part["folds"].iloc[0]),
                "seeds": len(part),
                "test pairs": int(part["n_pairs"].sum()),
                "PCC": _pm(part["pcc"]),
                "PCC 95% CI": _ci(interval["pcc"]),
                "RMSE": _pm(part["rmse"]),
                f"{words} PCC": per_entity_text,
                f"{words} PCC 95% CI": _ci(interval["entity_pcc_mean"]),
            }  # fmt: skip
            test = paired.get((name, reference))
            if test is not None:
                row |= {
                    f"Δ {words} PCC vs {reference} [95% CI]": f"{test['difference']['estimate']:+.3f} "
                    + _ci(test["difference"]),
                    f"{plural} won": f"{test['wins']}/{test['n']}",
                    "p (two-sided)": _p(test["p_two_sided"]),
                    "p (model > naive)": _p(test["p_greater"]),
                }
            rows.append(row | {"run": run_dir.name})
    frame = pd.DataFrame(rows)
    return frame[sorted(frame.columns, key=_column_order)].fillna("")


def _column_order(column: str) -> int:
    """Shared columns first, then the per-drug group, the per-cell group, the p-values and the run."""
    if column == "run":
        return 4
    if column.startswith("p ("):
        return 3
    if "per-cell" in column or "cell lines won" in column:
        return 2
    return 1 if "per-drug" in column or "drugs won" in column else 0


def paired_table(run_dirs: list[Path], between_models: bool = False) -> pd.DataFrame:
    """Every model against every naive predictor of its run; with ``between_models``, also every two model runs of
    the same split, dataset and seeds against each other (paired by drug, or cell line in leave-cell-out)."""
    rows, tests = [], []
    keys = [(plots.config_of(r)["split"], plots.label(plots.config_of(r))) for r in run_dirs]
    # a run's label, or its directory's name where two runs of a split share one (same model and inputs, other options)
    name = {r: r.name if keys.count(key) > 1 else key[1] for r, key in zip(run_dirs, keys, strict=True)}
    for run_dir in run_dirs:
        config, statistics = plots.config_of(run_dir), _statistics(run_dir)
        for c in statistics["paired"]:
            rows.append(_paired_row(config, c["a"], name[run_dir], f"naive: {c['b']}", statistics["entity"], c))
            tests.append(c)
    if between_models:
        entity_pccs = {r: _model_entity_pcc(r) for r in run_dirs}
        for first, second in itertools.combinations([r for r in run_dirs if entity_pccs[r] is not None], 2):
            c1, c2 = plots.config_of(first), plots.config_of(second)
            if any(c1[k] != c2[k] for k in ("split", "dataset", "seeds")):
                continue
            (model, by, a), (_, _, b) = entity_pccs[first], entity_pccs[second]
            test = paired_test(a, b).to_json()
            rows.append(_paired_row(c1, model, name[first], name[second], by, test))
            tests.append(test)
    frame = pd.DataFrame(rows)
    for key, column in (("p_two_sided", "p Holm (two-sided)"), ("p_greater", "p Holm (model > versus)")):
        frame[column] = [_p(p) for p in holm([t[key] for t in tests])]  # one family: every test of the table
    return frame


def _model_entity_pcc(run_dir: Path) -> tuple[str, str, pd.Series] | None:
    """The model of a run, its entity, and its per-entity PCC (mean over seeds), from the run's per-entity CSV."""
    by = plots.entity_of(plots.config_of(run_dir)["split"])
    table = pd.read_csv(run_dir / ("per_cell.csv" if by == "cell_id" else "per_drug.csv"), dtype={by: str})
    models = [n for n in table["predictor"].unique() if n not in NAIVE]
    if not models:
        return None
    mine = table[table["predictor"] == models[0]]
    return models[0], by, mine.groupby(by)["pcc"].mean()


def _paired_row(config: dict[str, Any], model: str, run: str, versus: str, by: str, c: dict[str, Any]) -> dict:
    words, plural = ENTITY_WORDS[by]
    return {
        "split": config["split"],
        "run": run,
        "model": model,
        "versus": versus,
        "metric": f"{words} PCC",
        plural: c["n"],
        "undefined": c["undefined"],
        "model mean ± sd": f"{c['mean_a']:.3f} ± {c['sd_a']:.3f}",
        "versus mean ± sd": "n/a" if np.isnan(c["mean_b"]) else f"{c['mean_b']:.3f} ± {c['sd_b']:.3f}",
        "Δ mean [95% CI]": "n/a" if c["n"] == 0 else f"{c['difference']['estimate']:+.3f} {_ci(c['difference'])}",
        "median Δ": "n/a" if c["n"] == 0 else f"{c['median_difference']:+.3f}",
        "won / lost / tied": f"{c['wins']} / {c['losses']} / {c['ties']}",
        "p (two-sided)": _p(c["p_two_sided"]),
        "p (model > versus)": _p(c["p_greater"]),
    }


def per_pathway(run_dirs: list[Path]) -> pd.DataFrame:
    """LODO runs by target pathway: per pathway, the drugs, the model's and the cell-line mean's mean per-drug PCC
    (each drug's PCC averaged over seeds; the run's per_drug.csv), their difference and the drugs won. A drug with two
    pathways counts in both. Runs whose predictions carry no ``target_pathway`` (a dataset without annotations) are
    left out."""
    rows = []
    reference = plots.BASELINE["drug_id"]
    for run_dir in run_dirs:
        config, frame = plots.config_of(run_dir), predictions(run_dir)
        if not drug_blind(config["split"]) or "target_pathway" not in frame:
            continue
        per_drug = pd.read_csv(run_dir / "per_drug.csv", dtype={"drug_id": str})
        per_drug = per_drug.groupby(["predictor", "drug_id"])["pcc"].mean().unstack("predictor")
        pathway = frame.groupby("drug_id")["target_pathway"].first().str.split(";").explode()
        for model in (n for n in per_drug.columns if n not in NAIVE):
            for name, drugs in pathway.groupby(pathway).groups.items():
                a, b = per_drug.loc[drugs, model], per_drug.loc[drugs, reference]
                rows.append({
                    "run": plots.label(config), "model": model, "target pathway": name, "drugs": len(drugs),
                    "model per-drug PCC": round(float(a.mean()), 3),
                    f"{reference} per-drug PCC": round(float(b.mean()), 3), "Δ": round(float((a - b).mean()), 3),
                    "drugs won": f"{int((a > b).sum())}/{len(drugs)}",
                })  # fmt: skip
    return pd.DataFrame(rows)


def write_report(
    run_dirs: list[Path], out_dir: Path, formats: Sequence[str] = ("png",), between_models: bool = False
) -> dict[str, Path]:
    """report.md, report.csv, paired.csv and the figures of ``fused_train.plots`` in ``out_dir``.

    Paths that are not finished runs are left out (``find_runs`` says why); RunError when none is.
    """
    runs, skipped = find_runs(run_dirs)
    if not runs:
        reasons = "; ".join(f"{p}: {why}" for p, why in skipped.items())
        raise RunError(f"no finished run among the paths given ({reasons})")
    out_dir.mkdir(parents=True, exist_ok=True)
    frame, paired, pathways = table(runs), paired_table(runs, between_models), per_pathway(runs)
    paths = {"csv": out_dir / "report.csv", "paired": out_dir / "paired.csv", "markdown": out_dir / "report.md",
             "pathways": out_dir / "per_pathway.csv"}  # fmt: skip
    frame.to_csv(paths["csv"], index=False)
    paired.to_csv(paths["paired"], index=False)
    pathways.to_csv(paths["pathways"], index=False)
    note = (
        f"Paired over {{entities}}: Wilcoxon signed-rank p-values over the entities where both PCCs are defined "
        f"(ties dropped), bootstrap {int(METHOD['level'] * 100)}% percentile intervals from {METHOD['n_resamples']} "
        f"resamples of the entities (seed {METHOD['seed']}); Holm: Holm's correction over every test of the table. "
        "Details: fused_train/stats.py."
    )
    paths["markdown"].write_text(
        frame.drop(columns=["run"]).to_markdown(index=False)
        + "\n\n## Paired comparisons\n\n"
        + note.format(entities="drugs (cell lines in leave-cell-out)")
        + "\n\n"
        + paired.to_markdown(index=False)
        + "\n"
        + ("\n## LODO by target pathway\n\n" + pathways.to_markdown(index=False) + "\n" if len(pathways) else "")
    )
    for name, draw in FIGURES.items():
        for path in draw(runs, out_dir / name, formats):
            paths[f"{name}.{path.suffix[1:]}"] = path
    return paths
