"""Naive predictors, reported beside every model: any model should beat them, and often does not by much.

All are fitted on the fold's non-test grid cells (TRAIN and VAL: they select nothing, so validation rows are just more
training data for them), each measurement counted once. Where an entity has no fitting rows (the held-out drug of a
LODO fold, a held-out cell line), its mean falls back to the global mean and its offset to zero.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fused_train.data import Inputs
from fused_train.engine import Execution
from fused_train.models.base import Model, Outcome
from fused_train.splits import TRAIN, VAL, Fold

NAIVE = ("global-mean", "drug-mean", "cell-mean", "mean-effects")


class NaiveOnly(Model):
    """``--model naive``: nothing to fit, a run of only the naive predictors (which every run reports anyway)."""

    @dataclass(frozen=True)
    class Options:
        pass

    drug_inputs: ClassVar[tuple[str, ...]] = ("dense", "graph")

    def run(
        self, inputs: Inputs, folds: list[Fold], execution: Execution, keep: bool, quiet: bool
    ) -> Iterator[Outcome]:
        for fold in folds:
            yield Outcome(fold, None, {})


def naive_predictions(count: np.ndarray, target: np.ndarray, roles: np.ndarray) -> dict[str, np.ndarray]:
    """Predicted ln IC50 on the whole (drugs x cells) grid for each naive predictor.

    ``count``: measurements per grid cell; ``target``: their mean; ``roles``: the fold's role grid.
    mean-effects = global mean + drug offset + cell-line offset, the offsets fitted one after the other:
    drug offset = mean residual of the drug after the global mean; cell offset = mean residual after both.
    """
    w = count * np.isin(roles, (TRAIN, VAL))
    total = w.sum()
    mu = float((w * target).sum() / total)

    def means(residual: np.ndarray, axis: int) -> np.ndarray:
        n = w.sum(axis=axis)
        s = (w * residual).sum(axis=axis)
        return np.divide(s, n, out=np.zeros_like(s), where=n > 0)

    drug_offset = means(target - mu, axis=1)
    cell_offset = means(target - mu, axis=0)
    effect_cell = means(target - mu - drug_offset[:, None], axis=0)
    shape = count.shape
    return {
        "global-mean": np.full(shape, mu, dtype=np.float32),
        "drug-mean": np.broadcast_to(mu + drug_offset[:, None], shape).astype(np.float32),
        "cell-mean": np.broadcast_to(mu + cell_offset[None, :], shape).astype(np.float32),
        "mean-effects": (mu + drug_offset[:, None] + effect_cell[None, :]).astype(np.float32),
    }
