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
from fused_train.models.registry import ModelError, check_candidates, option
from fused_train.scaling import standardise
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


@dataclass(frozen=True)
class Components:
    """The first principal axes of some rows' features (each standardised on those rows): a fold's feature map."""

    mean: np.ndarray
    sd: np.ndarray
    axes: np.ndarray  # (n, features)

    @classmethod
    def fit(cls, x: np.ndarray, n: int) -> Components:
        mean, sd = standardise(x)  # a feature as large as RDKit's Ipc is scaled, not zeroed
        _, _, axes = np.linalg.svd((x - mean) / sd, full_matrices=False)
        return cls(mean, sd, axes[:n])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.sd @ self.axes.T


class TreesFitted(Fitted):
    """A fold's booster and the feature maps it was trained with (principal axes of the TRAIN drugs and cell lines,
    the pathway vocabulary, the TRAIN mean ln IC50 of each cell line)."""

    BOOSTER, ARRAYS, META = "booster.txt", "features.safetensors", "features.json"
    annotations = ("target_pathway",)

    def __init__(
        self, booster: Any, drug_map: Components, cell_map: Components, pathways: list[str], cell_ids: np.ndarray,
        cell_level: np.ndarray, tokens: list[str], choices: dict[str, Any],
    ) -> None:  # fmt: skip
        self.booster, self.drug_map, self.cell_map, self.pathways = booster, drug_map, cell_map, pathways
        self.cell_ids, self.cell_level, self.tokens, self.choices = cell_ids, cell_level, tokens, choices

    def features(self, query: Query) -> np.ndarray:
        """(drugs x cells, features): one row per pair, drug-major (a pathway not in the vocabulary adds nothing)."""
        if not isinstance(query.drug, np.ndarray):
            raise PredictError("trees reads dense drug embeddings; the query's drugs are atom graphs")
        given = query.drug_annotations.get("target_pathway") or [frozenset()] * len(query.drug_ids)
        onehot = np.array([[p in s for p in self.pathways] for s in given], dtype=np.float64)
        drug_x = np.hstack([self.drug_map(query.drug), onehot.reshape(len(given), -1)])
        cells = np.hstack([query.cells[name] for name in self.tokens]).astype(np.float64)
        rows = pd.Index(self.cell_ids).get_indexer(query.cell_ids)  # a new cell line has no TRAIN mean: NaN
        level = np.where(rows >= 0, self.cell_level[rows], np.nan)
        cell_x = np.hstack([self.cell_map(cells), level[:, None]])
        d, c = np.indices((len(drug_x), len(cell_x))).reshape(2, -1)
        return np.hstack([drug_x[d], cell_x[c]])

    def predict(self, query: Query) -> np.ndarray:
        pred = self.booster.predict(self.features(query), num_iteration=self.booster.best_iteration)
        return pred.reshape(len(query.drug_ids), len(query.cell_ids)).astype(np.float32)

    def save(self, folder: Path) -> list[str]:
        (folder / self.BOOSTER).write_text(self.booster.model_to_string(num_iteration=self.booster.best_iteration))
        arrays = {f"{name}.{part}": getattr(m, part) for name, m in (("drug", self.drug_map), ("cell", self.cell_map))
                  for part in ("mean", "sd", "axes")} | {"cell_level": self.cell_level}  # fmt: skip
        save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}, str(folder / self.ARRAYS))
        meta = {"pathways": self.pathways, "cell_ids": self.cell_ids.tolist(), "tokens": self.tokens,
                "choices": self.choices}  # fmt: skip
        (folder / self.META).write_text(json.dumps(meta))
        return [self.BOOSTER, self.ARRAYS, self.META]

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any], device: str) -> TreesFitted:
        import lightgbm

        booster = lightgbm.Booster(model_str=(folder / cls.BOOSTER).read_text())
        a = load_file(str(folder / cls.ARRAYS))
        meta = json.loads((folder / cls.META).read_text())
        maps = [Components(a[f"{n}.mean"], a[f"{n}.sd"], a[f"{n}.axes"]) for n in ("drug", "cell")]
        return cls(booster, *maps, meta["pathways"], np.array(meta["cell_ids"], dtype=str), a["cell_level"],
                   meta["tokens"], meta["choices"])  # fmt: skip


class Trees(FittedModel):
    Options = TreesOptions
    drug_inputs = ("dense",)
    fitted_class = TreesFitted

    def fit(self, inputs: Inputs, fold: Fold) -> TreesFitted:
        import lightgbm  # imported here: only this model needs it

        count, target = inputs.grid()
        train, val = (fold.roles == TRAIN) & (count > 0), (fold.roles == VAL) & (count > 0)
        if not val.any():
            raise ModelError(f"fold {fold.name} has no validation rows to stop boosting and choose --leaves on")
        o = self.options
        drug_map = Components.fit(inputs.drug[train.any(axis=1)], o.drug_components)
        cells = np.hstack(list(inputs.cells.values())).astype(np.float64)
        cell_map = Components.fit(cells[train.any(axis=0)], o.cell_components)
        weight = count * train
        n = weight.sum(axis=0)
        cell_level = np.divide((weight * target).sum(axis=0), n, out=np.full(len(n), np.nan), where=n > 0)
        pathways = sorted(set().union(*inputs.drug_annotations["target_pathway"]))
        unfitted = TreesFitted(None, drug_map, cell_map, pathways, inputs.cell_ids, cell_level, list(inputs.cells), {})
        features = unfitted.features(Query.of(inputs))
        x_train, x_val = (features[np.flatnonzero(part.ravel())] for part in (train, val))
        y_train, y_val = target[train], target[val]
        w_train, w_val = count[train], count[val]
        val_drug = np.nonzero(val)[0]

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
        choices = chosen | {"validation RMSE" if o.tune_by == "rmse" else "validation per-drug PCC": abs(score)}
        unfitted.booster, unfitted.choices = model, choices
        return unfitted
