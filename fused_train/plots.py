"""Figures of finished runs, each about one question a reader asks of a drug-response benchmark.

- ``learning_curves``: validation metric per epoch, one panel per split (splits measure different things and are
  never drawn on one axis). Splits that choose epochs by per-drug PCC (LODO, pilot-K) show the per-drug validation
  PCC (what LODO is about), the other splits the pooled validation PCC. The curve is the mean over all folds at every
  epoch: a fold that stopped early keeps its last value, so the mean does not jump when folds drop out. A dot marks the
  median epoch the folds chose (their best validation epoch, whose test predictions are kept); the training loss (mean
  over folds, standardised ln IC50) is drawn dashed on a second axis, so that a curve still falling at the epoch limit
  shows.
- ``predicted_vs_observed``: hexbin of predicted against observed ln IC50, one panel per model run; the axes span
  the central 99% of values and the title counts the pairs outside them.
- ``per_entity_vs_baseline``: per-drug PCC of the model against the naive cell-line mean (one point per drug, the
  diagonal drawn, Wilcoxon p-value and wins in the title); per cell line against the drug mean where the split holds
  cell lines out (leave-cell-out, leave-tissue-out).
- ``per_tissue``: per TCGA type, the split's PCC on the cell lines of that type, one panel per split.
- ``critical_difference``: DrEval's ranking of many models, one panel per split: each predictor's mean rank of
  per-drug PCC (per cell line in leave-cell-out) over the entities, Friedman p-value, and bars joining predictors the
  Nemenyi test does not tell apart (p > 0.05; ``fused_train.stats.ranking``).

Every function takes run directories, writes ``out`` as PNG (and SVG when asked) and returns the written paths.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fused_train.metrics import pcc  # noqa: E402
from fused_train.models.naive import NAIVE  # noqa: E402
from fused_train.runs import predictions, predictors  # noqa: E402
from fused_train.splits import SPLITS, split_of  # noqa: E402
from fused_train.splits.pilot import Pilot  # noqa: E402
from fused_train.stats import entity_pcc, paired_test, ranking  # noqa: E402

ACROSS_TISSUES = " (pilot across tissues)"
BASELINE = {"drug_id": "cell-mean", "cell_id": "drug-mean"}
"""The naive predictor a model's per-entity PCC is compared with: the one that ranks by the other entity's mean."""

plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "legend.fontsize": 8, "figure.dpi": 150})


def config_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "config.json").read_text())


def label(config: dict[str, Any]) -> str:
    """A run in a legend: its model, drug store and cell inputs."""
    return f"{config['model']} · {config['drug_encoder']} · {'+'.join([config['cell_encoder'], *config['omics']])}"


def save(fig: plt.Figure, out: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    paths = []
    for fmt in formats:
        path = out.with_suffix(f".{fmt}")
        fig.savefig(path, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _by_split(run_dirs: Sequence[Path]) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for run_dir in run_dirs:
        groups.setdefault(config_of(run_dir)["split"], []).append(run_dir)
    return {s: groups[s] for s in SPLITS if s in groups}


def _grid(n: int, width: float = 3.6, height: float = 3.3) -> tuple[plt.Figure, np.ndarray]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def curve_mean(curves: Sequence[pd.DataFrame], column: str) -> pd.Series:
    """Mean of ``column`` over folds at every epoch, a finished fold carrying its last value forward."""
    epochs = max(len(c) for c in curves)
    table = pd.DataFrame({i: c.set_index("epoch")[column] for i, c in enumerate(curves)}).reindex(range(epochs))
    return table.ffill().mean(axis=1)


def _fold_count(config: dict[str, Any], n_folds: int) -> str:
    seeds = len(config["seeds"])
    per_seed = n_folds // max(seeds, 1)
    if per_seed == 1:  # one fold per seed (drug-known): what varies is the seed
        return f"{seeds} seed{'s' * (seeds > 1)}"
    return f"{per_seed} folds" + (f" x {seeds} seeds" if seeds > 1 else "")


def learning_curves(run_dirs: Sequence[Path], out: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Validation metric per epoch, mean over folds, one panel per split; nothing when no run trained by epochs."""
    groups = {s: [r for r in runs if list((r / "curves").glob("*.csv"))] for s, runs in _by_split(run_dirs).items()}
    groups = {s: runs for s, runs in groups.items() if runs}
    if not groups:  # fitted models only: no epochs, no figure
        return []
    fig, axes = _grid(len(groups), width=5.0, height=3.8)
    for ax, (split, runs) in zip(axes, groups.items(), strict=False):
        by_drug = split_of(split).selection_metric == "drug-pcc"
        column = "val_drug_pcc" if by_drug else "val_pcc"
        loss_ax = ax.twinx()
        for run_dir in runs:
            config = config_of(run_dir)
            curves = [pd.read_csv(f) for f in sorted((run_dir / "curves").glob("*.csv"))]
            mean = curve_mean(curves, column)
            chosen = int(np.median([c["best_epoch"].iloc[0] for c in curves]))
            (line,) = ax.plot(mean.index, mean.to_numpy(),
                              label=f"{label(config)} ({_fold_count(config, len(curves))}), median chosen epoch "
                                    f"{chosen}")  # fmt: skip
            ax.plot([chosen], [mean.iloc[chosen]], "o", color=line.get_color(), markersize=6, zorder=3)
            loss = curve_mean(curves, "train_loss")
            loss_ax.plot(loss.index, loss.to_numpy(), color=line.get_color(), ls="--", lw=0.9, alpha=0.8)
        ax.set_title(split_of(split).title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("per-drug validation PCC" if by_drug else "validation PCC (pooled)")
        loss_ax.set_ylabel("training loss, dashed (MSE, standardised)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    fig.suptitle("Mean over all folds at each epoch (a fold that stopped early keeps its last value);\n"
                 "dot: the median epoch the folds chose; dashed: training loss")  # fmt: skip
    fig.tight_layout()
    return save(fig, out, formats)


def _model_runs(run_dirs: Sequence[Path]) -> list[tuple[Path, dict[str, Any], pd.DataFrame, str]]:
    """(run, config, predictions, model name) of every run that has a model besides the naive predictors."""
    found = []
    for run_dir in run_dirs:
        frame = predictions(run_dir)
        models = [n for n in predictors(frame) if n not in NAIVE]
        if models:
            found.append((run_dir, config_of(run_dir), frame, models[0]))
    return sorted(found, key=lambda run: list(SPLITS).index(run[1]["split"]))


def predicted_vs_observed(run_dirs: Sequence[Path], out: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Hexbin of predicted vs observed ln IC50 of every model run (all test pairs of all folds and seeds)."""
    runs = _model_runs(run_dirs)
    fig, axes = _grid(max(len(runs), 1))
    for ax, (_, config, frame, model) in zip(axes, runs, strict=False):
        y, p = frame["ln_ic50"].to_numpy(), frame[f"pred_{model}"].to_numpy()
        lo, hi = np.percentile(np.concatenate([y, p]), [0.5, 99.5])
        outside = int(((y < lo) | (y > hi) | (p < lo) | (p > hi)).sum())
        art = ax.hexbin(y, p, gridsize=45, extent=(lo, hi, lo, hi), bins="log", cmap="viridis", mincnt=1)
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        ax.set_title(f"{split_of(config['split']).title}\n{label(config)}\nPCC {pcc(y, p):.3f}, {len(y):,} test pairs "
                     f"({outside:,} outside the axes)")  # fmt: skip
        ax.set_xlabel("observed ln IC50")
        ax.set_ylabel(f"predicted ln IC50 ({model})")
        fig.colorbar(art, ax=ax, label="test pairs per hexagon", shrink=0.8)
    fig.tight_layout()
    return save(fig, out, formats)


def per_entity_vs_baseline(run_dirs: Sequence[Path], out: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Per-drug PCC of each model against the cell-line mean (per cell line against the drug mean where the split
    holds cell lines out)."""
    runs = _model_runs(run_dirs)
    fig, axes = _grid(max(len(runs), 1), width=4.4, height=5.0)
    for ax, (_, config, frame, model) in zip(axes, runs, strict=False):
        by = split_of(config["split"]).entity
        baseline = BASELINE[by]
        a, b = entity_pcc(frame, by, f"pred_{model}"), entity_pcc(frame, by, f"pred_{baseline}")
        test = paired_test(a, b)
        both = pd.concat([a, b], axis=1).dropna()
        x, y = both.iloc[:, 1].to_numpy(), both.iloc[:, 0].to_numpy()
        unit = "drug" if by == "drug_id" else "cell-line"
        for better, color in ((True, "tab:blue"), (False, "tab:red")):
            mask = (y > x) == better
            ax.scatter(x[mask], y[mask], s=9, alpha=0.6, color=color, linewidths=0,
                       label=f"{model} {'higher' if better else 'not higher'} ({mask.sum()})")  # fmt: skip
        lo, hi = min(x.min(initial=1), y.min(initial=1)) - 0.05, 1.02
        ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False, markerscale=1.5)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        plural = "drugs" if by == "drug_id" else "cell lines"
        ax.set_title(f"{split_of(config['split']).title}\n{label(config)}\n"
                     f"{model} higher: {test.wins}/{test.n} {plural}, Wilcoxon p = {test.p_two_sided:.2g}")  # fmt: skip
        ax.set_xlabel(f"per-{unit} PCC, naive {baseline}")
        ax.set_ylabel(f"per-{unit} PCC, {model}")
        ax.grid(alpha=0.3)
    fig.tight_layout(h_pad=3.0)
    return save(fig, out, formats)


def entity_pccs(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """Entities x predictors: each run's model (named by its label, or by its directory where two runs share one) and
    the naive predictors of the first run, each entity's PCC the mean over seeds (the runs' per-entity CSV)."""
    labels = [label(config_of(r)) for r in run_dirs]
    columns = {}
    for i, run_dir in enumerate(run_dirs):
        by = split_of(config_of(run_dir)["split"]).entity
        table = pd.read_csv(run_dir / ("per_cell.csv" if by == "cell_id" else "per_drug.csv"), dtype={by: str})
        pcc_of = table.groupby(["predictor", by])["pcc"].mean().unstack("predictor")
        for name in pcc_of.columns:
            if name not in NAIVE:
                columns[run_dir.name if labels.count(labels[i]) > 1 else labels[i]] = pcc_of[name]
            elif i == 0:
                columns[f"naive: {name}"] = pcc_of[name]
    return pd.DataFrame(columns)


def critical_difference(run_dirs: Sequence[Path], out: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Critical-difference diagram of every predictor of a split over its entities (Friedman + Nemenyi)."""
    import scikit_posthocs

    results = {split: ranking(entity_pccs(runs)) for split, runs in _by_split(run_dirs).items()}
    panels = [(split, result) for split, result in results.items() if result is not None]
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(8, 2.6 * max(len(panels), 1)), squeeze=False)
    if not panels:
        axes[0, 0].set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no split with 3 predictors defined on 2 common entities", ha="center")
    for ax, (split, result) in zip(axes[:, 0], panels, strict=False):
        scikit_posthocs.critical_difference_diagram(result.mean_ranks, result.nemenyi, ax=ax)
        chosen = split_of(split)
        unit, plural = ("cell-line", "cell lines") if chosen.entity == "cell_id" else ("drug", "drugs")
        left_out = f", {result.undefined} with an undefined PCC left out" if result.undefined else ""
        constant = f"; not ranked (PCC undefined): {', '.join(result.left_out)}" if result.left_out else ""
        ax.set_title(f"{chosen.title}: mean rank of per-{unit} PCC over {result.entities} {plural}{left_out}"
                     f"\nFriedman p = {result.friedman_p:.2g}; bars join predictors the Nemenyi test does not "
                     f"separate (p > 0.05){constant}", fontsize=8)  # fmt: skip
    fig.tight_layout()
    return save(fig, out, formats)


@cache
def tcga_types(dataset: str) -> pd.Series:
    """Each cell line's TCGA type in the dataset's cells table ("" where unknown; empty without the column)."""
    from fused_cache import datasets

    cells = datasets.load(dataset).cells
    if "tcga_type" not in cells:
        return pd.Series(dtype=str)
    return cells.set_index("cell_id")["tcga_type"].fillna("").astype(str)


def tissue_pcc(frame: pd.DataFrame, pred: str, split: str, tissues: pd.Series, min_cells: int = 5) -> pd.Series:
    """Per TCGA type with at least ``min_cells`` cell lines: pooled PCC of its pairs (where the split holds pairs out:
    drug-known), else the mean per-entity PCC (``Split.entity``) on its cell lines: per drug (LODO), per cell line
    (leave-cell-out, leave-tissue-out)."""
    frame = frame.assign(tissue=frame["cell_id"].map(tissues).fillna(""))
    chosen = split_of(split)
    out = {}
    for tissue, part in frame[frame["tissue"] != ""].groupby("tissue"):
        if part["cell_id"].nunique() < min_cells:
            continue
        if chosen.holds_out == "pair":
            out[tissue] = pcc(part["ln_ic50"].to_numpy(), part[pred].to_numpy())
        else:
            out[tissue] = entity_pcc(part, chosen.entity, pred).mean()
    return pd.Series(out, dtype=float)


def per_tissue(run_dirs: Sequence[Path], out: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """PCC per TCGA type of every model and of the split's reference naive predictor, one panel per split."""
    groups: dict[str, list] = {}
    for run in _model_runs(run_dirs):
        groups.setdefault(run[1]["split"], []).append(run)
    groups = {s: groups[s] for s in SPLITS if s in groups}
    fig, axes = plt.subplots(1, max(len(groups), 1), figsize=(4.8 * max(len(groups), 1), 7.5), squeeze=False)
    for ax, (split, runs) in zip(axes.flat, groups.items(), strict=False):
        series = {}
        for _, config, frame, model in runs:
            series[label(config)] = tissue_pcc(frame, f"pred_{model}", split, tcga_types(config["dataset"]))
        _, config, frame, _ = runs[0]  # the naive reference, last in the legend (the same in every run of a split)
        chosen = split_of(split)
        baseline = "mean-effects" if chosen.holds_out == "pair" else BASELINE[chosen.entity]
        series[f"naive {baseline}"] = tissue_pcc(frame, f"pred_{baseline}", split, tcga_types(config["dataset"]))
        table = pd.DataFrame(series)
        table = table.loc[table.mean(axis=1).sort_values().index]
        rows = np.arange(len(table))
        markers = iter("os^Dv<>p*h")
        for name, values in table.items():
            naive = name.startswith("naive")
            ax.scatter(values.to_numpy(), rows, label=name, marker="|" if naive else next(markers),
                       s=90 if naive else 22, color="black" if naive else None, zorder=3)  # fmt: skip
        ax.set_yticks(rows, table.index)
        metric = {"pair": "pooled PCC", "cell": "mean per-cell-line PCC", "drug": "mean per-drug PCC"}[chosen.holds_out]
        ax.set_xlabel(f"{metric} on the TCGA type's cell lines")
        ax.set_ylabel("TCGA type (>= 5 cell lines)")
        ax.set_title(chosen.title)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=1, frameon=False)
    fig.tight_layout()
    return save(fig, out, formats)


def pilot_screens(run_dirs: Sequence[Path], out: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Mean per-drug PCC on the non-pilot lines against the pilot size K (the ``pilot-K`` and ``pilot-K-tissue``
    runs), per model and for the cell-line mean on the same lines; nothing when no pilot run is given."""
    points: dict[str, dict[int, float]] = {}
    for run_dir in run_dirs:
        config = config_of(run_dir)
        split = split_of(config["split"])
        if not isinstance(split, Pilot):
            continue
        k, draw = split.shots, ACROSS_TISSUES if split.across_tissues else ""
        per_drug = pd.read_csv(run_dir / "per_drug.csv").groupby(["predictor", "drug_id"])["pcc"].mean()
        for name, values in per_drug.groupby(level="predictor"):
            if name in NAIVE and name != BASELINE["drug_id"]:
                continue
            key = (f"naive: {name}" if name in NAIVE else label(config)) + draw
            points.setdefault(key, {})[k] = float(values.mean())
    if not points:
        return []
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for key, by_k in sorted(points.items()):
        ks = sorted(by_k)
        naive = key.startswith("naive")
        style = ":" if key.endswith(ACROSS_TISSUES) else "--" if naive else "-"
        ax.plot(ks, [by_k[k] for k in ks], marker="o", label=key, color="black" if naive else None, linestyle=style)
    ax.set_xscale("log")
    ax.set_xticks(sorted({k for by_k in points.values() for k in by_k}))
    ax.xaxis.set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(plt.matplotlib.ticker.NullLocator())
    ax.set_xlabel("pilot cell lines K")
    ax.set_ylabel("mean per-drug PCC, non-pilot lines")
    ax.set_title("a new drug from a pilot screen (LODO: each drug held out once)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    fig.tight_layout()
    return save(fig, out, formats)
