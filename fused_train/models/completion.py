"""Completion: for drug-known (LPO), the drug x cell-line matrix filled in from its measured part (soft-impute).

In drug-known every drug and every cell line has measured pairs in training, and a cell line's responses to the other
drugs say which drugs it is unusually sensitive to: the matrix of responses is close to low rank. On the per-drug scale
of ``neighbours.Standardised`` (z(d, c) = (y(d, c) - level_d) / scale_d, base(c) the cell-line profile, r = z - base
what is specific to a drug), the fitting rows' residuals R (observed on the measured grid cells M) are completed by
soft-impute (Mazumder, Hastie & Tibshirani 2010): the X minimising the squared error on M plus lambda times its nuclear
norm, found by iterating X <- S_lambda(M * R + (1 - M) * X), where S_lambda soft-thresholds the singular values. Then

    ln IC50(d, c) = level_d + scale_d * (base(c) + X(d, c)).

lambda, relative to the largest singular value of the fitting residuals, is chosen per fold by the mean per-drug PCC
on validation rows with TRAIN rows fitted; the prediction then refits on TRAIN + VAL rows with it. TEST rows are never
read. The model predicts from responses, not features: only drugs and cell lines with fitting rows, by id; a fold that
holds out a whole drug or cell line (LODO, cell-out) is refused (``neighbours`` predicts new drugs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from fused_train.data import Inputs
from fused_train.models.base import Fitted, PredictError, Query
from fused_train.models.fitted import FittedModel
from fused_train.models.neighbours import Standardised, row_pcc, validation_queries
from fused_train.models.registry import BEST_FOR_NEW_DRUGS, ModelError, check_candidates, option
from fused_train.splits import TEST, TRAIN, VAL, Fold


@dataclass(frozen=True)
class CompletionOptions:
    penalty: tuple[float, ...] = option(
        (0.02, 0.04, 0.07, 0.1, 0.14, 0.2, 0.3),
        "Candidate nuclear-norm penalties (soft-impute's lambda), relative to the largest singular value of the "
        "training residuals; chosen on validation.",
    )
    tolerance: float = option(1e-7, "Soft-impute stops when an iteration changes X by less than this (relative).")
    max_iterations: int = option(500, "Soft-impute iterations at most per penalty.")

    def __post_init__(self) -> None:
        check_candidates("penalty", self.penalty, 0)
        if not (np.isfinite(self.tolerance) and self.tolerance > 0):
            raise ModelError(f"--tolerance must be a finite number > 0, not {self.tolerance}")
        if self.max_iterations < 1:
            raise ModelError(f"--max-iterations must be >= 1, not {self.max_iterations}")


def soft_impute(
    residual: np.ndarray, measured: np.ndarray, penalty: float, options: CompletionOptions,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:  # fmt: skip
    """The completed residual matrix at the absolute ``penalty`` (soft-impute's lambda), from ``start`` (zeros if
    None), and the iterations it took. ``residual`` is 0 where not ``measured`` (a 0/1 matrix)."""
    x = np.zeros_like(residual) if start is None else start
    for iteration in range(1, options.max_iterations + 1):
        u, s, vt = np.linalg.svd(measured * residual + (1 - measured) * x, full_matrices=False)
        s = np.maximum(s - penalty, 0.0)
        keep = s > 0
        new = (u[:, keep] * s[keep]) @ vt[keep]
        change = float(((new - x) ** 2).sum())
        x = new
        if change <= options.tolerance * max(float((x**2).sum()), 1e-12):
            return x, iteration
    return x, options.max_iterations


def complete(fitted: Standardised, relative: float, options: CompletionOptions) -> tuple[np.ndarray, int]:
    """(A, C) ln IC50 of every drug and cell line with fitting rows, the residuals completed at the
    ``relative`` penalty; and the iterations taken."""
    top = np.linalg.svd(fitted.residual, compute_uv=False)[0]
    x, iterations = soft_impute(fitted.residual, fitted.measured, relative * top, options)
    z = fitted.base[None, :] + x
    return fitted.level[:, None] + fitted.scale[:, None] * z, iterations


class CompletionFitted(Fitted):
    """A fold's completed grid: ln IC50 for every drug and cell line it was fitted on, looked up by id."""

    ARRAYS, META = "completion.safetensors", "completion.json"

    def __init__(self, drug_ids: np.ndarray, cell_ids: np.ndarray, grid: np.ndarray, choices: dict[str, Any]) -> None:
        self.drug_ids, self.cell_ids, self.grid, self.choices = drug_ids, cell_ids, grid, choices

    def predict(self, query: Query) -> np.ndarray:
        rows = pd.Index(self.drug_ids).get_indexer(query.drug_ids)
        columns = pd.Index(self.cell_ids).get_indexer(query.cell_ids)
        if (rows < 0).any():
            raise PredictError(
                f"drug {str(query.drug_ids[rows < 0][0])!r} is not one the model was fitted on: completion fills in "
                f"responses of known drugs; for a new drug use --model {BEST_FOR_NEW_DRUGS}"
            )
        if (columns < 0).any():
            raise PredictError(
                f"cell line {str(query.cell_ids[columns < 0][0])!r} is not one the model was fitted on: completion "
                "fills in responses of known cell lines; for a new cell line use a model of omics (--model fused)"
            )
        return self.grid[np.ix_(rows, columns)]

    def save(self, folder: Path) -> list[str]:
        save_file({"grid": np.ascontiguousarray(self.grid)}, str(folder / self.ARRAYS))
        meta = {"drug_ids": self.drug_ids.tolist(), "cell_ids": self.cell_ids.tolist(), "choices": self.choices}
        (folder / self.META).write_text(json.dumps(meta))
        return [self.ARRAYS, self.META]

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any], device: str) -> CompletionFitted:
        grid = load_file(str(folder / cls.ARRAYS))["grid"]
        meta = json.loads((folder / cls.META).read_text())
        drug_ids, cell_ids = np.array(meta["drug_ids"], dtype=str), np.array(meta["cell_ids"], dtype=str)
        if grid.shape != (len(drug_ids), len(cell_ids)):
            raise ValueError(f"{folder / cls.ARRAYS} does not match the ids in {folder / cls.META}")
        return cls(drug_ids, cell_ids, grid, meta["choices"])


class Completion(FittedModel):
    Options = CompletionOptions
    drug_inputs = ("dense", "graph")  # reads responses only: any drug store will do
    fitted_class = CompletionFitted
    saves_by_default = True  # one grid per fold, on splits of a handful of folds (drug-known)

    def fit(self, inputs: Inputs, fold: Fold) -> CompletionFitted:
        count, target = inputs.grid()
        target = target.astype(np.float64)
        _check_every_entity_has_training_rows(fold, count)
        relative, score, n_drugs = self._choose(fold, count, target)
        fitted = Standardised.fit(count * np.isin(fold.roles, (TRAIN, VAL)), target)
        grid, iterations = complete(fitted, relative, self.options)
        choices = {"penalty": relative, "validation per-drug PCC": score, "validation drugs": n_drugs,
                   "iterations": iterations}  # fmt: skip
        return CompletionFitted(inputs.drug_ids, inputs.cell_ids, grid.astype(np.float32), choices)

    def _choose(self, fold: Fold, count: np.ndarray, target: np.ndarray) -> tuple[float, float, int]:
        """The penalty with the best mean per-drug PCC on validation rows, TRAIN rows fitted: the candidates from
        the largest down, each soft-impute started from the previous one's solution (a warm-started path)."""
        validation, queries = validation_queries(fold, count, "the penalty")
        fitted = Standardised.fit(count * (fold.roles == TRAIN), target)
        top = np.linalg.svd(fitted.residual, compute_uv=False)[0]
        best, x = (-np.inf, 0.0), None
        for relative in sorted(self.options.penalty, reverse=True):
            x, _ = soft_impute(fitted.residual, fitted.measured, relative * top, self.options, start=x)
            pred = fitted.base[None, :] + x[queries]  # per-drug PCC does not depend on the level and scale
            score = float(np.nanmean(row_pcc(pred, target[queries], validation[queries])))
            if score > best[0]:
                best = (score, relative)
        if not np.isfinite(best[0]):
            raise ModelError(f"fold {fold.name}: no validation drug has a defined PCC to choose the penalty on")
        return best[1], best[0], len(queries)


def _check_every_entity_has_training_rows(fold: Fold, count: np.ndarray) -> None:
    """Completion cannot predict a drug or cell line it has no training pairs of: refuse such a fold."""
    held = np.isin(fold.roles, (VAL, TEST)) & (count > 0)
    train = (fold.roles == TRAIN) & (count > 0)
    for axis, what in ((1, "drug"), (0, "cell line")):
        lacking = held.any(axis=axis) & ~train.any(axis=axis)
        if lacking.any():
            raise ModelError(
                f"fold {fold.name}: {lacking.sum()} {what}(s) with validation or test pairs have no training pairs; "
                "completion fills in pairs of known drugs and cell lines only: use --split drug-known (for new drugs "
                f"--model {BEST_FOR_NEW_DRUGS})"
            )
