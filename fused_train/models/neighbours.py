"""Neighbours: a drug's cell-line profile from the drugs it resembles, built for drugs never seen in training (LODO).

Per drug, responses are standardised over its fitting cell lines, z(d, c) = (y(d, c) - level_d) / scale_d. The
cell-line profile base(c) = mean over drugs of z(d, c) says which lines are sensitive to drugs in general (the
cell-line mean, with every drug counted on one scale); a drug's residual r(d, c) = z(d, c) - base(c) is what is
specific to it. Drug q is predicted from the residuals of the reference drugs (every other drug with fitting rows),
each profile a weighted mean per cell line over the references measured there:

    z(q, c) = base(c) + a * P(q, c) + b * S_k(q, c) + t * T(q, c)

    P    drugs sharing a target pathway with q (equal weights)
    S_k  the k drugs most similar to q in the drug store (cosine of embeddings standardised on the references;
         Tanimoto for 0/1 fingerprints), weighted by similarity
    T    drugs sharing a target with q, weighted by the Jaccard index of the target sets

and ln IC50 = level_q + scale_q * z(q, c), with q's own level and scale when it has fitting rows, the S_k-weighted mean
of its neighbours' otherwise (these set the pooled metrics only; a per-drug PCC does not depend on them).

k, a, b and t are chosen per fold by the mean per-drug PCC on validation rows, everything fitted on TRAIN rows only;
the prediction then refits on TRAIN + VAL rows. A drug is never its own reference, so a held-out drug's labels are
never read. Annotations come from the dataset's drugs table (``targets``, ``target_pathway``); a drug without them has
P = T = 0.
"""

from __future__ import annotations

import itertools
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

PROFILES = ("pathway", "similar", "targets")
"""The residual profiles added to the cell-line profile, in the order of their weights a, b, t."""


@dataclass(frozen=True)
class NeighboursOptions:
    k: tuple[int, ...] = option((3, 5, 10, 20), "Candidate numbers of most similar drugs; chosen on validation.")
    weights: tuple[float, ...] = option(
        (0.0, 0.1, 0.2, 0.3, 0.5, 0.8), "Candidate weights of each residual profile; chosen on validation."
    )

    def __post_init__(self) -> None:
        check_candidates("k", self.k, 1)
        check_candidates("weights", self.weights, 0)


@dataclass(frozen=True)
class Standardised:
    """The fitting rows of a fold on one scale per drug (see the module docstring)."""

    level: np.ndarray  # (A,) mean ln IC50 per drug, 0 without fitting rows
    scale: np.ndarray  # (A,) sd per drug (1 when undefined)
    base: np.ndarray  # (C,) cell-line profile
    residual: np.ndarray  # (A, C) z - base where fitted, 0 elsewhere
    measured: np.ndarray  # (A, C) 1.0 where fitted
    fitted: np.ndarray  # (A,) drugs with fitting rows

    @classmethod
    def fit(cls, weight: np.ndarray, target: np.ndarray) -> Standardised:
        """From the fitting weights (measurement counts, 0 outside the fitting rows) and the grid's mean ln IC50."""
        n = weight.sum(axis=1)
        fitted = n > 0
        level = np.divide((weight * target).sum(axis=1), n, out=np.zeros_like(n), where=fitted)
        var = np.divide((weight * (target - level[:, None]) ** 2).sum(axis=1), n, out=np.zeros_like(n), where=fitted)
        scale = np.where(var > 0, np.sqrt(var), 1.0)
        measured = (weight > 0).astype(np.float64)
        z = measured * (target - level[:, None]) / scale[:, None]
        per_cell = measured.sum(axis=0)
        base = np.divide(z.sum(axis=0), per_cell, out=np.zeros_like(per_cell), where=per_cell > 0)
        return cls(level, scale, base, measured * (z - base), measured, fitted)

    def with_unfitted(self, n: int) -> Standardised:
        """The same with ``n`` more drugs that have no fitting rows (new drugs to predict)."""
        cells = len(self.base)
        return Standardised(np.concatenate([self.level, np.zeros(n)]), np.concatenate([self.scale, np.ones(n)]),
                            self.base, np.vstack([self.residual, np.zeros((n, cells))]),
                            np.vstack([self.measured, np.zeros((n, cells))]),
                            np.concatenate([self.fitted, np.zeros(n, dtype=bool)]))  # fmt: skip

    def profile(self, weights: np.ndarray) -> np.ndarray:
        """(A, C): per drug (row of ``weights``, over reference drugs), the weighted mean residual per cell line."""
        total = weights @ self.measured
        return np.divide(weights @ self.residual, total, out=np.zeros_like(total), where=total > 0)


def similarity(x: np.ndarray, references: np.ndarray) -> np.ndarray:
    """(A, A) drug similarity: Tanimoto for 0/1 fingerprints, else cosine of features standardised on the references."""
    if np.isin(x, (0, 1)).all():
        bits = x.astype(np.float64)
        shared = bits @ bits.T
        size = bits.sum(axis=1)
        union = size[:, None] + size[None, :] - shared
        return np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    unit = unit_features(x, references)
    return unit @ unit.T


def unit_features(x: np.ndarray, references: np.ndarray) -> np.ndarray:
    """(A, d) features standardised on the references, each row scaled to unit length: their dot products are the
    cosine similarity."""
    mean, sd = standardise(x[references])
    scaled = (x - mean) / sd
    norm = np.linalg.norm(scaled, axis=1, keepdims=True)
    return scaled / np.where(norm > 0, norm, 1.0)


def top_k(sim: np.ndarray, references: np.ndarray, k: int, queries: np.ndarray | None = None) -> np.ndarray:
    """(A, A) weights of each drug's k most similar references (never itself): similarity, floored at 1e-3. With
    ``queries``, ``sim`` holds only those drugs' rows (Q, A) and so does the result."""
    own = np.eye(len(sim), dtype=bool) if queries is None else np.arange(sim.shape[1])[None, :] == queries[:, None]
    candidates = np.where(references[None, :] & ~own, sim, -np.inf)
    order = np.argsort(-candidates, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(sim))[:, None]
    chosen = candidates[rows, order]
    weights = np.zeros_like(sim)
    weights[rows, order] = np.where(np.isfinite(chosen), np.clip(chosen, 0, None) + 1e-3, 0.0)
    return weights


def shared_annotations(sets: list[frozenset[str]], jaccard: bool) -> np.ndarray:
    """(A, A): 1 (or the Jaccard index) where two drugs share an annotation, 0 on the diagonal."""
    vocabulary = sorted(set().union(*sets))
    onehot = np.array([[v in s for v in vocabulary] for s in sets], dtype=np.float64).reshape(len(sets), -1)
    shared = onehot @ onehot.T
    if jaccard:
        size = onehot.sum(axis=1)
        union = size[:, None] + size[None, :] - shared
        out = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    else:
        out = (shared > 0).astype(np.float64)
    np.fill_diagonal(out, 0.0)
    return out


def row_pcc(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the PCC of ``pred`` and ``truth`` over the columns in ``mask`` (NaN with < 3 columns or no spread)."""
    n = mask.sum(axis=1)
    safe = np.maximum(n, 1)
    p = np.where(mask, pred - (pred * mask).sum(axis=1, keepdims=True) / safe[:, None], 0)
    t = np.where(mask, truth - (truth * mask).sum(axis=1, keepdims=True) / safe[:, None], 0)
    denominator = np.sqrt((p * p).sum(axis=1) * (t * t).sum(axis=1))
    out = np.full(len(pred), np.nan)
    ok = (n >= 3) & (denominator > 1e-12)
    out[ok] = (p * t).sum(axis=1)[ok] / denominator[ok]
    return out


def query_positions(
    query: Query, model: str, drug_ids: np.ndarray, x: np.ndarray, cell_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the query's drugs among the fitted drugs (-1: a new drug) and columns of its cell lines, refusing what
    a model that predicts from other drugs' responses cannot answer: a cell line it was not fitted on, atom graphs in
    place of embeddings, a known drug id with another embedding."""
    columns = pd.Index(cell_ids).get_indexer(query.cell_ids)
    if (columns < 0).any():
        raise PredictError(
            f"cell line {str(query.cell_ids[columns < 0][0])!r} is not one the model was fitted on: {model} predicts "
            "from other drugs' responses on the same cell lines; for new cell lines fit a model that reads omics "
            "(--model fused or trees)"
        )
    if not isinstance(query.drug, np.ndarray):
        raise PredictError(f"{model} compares dense drug embeddings; the query's drugs are atom graphs")
    rows = pd.Index(drug_ids).get_indexer(query.drug_ids)
    known = rows >= 0
    same = np.isclose(query.drug[known], x[rows[known]], rtol=1e-5, atol=1e-6).all(axis=1)
    if not same.all():
        drug = str(query.drug_ids[known][~same][0])
        raise PredictError(f"drug {drug!r} has the id of a drug the model was fitted on but another embedding "
                           "(other SMILES?); give a new drug an id of its own")  # fmt: skip
    return rows, columns


def validation_queries(fold: Fold, count: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The fold's measured validation pairs and the drugs with 3 or more of them, on which `what` is chosen."""
    validation = (fold.roles == VAL) & (count > 0)
    queries = np.flatnonzero(validation.sum(axis=1) >= 3)
    if not len(queries):
        raise ModelError(
            f"fold {fold.name}: no drug has 3 or more validation cell lines to choose {what} on; "
            "use a larger dataset or another split"
        )
    return validation, queries


Annotations = dict[str, list[frozenset[str]]]
"""Per annotation column (target_pathway, targets), one set of names per drug."""


def save_profiles(
    arrays: Path, meta_file: Path, *, drug_ids: np.ndarray, cell_ids: np.ndarray, x: np.ndarray, fitted: Standardised,
    annotations: Annotations, choices: dict[str, Any], **extra: Any,
) -> None:  # fmt: skip
    """Write what a model predicting from other drugs' responses keeps (read back by `load_profiles`): the drugs'
    embeddings `x` and standardised responses as safetensors, ids, choices and annotations as JSON; `extra` names
    further arrays (numpy values) or metadata (anything else)."""
    s = fitted
    tensors = {"x": x, "level": s.level, "scale": s.scale, "base": s.base, "residual": s.residual,
               "measured": s.measured, "fitted": s.fitted.astype(np.uint8)}  # fmt: skip
    tensors |= {k: v for k, v in extra.items() if isinstance(v, np.ndarray)}
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(arrays))
    meta = {"drug_ids": drug_ids.tolist(), "cell_ids": cell_ids.tolist(), "choices": choices,
            "annotations": {c: [sorted(v) for v in sets] for c, sets in annotations.items()}}  # fmt: skip
    meta |= {k: v for k, v in extra.items() if not isinstance(v, np.ndarray)}
    meta_file.write_text(json.dumps(meta))


def load_profiles(
    arrays: Path, meta_file: Path
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, Any], Standardised, Annotations]:
    """What `save_profiles` wrote: drug ids, cell ids, the arrays, the metadata, the standardised responses and the
    drug annotations, the arrays checked against the ids."""
    a = load_file(str(arrays))
    meta = json.loads(meta_file.read_text())
    drug_ids, cell_ids = np.array(meta["drug_ids"], dtype=str), np.array(meta["cell_ids"], dtype=str)
    if a["x"].shape[0] != len(drug_ids) or a["residual"].shape != (len(drug_ids), len(cell_ids)):
        raise ValueError(f"{arrays} does not match the ids in {meta_file}")
    fitted = Standardised(a["level"], a["scale"], a["base"], a["residual"], a["measured"], a["fitted"] > 0)
    annotations = {c: [frozenset(v) for v in sets] for c, sets in meta["annotations"].items()}
    return drug_ids, cell_ids, a, meta, fitted, annotations


def predict_grid(
    x: np.ndarray, annotations: dict[str, list[frozenset[str]]], fitted: Standardised, chosen: dict[str, Any]
) -> np.ndarray:
    """(A, C) ln IC50 of every drug with the chosen setting: a drug with fitting rows keeps its own level and scale,
    one without (a held-out or new drug) takes its neighbours'."""
    shared = {"pathway": shared_annotations(annotations["target_pathway"], False),
              "targets": shared_annotations(annotations["targets"], True)}  # fmt: skip
    references = fitted.fitted
    neighbours = top_k(similarity(x, references), references, chosen["k"])
    profiles = {
        "pathway": fitted.profile(shared["pathway"] * references),
        "similar": fitted.profile(neighbours),
        "targets": fitted.profile(shared["targets"] * references),
    }
    z = fitted.base[None, :] + sum(chosen[name] * profiles[name] for name in PROFILES)
    level = np.where(references, fitted.level, _weighted(neighbours, fitted.level, references))
    scale = np.where(references, fitted.scale, _weighted(neighbours, fitted.scale, references))
    return (level[:, None] + scale[:, None] * z).astype(np.float32)


class NeighboursFitted(Fitted):
    """A fold's neighbours model: every drug of the fold (features, annotations, standardised fitting rows on the
    fold's cell lines) and the chosen setting. A query drug the fold did not fit is predicted as a held-out drug is."""

    ARRAYS, META = "neighbours.safetensors", "neighbours.json"
    annotations = ("targets", "target_pathway")

    def __init__(
        self, drug_ids: np.ndarray, cell_ids: np.ndarray, x: np.ndarray, annotations: dict[str, list[frozenset[str]]],
        fitted: Standardised, choices: dict[str, Any],
    ) -> None:  # fmt: skip
        self.drug_ids, self.cell_ids, self.x, self.annotations = drug_ids, cell_ids, x, annotations
        self.standardised, self.choices = fitted, choices

    def predict(self, query: Query) -> np.ndarray:
        rows, columns = query_positions(query, "neighbours", self.drug_ids, self.x, self.cell_ids)
        known = rows >= 0
        new = np.flatnonzero(~known)
        rows[new] = len(self.drug_ids) + np.arange(len(new))
        x = np.vstack([self.x, query.drug[new]])
        annotations = {}
        for c in ("target_pathway", "targets"):
            given = query.drug_annotations.get(c) or [frozenset()] * len(known)
            annotations[c] = [*self.annotations[c], *(given[i] for i in new)]
        fitted = self.standardised.with_unfitted(len(new))
        return predict_grid(x, annotations, fitted, self.choices)[np.ix_(rows, columns)]

    def save(self, folder: Path) -> list[str]:
        save_profiles(folder / self.ARRAYS, folder / self.META, drug_ids=self.drug_ids, cell_ids=self.cell_ids,
                      x=self.x, fitted=self.standardised, annotations=self.annotations,
                      choices=self.choices)  # fmt: skip
        return [self.ARRAYS, self.META]

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any], device: str) -> NeighboursFitted:
        drug_ids, cell_ids, a, meta, fitted, annotations = load_profiles(folder / cls.ARRAYS, folder / cls.META)
        return cls(drug_ids, cell_ids, a["x"], annotations, fitted, meta["choices"])


class Neighbours(FittedModel):
    Options = NeighboursOptions
    drug_inputs = ("dense",)
    fitted_class = NeighboursFitted

    def fit(self, inputs: Inputs, fold: Fold) -> NeighboursFitted:
        count, target = inputs.grid()
        target = target.astype(np.float64)
        pathways, targets = (inputs.drug_annotations[c] for c in ("target_pathway", "targets"))
        shared = {"pathway": shared_annotations(pathways, False), "targets": shared_annotations(targets, True)}
        chosen, score, n_queries = self._choose(inputs, fold, count, target, shared)
        fitted = Standardised.fit(count * np.isin(fold.roles, (TRAIN, VAL)), target)
        annotations = {c: list(inputs.drug_annotations[c]) for c in ("target_pathway", "targets")}
        choices = chosen | {"validation per-drug PCC": score, "validation drugs": n_queries}
        return NeighboursFitted(inputs.drug_ids, inputs.cell_ids, inputs.drug, annotations, fitted, choices)

    def _choose(
        self, inputs: Inputs, fold: Fold, count: np.ndarray, target: np.ndarray, shared: dict[str, np.ndarray]
    ) -> tuple[dict[str, Any], float, int]:
        """k and the profile weights with the best mean per-drug PCC on validation rows (TRAIN rows fitted)."""
        validation, queries = validation_queries(fold, count, "k and the weights")
        fitted = Standardised.fit(count * (fold.roles == TRAIN), target)
        references = fitted.fitted
        sim = similarity(inputs.drug, references)
        mask, truth = validation[queries], target[queries]
        base = np.broadcast_to(fitted.base, truth.shape)
        pathway = fitted.profile(shared["pathway"][queries] * references)
        targets = fitted.profile(shared["targets"][queries] * references)
        best: tuple[float, dict[str, Any]] = (-np.inf, {})
        for k in self.options.k:
            similar = fitted.profile(top_k(sim, references, k)[queries])
            for a, b, t in itertools.product(self.options.weights, repeat=3):
                score = np.nanmean(row_pcc(base + a * pathway + b * similar + t * targets, truth, mask))
                if score > best[0]:
                    best = (float(score), {"k": k, "pathway": a, "similar": b, "targets": t})
        if not best[1]:
            raise ModelError(f"fold {fold.name}: no validation drug has a defined PCC to choose the setting on")
        return best[1], best[0], len(queries)


def _weighted(weights: np.ndarray, values: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Per drug, the weighted mean of its neighbours' values (the fitted drugs' mean when it has none)."""
    total = weights.sum(axis=1)
    return np.divide(weights @ values, total, out=np.full(len(values), values[fitted].mean()), where=total > 0)
