"""Trees: a gradient-boosted tree ensemble (LightGBM) on the same drug and cell inputs: the baseline to beat.

DrEval (Bernett et al. 2026) finds no deep model significantly better than properly tuned tree ensembles; this is
ours, tuned per fold. A pair's features are

    drug:  the first ``drug_components`` principal components of the drug store's embedding, and the target pathway
           (one column per pathway: 1 if the drug is annotated with it)
    cell:  the first ``cell_components`` principal components of the cell tokens side by side (each feature
           standardised), and the cell line's mean ln IC50 over the TRAIN rows (NaN without TRAIN rows)

with every statistic (principal axes, standardisation, means) from TRAIN rows or TRAIN entities only. For each
candidate number of leaves, boosting stops when the validation RMSE has not improved for ``stop_rounds`` rounds; the
candidate with the lowest validation RMSE predicts. The held-out drug enters only through its own input features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fused_train.data import Inputs
from fused_train.models.fitted import FittedModel
from fused_train.models.registry import ModelError, check_candidates, option
from fused_train.splits import TRAIN, VAL, Fold


@dataclass(frozen=True)
class TreesOptions:
    leaves: tuple[int, ...] = option((15, 63), "Candidate numbers of leaves per tree; chosen on validation RMSE.")
    shrinkage: float = option(0.1, "Boosting learning rate (LightGBM's learning_rate; --lr is the networks').")
    max_rounds: int = option(1000, "Most boosting rounds; validation RMSE stops earlier.")
    stop_rounds: int = option(20, "Rounds without a better validation RMSE before boosting stops.")
    drug_components: int = option(16, "Principal components of the drug embedding used as features.")
    cell_components: int = option(32, "Principal components of the cell inputs used as features.")

    def __post_init__(self) -> None:
        check_candidates("leaves", self.leaves, 2)
        if self.max_rounds < 1 or self.stop_rounds < 1 or self.shrinkage <= 0:
            raise ModelError("--max-rounds and --stop-rounds must be >= 1 and --shrinkage > 0")


def components(x: np.ndarray, fit_rows: np.ndarray, n: int) -> np.ndarray:
    """``x`` projected on the first ``n`` principal axes of its ``fit_rows`` (features standardised on them)."""
    mean, sd = x[fit_rows].mean(axis=0), x[fit_rows].std(axis=0)
    scaled = (x - mean) / np.where(sd > 0, sd, 1.0)
    _, _, axes = np.linalg.svd(scaled[fit_rows], full_matrices=False)
    return scaled @ axes[:n].T


class Trees(FittedModel):
    Options = TreesOptions
    drug_inputs = ("dense",)

    def predict(self, inputs: Inputs, fold: Fold) -> tuple[np.ndarray, dict[str, Any]]:
        import lightgbm  # imported here: only this model needs it

        count, target = inputs.grid()
        train, val = (fold.roles == TRAIN) & (count > 0), (fold.roles == VAL) & (count > 0)
        if not val.any():
            raise ModelError(f"fold {fold.name} has no validation rows to stop boosting and choose --leaves on")
        drug_x, cell_x = self._features(inputs, train, count, target)
        rows = {"train": np.nonzero(train), "val": np.nonzero(val)}

        def table(part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            d, c = rows[part]
            return np.hstack([drug_x[d], cell_x[c]]), target[d, c], count[d, c]

        x_train, y_train, w_train = table("train")
        x_val, y_val, w_val = table("val")
        o = self.options
        best: tuple[float, Any, dict[str, Any]] = (np.inf, None, {})
        fit_set = lightgbm.Dataset(x_train, y_train, weight=w_train, free_raw_data=False)
        val_set = lightgbm.Dataset(x_val, y_val, weight=w_val, reference=fit_set)
        for leaves in o.leaves:
            params = {"objective": "regression", "learning_rate": o.shrinkage, "num_leaves": leaves,
                      "seed": fold.seed, "deterministic": True, "force_row_wise": True, "verbose": -1}  # fmt: skip
            model = lightgbm.train(
                params, fit_set, o.max_rounds, valid_sets=[val_set],
                callbacks=[lightgbm.early_stopping(o.stop_rounds, verbose=False)],
            )  # fmt: skip
            rmse = float(np.sqrt(np.average((model.predict(x_val) - y_val) ** 2, weights=w_val)))
            if rmse < best[0]:
                best = (rmse, model, {"leaves": leaves, "rounds": int(model.best_iteration)})
        _, model, chosen = best
        d, c = np.indices(count.shape).reshape(2, -1)
        grid = model.predict(np.hstack([drug_x[d], cell_x[c]])).reshape(count.shape).astype(np.float32)
        return grid, chosen | {"validation RMSE": best[0]}

    def _features(
        self, inputs: Inputs, train: np.ndarray, count: np.ndarray, target: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per drug and per cell line, the feature columns described in the module docstring."""
        train_drugs, train_cells = train.any(axis=1), train.any(axis=0)
        pathways = inputs.drug_annotations["target_pathway"]
        vocabulary = sorted(set().union(*pathways))
        onehot = np.array([[p in s for p in vocabulary] for s in pathways], dtype=np.float64).reshape(len(pathways), -1)
        drug_x = np.hstack([components(inputs.drug, train_drugs, self.options.drug_components), onehot])
        cells = np.hstack(list(inputs.cells.values())).astype(np.float64)
        weight = count * train
        n = weight.sum(axis=0)
        cell_mean = np.divide((weight * target).sum(axis=0), n, out=np.full(len(n), np.nan), where=n > 0)
        cell_x = np.hstack([components(cells, train_cells, self.options.cell_components), cell_mean[:, None]])
        return drug_x, cell_x
