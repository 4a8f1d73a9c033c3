"""Leave-cell-out (drevalpy's LCO): can a model predict a cell line it has never seen, for known drugs?"""

from __future__ import annotations

import numpy as np

from fused_train.seeding import rng
from fused_train.splits.base import Shares, Split
from fused_train.splits.folds import TEST, TRAIN, VAL, Fold, stratified_pick


class CellOut(Split):
    """``n_cell_folds`` folds of cell lines, stratified by TCGA type (each type dealt round-robin over the folds in a
    seeded order); each fold's validation lines are ``val_fraction`` of its training lines, stratified the same way.
    Epochs are chosen by RMSE (see ``Lodo`` for why per-drug PCC is LODO's alone)."""

    name = "cell-out"
    title = "leave-cell-out (LCO)"
    aliases = ("LCO",)
    holds_out = "cell"

    def folds(
        self, measured: np.ndarray, drug_ids: np.ndarray, cell_groups: np.ndarray, seed: int, shares: Shares
    ) -> list[Fold]:
        k = shares.n_cell_folds
        draw = rng(self.name, seed)
        order = np.concatenate([draw.permutation(np.flatnonzero(cell_groups == g)) for g in np.unique(cell_groups)])
        fold_of = np.empty(len(cell_groups), dtype=np.int64)
        fold_of[order] = np.arange(len(order)) % k
        folds = []
        for i in range(k):
            train_cells = np.flatnonzero(fold_of != i)
            val_cells = stratified_pick(
                train_cells, cell_groups[train_cells], shares.val_fraction, rng(self.name, seed, i)
            )
            roles = measured.astype(np.int8) * TRAIN
            roles[:, val_cells] *= VAL
            roles[:, fold_of == i] *= TEST
            folds.append(Fold(f"{self.name}-seed{seed}-{i}", self.name, seed, roles))
        return folds
