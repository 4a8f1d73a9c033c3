"""Two runs of one model on the same folds, pair by pair: how far apart their predictions, chosen epochs and per-drug
PCCs are (e.g. a code change that should only change rounding, run before and after it).

    python benchmarks/compare_runs.py RUN_BEFORE RUN_AFTER

Printed: mean and largest |difference| of the model's predictions (ln IC50) on the pairs both runs predicted; on how
many folds the best epoch is equal (and within one); per-drug PCC of both with the paired test of ``fused-train
report`` (mean difference with a bootstrap interval, wins, two-sided Wilcoxon p over drugs); pooled PCC of both.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pandas as pd

from fused_train.stats import paired_test


def predictions(run: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f) for f in sorted((run / "folds").glob("*.parquet"))])


def best_epochs(run: Path) -> dict[str, int]:
    """Per fold, the epoch a network's run chose (none for a fitted model such as stacked)."""
    choices = {f.stem: json.loads(f.read_text()) for f in (run / "choices").glob("*.json")}
    return {fold: c["best_epoch"] for fold, c in choices.items() if "best_epoch" in c}


@click.command()
@click.argument("before", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("after", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", default="fused", show_default=True, help="The model whose predictions are compared.")
def main(before: Path, after: Path, model: str) -> None:
    a, b = predictions(before), predictions(after)
    both = a.merge(b, on=["fold", "drug_id", "cell_id", "ln_ic50"], suffixes=("_before", "_after"))
    col = f"pred_{model}"
    if f"{col}_before" not in both or f"{col}_after" not in both:
        raise click.UsageError(f"{before} and {after} do not both hold predictions of model {model!r} (--model)")
    click.echo(f"folds {a['fold'].nunique()} and {b['fold'].nunique()}; {len(both)} pairs in both")
    diff = (both[f"{col}_before"] - both[f"{col}_after"]).abs()
    click.echo(f"|prediction before - after| (ln IC50): mean {diff.mean():.3f}, largest {diff.max():.3f}")
    ea, eb = best_epochs(before), best_epochs(after)
    common = sorted(set(ea) & set(eb))
    equal = sum(ea[f] == eb[f] for f in common)
    near = sum(abs(ea[f] - eb[f]) <= 1 for f in common)
    if common:
        click.echo(f"best epoch equal on {equal} of {len(common)} folds, within one epoch on {near}")

    def per_drug(side: str) -> pd.Series:
        return both.groupby("drug_id")[["ln_ic50", f"{col}_{side}"]].apply(lambda g: g.corr().iloc[0, 1])

    test = paired_test(per_drug("after"), per_drug("before"))
    click.echo(f"per-drug PCC after {test.mean_a:.3f} vs before {test.mean_b:.3f}: difference "
               f"{test.difference.estimate:+.3f} [{test.difference.low:.3f}, {test.difference.high:.3f}], after higher "
               f"on {test.wins} of {test.n} drugs, two-sided Wilcoxon p = {test.p_two_sided:.2g}")  # fmt: skip
    pooled = {side: np.corrcoef(both["ln_ic50"], both[f"{col}_{side}"])[0, 1] for side in ("before", "after")}
    click.echo(f"pooled PCC after {pooled['after']:.3f} vs before {pooled['before']:.3f}")


if __name__ == "__main__":
    main()
