"""Trees: a gradient-boosted tree ensemble (LightGBM) on the same drug and cell inputs: the baseline to beat.

DrEval (Bernett et al. 2026) finds no deep model significantly better than properly tuned tree ensembles; this is
ours, tuned per fold. A pair's features are

    drug:  the first ``drug_components`` principal components of the drug store's embedding, and the target pathway
           (one column per pathway: 1 if the drug is annotated with it)
    cell:  the first ``cell_components`` principal components of the cell tokens side by side (each feature
           standardised), and the cell line's mean ln IC50 over the TRAIN rows (NaN without TRAIN rows)

with every statistic (principal axes, standardisation, means) from TRAIN rows or TRAIN entities only. For each
candidate number of leaves, boosting stops when the validation metric (``tune_by``: RMSE, or the validation drugs'
mean per-drug PCC, what LODO measures) has not improved for ``stop_rounds`` rounds; the candidate with the best
validation metric predicts. The held-out drug enters only through its own input features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fused_train.data import Inputs
from fused_train.models.fitted import FittedModel
from fused_train.models.registry import ModelError, check_candidates, option
from fused_train.splits import TRAIN, VAL, Fold

TUNE_BY = ("rmse", "drug-pcc")


def mean_drug_pcc(pred: np.ndarray, truth: np.ndarray, drug: np.ndarray) -> float:
    """Mean over drugs of the PCC of their rows (drugs with < 3 rows or no spread are left out; NaN if none is left)."""
    sums = {k: np.bincount(drug, v) for k, v in
            {"n": np.ones_like(pred), "p": pred, "t": truth, "pp": pred * pred, "tt": truth * truth,
             "pt": pred * truth}.items()}  # fmt: skip
    n = sums["n"]
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sums["pt"] - sums["p"] * sums["t"] / n
        var = (sums["pp"] - sums["p"] ** 2 / n) * (sums["tt"] - sums["t"] ** 2 / n)
        pcc = cov / np.sqrt(var)
    ok = (n >= 3) & (var > 1e-12)
    return float(pcc[ok].mean()) if ok.any() else float("nan")


@dataclass(frozen=True)
class TreesOptions:
    leaves: tuple[int, ...] = option((15, 63), "Candidate numbers of leaves per tree; chosen on validation RMSE.")
    shrinkage: float = option(0.1, "Boosting learning rate (LightGBM's learning_rate; --lr is the networks').")
    max_rounds: int = option(1000, "Most boosting rounds; validation RMSE stops earlier.")
    stop_rounds: int = option(20, "Rounds without a better validation RMSE before boosting stops.")
    drug_components: int = option(16, "Principal components of the drug embedding used as features.")
    cell_components: int = option(32, "Principal components of the cell inputs used as features.")
    tune_by: str = option("rmse", "What stops boosting and picks --leaves on validation rows: rmse, or drug-pcc (the "
                          "mean per-drug PCC of the validation drugs: what LODO measures).")  # fmt: skip

    def __post_init__(self) -> None:
        check_candidates("leaves", self.leaves, 2)
        if self.tune_by not in TUNE_BY:
            raise ModelError(f"--tune-by {self.tune_by!r}: choose one of {', '.join(TUNE_BY)}")
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
        val_drug = rows["val"][0]

        def loss(pred: np.ndarray) -> float:  # lower is better
            if o.tune_by == "rmse":
                return float(np.sqrt(np.average((pred - y_val) ** 2, weights=w_val)))
            return -mean_drug_pcc(pred, y_val, val_drug)

        def drug_pcc(pred: np.ndarray, _: Any) -> tuple[str, float, bool]:
            return "drug-pcc", -loss(pred), True

        best: tuple[float, Any, dict[str, Any]] = (np.inf, None, {})
        fit_set = lightgbm.Dataset(x_train, y_train, weight=w_train, free_raw_data=False)
        val_set = lightgbm.Dataset(x_val, y_val, weight=w_val, reference=fit_set)
        for leaves in o.leaves:
            params = {"objective": "regression", "learning_rate": o.shrinkage, "num_leaves": leaves,
                      "seed": fold.seed, "deterministic": True, "force_row_wise": True, "verbose": -1,
                      "metric": "l2" if o.tune_by == "rmse" else "None"}  # fmt: skip
            model = lightgbm.train(
                params, fit_set, o.max_rounds, valid_sets=[val_set],
                feval=drug_pcc if o.tune_by == "drug-pcc" else None,
                callbacks=[lightgbm.early_stopping(o.stop_rounds, verbose=False)],
            )  # fmt: skip
            score = loss(model.predict(x_val, num_iteration=model.best_iteration))
            if score < best[0]:
                best = (score, model, {"leaves": leaves, "rounds": int(model.best_iteration)})
        score, model, chosen = best
        d, c = np.indices(count.shape).reshape(2, -1)
        x_all = np.hstack([drug_x[d], cell_x[c]])
        grid = model.predict(x_all, num_iteration=model.best_iteration).reshape(count.shape).astype(np.float32)
        return grid, chosen | {"validation RMSE" if o.tune_by == "rmse" else "validation per-drug PCC": abs(score)}

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
