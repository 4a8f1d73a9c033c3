"""``fused-train predict --pilot``: a new drug screened on a few cell lines, predicted on the rest.

The benchmark's answer to this question (``--split pilot-K``) is the ``matching`` model, so prediction uses it too,
over the training responses that ``fused-train fit`` saves with any model (``responses.parquet``,
``drugs.parquet``), as ``models/matching.py``'s ``MatchingFitted`` does per member seed: a validation share of the
training drugs (drawn with the seed) is shown the same pilot lines, the matching setting that predicts their other
lines best is chosen, and the new drug is predicted from every training drug's responses. The members' predictions
give the mean and sd; pilot lines are flagged and the others ranked (1 = most sensitive), the list of lines to test
next.

Pilot rows are checked first: a drug missing from ``--drugs``, a cell line the model does not know, a value that is
not a finite number, a (drug, line) given twice, or fewer than 3 lines for a drug are errors that name the row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fused_train.models.matching import MatchingFitted, MatchingOptions

RESPONSES, DRUGS = "responses.parquet", "drugs.parquet"
"""Files ``fused-train fit`` writes beside model.json: the training pairs and the training drugs' annotations."""
MIN_LINES = 3


class PilotError(ValueError):
    """Pilot rows that cannot be used as given."""


def check_pilot(pilot: pd.DataFrame, drug_ids: np.ndarray, cell_ids: np.ndarray) -> pd.DataFrame:
    """The pilot table (drug_id, cell_id, ln_ic50) after every check in the module docstring."""
    lacking = [c for c in ("drug_id", "cell_id", "ln_ic50") if c not in pilot.columns]
    if lacking:
        raise PilotError(f"pilot: no {lacking[0]!r} column (columns: {', '.join(map(str, pilot.columns))})")
    table = pilot[["drug_id", "cell_id"]].astype(str).assign(ln_ic50=pd.to_numeric(pilot["ln_ic50"], errors="coerce"))
    checks = (
        (~table["drug_id"].isin(drug_ids), "names drug {drug_id!r}, which is not in --drugs"),
        (~table["cell_id"].isin(cell_ids), "names cell line {cell_id!r}, which the model does not know"),
        (~np.isfinite(table["ln_ic50"].fillna(np.inf)), "has ln_ic50 {raw}, not a finite number"),
        (table.duplicated(["drug_id", "cell_id"], keep=False), "repeats ({drug_id!r}, {cell_id!r}); give one value"),
    )
    for bad, message in checks:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            values = table.iloc[row].to_dict() | {"raw": pilot["ln_ic50"].iloc[row]}
            raise PilotError(f"pilot row {row}: " + message.format(**values))
    lines = table.groupby("drug_id").size()
    if (lines < MIN_LINES).any():
        drug = lines[lines < MIN_LINES].index[0]
        raise PilotError(f"pilot: drug {drug!r} has {lines[drug]} line(s); matching needs at least {MIN_LINES}")
    return table


def pilot_predictions(
    folder: Path, pilot: pd.DataFrame, drugs: pd.DataFrame, cell_ids: np.ndarray, seeds: list[int]
) -> pd.DataFrame:
    """Per pilot drug and model cell line: ``pred_ln_ic50`` / ``pred_sd`` over the seeds, ``in_pilot``,
    ``pilot_ln_ic50`` and ``rank_to_test`` (non-pilot lines, 1 = most sensitive)."""
    if not (folder / RESPONSES).is_file():
        raise PilotError(f"{folder} holds no {RESPONSES}: it was saved by an older fused-train fit; refit it to use "
                         "--pilot")  # fmt: skip
    responses = pd.read_parquet(folder / RESPONSES).astype({"drug_id": str, "cell_id": str})
    training = pd.read_parquet(folder / DRUGS).astype({"drug_id": str})
    frames = []
    for drug_id, rows in pilot.groupby("drug_id", sort=False):
        new = drugs[drugs["drug_id"] == drug_id]
        preds = np.stack([MatchingFitted(responses, training, MatchingOptions(), seed).predict_drug(rows, new, cell_ids,
                                                                                           str(drug_id))
                          for seed in seeds])  # fmt: skip
        in_pilot = np.isin(cell_ids, rows["cell_id"])
        measured = rows.set_index("cell_id")["ln_ic50"].reindex(cell_ids).to_numpy()
        frame = pd.DataFrame({"drug_id": drug_id, "cell_id": cell_ids, "pred_ln_ic50": preds.mean(axis=0),
                              "pred_sd": preds.std(axis=0, ddof=1) if len(seeds) > 1 else np.nan,
                              "n_members": len(seeds), "in_pilot": in_pilot, "pilot_ln_ic50": measured})  # fmt: skip
        frame["rank_to_test"] = frame["pred_ln_ic50"].where(~in_pilot).rank(method="first").astype("Int64")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
