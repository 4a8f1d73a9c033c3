"""Drug-known (drevalpy's LPO): random grid cells are held out; every drug and cell line is seen in training."""

from __future__ import annotations

import numpy as np

from fused_train.seeding import rng
from fused_train.splits.base import Shares, Split
from fused_train.splits.folds import TEST, TRAIN, VAL, Fold, stratified_pick


class DrugKnown(Split):
    """One fold per seed: ``test_fraction`` of the measured grid cells are TEST, stratified by the cell line's TCGA
    type, and ``val_fraction`` of the rest VAL, drawn the same way."""

    name = "drug-known"
    title = "drug-known (LPO)"
    aliases = ("LPO",)
    holds_out = "pair"

    def folds(
        self, measured: np.ndarray, drug_ids: np.ndarray, cell_groups: np.ndarray, seed: int, shares: Shares
    ) -> list[Fold]:
        draw = rng(self.name, seed)
        flat = np.flatnonzero(measured)
        groups = cell_groups[flat % measured.shape[1]]
        test_cells = stratified_pick(flat, groups, shares.test_fraction, draw)
        rest = np.setdiff1d(flat, test_cells)
        val_cells = stratified_pick(rest, cell_groups[rest % measured.shape[1]], shares.val_fraction, draw)
        roles = measured.astype(np.int8) * TRAIN
        roles.flat[val_cells] = VAL
        roles.flat[test_cells] = TEST
        return [Fold(f"{self.name}-seed{seed}", self.name, seed, roles)]
