"""Our embeddings and our exact folds for people who train their own models.

``EmbeddingPairs`` is a ``torch.utils.data.Dataset`` of measured (drug, cell line) pairs with their embeddings from
fused-cache stores; ``.folds(split, seed)`` gives the folds ``fused-train run`` trains on and ``.subset(fold, role)``
the pairs of one role. ``membership`` writes the same folds as tables (``fused-train splits --export DIR``).

>>> pairs = EmbeddingPairs.from_stores("gdsc-deepcdr", "chemnet", ["expression", "methylation"])
>>> fold = pairs.folds("lodo")[0]
>>> loader = torch.utils.data.DataLoader(pairs.subset(fold, "train"), batch_size=256, shuffle=True)
>>> batch = next(iter(loader))  # {"drug": (256, 512), "cells": {"expression": ..., ...}, "ln_ic50": (256,), ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fused_cache import datasets
from fused_cache.outputs import atomic_path, check_folder
from fused_train.data import Inputs, load_inputs
from fused_train.splits import PILOT, TEST, TRAIN, VAL, Fold, make_folds, split_of

ROLES = {"train": TRAIN, "val": VAL, "test": TEST, "pilot": PILOT}


class EmbeddingPairs(torch.utils.data.Dataset):
    """One item per measured pair: drug embedding, one embedding per cell store, ln IC50 and both ids."""

    def __init__(self, inputs: Inputs, rows: np.ndarray | None = None) -> None:
        if not isinstance(inputs.drug, np.ndarray):
            raise TypeError("EmbeddingPairs needs a dense drug store (an embedding), not atom graphs")
        self.inputs = inputs
        self.rows = np.arange(len(inputs.pairs)) if rows is None else np.asarray(rows, dtype=np.int64)
        pairs = inputs.pairs
        self._drug = torch.from_numpy(inputs.drug)
        self._cells = {name: torch.from_numpy(x) for name, x in inputs.cells.items()}
        self._d = pairs["drug_index"].to_numpy()
        self._c = pairs["cell_index"].to_numpy()
        self._y = torch.from_numpy(pairs["ln_ic50"].to_numpy(np.float32))

    @classmethod
    def from_stores(
        cls, dataset: str = "gdsc-deepcdr", drug_encoder: str = "chemnet",
        cell_encoders: Sequence[str] = ("expression",), cache_dir: str | Path | None = None,
    ) -> EmbeddingPairs:  # fmt: skip
        """The pairs every store covers (as ``fused-train run`` keeps them)."""
        return cls(load_inputs(datasets.load(dataset), drug_encoder, list(cell_encoders), cache_dir))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        d, c = self._d[row], self._c[row]
        return {
            "drug": self._drug[d],
            "cells": {name: x[c] for name, x in self._cells.items()},
            "ln_ic50": self._y[row],
            "drug_id": str(self.inputs.drug_ids[d]),
            "cell_id": str(self.inputs.cell_ids[c]),
        }

    def folds(self, split: str = "lodo", seed: int = 0) -> list[Fold]:
        """The folds of ``fused-train run --split SPLIT --seeds SEED`` on these stores."""
        count, _ = self.inputs.grid()
        return make_folds(split, count, self.inputs.drug_ids, self.inputs.cell_groups, seed)

    def subset(self, fold: Fold, role: str) -> EmbeddingPairs:
        """The pairs that ``fold`` gives ``role`` (train, val or test)."""
        roles = fold.roles[self._d[self.rows], self._c[self.rows]]
        return EmbeddingPairs(self.inputs, self.rows[roles == ROLES[role]])


def membership(inputs: Inputs, folds: Sequence[Fold]) -> pd.DataFrame:
    """Which role each unit of the fold's split (its ``role_unit``: a drug in LODO, a cell line in leave-cell-out and
    leave-tissue-out, a measured (drug, cell line) elsewhere) has in each fold; a pair's role is its unit's. Both
    measurements of a CID measured under two GDSC ids share one."""
    names = {v: k for k, v in ROLES.items()}
    tables = []
    for fold in folds:
        unit = split_of(fold.split).role_unit
        if unit == "drug":
            part = pd.DataFrame({"drug_id": inputs.drug_ids, "role": fold.roles.max(axis=1)})
        elif unit == "cell":
            part = pd.DataFrame({"cell_id": inputs.cell_ids, "role": fold.roles.max(axis=0)})
        else:
            d, c = np.nonzero(fold.roles > 0)
            part = pd.DataFrame(
                {"drug_id": inputs.drug_ids[d], "cell_id": inputs.cell_ids[c], "role": fold.roles[d, c]}
            )
        part = part[part["role"] > 0].assign(role=lambda t: t["role"].map(names))
        part.insert(0, "fold", fold.name)
        part.insert(1, "seed", fold.seed)
        tables.append(part)
    return pd.concat(tables, ignore_index=True)


def export_splits(inputs: Inputs, folds: Sequence[Fold], folder: Path, force: bool = False) -> list[Path]:
    """``folds.csv`` (``membership``) and ``pairs.csv`` (the measured pairs the folds are made of) in ``folder``;
    files already there are replaced only with ``force``, and never in a dataset directory."""
    paths = [folder / "folds.csv", folder / "pairs.csv"]
    check_folder(folder, [p.name for p in paths], force, "--export")
    tables = [membership(inputs, folds), inputs.pairs.drop(columns=["drug_index", "cell_index"])]
    for path, frame in zip(paths, tables, strict=True):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    return paths
