"""Does FUSED add anything to ``completion`` in drug-known? A blend with its weight chosen on validation pairs.

    python benchmarks/drugknown_blend.py FUSED_RUN COMPLETION_RUN

FUSED_RUN is a finished ``--split drug-known`` run of an engine-trained model with its fold models saved (the
default), COMPLETION_RUN a ``completion`` run on the same dataset, cell inputs and seeds. Per fold, the blend
a * FUSED + (1 - a) * completion takes the a in 0, 0.1, ..., 1 with the best mean per-drug PCC on the fold's
validation pairs, completion fitted on TRAIN pairs for that choice (FUSED saw TRAIN pairs only and chose its epoch on
VAL); on test pairs the blend uses the run's completion (refitted on TRAIN + VAL, as the run predicted). Test labels
are read only to score. Printed: per fold the chosen a, then per-drug PCC (mean over seeds per drug) of completion,
FUSED and the blend, and paired Wilcoxon tests of the blend against each, over drugs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
import pandas as pd

from fused_train.metrics import mean_row_pcc
from fused_train.models.base import Query
from fused_train.models.completion import CompletionOptions, complete
from fused_train.models.neighbours import Standardised
from fused_train.predict import load_model
from fused_train.runs import RunSpec, fold_file, folds_of, load_run_inputs, predictions
from fused_train.splits import TRAIN, VAL
from fused_train.stats import entity_pcc, paired_test

WEIGHTS = np.round(np.linspace(0, 1, 11), 1)


def spec_of(run_dir: Path) -> RunSpec:
    return RunSpec.from_json(json.loads((run_dir / "config.json").read_text()))


def blended(fused_run: Path, completion_run: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """The completion run's test rows with FUSED's prediction and the blend beside it; the weight chosen per fold."""
    fused, spec = spec_of(fused_run), spec_of(completion_run)
    if spec.model != "completion" or spec.split != "drug-known" or fused.split != "drug-known":
        raise click.UsageError(f"give a drug-known run of FUSED and one of completion, not {fused.model} "
                               f"{fused.split} and {spec.model} {spec.split}")  # fmt: skip
    same = ("dataset", "drug_encoder", "cell_encoder", "omics", "seeds")
    differ = [k for k in same if getattr(fused, k) != getattr(spec, k)]
    if differ:
        raise click.UsageError(f"the runs differ in {', '.join(differ)}: their test pairs are not the same")
    inputs = load_run_inputs(spec)
    count, target = inputs.grid()
    query, options = Query.of(inputs), CompletionOptions(**spec.options)
    rows = predictions(completion_run)
    drug_index = pd.Index(inputs.drug_ids).get_indexer(rows["drug_id"])
    cell_index = pd.Index(inputs.cell_ids).get_indexer(rows["cell_id"])
    rows["pred_fused"], rows["pred_blend"], chosen = np.nan, np.nan, {}
    for fold in folds_of(spec, inputs):
        model_dir = fused_run / "models" / fold_file(fold.name)
        if not model_dir.is_dir():
            raise click.UsageError(f"{fused_run} has no saved model of fold {fold.name} (run it without --no-save)")
        grid = load_model(model_dir).members[0].predict(query)
        penalty = json.loads((completion_run / "choices" / f"{fold_file(fold.name)}.json").read_text())["penalty"]
        train_only, _ = complete(Standardised.fit(count * (fold.roles == TRAIN), target.astype(np.float64)),
                                 penalty, options)  # fmt: skip
        val = count * (fold.roles == VAL)
        scores = [mean_row_pcc(val, target, a * grid + (1 - a) * train_only) for a in WEIGHTS]
        a = float(WEIGHTS[int(np.argmax(scores))])
        chosen[fold.name] = a
        here = (rows["fold"] == fold.name).to_numpy()
        fused_pred = grid[drug_index[here], cell_index[here]]
        rows.loc[here, "pred_fused"] = fused_pred
        rows.loc[here, "pred_blend"] = a * fused_pred + (1 - a) * rows.loc[here, "pred_completion"].to_numpy()
    return rows, chosen


@click.command()
@click.argument("fused_run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("completion_run", type=click.Path(exists=True, file_okay=False, path_type=Path))
def main(fused_run: Path, completion_run: Path) -> None:
    rows, chosen = blended(fused_run, completion_run)
    for fold, a in chosen.items():
        click.echo(f"{fold}: FUSED weight chosen on validation pairs a = {a:.1f}")
    pcc = {name: entity_pcc(rows, "drug_id", f"pred_{name}") for name in ("completion", "fused", "blend")}
    for name, series in pcc.items():
        mean, sd, n = series.mean(), series.std(ddof=1), series.notna().sum()
        click.echo(f"{name:10s} per-drug PCC (each drug's mean over seeds): {mean:.3f} ± {sd:.3f} over {n} drugs")
    for a, b in (("blend", "completion"), ("blend", "fused"), ("completion", "fused")):
        t = paired_test(pcc[a], pcc[b])
        d = t.difference
        click.echo(f"{a} vs {b}: {d.estimate:+.4f} [{d.low:+.4f}, {d.high:+.4f}], {t.wins} / {t.losses} / {t.ties} "
                   f"won / lost / tied, p (two-sided) = {t.p_two_sided:.2g}")  # fmt: skip


if __name__ == "__main__":
    main()
