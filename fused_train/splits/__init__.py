"""Train / validation / test roles of every measured (drug, cell line) grid cell, per fold.

A fold is a role grid (drugs x cells, int8): TRAIN, VAL, TEST, PILOT, or UNUSED where nothing was measured
(``folds.py``). A split is an object (``base.py``: what it holds out, how it chooses epochs, its per-entity metrics,
label, aliases and folds), one module each, listed in ``registry.py``. Validation is carved from the training side
only; it drives early stopping and model selection, so the test entities never influence training, scaling or
selection. Every random draw is seeded by the fold's own name.

- ``drug-known`` (LPO): random grid cells, 5% test stratified by the cell line's TCGA type, validation from the rest.
- ``lodo`` (LDO): one fold per drug (= PubChem CID); validation drugs are drawn from the other drugs.
- ``cell-out`` (LCO): k folds of cell lines (stratified by TCGA type); validation cell lines from the training ones.
- ``tissue-out`` (LTO): one fold per TCGA type with at least 10 cell lines; validation is whole other tissues.
- ``pilot-K`` and ``pilot-K-tissue`` (K = 5, 10, 20, 40): LODO with K lines of the held-out drug revealed.
- ``fit`` (``fused-train fit``, not a benchmark split): every measured grid cell is TRAIN except a validation share
  for early stopping, drawn like drug-known's; no test.
"""

from fused_train.splits.base import Shares, Split
from fused_train.splits.folds import PILOT, TEST, TRAIN, UNUSED, VAL, Fold, FoldSelectionError, select
from fused_train.splits.pilot import PILOT_SHOTS, TISSUE
from fused_train.splits.registry import SPLITS, benchmark_splits, drug_blind, make_folds, pilot_shots, split_of

__all__ = [
    "PILOT",
    "PILOT_SHOTS",
    "SPLITS",
    "TEST",
    "TISSUE",
    "TRAIN",
    "UNUSED",
    "VAL",
    "Fold",
    "FoldSelectionError",
    "Shares",
    "Split",
    "benchmark_splits",
    "drug_blind",
    "make_folds",
    "pilot_shots",
    "select",
    "split_of",
]
