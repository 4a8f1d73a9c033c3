"""What the compounds screened twice can say about how far a per-drug PCC can go, and how scoring them per screen
changes each predictor's mean per-drug PCC.

    python benchmarks/replicates.py [RUN ...] [--dataset gdsc-deepcdr] [--min-lines 20]

15 compounds (one PubChem CID each) were screened twice in GDSC under two drug ids (mostly GDSC1 and GDSC2: another
assay and concentration range). Per compound, over the cell lines measured in both screens A and B, r = PCC(A, B).

If both screens were one signal S plus independent noise, a predictor P that knows nothing of that noise has
PCC(P, A) * PCC(P, B) = PCC(P, S)^2 * r, so its geometric-mean PCC with the two screens, g = sqrt(PCC(P, A) *
PCC(P, B)), is at most sqrt(r) (whatever the two screens' noise levels), and g / sqrt(r) = PCC(P, S) is the share
of the reproducible signal it catches (Spearman's correction for attenuation). Per run given, every predictor with a
per-drug PCC is scored so on the compounds' test lines: g against sqrt(r) paired over the compounds (bootstrap
intervals over them: 15 compounds), and the compounds where g > sqrt(r), where the one-signal model does not hold.
A compound where PCC(P, A) * PCC(P, B) <= 0 or r <= 0 has no g or no sqrt(r) and is left out (counted).

Then, per run and predictor, the mean per-drug PCC (a compound's two screens pooled in one PCC) beside the mean
per-screen PCC (each screen its own entity: ``fused_train.metrics.screens``), and the same two on the 15 compounds;
and how the cell-line mean does on the 15 against the other drugs (are they typical?).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd

from fused_cache import datasets
from fused_train.metrics import SCREEN, pcc, screens, summarise
from fused_train.models.naive import NAIVE
from fused_train.runs import predictions, predictors
from fused_train.stats import LEVEL, N_RESAMPLES, SEED, entity_pcc, paired_test

BASELINE = "cell-mean"


def replicate_pairs(pairs: pd.DataFrame, min_lines: int) -> pd.DataFrame:
    """Per compound screened under two GDSC ids on at least ``min_lines`` common lines: the screens and r."""
    rows = []
    for drug_id, group in pairs.groupby("drug_id"):
        both = group.pivot_table(index="cell_id", columns="gdsc_drug_id", values="ln_ic50").dropna()
        if both.shape[1] == 2 and len(both) >= min_lines:
            rows.append({"drug_id": drug_id, "screens": "/".join(map(str, both.columns)), "lines": len(both),
                         "r": pcc(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy())})  # fmt: skip
    return pd.DataFrame(rows).set_index("drug_id")


def mean_interval(values: pd.Series) -> str:
    """Mean with a percentile bootstrap interval over the values (``fused_train.stats``' resamples and level)."""
    x = values.dropna().to_numpy()
    draws = np.random.default_rng(SEED).integers(0, len(x), size=(N_RESAMPLES, len(x)))
    low, high = np.percentile(x[draws].mean(axis=1), [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return f"{x.mean():.3f} [{low:.3f}, {high:.3f}] (n = {len(x)})"


def against_screens(frame: pd.DataFrame, compounds: pd.Index, pred: str, min_lines: int) -> pd.DataFrame:
    """Per compound, over its test lines measured in both screens: PCC of the prediction with each screen, r, g and
    sqrt(r) (NaN where undefined)."""
    rows = []
    for drug_id in compounds:
        rows_of = frame[frame["drug_id"] == drug_id]
        truth = rows_of.pivot_table(index="cell_id", columns="gdsc_drug_id", values="ln_ic50").dropna()
        if truth.shape[1] != 2 or len(truth) < min_lines:
            continue
        p = rows_of.groupby("cell_id")[pred].first().reindex(truth.index).to_numpy()
        a, b = (truth.iloc[:, i].to_numpy() for i in (0, 1))
        with_a, with_b, r = pcc(a, p), pcc(b, p), pcc(a, b)
        product = with_a * with_b
        rows.append({"drug_id": drug_id, "lines": len(truth), "with A": with_a, "with B": with_b, "r": r,
                     "g": np.sqrt(product) if product > 0 else np.nan,
                     "sqrt r": np.sqrt(r) if r > 0 else np.nan})  # fmt: skip
    return pd.DataFrame(rows).set_index("drug_id")


@click.command()
@click.argument("runs", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dataset", default="gdsc-deepcdr", show_default=True)
@click.option("--min-lines", default=20, show_default=True, help="Compounds with fewer shared lines are left out.")
def main(runs: tuple[Path, ...], dataset: str, min_lines: int) -> None:
    pairs = datasets.load(dataset).pairs
    if "gdsc_drug_id" not in pairs:
        raise click.UsageError(f"dataset {dataset!r} has no gdsc_drug_id column: no replicate screens to compare")
    table = replicate_pairs(pairs, min_lines)
    click.echo(table.round(3).to_string())
    click.echo(f"\n{len(table)} compounds screened twice (>= {min_lines} shared lines): r = PCC of the two screens "
               f"{table['r'].mean():.3f} ± {table['r'].std():.3f}; one-signal ceiling sqrt(r) "
               f"{mean_interval(np.sqrt(table['r'].clip(lower=0)))}")  # fmt: skip
    for run in runs:
        frame = predictions(run)
        if "gdsc_drug_id" not in frame:
            raise click.UsageError(f"{run}: its predictions carry no gdsc_drug_id; rerun it on {dataset!r}")
        names = [n for n in predictors(frame) if n not in NAIVE or n in (BASELINE, "mean-effects")]
        compounds = table.index.intersection(frame["drug_id"].unique())
        click.echo(f"\n== {run.name}: {frame['drug_id'].nunique()} drugs, {len(compounds)} of the compounds "
                   "screened twice")  # fmt: skip
        click.echo("predictor: g vs sqrt(r) over the compounds (mean Δ [95% CI], compounds with g > sqrt(r), left "
                   "out), PCC(P, S) = g / sqrt(r);\n  mean per-drug PCC -> mean per-screen PCC (screens as "
                   "entities) and -> per drug its screens' mean | the same on the compounds")  # fmt: skip
        with_screens = frame.assign(**{SCREEN: screens(frame)})
        per_drug = {n: entity_pcc(frame, "drug_id", f"pred_{n}") for n in names}
        for name in names:
            scored = against_screens(frame, compounds, f"pred_{name}", min_lines)
            test = paired_test(scored["g"], scored["sqrt r"])
            both = summarise(frame, f"pred_{name}", "drug_id")
            per_screen = entity_pcc(with_screens, SCREEN, f"pred_{name}")
            of_drug = per_screen.groupby(per_screen.index.str.split("/").str[0]).mean()
            twice = per_screen[per_screen.index.str.split("/").str[0].isin(compounds)]
            above = ", ".join(scored.index[scored["g"] > scored["sqrt r"]])
            click.echo(
                f"  {name:<14} g {test.mean_a:.3f} vs sqrt(r) {test.mean_b:.3f}: {test.difference.estimate:+.3f} "
                f"[{test.difference.low:.3f}, {test.difference.high:.3f}], g > sqrt(r) on {test.wins}/{test.n} "
                f"({above or 'none'}; left out {test.undefined}); PCC(P, S) "
                f"{mean_interval(scored['g'] / scored['sqrt r'])}\n  {'':<14} {both['per_drug_pcc_mean']:.4f} -> "
                f"{both['per_screen_pcc_mean']:.4f} ({both['per_screen_pcc_mean'] - both['per_drug_pcc_mean']:+.4f})"
                f" and -> {of_drug.mean():.4f} ({of_drug.mean() - both['per_drug_pcc_mean']:+.4f}) | on the "
                f"compounds {per_drug[name].reindex(compounds).mean():.3f} -> {twice.mean():.3f}"
            )  # fmt: skip
        if BASELINE in per_drug:
            base = per_drug[BASELINE]
            click.echo(f"  {BASELINE} per-drug PCC on the compounds screened twice {base.reindex(compounds).mean():.3f}"
                       f", on the other drugs {base.drop(compounds).mean():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
