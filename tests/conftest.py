"""Shared fixtures: the bundled dataset, small slices of it, and a small dataset with built stores for training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import small_dataset, subset

from fused_cache import build_store, datasets
from fused_cache.datasets import Dataset


@pytest.fixture(scope="session")
def gdsc() -> Dataset:
    return datasets.load("gdsc-deepcdr")


@pytest.fixture()
def small(gdsc: Dataset) -> Dataset:
    return subset(gdsc, 8, 20)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache root, also exported as $FUSED_CACHE_DIR for code that reads the environment."""
    root = tmp_path / "cache"
    monkeypatch.setenv("FUSED_CACHE_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def trained_on(gdsc: Dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A 10-drug x 40-cell dataset directory and the cache holding its morgan, graph, expression, methylation
    stores: what the trainer tests train on."""
    root = tmp_path_factory.mktemp("train")
    return small_dataset(gdsc, root / "small", root / "cache"), root / "cache"


@pytest.fixture(scope="session")
def tiny_built(gdsc: Dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 6-drug x 12-cell dataset directory and its cache (morgan, graph, expression and methylation stores), which
    tests copy with ``tiny_copy`` before they edit it."""
    root = tmp_path_factory.mktemp("tiny")
    folder = small_dataset(gdsc, root / "small", root / "cache", n_drugs=6, n_cells=12)
    return Path(folder), root / "cache"


@pytest.fixture()
def tiny_copy(tiny_built: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of ``tiny_built`` (dataset and cache) that a test may edit; the refs of the copy are made anew,
    under its own path."""
    folder, cache = tmp_path / "small", tmp_path / "cache"
    shutil.copytree(tiny_built[0], folder)
    shutil.copytree(tiny_built[1], cache)
    ds = datasets.load(str(folder))
    for encoder in ("morgan", "expression", "methylation"):
        build_store(ds, encoder, cache, quiet=True)
    return folder, cache
