"""The split interface: everything the trainer, the report and the plots need to know about a way to hold data out.

A split says which entity it holds out (``holds_out``), which validation metric chooses a fold's epoch when the
user gives none (``selection_metric``), what its per-entity metrics are per (``entity``), its label in tables and
plots (``title``), the other names it answers to (``aliases``, e.g. drevalpy's LDO), whether a run saves its fold
models by default, and its folds (``folds``). Adding a split = one module here + one line in ``registry.py``
(``docs/add-a-split.md``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import numpy as np

from fused_train.splits.folds import Fold

Unit = Literal["drug", "cell", "pair"]


@dataclass(frozen=True)
class Shares:
    """How much each fold sets aside; these defaults are every run's."""

    val_fraction: float = 0.1
    """Validation share of the training side: of its pairs, drugs or cell lines, by split."""
    test_fraction: float = 0.05
    """Test share of the pairs, where a split draws test pairs at random (drug-known)."""
    n_cell_folds: int = 5
    """Folds of leave-cell-out."""


class Split(ABC):
    """Base class of all splits. Subclasses set ``name``, ``title``, ``holds_out`` and implement ``folds``."""

    name: str
    """What ``--split`` and ``config.json`` call it; fold names start with it."""
    title: str
    """Its label in report tables and figure panels."""
    holds_out: Unit
    """What a fold's test entities are: whole drugs, whole cell lines, or single (drug, cell line) pairs."""
    aliases: tuple[str, ...] = ()
    """Other names ``--split`` and ``RunSpec`` accept (any case); ``config.json`` records ``name``."""
    selection_metric: str = "rmse"
    """The validation metric (``engine.SELECT_BY``) that chooses a fold's epoch under ``--select-by auto``."""
    saves_models_by_default: bool = True
    """Whether ``fused-train run`` saves each fold's trained model unless told (a split with one fold per drug has
    too many to keep)."""
    benchmark: bool = True
    """Offered by ``--split`` (``fit``, the split of ``fused-train fit``, is not)."""
    tissue_table: bool = False
    """Whether the report breaks the split's results down per TCGA type in a table of its own."""

    @property
    def entity(self) -> str:
        """The column per-entity metrics group by: per cell line where cell lines are held out, else per drug."""
        return "cell_id" if self.holds_out == "cell" else "drug_id"

    @property
    def role_unit(self) -> Unit:
        """The unit that has a single role in a fold: ``fused-train splits --export`` writes one row per such unit."""
        return self.holds_out

    @abstractmethod
    def folds(
        self, measured: np.ndarray, drug_ids: np.ndarray, cell_groups: np.ndarray, seed: int, shares: Shares
    ) -> list[Fold]:
        """The folds of one seed. ``measured`` (drugs x cells, bool) says which grid cells have a label,
        ``cell_groups`` gives each cell line's TCGA type ("" if unknown); every random draw is seeded by the split's
        name, ``seed`` and what the fold holds out (``fused_train.seeding.rng``), so a fold never depends on the
        others."""
