"""Small datasets cut from the bundled one, and a tiny FUSED configuration, so that tests run in seconds."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from unittest import mock

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
