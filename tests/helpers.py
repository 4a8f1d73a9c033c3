"""Small datasets cut from the bundled one, and a tiny FUSED configuration, so that tests run in seconds."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

from fused_cache import build_store, datasets
from fused_cache.datasets import Dataset
from fused_train.data import Inputs
from fused_train.engine import TrainConfig, Trainer
from fused_train.models.fused import FusedOptions
from fused_train.runs import RunSpec
from fused_train.splits import TEST, Fold

TINY = FusedOptions(width=16, heads=2, proj=8, hidden=(16, 8))


def subset(
    ds: Dataset, n_drugs: int, n_cells: int, name: str = "small", modalities: Sequence[str] | None = None
) -> Dataset:
    """The first drugs and cell lines of a dataset, with their pairs and omics rows.

    With ``modalities``, only those omics are kept and only cell lines that have all of them are taken.
    """
    omics = {m: x for m, x in ds.omics.items() if modalities is None or m in modalities}
    cells = ds.cells
    for matrix in omics.values() if modalities is not None else ():
        cells = cells[cells["cell_id"].isin(matrix.index)]
    drugs, cells = ds.drugs.head(n_drugs), cells.head(n_cells)
    pairs = ds.pairs[ds.pairs["drug_id"].isin(drugs["drug_id"]) & ds.pairs["cell_id"].isin(cells["cell_id"])]
    omics = {m: x[x.index.isin(cells["cell_id"])] for m, x in omics.items()}
    return Dataset(
        name, drugs.reset_index(drop=True), cells.reset_index(drop=True), pairs.reset_index(drop=True), omics
    )


def write_dataset(ds: Dataset, folder: Path) -> Path:
    """Write a dataset in the documented directory format (what a user brings)."""
    folder.mkdir(parents=True, exist_ok=True)
    ds.pairs.to_parquet(folder / "pairs.parquet", index=False)
    ds.drugs[[c for c in ds.drugs.columns if c != "gdsc_drug_ids"]].to_parquet(folder / "drugs.parquet", index=False)
    ds.cells.to_parquet(folder / "cells.parquet", index=False)
    for modality, matrix in ds.omics.items():
        matrix.reset_index().to_parquet(folder / f"omics_{modality}.parquet", index=False)
    return folder


def small_dataset(gdsc: Dataset, folder: Path, cache: Path, n_drugs: int = 10, n_cells: int = 40) -> str:
    """10 drugs x 40 cell lines with expression and methylation as a dataset directory, with morgan, graph and omics
    stores built."""
    path = write_dataset(subset(gdsc, n_drugs, n_cells, modalities=("expression", "methylation")), folder)
    ds = datasets.load(str(path))
    for encoder in ("morgan", "graph", "expression", "methylation"):
        build_store(ds, encoder, cache, quiet=True)
    return str(path)


def tiny_spec(dataset: str, split: str = "lodo", epochs: int = 3, **kw: object) -> RunSpec:
    train = TrainConfig(max_epochs=epochs, patience=epochs, cells_per_step=16, precision="fp32")
    return RunSpec(model="fused", drug_encoder="morgan", cell_encoder="expression", omics=("methylation",),
                   split=split, dataset=dataset, train=train, options=asdict(TINY), **kw)  # fmt: skip


def run_console(main: Callable[[], None], prog: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run a console command (``fused_cache.cli.main``, ``fused_train.cli.main``) as a user would: its exit code, and
    stdout + stderr."""
    with mock.patch.object(sys, "argv", [prog, *args]):
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


SCRAMBLED = 1e3
"""The ln IC50 the held-out labels are replaced by in the tests that show they influence nothing."""


def scramble_test_labels(trainer: Trainer, fold: Fold) -> Trainer:
    """``trainer`` with the fold's TEST labels set to SCRAMBLED in its grid of targets."""
    trainer.target_np = trainer.target_np.copy()
    trainer.target_np[fold.roles == TEST] = SCRAMBLED
    trainer.target = torch.from_numpy(trainer.target_np)
    return trainer


def with_scrambled_test_labels(inputs: Inputs, fold: Fold) -> Inputs:
    """``inputs`` whose pairs in the fold's TEST cells have the ln IC50 SCRAMBLED (what a fitted model reads)."""
    pairs = inputs.pairs.copy()
    test = (fold.roles == TEST)[pairs["drug_index"], pairs["cell_index"]]
    pairs.loc[test, "ln_ic50"] = SCRAMBLED
    return replace(inputs, pairs=pairs)


def write_drevalpy(ds: Dataset, folder: Path) -> Path:
    """``ds`` in drevalpy's dataset layout (``<data_path>/<NAME>/``, ``folder`` being that NAME folder), as drevalpy
    ships GDSC2 or CCLE: cell lines by name (DepMap ids in ``cell_line_names.csv``), an ``AUC`` beside ``LN_IC50``
    (here a logistic function of it), omics views with a ``cellosaurus_id`` column, mutations as True/False."""
    folder.mkdir(parents=True, exist_ok=True)
    cells = ds.cells.set_index("cell_id")
    name_of = cells["cell_name"]
    response = pd.DataFrame({
        "cell_line_name": name_of.loc[ds.pairs["cell_id"]].to_numpy(), "pubchem_id": ds.pairs["drug_id"].to_numpy(),
        "tissue": cells.loc[ds.pairs["cell_id"], "tcga_type"].to_numpy(), "LN_IC50": ds.pairs["ln_ic50"].to_numpy(),
        "AUC": 1 / (1 + np.exp(-ds.pairs["ln_ic50"].to_numpy())),
    })  # fmt: skip
    response.to_csv(folder / f"{folder.name}.csv", index=False)
    pd.DataFrame({"cellosaurus_id": [f"CVCL_{i}" for i in range(len(cells))], "cell_line_name": name_of.to_numpy(),
                  "depmap_id": cells.index.to_numpy()}).to_csv(folder / "cell_line_names.csv", index=False)  # fmt: skip
    ds.drugs[["drug_id", "smiles"]].set_axis(["pubchem_id", "canonical_smiles"], axis=1).to_csv(
        folder / "drug_smiles.csv", index=False
    )
    for view, modality in (
        ("gene_expression", "expression"),
        ("methylation", "methylation"),
        ("mutations", "mutation"),
    ):
        if modality not in ds.omics:
            continue
        matrix = ds.omics[modality]
        values = matrix.astype(bool) if modality == "mutation" else matrix
        table = values.set_axis(name_of.loc[matrix.index].to_numpy()).rename_axis("cell_line_name").reset_index()
        table.insert(0, "cellosaurus_id", "CVCL_x")
        table.to_csv(folder / f"{view}.csv", index=False)
    return folder
