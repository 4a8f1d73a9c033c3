"""How much does a fold's result depend on the folds trained beside it?

    python benchmarks/slot_spread.py [--split drug-known] [--precision auto]

In exact arithmetic none: every parameter, optimizer state and random draw belongs to one slot. In floating point the
batched kernels' shapes change with the number of slots, so they round differently, and training amplifies the
difference (other best epochs, other predictions). This trains FUSED (ChemNet, multi-omics) on drug-known seed 0
alone, then together with seeds 1 and 2 (as ``--seeds 0,1,2`` does), then alone again, and prints for seed 0: the
largest prediction difference, the best epochs, and the test metrics of each run. The two runs alone must be
bitwise identical (same command, same machine).
"""

from __future__ import annotations

import click
import numpy as np
import pandas as pd

from fused_train.engine import Execution, TrainConfig
from fused_train.metrics import summarise
from fused_train.runs import RunSpec, folds_of, load_run_inputs


@click.command()
@click.option("--split", default="drug-known", show_default=True)
@click.option("--precision", default="auto", show_default=True)
def main(split: str, precision: str) -> None:
    spec = RunSpec(model="fused", drug_encoder="chemnet", omics=("methylation", "mutation"), split=split,
                   seeds=(0, 1, 2), train=TrainConfig(precision=precision))  # fmt: skip
    inputs = load_run_inputs(spec)
    folds = folds_of(spec, inputs)
    first = [f for f in folds if f.seed == 0][:1]
    runs = {
        "alone": list(spec.trainer(inputs, Execution()).run(first, quiet=True)),
        "with seeds 1, 2": [
            r for r in spec.trainer(inputs, Execution()).run(folds[:3], quiet=True) if r.fold.name == first[0].name
        ],  # fmt: skip
        "alone again": list(spec.trainer(inputs, Execution()).run(first, quiet=True)),
    }
    count, target = inputs.grid()
    rows = []
    for label, (result,) in runs.items():
        d, c = np.unravel_index(result.test_cells, count.shape)
        frame = pd.DataFrame({"drug_id": inputs.drug_ids[d], "ln_ic50": target[d, c], "pred": result.test_pred})
        rows.append({"run": label, "best epoch": result.best_epoch, **summarise(frame, "pred", "drug_id")})
    click.echo(pd.DataFrame(rows)[["run", "best epoch", "pcc", "rmse", "per_drug_pcc_mean"]].round(4).to_string())
    alone, together, again = (r[0].test_pred for r in runs.values())
    click.echo(f"largest |prediction difference|, alone vs with seeds 1, 2: {np.abs(alone - together).max():.3f}")
    click.echo(f"alone twice bitwise identical: {np.array_equal(alone, again)}")


if __name__ == "__main__":
    main()
