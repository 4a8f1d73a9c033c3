"""The paper's tables and figures from finished runs: Markdown/CSV tables and PNG plots.

Table rows are predictors (each run's model and its naive baselines) x cell inputs (expression only or multi-omics)
x split; columns are pooled PCC and RMSE (mean ± sd over seeds where there are several) and mean ± sd per-drug PCC
(per cell line in leave-cell-out). Plots: validation PCC per epoch (the paper's Figure 2) and per-drug PCC
distributions.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fused_train.metrics import per_entity  # noqa: E402
from fused_train.models.naive import NAIVE  # noqa: E402
from fused_train.runs import predictions, predictors, summarise_run  # noqa: E402


def _pm(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def table(run_dirs: list[Path]) -> pd.DataFrame:
    """One row per (run, predictor)."""
    rows = []
    for run_dir in run_dirs:
        config = json.loads((run_dir / "config.json").read_text())
        metrics = summarise_run(run_dir)
        entity = "per_cell" if config["split"] == "cell-out" else "per_drug"
        for name, part in metrics.groupby("predictor", sort=False):
            sd_col = part[f"{entity}_pcc_sd"]
            per_entity_text = (
                f"{part[f'{entity}_pcc_mean'].iloc[0]:.3f} ± {sd_col.iloc[0]:.3f}"
                if len(part) == 1 and not np.isnan(sd_col.iloc[0])
                else _pm(part[f"{entity}_pcc_mean"])
            )
            rows.append({
                "split": config["split"],
                "cells": "expression only" if not config["omics"] else "multi-omics",
                "drug": config["drug_encoder"],
                "cell input": "+".join([config["cell_encoder"], *config["omics"]]),
                "predictor": f"naive: {name}" if name in NAIVE else name,
                "folds": int(part["folds"].iloc[0]),
                "seeds": len(part),
                "test pairs": int(part["n_pairs"].sum()),
                "PCC": _pm(part["pcc"]),
                "RMSE": _pm(part["rmse"]),
                f"{entity.replace('_', '-')} PCC": per_entity_text,
                "run": run_dir.name,
            })  # fmt: skip
    return pd.DataFrame(rows)


def learning_curves(run_dirs: list[Path], out: Path) -> Path:
    """Mean validation PCC per epoch over each run's folds (folds that stopped early drop out of later epochs)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for run_dir in run_dirs:
        files = sorted((run_dir / "curves").glob("*.csv"))
        if not files:
            continue
        curves = pd.concat([pd.read_csv(f) for f in files])
        mean = curves.groupby("epoch")["val_pcc"].mean()
        ax.plot(mean.index, mean.to_numpy(), label=f"{run_dir.name} ({len(files)} folds)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation PCC (mean over folds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def per_drug_distributions(run_dirs: list[Path], out: Path) -> Path:
    """Box plots of per-drug PCC of every predictor of every run."""
    data, labels = [], []
    for run_dir in run_dirs:
        frame = predictions(run_dir)
        for name in predictors(frame):
            values = per_entity(frame, "drug_id", f"pred_{name}")["pcc"].dropna()
            if len(values):
                data.append(values.to_numpy())
                labels.append(f"{run_dir.name}\n{name}")
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(data)), 4.5))
    if data:
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("per-drug PCC")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_report(run_dirs: list[Path], out_dir: Path) -> dict[str, Path]:
    """report.md, report.csv, learning_curves.png and per_drug_pcc.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = table(run_dirs)
    paths = {"csv": out_dir / "report.csv", "markdown": out_dir / "report.md"}
    frame.to_csv(paths["csv"], index=False)
    paths["markdown"].write_text(frame.drop(columns=["run"]).to_markdown(index=False) + "\n")
    paths["curves"] = learning_curves(run_dirs, out_dir / "learning_curves.png")
    paths["per_drug"] = per_drug_distributions(run_dirs, out_dir / "per_drug_pcc.png")
    return paths
