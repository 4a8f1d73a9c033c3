"""Shared fixtures: the bundled dataset, small slices of it, and a small dataset with built stores for training."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import small_dataset, subset

from fused_cache import datasets
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
