"""Does a drug-blind model catch up with ``matching`` when it is given the pilot screen at prediction time?

    python benchmarks/pilot_fusion.py LODO_RUN MATCHING_RUN

LODO_RUN is a finished ``--split lodo`` run of any model (e.g. FUSED), MATCHING_RUN a finished ``--split pilot-K``
run of ``matching`` on the same dataset and seeds. Per held-out drug, the LODO model's prediction is corrected by
the pilot the way matching corrects its own profile (``matching.krige``): the misses on the pilot lines carried to
every line through the covariance of the other drugs' residuals, with the noise level matching chose on that fold's
validation drugs (no correction where it chose none), and the pilot's mean and sd as level and scale. The held-out
drug's non-pilot labels are never read. Printed: mean per-drug PCC on the non-pilot lines of the model alone, the
model with the pilot, matching, the mean of the last two (equal weights, fixed beforehand) and the cell-line mean, and
paired Wilcoxon tests over drugs.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import click
import numpy as np
import pandas as pd

from fused_train.models.matching import Pilot, cell_covariance, krige
from fused_train.models.neighbours import Standardised
from fused_train.runs import RunSpec, folds_of, load_run_inputs, predictions
from fused_train.splits import PILOT, TEST, TRAIN, VAL
from fused_train.stats import entity_pcc, paired_test


def spec_of(run_dir: Path) -> RunSpec:
    return RunSpec.from_json(json.loads((run_dir / "config.json").read_text()))


def with_pilot(lodo_run: Path, matching_run: Path) -> tuple[pd.DataFrame, str]:
    """The matching run's test rows with the LODO model's prediction alone and with the pilot; and the model's name."""
    lodo, spec = spec_of(lodo_run), spec_of(matching_run)
    if spec.model != "matching" or not spec.split.startswith("pilot-") or lodo.split != "lodo":
        raise click.UsageError(f"give a LODO run and a matching pilot-K run, not {lodo.split} and {spec.model} "
                               f"{spec.split}")  # fmt: skip
    if (lodo.dataset, lodo.seeds) != (spec.dataset, spec.seeds):
        raise click.UsageError(f"the runs differ in dataset or seeds: {lodo.dataset} {lodo.seeds} vs {spec.dataset} "
                               f"{spec.seeds}")  # fmt: skip
    inputs = load_run_inputs(spec)
    count, target = inputs.grid()
    target = target.astype(np.float64)
    folds = {f.name: f for f in folds_of(spec, inputs)}
    matched = predictions(matching_run)
    model = lodo.model
    corrected = []
    for name, rows in matched.groupby("fold", sort=False):
        fold = folds[name]
        held_out = (fold.roles == TEST).any(axis=1)
        q = int(np.flatnonzero(held_out)[0])
        lodo_name = name.replace(spec.split, "lodo", 1)
        source = lodo_run / "folds" / f"{quote(lodo_name, safe='')}.parquet"
        if not source.is_file():
            raise click.UsageError(f"{lodo_run} has no finished fold {lodo_name}; finish it with fused-train run")
        frame = pd.read_parquet(source)
        if f"pred_{model}" not in frame:
            raise click.UsageError(f"{source} has no column pred_{model}")
        model_rows = frame.groupby("cell_id")[f"pred_{model}"].mean()
        pred = model_rows.reindex(inputs.cell_ids).to_numpy(np.float64)
        lines = (fold.roles[q] == PILOT) & (count[q] > 0)
        if np.isnan(pred[lines]).any():
            raise click.UsageError(f"{source} lacks predictions on pilot lines of fold {name}")
        pilot = Pilot(np.array([q]), lines[None, :], target[q][None, :])
        level, scale, z_pilot = pilot.standardised()
        z = np.nan_to_num(pred / scale[0])[None, :]
        noise = json.loads((matching_run / "choices" / f"{quote(name, safe='')}.json").read_text())["kriging"]
        if noise is not None:
            fitted = Standardised.fit(count * np.isin(fold.roles, (TRAIN, VAL, PILOT)) * ~held_out[:, None], target)
            z = krige(z, pilot, z_pilot, cell_covariance(fitted), noise)
        z = z[0] - z[0][lines].mean()
        cells = pd.Index(inputs.cell_ids).get_indexer(rows["cell_id"])
        adjusted = level[0] + scale[0] * z[cells]
        corrected.append(rows.assign(**{f"pred_{model}": pred[cells], f"pred_{model}+pilot": adjusted}))
    return pd.concat(corrected, ignore_index=True), model


@click.command()
@click.argument("lodo_run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("matching_run", type=click.Path(exists=True, file_okay=False, path_type=Path))
def main(lodo_run: Path, matching_run: Path) -> None:
    frame, model = with_pilot(lodo_run, matching_run)
    both = f"mean of {model}+pilot and matching"  # equal weights, fixed beforehand: nothing chosen on test drugs
    frame[f"pred_{both}"] = (frame[f"pred_{model}+pilot"] + frame["pred_matching"]) / 2
    names = [model, f"{model}+pilot", "matching", both, "cell-mean"]
    per_drug = {n: entity_pcc(frame, "drug_id", f"pred_{n}") for n in names}
    click.echo(f"{len(per_drug[model])} drugs, per-drug PCC on the non-pilot lines ({matching_run.name}):")
    for n in names:
        click.echo(f"  {n:<36} {per_drug[n].mean():.3f} ± {per_drug[n].std():.3f}")
    for a, b in (
        (f"{model}+pilot", model),
        (f"{model}+pilot", "cell-mean"),
        ("matching", f"{model}+pilot"),
        (both, "matching"),
    ):
        t = paired_test(per_drug[a], per_drug[b])
        click.echo(f"  {a} vs {b}: {t.difference.estimate:+.3f} [{t.difference.low:.3f}, {t.difference.high:.3f}], "
                   f"won {t.wins}/{t.n}, p (two-sided) = {t.p_two_sided:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
