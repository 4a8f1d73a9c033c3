"""Leave-tissue-out (drevalpy's LTO): can a model predict the cell lines of a cancer type it has never seen?"""

from __future__ import annotations

import logging

import numpy as np

from fused_train.seeding import rng
from fused_train.splits.base import Shares, Split
from fused_train.splits.folds import TEST, TRAIN, VAL, Fold, FoldSelectionError

log = logging.getLogger(__name__)

MIN_LINES = 10
"""A TCGA type is held out when at least this many of its cell lines have measurements: fewer give a per-tissue PCC
and mean per-cell-line PCC too noisy to read (on the bundled data 20 types qualify, 9 small ones do not)."""
NOT_A_TISSUE = ("", "UNABLE TO CLASSIFY")
"""Types that name no tissue (unknown; GDSC's label for lines it could not classify): never held out, never a
validation tissue, always training."""


class TissueOut(Split):
    """One fold per TCGA type (``cells.tcga_type``) with at least ``min_lines`` cell lines that have measurements
    (``MIN_LINES``): every pair of its lines is TEST. Validation is whole other tissues, drawn in an order seeded by
    the fold until they hold ``val_fraction`` of the other typed lines, so that epochs are chosen on tissues the model
    has not seen, as the test is scored. Smaller types, lines of no type (``NOT_A_TISSUE``) and the rest train; the
    types too small to hold out are logged. Refused for a dataset whose cell lines have no TCGA type.

    Epochs are chosen by RMSE, as in leave-cell-out: the held-out entities are cell lines, and the engine has no
    per-cell-line validation PCC; per-drug PCC would select for ranking the validation lines within a drug, which is
    not the per-cell-line question the report asks. (Not measured against per-drug PCC selection here.)"""

    name = "tissue-out"
    title = "leave-tissue-out (LTO)"
    aliases = ("LTO",)
    holds_out = "cell"
    tissue_table = True

    def __init__(self, min_lines: int = MIN_LINES) -> None:
        self.min_lines = min_lines

    def tissues(self, measured: np.ndarray, cell_groups: np.ndarray) -> tuple[dict[str, int], dict[str, int]]:
        """Cell lines with measurements per TCGA type: of the types held out, and of those too small to be."""
        names, sizes = np.unique(cell_groups[measured.any(axis=0)], return_counts=True)
        typed = {str(t): int(n) for t, n in zip(names, sizes, strict=True) if t not in NOT_A_TISSUE}
        held = {t: n for t, n in typed.items() if n >= self.min_lines}
        return held, {t: n for t, n in typed.items() if n < self.min_lines}

    def folds(
        self, measured: np.ndarray, drug_ids: np.ndarray, cell_groups: np.ndarray, seed: int, shares: Shares
    ) -> list[Fold]:
        held, small = self.tissues(measured, cell_groups)
        if not held and not small:
            raise FoldSelectionError(f"--split {self.name}: the dataset gives no cell line a TCGA type (tcga_type in "
                                     "its cells table); use cell-out, or add the types")  # fmt: skip
        if not held:
            largest = max(small, key=small.__getitem__)
            raise FoldSelectionError(f"--split {self.name}: no TCGA type has {self.min_lines} cell lines with "
                                     f"measurements (largest: {largest}, {small[largest]}); use cell-out")  # fmt: skip
        log.info("%s: %d folds, one per TCGA type with >= %d cell lines; %d types too small to hold out (trained on): "
                 "%s", self.name, len(held), self.min_lines, len(small),
                 ", ".join(f"{t} ({n})" for t, n in small.items()) or "none")  # fmt: skip
        sizes = held | small
        return [self._fold(measured, cell_groups, tissue, sizes, seed, shares.val_fraction) for tissue in held]

    def _fold(
        self, measured: np.ndarray, cell_groups: np.ndarray, tissue: str, sizes: dict[str, int], seed: int,
        val: float,
    ) -> Fold:  # fmt: skip
        others = [t for t in sizes if t != tissue]
        wanted = max(1, round(val * sum(sizes[t] for t in others)))
        val_tissues: list[str] = []
        for i in rng(self.name, seed, tissue).permutation(len(others)):
            if sum(sizes[t] for t in val_tissues) >= wanted:
                break
            val_tissues.append(others[i])
        roles = measured.astype(np.int8) * TRAIN
        roles[:, np.isin(cell_groups, val_tissues)] *= VAL
        roles[:, cell_groups == tissue] *= TEST
        for role, verb in ((TRAIN, "train"), (VAL, "validate")):
            if not (roles == role).any():
                raise FoldSelectionError(f"--split {self.name}: holding out {tissue} leaves no other tissue to "
                                         f"{verb} on; use cell-out")  # fmt: skip
        return Fold(f"{self.name}-seed{seed}-{tissue}", self.name, seed, roles)
