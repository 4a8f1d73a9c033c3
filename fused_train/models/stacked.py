"""Stacked: gradient-boosted trees that learn how to combine what ``neighbours`` reads, for drugs never seen.

``neighbours`` predicts an unseen drug q on its per-drug z-scale as base(c) + a P + b S_k + t T with four numbers
chosen per fold. This model learns that combination per pair instead: LightGBM predicts z(q, c) from

    pair:  base(c); the pathway profile P(q, c); the shared-target profile T(q, c); the similar-drug profiles
           S_k(q, c) for each k of ``ks`` (``neighbours.Standardised`` and its definitions)
    drug:  how much q has to go on: its largest and its mean top-10 similarity to the references, the number of
           references sharing its pathway and the summed Jaccard index of those sharing a target; its target
           pathway (one column per pathway)
    cell:  the first ``cell_components`` principal components of the cell tokens (fitted on TRAIN lines)

Training rows are the TRAIN drugs' measured lines, each drug's features computed **without that drug** (an inner
leave-one-drug-out among the TRAIN drugs: it is never its own reference, and base(c) is recomputed without it), so
that a training drug looks like an unseen one. Validation drugs get their features from the TRAIN drugs, as the
held-out drug does; the number of leaves and of boosting rounds are chosen on their mean per-drug PCC. The booster
is then refitted on TRAIN + VAL drugs (inner leave-one-out among them) with the chosen setting, and the held-out drug
is predicted from every TRAIN + VAL drug. Its level and scale (which set pooled metrics only) are its neighbours', as
in ``neighbours``. The held-out drug's labels are never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fused_train.data import Inputs
from fused_train.models.base import Fitted, Query
from fused_train.models.fitted import FittedModel
from fused_train.models.neighbours import (
    Standardised,
    load_profiles,
    query_positions,
    save_profiles,
    shared_annotations,
    similarity,
    top_k,
    unit_features,
)
from fused_train.models.registry import ModelError, check_candidates, option
from fused_train.models.trees import mean_drug_pcc
from fused_train.scaling import standardise
from fused_train.splits import TRAIN, VAL, Fold

TOP = 10
"""The number of nearest references whose mean similarity is a drug feature (how crowded q's neighbourhood is)."""


@dataclass(frozen=True)
class StackedOptions:
    ks: tuple[int, ...] = option((3, 10, 30), "Numbers of most similar drugs, one similar-drug profile each.")
    leaves: tuple[int, ...] = option((7, 15), "Candidate numbers of leaves per tree; chosen on validation drugs.")
    shrinkage: float = option(0.05, "Boosting learning rate (LightGBM's learning_rate).")
    max_rounds: int = option(1500, "Most boosting rounds; the validation drugs' per-drug PCC stops earlier.")
    stop_rounds: int = option(30, "Rounds without a better validation per-drug PCC before boosting stops.")
    cell_components: int = option(8, "Principal components of the cell inputs used as features.")
    min_leaf: int = option(200, "Fewest training pairs in a leaf (LightGBM's min_data_in_leaf).")

    def __post_init__(self) -> None:
        check_candidates("ks", self.ks, 1)
        check_candidates("leaves", self.leaves, 2)
        if min(self.max_rounds, self.stop_rounds, self.min_leaf) < 1 or self.shrinkage <= 0 or self.cell_components < 0:
            raise ModelError(
                "--max-rounds, --stop-rounds and --min-leaf must be >= 1, --shrinkage > 0, --cell-components >= 0"
            )


@dataclass(frozen=True)
class Drugs:
    """Every drug of a model: embeddings, annotations and the pathway vocabulary (fixed when the model is fitted)."""

    x: np.ndarray
    annotations: dict[str, list[frozenset[str]]]
    pathways: list[str]

    def extended(self, x: np.ndarray, annotations: dict[str, list[frozenset[str]]]) -> Drugs:
        """The same with more drugs appended (new drugs to predict)."""
        more = {c: [*self.annotations[c], *annotations[c]] for c in self.annotations}
        return Drugs(np.vstack([self.x, x]), more, self.pathways)


def features(
    drugs: Drugs, fitted: Standardised, queries: np.ndarray, ks: tuple[int, ...], cell_x: np.ndarray
) -> np.ndarray:
    """(Q, C, F) features of the query drugs (rows of ``drugs``) on every cell line (rows of ``cell_x``, its
    principal components), from the references (drugs with fitting rows in ``fitted``). A query that is itself a
    reference is left out of everything: its own rows count neither in base(c) nor in any profile, nor in the
    statistics its similarities are computed with (inner leave-one-drug-out)."""
    references = fitted.fitted
    measured, z = fitted.measured, fitted.residual + fitted.measured * fitted.base  # z where fitted, 0 elsewhere
    own = references[queries][:, None] * measured[queries]  # (Q, C): a reference query's own lines
    n = measured.sum(axis=0)[None, :] - own
    base = np.divide(z.sum(axis=0)[None, :] - own * z[queries], n, out=np.zeros_like(n), where=n > 0)

    def profile(weights: np.ndarray) -> np.ndarray:  # (Q, A) weights over references, never the query itself
        total = weights @ measured
        mean = np.divide(weights @ z, total, out=np.zeros_like(total), where=total > 0)
        return np.where(total > 0, mean - base, 0.0)

    sim = query_similarity(drugs.x, references, queries)
    pathway = shared_annotations(drugs.annotations["target_pathway"], False)[queries] * references
    targets = shared_annotations(drugs.annotations["targets"], True)[queries] * references
    pair = [base, profile(pathway), profile(targets)]
    pair += [profile(top_k(sim, references, k, queries)) for k in ks]
    nearest = np.sort(np.where(references[None, :] & (np.arange(sim.shape[1]) != queries[:, None]), sim, -1.0))
    onehot = [[p in s for p in drugs.pathways] for s in (drugs.annotations["target_pathway"][q] for q in queries)]
    drug = np.column_stack([nearest[:, -1], nearest[:, -TOP:].mean(axis=1), pathway.sum(axis=1), targets.sum(axis=1),
                            np.array(onehot, dtype=np.float64).reshape(len(queries), -1)])  # fmt: skip
    q, c = base.shape
    drug = np.broadcast_to(drug[:, None, :], (q, c, drug.shape[1]))
    return np.concatenate([np.stack(pair, axis=-1), drug, np.broadcast_to(cell_x[None], (q, c, cell_x.shape[1]))], -1)


def query_similarity(x: np.ndarray, references: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(Q, A) each query's row of ``neighbours.similarity``, for a query that is a reference with the embeddings
    standardised on the other references (what it would get were it held out)."""
    if np.isin(x, (0, 1)).all():  # Tanimoto: no statistics of the references
        return similarity(x, references)[queries]
    shared = unit_features(x, references)
    out = shared[queries] @ shared.T
    for i in np.flatnonzero(references[queries]):
        others = references.copy()
        others[queries[i]] = False
        unit = unit_features(x, others)
        out[i] = unit @ unit[queries[i]]
    return out


def neighbour_level(drugs: Drugs, fitted: Standardised, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per drug, the similarity-weighted mean level and scale of its k most similar references (``neighbours``)."""
    weights = top_k(similarity(drugs.x, fitted.fitted), fitted.fitted, k)
    total = weights.sum(axis=1)
    out = []
    for values in (fitted.level, fitted.scale):
        fallback = np.full(len(total), values[fitted.fitted].mean())
        out.append(np.divide(weights @ values, total, out=fallback, where=total > 0))
    return out[0], out[1]


def cell_components(cells: np.ndarray, fitting: np.ndarray, n: int) -> np.ndarray:
    """(C, n) every cell line on the first n principal axes of the fitting lines' features (each standardised on
    them); through the lines' Gram matrix, as there are far more features (genes) than lines."""
    mean, sd = standardise(cells[fitting])
    x = (cells - mean) / sd
    values, vectors = np.linalg.eigh(x[fitting] @ x[fitting].T)
    top = np.argsort(values)[::-1][:n]
    axes = x[fitting].T @ vectors[:, top] / np.sqrt(np.maximum(values[top], 1e-12))
    return x @ axes


class StackedFitted(Fitted):
    """A fold's booster and what its features are computed from: every drug of the fold (embedding, annotations,
    standardised fitting rows on the fold's cell lines), the cell lines' principal axes."""

    BOOSTER, ARRAYS, META = "booster.txt", "stacked.safetensors", "stacked.json"
    annotations = ("targets", "target_pathway")

    def __init__(
        self, booster: Any, drug_ids: np.ndarray, cell_ids: np.ndarray, drugs: Drugs, fitted: Standardised,
        cell_x: np.ndarray, ks: tuple[int, ...], choices: dict[str, Any],
    ) -> None:  # fmt: skip
        self.booster, self.drug_ids, self.cell_ids, self.drugs = booster, drug_ids, cell_ids, drugs
        self.standardised, self.cell_x, self.ks, self.choices = fitted, cell_x, ks, choices

    def z(self, drugs: Drugs, fitted: Standardised, queries: np.ndarray) -> np.ndarray:
        """(Q, C) predicted z-scores of the query drugs on the model's cell lines."""
        x = features(drugs, fitted, queries, self.ks, self.cell_x)
        q, c, _ = x.shape
        return self.booster.predict(x.reshape(q * c, -1), num_iteration=self.booster.best_iteration).reshape(q, c)

    def predict(self, query: Query) -> np.ndarray:
        rows, columns = query_positions(query, "stacked", self.drug_ids, self.drugs.x, self.cell_ids)
        known = rows >= 0
        new = np.flatnonzero(~known)
        rows[new] = len(self.drug_ids) + np.arange(len(new))
        annotations = {}
        for c in ("target_pathway", "targets"):
            given = query.drug_annotations.get(c) or [frozenset()] * len(known)
            annotations[c] = [given[i] for i in new]
        drugs = self.drugs.extended(query.drug[new], annotations)
        fitted = self.standardised.with_unfitted(len(new))
        wanted = np.unique(rows)
        z = self.z(drugs, fitted, wanted)
        level, scale = neighbour_level(drugs, fitted, self.choices["level from k"])
        level = np.where(fitted.fitted, fitted.level, level)[wanted]
        scale = np.where(fitted.fitted, fitted.scale, scale)[wanted]
        grid = (level[:, None] + scale[:, None] * z).astype(np.float32)
        return grid[np.ix_(np.searchsorted(wanted, rows), columns)]

    def save(self, folder: Path) -> list[str]:
        (folder / self.BOOSTER).write_text(self.booster.model_to_string(num_iteration=self.booster.best_iteration))
        save_profiles(folder / self.ARRAYS, folder / self.META, drug_ids=self.drug_ids, cell_ids=self.cell_ids,
                      x=self.drugs.x, fitted=self.standardised, annotations=self.drugs.annotations,
                      choices=self.choices, cell_x=self.cell_x, ks=list(self.ks),
                      pathways=self.drugs.pathways)  # fmt: skip
        return [self.BOOSTER, self.ARRAYS, self.META]

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any], device: str) -> StackedFitted:
        import lightgbm

        booster = lightgbm.Booster(model_str=(folder / cls.BOOSTER).read_text())
        drug_ids, cell_ids, a, meta, fitted, annotations = load_profiles(folder / cls.ARRAYS, folder / cls.META)
        drugs = Drugs(a["x"], annotations, meta["pathways"])
        return cls(booster, drug_ids, cell_ids, drugs, fitted, a["cell_x"], tuple(meta["ks"]), meta["choices"])


class Stacked(FittedModel):
    Options = StackedOptions
    drug_inputs = ("dense",)
    fitted_class = StackedFitted

    def fit(self, inputs: Inputs, fold: Fold) -> StackedFitted:
        import lightgbm  # imported here: only the tree models need it

        o = self.options
        count, target = inputs.grid()
        target = target.astype(np.float64)
        train, val = (fold.roles == TRAIN) & (count > 0), (fold.roles == VAL) & (count > 0)
        queries = np.flatnonzero(val.sum(axis=1) >= 3)
        if not len(queries):
            raise ModelError(
                f"fold {fold.name}: no drug has 3 or more validation cell lines to choose the leaves and rounds on; "
                "use a larger dataset or another split"
            )
        annotations = {c: list(inputs.drug_annotations[c]) for c in ("target_pathway", "targets")}
        drugs = Drugs(inputs.drug, annotations, sorted(set().union(*annotations["target_pathway"])))
        cells = np.hstack(list(inputs.cells.values())).astype(np.float64)
        cell_x = cell_components(cells, train.any(axis=0), o.cell_components)
        unfitted = StackedFitted(None, inputs.drug_ids, inputs.cell_ids, drugs, None, cell_x, o.ks, {})

        def training_set(weight: np.ndarray) -> tuple[lightgbm.Dataset, Standardised]:
            """Every fitted drug's measured lines (features without the drug itself), its z-scores as targets."""
            fitted = Standardised.fit(weight, target)
            fit = np.flatnonzero(fitted.fitted)
            keep = weight[fit] > 0
            z = (target[fit] - fitted.level[fit, None]) / fitted.scale[fit, None]
            x = features(drugs, fitted, fit, o.ks, cell_x)[keep]
            return lightgbm.Dataset(x, z[keep], weight=weight[fit][keep], free_raw_data=False), fitted

        fit_set, fitted = training_set(count * train)
        keep = val[queries]  # the validation drugs' lines, their features from the TRAIN drugs (as the held-out drug)
        x_val, y_val = features(drugs, fitted, queries, o.ks, cell_x)[keep], target[queries][keep]
        val_drug = np.nonzero(keep)[0]

        def drug_pcc(pred: np.ndarray, _: Any) -> tuple[str, float, bool]:
            return "drug-pcc", mean_drug_pcc(pred, y_val, val_drug), True

        params = {"objective": "regression", "learning_rate": o.shrinkage, "seed": fold.seed, "deterministic": True,
                  "force_row_wise": True, "verbose": -1, "metric": "None", "min_data_in_leaf": o.min_leaf,
                  "num_threads": 1, "max_bin": 63}  # fmt: skip
        val_set = lightgbm.Dataset(x_val, y_val, reference=fit_set)
        best: tuple[float, dict[str, Any]] = (-np.inf, {})
        for leaves in o.leaves:
            model = lightgbm.train(
                params | {"num_leaves": leaves}, fit_set, o.max_rounds, valid_sets=[val_set], feval=drug_pcc,
                callbacks=[lightgbm.early_stopping(o.stop_rounds, verbose=False)],
            )  # fmt: skip
            score = mean_drug_pcc(model.predict(x_val, num_iteration=model.best_iteration), y_val, val_drug)
            if score > best[0]:
                best = (score, {"leaves": leaves, "rounds": int(model.best_iteration)})
        score, chosen = best
        if not np.isfinite(score):
            raise ModelError(
                f"fold {fold.name}: no validation drug has a defined PCC to choose the setting on "
                "(too few pairs for --min-leaf?)"
            )
        all_set, final = training_set(count * np.isin(fold.roles, (TRAIN, VAL)))
        booster = lightgbm.train(params | {"num_leaves": chosen["leaves"]}, all_set, max(chosen["rounds"], 1))
        unfitted.booster, unfitted.standardised = booster, final
        unfitted.choices = chosen | {"level from k": o.ks[len(o.ks) // 2], "validation per-drug PCC": score,
                                     "validation drugs": len(queries)}  # fmt: skip
        return unfitted
