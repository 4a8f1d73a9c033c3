"""Shared fixtures: the bundled dataset and small slices of it, so store tests run in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from fused_cache import datasets
from fused_cache.datasets import Dataset


@pytest.fixture(scope="session")
def gdsc() -> Dataset:
    return datasets.load("gdsc-deepcdr")


def subset(ds: Dataset, n_drugs: int, n_cells: int, name: str = "small") -> Dataset:
    """The first drugs and cell lines of a dataset, with their pairs and omics rows."""
    drugs = ds.drugs.head(n_drugs)
    cells = ds.cells.head(n_cells)
    pairs = ds.pairs[ds.pairs["drug_id"].isin(drugs["drug_id"]) & ds.pairs["cell_id"].isin(cells["cell_id"])]
    omics = {m: x[x.index.isin(cells["cell_id"])] for m, x in ds.omics.items()}
    return Dataset(
        name, drugs.reset_index(drop=True), cells.reset_index(drop=True), pairs.reset_index(drop=True), omics
    )


@pytest.fixture()
def small(gdsc: Dataset) -> Dataset:
    return subset(gdsc, 8, 20)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache root, also exported as $FUSED_CACHE_DIR for code that reads the environment."""
    root = tmp_path / "cache"
    monkeypatch.setenv("FUSED_CACHE_DIR", str(root))
    return root
