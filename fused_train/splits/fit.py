"""The split of ``fused-train fit`` (not a benchmark): every labelled pair trains the model that predicts later."""

from __future__ import annotations

import numpy as np

from fused_train.seeding import rng
from fused_train.splits.base import Shares, Split
from fused_train.splits.folds import TRAIN, VAL, Fold, stratified_pick


class Fit(Split):
    """One fold per seed: every measured grid cell is TRAIN except a ``val_fraction`` for early stopping, drawn like
    drug-known's; no test."""

    name = "fit"
    title = "all pairs (fused-train fit)"
    holds_out = "pair"  # nothing is tested: the validation pairs are drawn at random
    benchmark = False

    def folds(
        self, measured: np.ndarray, drug_ids: np.ndarray, cell_groups: np.ndarray, seed: int, shares: Shares
    ) -> list[Fold]:
        flat = np.flatnonzero(measured)
        groups = cell_groups[flat % measured.shape[1]]
        val_cells = stratified_pick(flat, groups, shares.val_fraction, rng(self.name, seed))
        roles = measured.astype(np.int8) * TRAIN
        roles.flat[val_cells] = VAL
        return [Fold(f"{self.name}-seed{seed}", self.name, seed, roles)]
