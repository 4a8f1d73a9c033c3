"""Leave-one-drug-out (drevalpy's LDO): can a model rank the cell lines of a drug it has never seen?"""

from __future__ import annotations

import numpy as np

from fused_train.seeding import rng
from fused_train.splits.base import Shares, Split
from fused_train.splits.folds import TEST, TRAIN, VAL, Fold


class Lodo(Split):
    """One fold per drug (= PubChem CID): all its pairs are TEST; ``val_fraction`` of the other drugs are VAL, drawn
    by a generator seeded by the held-out drug.

    Epochs are chosen by the validation drugs' mean per-drug PCC: their rows are other held-out drugs, and the question
    is how one drug's cell lines rank. ``benchmarks/convergence.py`` (README "Does the engine train to convergence?"):
    on LODO folds only per-drug PCC selection is at least as accurate as DeepCDR's per-pair regime; on drug-known
    both are, and RMSE stops sooner (so RMSE is the other splits' default)."""

    name = "lodo"
    title = "leave-one-drug-out (LDO)"
    aliases = ("LDO",)
    holds_out = "drug"
    selection_metric = "drug-pcc"
    saves_models_by_default = False  # one model per drug

    def folds(
        self, measured: np.ndarray, drug_ids: np.ndarray, cell_groups: np.ndarray, seed: int, shares: Shares
    ) -> list[Fold]:
        return [self.fold(measured, drug_ids, d, seed, shares.val_fraction) for d in range(len(drug_ids))]

    def fold(self, measured: np.ndarray, drug_ids: np.ndarray, held_out: int, seed: int, val: float) -> Fold:
        """The fold that holds drug ``held_out`` (a row index) out."""
        others = np.array([d for d in range(len(drug_ids)) if d != held_out])
        n_val = max(1, int(round(val * len(others))))
        val_drugs = rng(self.name, seed, str(drug_ids[held_out])).choice(others, size=n_val, replace=False)
        roles = measured.astype(np.int8) * TRAIN
        roles[val_drugs] *= VAL
        roles[held_out] *= TEST
        return Fold(f"{self.name}-seed{seed}-{drug_ids[held_out]}", self.name, seed, roles)
