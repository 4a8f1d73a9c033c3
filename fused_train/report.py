"""The paper's tables and figures from finished runs: Markdown/CSV tables and PNG (optionally SVG) plots.

Table rows are predictors (each run's model and its naive baselines) x cell inputs (expression only or multi-omics)
x split. Columns: pooled PCC and RMSE (mean ± sd over seeds where there are several), mean ± sd per-drug PCC (per cell
line where the split holds cell lines out), bootstrap 95% intervals over drugs of both PCCs, and for each model the
paired comparison with the naive predictor that ranks by the other entity's mean (cell-line mean for per-drug PCC,
drug mean for per-cell-line PCC): mean difference with its interval, drugs won and Wilcoxon p-values
(``fused_train.stats``).
A second table pairs every model with every naive predictor (and, on request, models of the same split with each
other). Runs of splits that ask for it (``Split.tissue_table``: leave-tissue-out) get a table per held-out TCGA type,
LODO runs one per target pathway. Figures: ``fused_train.plots``.

A report is written into a temporary folder beside ``--out`` and then moved into it file by file, with
``.fused-report.json`` listing the files it wrote: a later report refreshes those (and removes the ones it no longer
writes) but replaces no other file without ``force``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fused_cache.outputs import OutputError
from fused_train import choices, html_report, plots
from fused_train.metrics import pcc, rmse
from fused_train.models.naive import NAIVE
from fused_train.runs import RunError, predictions, predictors, summarise_run
from fused_train.splits import split_of
from fused_train.stats import METHOD, entity_pcc, holm, paired_test

WRITTEN = ".fused-report.json"
"""The file in a report folder that lists the files the report wrote, which a later report may replace."""
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
        if not path.exists():
            skipped[path] = "no such file or directory"
        elif not path.is_dir():
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
    the same split, dataset and seeds against each other (paired by the split's entity: drug or cell line)."""
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
    by = split_of(plots.config_of(run_dir)["split"]).entity
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


def defined_comparisons(paired: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The paired comparisons over at least one entity, and the others named (e.g. the drug mean in LODO, constant
    within each drug, so no per-drug PCC is defined): paired.csv keeps every row, the tables a reader sees these."""
    counts = paired.reindex(columns=["drugs", "cell lines"]).fillna(0).sum(axis=1)
    empty = paired[counts == 0]
    return paired[counts > 0], [f"{r['run']} vs {r['versus']}" for _, r in empty.iterrows()]


def per_pathway(run_dirs: list[Path]) -> pd.DataFrame:
    """LODO runs by target pathway: per pathway, the drugs, the model's and the cell-line mean's mean per-drug PCC
    (each drug's PCC averaged over seeds; the run's per_drug.csv), their difference and the drugs won. A drug with two
    pathways counts in both. Runs whose predictions carry no ``target_pathway`` (a dataset without annotations) are
    left out."""
    rows = []
    reference = plots.BASELINE["drug_id"]
    for run_dir in run_dirs:
        config, frame = plots.config_of(run_dir), predictions(run_dir)
        if split_of(config["split"]).holds_out != "drug" or "target_pathway" not in frame:
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


def tissue_table(run_dirs: list[Path]) -> pd.DataFrame:
    """Runs of splits with a tissue table (leave-tissue-out), per held-out TCGA type: for the run's model and the
    naive drug mean (the natural baseline for new cell lines of known drugs) the pooled PCC and RMSE over the type's
    test pairs (mean over seeds) and the mean per-cell-line PCC (each line's PCC a mean over seeds), and the type's
    cell lines on which the model's per-cell-line PCC is higher, with the Wilcoxon p-value over them. A run of the
    naive predictors alone shows the drug mean."""
    rows = []
    reference = plots.BASELINE["cell_id"]
    for run_dir in run_dirs:
        config, frame = plots.config_of(run_dir), predictions(run_dir)
        if not split_of(config["split"]).tissue_table:
            continue
        model = next((n for n in predictors(frame) if n not in NAIVE), None)
        frame = frame.assign(tissue=frame["cell_id"].map(plots.tcga_types(config["dataset"])).fillna(""))
        for tissue, part in frame[frame["tissue"] != ""].groupby("tissue"):
            row = {"run": plots.label(config), "TCGA type": tissue, "cell lines": part["cell_id"].nunique(),
                   "test pairs": int(len(part) / part["seed"].nunique()), "model": model or ""}  # fmt: skip
            per_cell = {}
            for name, prefix in ((model, ""), (reference, f"{reference} ")):
                if name is None:
                    continue
                seeds = [(pcc(s["ln_ic50"], s[f"pred_{name}"]), rmse(s["ln_ic50"], s[f"pred_{name}"]))
                         for _, s in part.groupby("seed")]  # fmt: skip
                per_cell[name] = entity_pcc(part, "cell_id", f"pred_{name}")
                row |= {f"{prefix}PCC": round(float(np.mean([s[0] for s in seeds])), 3),
                        f"{prefix}RMSE": round(float(np.mean([s[1] for s in seeds])), 3),
                        f"{prefix}per-cell PCC": round(float(per_cell[name].mean()), 3)}  # fmt: skip
            if model is not None:
                test = paired_test(per_cell[model], per_cell[reference])
                row |= {"cell lines won": f"{test.wins}/{test.n}", "p (two-sided)": _p(test.p_two_sided)}
            rows.append(row)
    return pd.DataFrame(rows).fillna("")  # a naive run has no model columns


def write_report(
    run_dirs: list[Path], out_dir: Path, formats: Sequence[str] = ("png",), between_models: bool = False,
    force: bool = False,
) -> dict[str, Path]:  # fmt: skip
    """report.md, report.csv, paired.csv, per_pathway.csv (LODO runs of an annotated dataset), per_tissue.csv
    (leave-tissue-out runs), choices_summary.csv (``fused_train.choices``), the figures of ``fused_train.plots`` and
    report.html (all of it on one self-contained page) in ``out_dir``.

    Paths that are not finished runs are left out (``find_runs`` says why); RunError when none is. A file in
    ``out_dir`` that an earlier report did not write is replaced only with ``force`` (OutputError otherwise).
    """
    runs, skipped = find_runs(run_dirs)
    if not runs:
        reasons = "; ".join(f"{p}: {why}" for p, why in skipped.items())
        raise RunError(f"no finished run among the paths given ({reasons})")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file, not a folder")
    earlier = json.loads((out_dir / WRITTEN).read_text())["files"] if (out_dir / WRITTEN).is_file() else []
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        written = _write_tables_and_figures(runs, tmp, formats, between_models)
        paths = {k: p.relative_to(tmp) for k, p in written.items()}
        theirs = sorted(str(p) for p in paths.values() if (out_dir / p).exists() and str(p) not in earlier)
        if theirs and not force:
            raise OutputError(f"--out {out_dir} holds {', '.join(theirs)}, which no earlier report wrote (not in "
                              f"{WRITTEN}); pass --force to replace them, or choose another --out")  # fmt: skip
        for path in paths.values():
            (out_dir / path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / path, out_dir / path)
        for stale in set(earlier) - {str(p) for p in paths.values()}:
            (out_dir / stale).unlink(missing_ok=True)
        (out_dir / WRITTEN).write_text(json.dumps({"files": sorted(str(p) for p in paths.values())}, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {k: out_dir / p for k, p in paths.items()}


def _write_tables_and_figures(
    runs: list[Path], out_dir: Path, formats: Sequence[str], between_models: bool
) -> dict[str, Path]:
    out_dir.mkdir(parents=True)
    frame, paired, pathways = table(runs), paired_table(runs, between_models), per_pathway(runs)
    tissues = tissue_table(runs)
    paths = {"csv": out_dir / "report.csv", "paired": out_dir / "paired.csv", "markdown": out_dir / "report.md",
             "pathways": out_dir / "per_pathway.csv"}  # fmt: skip
    frame.to_csv(paths["csv"], index=False)
    paired.to_csv(paths["paired"], index=False)
    if len(pathways):
        pathways.to_csv(paths["pathways"], index=False)
    else:  # no LODO run, or no annotations: no file rather than an empty one
        paths.pop("pathways").unlink(missing_ok=True)
    if len(tissues):
        paths["tissues"] = out_dir / "per_tissue.csv"
        tissues.to_csv(paths["tissues"], index=False)
    paths["choices"], edges = choices.write_summary(runs, out_dir)
    shown, undefined = defined_comparisons(paired)
    note = (
        "Paired over drugs (cell lines where the split holds cell lines out): Wilcoxon signed-rank p-values over the "
        f"entities where both PCCs are defined (ties dropped), bootstrap {int(METHOD['level'] * 100)}% percentile "
        f"intervals from {METHOD['n_resamples']} resamples of the entities (seed {METHOD['seed']}). Details: "
        "fused_train/stats.py. Holm: Holm's correction over every test of the table."
        + (f" Not shown (no entity where both PCCs are defined): {'; '.join(undefined)}." if undefined else "")
    )
    paths["markdown"].write_text(
        frame.drop(columns=["run"]).to_markdown(index=False)
        + "\n\n## Paired comparisons\n\n"
        + note
        + "\n\n"
        + shown.to_markdown(index=False)
        + "\n"
        + ("\n## LODO by target pathway\n\n" + pathways.to_markdown(index=False) + "\n" if len(pathways) else "")
        + ("\n## Per held-out TCGA type\n\n" + tissues.to_markdown(index=False) + "\n" if len(tissues) else "")
        + edges
    )
    for name, draw in FIGURES.items():
        written = draw(runs, out_dir / name, formats)
        for path in written:
            paths[f"{name}.{path.suffix[1:]}"] = path
        for fmt in formats if not written else ():  # nothing to draw: no figure, nor one of an earlier report
            (out_dir / f"{name}.{fmt}").unlink(missing_ok=True)
    sections = {"Results": (frame.drop(columns=["run"]), ""), "Paired comparisons": (shown, note),
                "LODO by target pathway": (pathways, ""), "Per held-out TCGA type": (tissues, "")}  # fmt: skip
    figures = [path for path in paths.values() if path.suffix == ".png"]
    paths["html"] = html_report.write_html(runs, out_dir / "report.html", sections, figures)
    return paths
