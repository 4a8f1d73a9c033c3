"""How far can a per-drug PCC go? A drug's second GDSC screen as a predictor of its first.

    python benchmarks/replicates.py [--dataset gdsc-deepcdr] [--min-lines 20]

Some compounds (one PubChem CID) were screened twice in GDSC under two drug ids (usually GDSC1 and GDSC2, another
assay and concentration range). Per such compound, the PCC between its two ln IC50 values over the cell lines
measured in both screens says how much of a drug's cell-line profile one screen reproduces: the measurement noise
that every per-drug PCC in the README is capped by. If both screens are the same signal plus independent noise,
a perfect predictor reaches sqrt(r) against one screen. Different assays add differences of their own, so this is a
pessimistic estimate of the ceiling, from a few drugs.
"""

from __future__ import annotations

import click
import numpy as np
import pandas as pd

from fused_cache import datasets


@click.command()
@click.option("--dataset", default="gdsc-deepcdr", show_default=True)
@click.option("--min-lines", default=20, show_default=True, help="Compounds with fewer shared lines are left out.")
def main(dataset: str, min_lines: int) -> None:
    pairs = datasets.load(dataset).pairs
    if "gdsc_drug_id" not in pairs:
        raise click.UsageError(f"dataset {dataset!r} has no gdsc_drug_id column: no replicate screens to compare")
    rows = []
    for drug_id, group in pairs.groupby("drug_id"):
        screens = group.pivot_table(index="cell_id", columns="gdsc_drug_id", values="ln_ic50").dropna()
        if screens.shape[1] == 2 and len(screens) >= min_lines:
            r = float(np.corrcoef(screens.iloc[:, 0], screens.iloc[:, 1])[0, 1])
            rows.append({"drug_id": drug_id, "screens": "/".join(map(str, screens.columns)), "lines": len(screens),
                         "pcc": r})  # fmt: skip
    table = pd.DataFrame(rows)
    click.echo(table.round(3).to_string(index=False))
    r = table["pcc"].mean()
    click.echo(f"\n{len(table)} compounds screened twice (>= {min_lines} shared lines): per-drug PCC between the two "
               f"screens {r:.3f} ± {table['pcc'].std():.3f}; the same-signal-plus-noise ceiling against one screen "
               f"sqrt(r) = {np.sqrt(table['pcc'].clip(lower=0)).mean():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
