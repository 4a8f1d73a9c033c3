"""Pilot-K: a new drug screened on K cell lines first; can a model predict the rest of its cell lines from them?"""

from __future__ import annotations

import numpy as np

from fused_train.seeding import rng
from fused_train.splits.base import Shares, Split, Unit
from fused_train.splits.folds import PILOT, TEST, VAL, Fold, FoldSelectionError
from fused_train.splits.lodo import Lodo

PILOT_SHOTS = (5, 10, 20, 40)
TISSUE = "-tissue"
"""Suffix of the pilot splits whose pilot lines are spread across tissues."""


class Pilot(Split):
    """LODO with a pilot screen. Of the held-out drug, ``shots`` measured cell lines drawn at random (seeded by the
    fold) are PILOT, revealed to the predictor with their ln IC50; the rest are TEST. Each validation drug gets the
    same: ``shots`` PILOT cell lines, the rest VAL, so that choices are made as the test is scored. Models that do not
    read PILOT cells (every model but ``matching``, and the naive predictors) see plain LODO scored on the non-pilot
    lines.

    With ``across_tissues`` (``pilot-K-tissue``) each pilot is drawn across tissues: every TCGA type gets its share of
    the K lines in proportion to the drug's measured lines of that type (largest remainders), drawn at random within
    the type (lines without a type are one more group). Refused for a dataset whose cell lines have no TCGA type."""

    holds_out = "drug"
    selection_metric = Lodo.selection_metric
    saves_models_by_default = False  # one model per drug

    def __init__(self, shots: int, across_tissues: bool = False) -> None:
        self.shots, self.across_tissues = shots, across_tissues
        self.name = f"pilot-{shots}{TISSUE if across_tissues else ''}"
        self.title = f"LODO with a {shots}-cell-line pilot screen{' across tissues' if across_tissues else ''}"

    @property
    def role_unit(self) -> Unit:
        return "pair"  # the pilot lines of a held-out or validation drug have another role than its other lines

    def folds(
        self, measured: np.ndarray, drug_ids: np.ndarray, cell_groups: np.ndarray, seed: int, shares: Shares
    ) -> list[Fold]:
        if self.across_tissues and (cell_groups == "").all():
            raise FoldSelectionError(f"--split {self.name}: the dataset gives no cell line a TCGA type (tcga_type) to "
                                     f"spread the pilot over; use pilot-{self.shots}")  # fmt: skip
        lodo = Lodo()
        return [
            self._pilot(lodo.fold(measured, drug_ids, d, seed, shares.val_fraction), drug_ids, cell_groups)
            for d in range(len(drug_ids))
        ]

    def _pilot(self, lodo: Fold, drug_ids: np.ndarray, cell_groups: np.ndarray) -> Fold:
        """The LODO fold with PILOT lines of the held-out drug (from its TEST cells) and of each validation drug (from
        its VAL cells), drawn by a generator seeded by the fold."""
        roles = lodo.roles.copy()
        held_out = int(np.flatnonzero((roles == TEST).any(axis=1))[0])
        draw = rng(f"pilot{TISSUE if self.across_tissues else ''}", lodo.seed, str(drug_ids[held_out]), self.shots)
        for drug in [held_out, *np.flatnonzero((roles == VAL).any(axis=1))]:
            cells = np.flatnonzero(roles[drug] > 0)
            if drug == held_out and len(cells) < self.shots + 3:
                raise FoldSelectionError(
                    f"drug {str(drug_ids[drug])!r} has {len(cells)} measured cell lines; a pilot-{self.shots} fold "
                    f"needs at least {self.shots + 3} (the pilot and 3 to score); choose a smaller pilot"
                )
            n = min(self.shots, len(cells))
            if self.across_tissues:
                roles[drug, _spread(cells, cell_groups, n, draw)] = PILOT
            else:
                roles[drug, draw.choice(cells, size=n, replace=False)] = PILOT
        return Fold(f"{self.name}-seed{lodo.seed}-{drug_ids[held_out]}", self.name, lodo.seed, roles)


def _spread(cells: np.ndarray, cell_groups: np.ndarray, n: int, draw: np.random.Generator) -> np.ndarray:
    """``n`` of ``cells``, each group's share in proportion to its size (largest remainders, ties in random order),
    drawn at random within the group."""
    groups, sizes = np.unique(cell_groups[cells], return_counts=True)
    quota = n * sizes / sizes.sum()
    take = np.floor(quota).astype(int)
    shuffled = draw.permutation(len(groups))
    extra = shuffled[np.argsort(-(quota - take)[shuffled], kind="stable")][: n - take.sum()]
    take[extra] += 1
    members = [cells[cell_groups[cells] == g] for g in groups]
    return np.concatenate([draw.choice(m, size=t, replace=False) for m, t in zip(members, take, strict=True)])
