"""Cross-study evaluation, as DrEval does it: fit a model on one dataset (screen), predict another's measurements of
the drugs and cell lines both hold, and score it beside the naive predictors fitted on the training dataset.

Drugs are matched by PubChem CID (our ``drug_id``), cell lines by DepMap id (a ``depmap_id`` column of the cells
table where the dataset has one, as drevalpy datasets do, else the ``cell_id``, which is the DepMap id in ours). A
matched cell line is described by the training dataset's features (the cell line is the same; the test dataset
contributes only its labels), so the question is how well responses measured in one screen carry over to another.
Everything that could not be matched (a test drug or cell line the training data lacks, or has no features for) is
counted and listed in ``unmatched.csv``; nothing is dropped silently.

Outputs in ``out``: ``model/`` (``fused_train.fit.fit``), ``predictions.parquet`` (each matched test pair: its ids in
both datasets, the test label and every prediction), ``metrics.csv`` (pooled, per-drug and per-cell PCC and RMSE per
predictor), ``per_drug.csv``, ``per_cell.csv``, ``unmatched.csv`` and ``cross_study.json`` (datasets, response, counts).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from fused_cache import datasets
from fused_cache.datasets import Dataset
from fused_train.engine import Execution
from fused_train.fit import fit
from fused_train.metrics import entity_table, summarise
from fused_train.models.naive import NAIVE, naive_predictions
from fused_train.predict import load_model
from fused_train.runs import RunError, RunSpec
from fused_train.splits import TRAIN


def depmap_ids(ds: Dataset) -> pd.Series:
    """Each cell line's DepMap id (empty where unknown), indexed by ``cell_id``."""
    cells = ds.cells.set_index("cell_id")
    if "depmap_id" in cells.columns:
        return cells["depmap_id"].fillna("").astype(str)
    return pd.Series(cells.index.to_numpy(), index=cells.index)


def match(train_drugs: np.ndarray, train_cells: pd.Series, test: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The test pairs whose drug and cell line the model knows, with ``train_cell_id`` added, and a table of what was
    not matched (``entity``, ``id``, ``pairs``, ``reason``). ``train_cells``: the model's cell ids by DepMap id (a
    DepMap id that is empty or names two of them matches nothing)."""
    pairs = test.pairs.assign(depmap_id=depmap_ids(test).loc[test.pairs["cell_id"]].to_numpy())
    usable = train_cells[(train_cells.index != "") & ~train_cells.index.duplicated(keep=False)]
    pairs["train_cell_id"] = pairs["depmap_id"].map(usable)
    drug_known = pairs["drug_id"].isin(train_drugs)
    cell_known = pairs["train_cell_id"].notna()
    rows = []
    for key, known, reason in (("drug_id", drug_known, "no training drug with this PubChem CID"),
                               ("cell_id", cell_known, "no training cell line with this DepMap id")):  # fmt: skip
        missing = pairs.loc[~known].groupby(key).size()
        rows += [{"entity": key.removesuffix("_id"), "id": i, "pairs": int(n), "reason": reason}
                 for i, n in missing.items()]  # fmt: skip
    unmatched = pd.DataFrame(rows, columns=["entity", "id", "pairs", "reason"])
    cells = pairs.drop_duplicates("cell_id").set_index("cell_id")["depmap_id"]
    for depmap, reason in ((cells[cells == ""].index, "the test dataset has no DepMap id for it"),
                           (cells[cells.isin(train_cells.index[train_cells.index.duplicated()])].index,
                            "two training cell lines have this DepMap id")):  # fmt: skip
        unmatched.loc[(unmatched["entity"] == "cell") & unmatched["id"].isin(depmap), "reason"] = reason
    return pairs[drug_known & cell_known].reset_index(drop=True), unmatched


def naive_table(pairs: pd.DataFrame, drugs: np.ndarray, cells: np.ndarray) -> dict[str, pd.DataFrame]:
    """The naive predictors fitted on all of ``pairs`` (the training dataset's), as drug x cell tables."""
    grid = pairs.groupby(["drug_id", "cell_id"])["ln_ic50"].agg(["size", "mean"])
    count = grid["size"].unstack().reindex(index=drugs, columns=cells).fillna(0).to_numpy()
    target = grid["mean"].unstack().reindex(index=drugs, columns=cells).fillna(0).to_numpy()
    roles = np.where(count > 0, TRAIN, 0)
    return {
        name: pd.DataFrame(g, index=drugs, columns=cells) for name, g in naive_predictions(count, target, roles).items()
    }


def cross_study(
    spec: RunSpec, test_dataset: str, out: Path, cache_dir: str | Path | None = None,
    execution: Execution | None = None, quiet: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Fit ``spec`` on ``spec.dataset`` (all pairs; ``fused-train fit``), predict ``test_dataset``'s shared pairs
    (its ``spec.response`` measure) and write the outputs listed above; returns the metrics table."""
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out} exists and is not empty; pass another --out or delete it")
    if datasets.key_of(test_dataset) == datasets.key_of(spec.dataset):
        raise RunError(f"the test dataset is the training dataset ({spec.dataset}); use fused-train run for that")
    test = datasets.load(test_dataset, spec.response)  # before the fit: a bad test dataset costs nothing
    train = datasets.load(spec.dataset, spec.response)
    fit(replace(spec, split="fit"), out / "model", cache_dir, execution, quiet, "fused_train.cross_study")
    model = load_model(out / "model", (execution or Execution()).device)
    predicted = model.predict(cache_dir=cache_dir, quiet=quiet)
    drugs, cells = pd.unique(predicted["drug_id"]), pd.unique(predicted["cell_id"])
    train_cells = depmap_ids(train).loc[cells]
    shared, unmatched = match(drugs, pd.Series(train_cells.index, index=train_cells.to_numpy()), test)
    if shared.empty:
        raise RunError(f"{test_dataset} shares no (drug, cell line) pair with the model's training data: "
                       f"{len(unmatched)} drugs and cell lines unmatched")  # fmt: skip
    keys = pd.MultiIndex.from_arrays([shared["drug_id"], shared["train_cell_id"]])
    shared[f"pred_{spec.model}"] = predicted.set_index(["drug_id", "cell_id"])["pred_ln_ic50"].loc[keys].to_numpy()
    train_pairs = train.pairs[train.pairs["drug_id"].isin(drugs) & train.pairs["cell_id"].isin(cells)]
    for name, grid in naive_table(train_pairs, drugs, cells).items():
        shared[f"pred_{name}"] = grid.stack().loc[keys].to_numpy()
    shared["seed"] = 0  # one fitted model (its members averaged)
    names = [spec.model, *NAIVE]
    rows = [{"predictor": n, **summarise(shared, f"pred_{n}", "drug_id"),
             **{k: v for k, v in summarise(shared, f"pred_{n}", "cell_id").items() if k.startswith("per_cell")}}
            for n in names]  # fmt: skip
    metrics = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    shared.drop(columns="seed").to_parquet(out / "predictions.parquet", index=False)
    metrics.to_csv(out / "metrics.csv", index=False)
    entity_table(shared, "drug_id", names).drop(columns="seed").to_csv(out / "per_drug.csv", index=False)
    entity_table(shared, "cell_id", names).drop(columns="seed").to_csv(out / "per_cell.csv", index=False)
    unmatched.to_csv(out / "unmatched.csv", index=False)
    summary = {
        "train": spec.dataset, "test": test_dataset, "response": spec.response, "model": spec.model,
        "test pairs": len(test.pairs), "matched pairs": len(shared),
        "matched drugs": int(shared["drug_id"].nunique()), "matched cell lines": int(shared["cell_id"].nunique()),
        "unmatched": {e: int((unmatched["entity"] == e).sum()) for e in ("drug", "cell")},
    }  # fmt: skip
    (out / "cross_study.json").write_text(json.dumps(summary, indent=2))
    return metrics
