"""A small on-disk dataset with built stores, and a tiny FUSED configuration, so trainer tests run in seconds."""

from __future__ import annotations

from pathlib import Path

from fused_cache import build_store, datasets
from fused_cache.datasets import Dataset
from fused_train.engine import TrainConfig
from fused_train.runs import RunSpec

TINY = {"width": 16, "heads": 2, "proj": 8, "hidden": [16, 8]}


def write_dataset(ds: Dataset, folder: Path) -> Path:
    """Write a dataset in the documented directory format (what a user brings)."""
    folder.mkdir(parents=True, exist_ok=True)
    ds.pairs.to_parquet(folder / "pairs.parquet", index=False)
    ds.drugs[["drug_id", "name", "smiles"]].to_parquet(folder / "drugs.parquet", index=False)
    ds.cells.to_parquet(folder / "cells.parquet", index=False)
    for modality, matrix in ds.omics.items():
        matrix.reset_index().to_parquet(folder / f"omics_{modality}.parquet", index=False)
    return folder


def small_dataset(gdsc: Dataset, folder: Path, cache: Path, n_drugs: int = 10, n_cells: int = 40) -> str:
    """The first drugs and cell lines of the bundled data as a dataset directory, with morgan, graph, omics stores."""
    drugs = gdsc.drugs.head(n_drugs)
    cells = gdsc.cells[gdsc.cells["cell_id"].isin(gdsc.omics["expression"].index)].head(n_cells)
    pairs = gdsc.pairs[gdsc.pairs["drug_id"].isin(drugs["drug_id"]) & gdsc.pairs["cell_id"].isin(cells["cell_id"])]
    omics = {m: x[x.index.isin(cells["cell_id"])] for m, x in gdsc.omics.items() if m != "mutation"}
    sub = Dataset(
        "small", drugs.reset_index(drop=True), cells.reset_index(drop=True), pairs.reset_index(drop=True), omics
    )
    path = write_dataset(sub, folder)
    ds = datasets.load(str(path))
    for encoder in ("morgan", "graph", "expression", "methylation"):
        build_store(ds, encoder, cache, quiet=True)
    return str(path)


def tiny_spec(dataset: str, split: str = "lodo", epochs: int = 3, **kw: object) -> RunSpec:
    train = TrainConfig(max_epochs=epochs, patience=epochs, cells_per_step=16, precision="fp32")
    return RunSpec(model="fused", drug_encoder="morgan", cell_encoder="expression", omics=("methylation",),
                   split=split, dataset=dataset, train=train, options=dict(TINY), **kw)  # fmt: skip
