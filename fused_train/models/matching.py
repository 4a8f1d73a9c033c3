"""Matching: a new drug screened on a few cell lines (a pilot), predicted on the rest from drugs that respond alike.

For the ``pilot-K`` splits. On the scale of ``neighbours.Standardised`` (per drug z-scores; base(c) the cell-line
profile; r(d, c) = z(d, c) - base(c) what is specific to a drug), the new drug q's pilot gives its own residuals on
the pilot lines, r_q = z_q - base with q's level and scale taken from the pilot. Reference drugs (every drug with
fitting rows but q) are ranked by the PCC of their residuals with r_q over the pilot lines they were measured on;
the m best (positive PCC, weighted by it) give the matched profile M(q, c). With the annotation profiles of
``neighbours`` (P: same target pathway, T: shared targets):

    z(q, c) = base(c) + b * M_m(q, c) + a * P(q, c) + t * T(q, c)

Kriging then corrects z by what it misses on the pilot lines: the pilot's z-scores minus z there (centred) are
carried to every cell line by Gaussian-process conditioning, with the covariance between cell lines of the reference
drugs' residuals (shrunk towards its diagonal) as kernel and a noise level n (relative to the mean cell-line
variance): z + Cov[:, pilot] (Cov[pilot, pilot] + n I)^-1 (z_pilot - z[pilot]).

ln IC50 = level + scale * z, with the level set so that the pilot lines' predictions have the pilot's mean (the
pilot-adjusted offset) and the pilot's sd as scale.

m, b, a and t are chosen per fold by the mean per-drug PCC on the validation drugs' non-pilot lines, each validation
drug matched by its own K pilot lines, everything fitted on TRAIN rows; then, with those, n or no kriging the same
way. The prediction refits on every row but the held-out drug's. The held-out drug's non-pilot labels are never read.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fused_cache.datasets import annotation_sets
from fused_cache.progress import progress
from fused_train.data import Inputs
from fused_train.engine import Execution
from fused_train.models.base import Fitted, Outcome, PredictError, Query
from fused_train.models.fitted import FittedModel
from fused_train.models.neighbours import Standardised, row_pcc, shared_annotations
from fused_train.models.registry import ModelError, check_candidates, make_options, option
from fused_train.seeding import rng
from fused_train.splits import PILOT, TEST, TRAIN, VAL, Fold


@dataclass(frozen=True)
class MatchingOptions:
    matches: tuple[int, ...] = option(
        (5, 10, 20, 40, 80, 160), "Candidate numbers of matched drugs; chosen on validation."
    )
    weights: tuple[float, ...] = option(
        (0.0, 0.25, 0.5, 0.75, 1.0, 1.5), "Candidate weights of each residual profile; chosen on validation."
    )
    kriging: tuple[float, ...] = option(
        (0.3, 1.0, 3.0),
        "Candidate noise levels of the kriging (relative to the mean cell-line variance); chosen on "
        "validation, as is no kriging.",
    )

    def __post_init__(self) -> None:
        check_candidates("matches", self.matches, 1)
        check_candidates("weights", self.weights, 0)
        check_candidates("kriging", self.kriging, 0.01)


SHRINKAGE = 0.3
"""Share of the diagonal in the kriging covariance: the covariance of ~200 drugs' residuals between 500+ cell lines
is noisy off the diagonal. Fixed, not tuned."""


@dataclass(frozen=True)
class Pilot:
    """Query drugs and their pilot: rows of the grid, which lines were revealed, and the revealed ln IC50."""

    drugs: np.ndarray  # (Q,) drug rows
    lines: np.ndarray  # (Q, C) bool
    values: np.ndarray  # (Q, C) ln IC50 on the pilot lines

    def standardised(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query the pilot's level and scale, and its z-scores on the pilot lines (0 elsewhere)."""
        n = self.lines.sum(axis=1)
        level = (self.values * self.lines).sum(axis=1) / n
        sd = np.sqrt((self.lines * (self.values - level[:, None]) ** 2).sum(axis=1) / n)
        scale = np.where(sd > 0, sd, 1.0)
        return level, scale, self.lines * (self.values - level[:, None]) / scale[:, None]


def matched_weights(fitted: Standardised, pilot: Pilot, base_z: np.ndarray, m: int) -> np.ndarray:
    """(Q, A): weights of each query's m best-matching reference drugs (PCC of residuals on the pilot lines)."""
    residual_q = base_z - fitted.base[None, :]  # (Q, C)
    weights = np.zeros((len(pilot.drugs), len(fitted.fitted)))
    references = np.flatnonzero(fitted.fitted)
    for i, q in enumerate(pilot.drugs):
        refs = references[references != q]
        lines = pilot.lines[i][None, :] & (fitted.measured[refs] > 0)
        match = row_pcc(fitted.residual[refs], np.broadcast_to(residual_q[i], lines.shape), lines)
        match = np.where(np.isfinite(match), match, -np.inf)
        best = np.argsort(-match, kind="stable")[:m]
        weights[i, refs[best]] = np.clip(match[best], 0, None)
    return weights


def cell_covariance(fitted: Standardised) -> np.ndarray:
    """(C, C) covariance of the reference drugs' residuals between cell lines (over the drugs measured on both),
    shrunk towards its diagonal by ``SHRINKAGE``."""
    cov = (fitted.residual.T @ fitted.residual) / np.maximum(fitted.measured.T @ fitted.measured, 1)
    return (1 - SHRINKAGE) * cov + SHRINKAGE * np.diag(np.diag(cov))


def krige(z: np.ndarray, pilot: Pilot, z_pilot: np.ndarray, cov: np.ndarray, noise: float) -> np.ndarray:
    """(Q, C): each query's z corrected by the kriged miss on its pilot lines (see the module docstring)."""
    out = z.copy()
    jitter = noise * float(np.mean(np.diag(cov)))
    for i, lines in enumerate(pilot.lines):
        if not lines.any():
            continue
        miss = z_pilot[i, lines] - z[i, lines]
        kernel = cov[np.ix_(lines, lines)] + jitter * np.eye(int(lines.sum()))
        out[i] += cov[:, lines] @ np.linalg.solve(kernel, miss - miss.mean())
    return out


class MatchingFitted(Fitted):
    """Responses to match new drugs against: the fitting pairs and their drugs' annotations, with the options and the
    seed of the validation draw. Each query drug needs a pilot (``Query.pilot``); per drug, as in a pilot-K fold, a
    validation share of the reference drugs (drawn with the seed and the drug's id) is shown the same pilot lines,
    the setting that predicts their other lines best is chosen, and the drug is predicted from every reference."""

    RESPONSES, DRUGS, META = "responses.parquet", "drugs.parquet", "matching.json"
    annotations = ("targets", "target_pathway")
    reads_pilot = True

    def __init__(self, responses: pd.DataFrame, drugs: pd.DataFrame, options: MatchingOptions, seed: int) -> None:
        self.responses, self.drugs, self.options, self.seed = responses, drugs, options, seed
        self.choices: dict[str, Any] = {}

    @classmethod
    def of(cls, inputs: Inputs, weight: np.ndarray, options: MatchingOptions, seed: int) -> MatchingFitted:
        """From the grid cells with ``weight`` > 0 of ``inputs``."""
        pairs = inputs.pairs
        keep = weight[pairs["drug_index"].to_numpy(), pairs["cell_index"].to_numpy()] > 0
        drugs = pd.DataFrame({"drug_id": inputs.drug_ids} | {c: [";".join(sorted(s)) for s in sets]
                             for c, sets in inputs.drug_annotations.items()})  # fmt: skip
        return cls(pairs.loc[keep, ["drug_id", "cell_id", "ln_ic50"]].reset_index(drop=True), drugs, options, seed)

    def predict(self, query: Query) -> np.ndarray:
        pilot = query.pilot if query.pilot is not None else pd.DataFrame(columns=["drug_id", "cell_id", "ln_ic50"])
        lines = pilot.groupby("drug_id").size().reindex(query.drug_ids, fill_value=0)
        if (lines < 3).any():
            short = lines[lines < 3]
            raise PredictError(f"drug {short.index[0]!r} has {short.iloc[0]} pilot line(s): matching predicts a drug "
                               "from its pilot screen on at least 3 cell lines (--pilot)")  # fmt: skip
        known = set(self.responses["cell_id"])
        unknown = [str(c) for c in query.cell_ids if c not in known]
        if unknown:
            raise PredictError(f"cell line {unknown[0]!r} has no responses to match on; matching predicts the cell "
                               "lines it was fitted on")  # fmt: skip
        table = pd.DataFrame({"drug_id": query.drug_ids} | {c: [";".join(sorted(s)) for s in sets]
                             for c, sets in query.drug_annotations.items()})  # fmt: skip
        rows = [self.predict_drug(pilot[pilot["drug_id"] == d], table[table["drug_id"] == d], query.cell_ids, d)
                for d in query.drug_ids]  # fmt: skip
        return np.stack(rows).astype(np.float32)

    def predict_drug(self, pilot: pd.DataFrame, new: pd.DataFrame, cell_ids: np.ndarray, drug_id: str) -> np.ndarray:
        """One new drug on ``cell_ids``: a pilot fold whose held-out drug is the new one."""
        known = self.responses[self.responses["cell_id"].isin(cell_ids)]
        drug_ids = np.array([*sorted(known["drug_id"].unique()), drug_id], dtype=str)
        pairs = pd.concat([known, pilot.assign(drug_id=drug_id)], ignore_index=True)[["drug_id", "cell_id", "ln_ic50"]]
        pairs["drug_index"] = pd.Index(drug_ids).get_indexer(pairs["drug_id"])
        pairs["cell_index"] = pd.Index(cell_ids).get_indexer(pairs["cell_id"])
        drugs = pd.concat([self.drugs, new[[c for c in self.drugs.columns if c in new.columns]]], ignore_index=True)
        sets = annotation_sets(drugs.astype({"drug_id": str}), drug_ids)
        inputs = Inputs("pilot", drug_ids, cell_ids, np.zeros((len(drug_ids), 1), np.float32), {}, pairs,
                        np.full(len(cell_ids), ""), drug_annotations=sets)  # fmt: skip
        count, _ = inputs.grid()
        lines = np.isin(cell_ids, pilot["cell_id"])
        roles = (count > 0).astype(np.int8) * TRAIN
        others = np.arange(len(drug_ids) - 1)
        val = rng("pilot-predict", self.seed, drug_id).choice(others, size=max(1, round(0.1 * len(others))),
                                                               replace=False)  # fmt: skip
        roles[val] = np.where(roles[val] > 0, np.where(lines, PILOT, VAL), 0)
        roles[-1] = np.where(lines, PILOT, TEST)
        fold = Fold(f"pilot-new-{drug_id}", "pilot-new", self.seed, roles)
        grid, _ = Matching(self.options).predict_fold(inputs, fold)
        return grid[-1]

    def save(self, folder: Path) -> list[str]:
        self.responses.to_parquet(folder / self.RESPONSES, index=False)
        self.drugs.to_parquet(folder / self.DRUGS, index=False)
        (folder / self.META).write_text(json.dumps({"seed": self.seed}))
        return [self.RESPONSES, self.DRUGS, self.META]

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any], device: str) -> MatchingFitted:
        responses = pd.read_parquet(folder / cls.RESPONSES).astype({"drug_id": str, "cell_id": str})
        drugs = pd.read_parquet(folder / cls.DRUGS).astype({"drug_id": str})
        seed = json.loads((folder / cls.META).read_text())["seed"]
        return cls(responses, drugs, make_options("matching", info["options"]), seed)


class Matching(FittedModel):
    Options = MatchingOptions
    drug_inputs = ("dense", "graph")  # the drug store is not read: drugs are matched by their pilot responses
    fitted_class = MatchingFitted

    def fit(self, inputs: Inputs, fold: Fold) -> MatchingFitted:
        """Every row but the held-out drug's, to match new drugs against (the run scores ``predict_fold``)."""
        count, _ = inputs.grid()
        held_out = (fold.roles == TEST).any(axis=1)
        weight = count * np.isin(fold.roles, (TRAIN, VAL, PILOT)) * ~held_out[:, None]
        return MatchingFitted.of(inputs, weight, self.options, fold.seed)

    def run(
        self, inputs: Inputs, folds: list[Fold], execution: Execution, keep: bool, quiet: bool
    ) -> Iterator[Outcome]:
        """Each fold's held-out drug predicted from its own pilot lines (the PILOT cells of the fold)."""
        bar = progress(len(folds), "fitting", "folds", quiet)
        for fold in folds:
            tested = (fold.roles == TEST).any()  # not in fit's split: nothing to score, only responses to keep
            grid, choices = self.predict_fold(inputs, fold) if tested else (None, {})
            yield Outcome(fold, grid, choices, None, self.fit(inputs, fold) if keep else None)
            bar.update()
        bar.close()

    def predict_fold(self, inputs: Inputs, fold: Fold) -> tuple[np.ndarray, dict[str, Any]]:
        """The held-out drug's predictions on the grid, and the choices made on the validation drugs."""
        if not (fold.roles == PILOT).any():  # read from the fold itself, not from its split's name
            raise ModelError(f"the matching model needs a pilot screen: use --split pilot-K, not {fold.split!r}")
        count, target = inputs.grid()
        target = target.astype(np.float64)
        shared = {
            "pathway": shared_annotations(inputs.drug_annotations["target_pathway"], False),
            "targets": shared_annotations(inputs.drug_annotations["targets"], True),
        }
        held_out = (fold.roles == TEST).any(axis=1)
        pilot_lines = (fold.roles == PILOT) & (count > 0)
        val_drugs = np.flatnonzero(pilot_lines.any(axis=1) & ~held_out)
        chosen, score = self._choose(fold, count, target, shared, self._pilot(val_drugs, pilot_lines, target))
        weight = count * np.isin(fold.roles, (TRAIN, VAL, PILOT)) * ~held_out[:, None]
        query = self._pilot(np.flatnonzero(held_out), pilot_lines, target)
        fitted = Standardised.fit(weight, target)
        level, scale, z_pilot = query.standardised()
        z = self._z(fitted, query, z_pilot, shared, chosen)
        if chosen["kriging"] is not None:
            z = krige(z, query, z_pilot, cell_covariance(fitted), chosen["kriging"])
        offset = level - scale * (z * query.lines).sum(axis=1) / query.lines.sum(axis=1)
        grid = np.full(count.shape, np.nan, dtype=np.float32)
        grid[query.drugs] = offset[:, None] + scale[:, None] * z
        return grid, chosen | {"validation per-drug PCC": score, "validation drugs": len(val_drugs)}

    @staticmethod
    def _pilot(drugs: np.ndarray, lines: np.ndarray, target: np.ndarray) -> Pilot:
        return Pilot(drugs, lines[drugs], target[drugs])

    @staticmethod
    def _profiles(
        fitted: Standardised, query: Pilot, z_pilot: np.ndarray, shared: dict[str, np.ndarray], m: int
    ) -> dict[str, np.ndarray]:
        references = fitted.fitted
        return {
            "matched": fitted.profile(matched_weights(fitted, query, z_pilot, m)),
            "pathway": fitted.profile(shared["pathway"][query.drugs] * references),
            "targets": fitted.profile(shared["targets"][query.drugs] * references),
        }

    def _z(
        self, fitted: Standardised, query: Pilot, z_pilot: np.ndarray, shared: dict[str, np.ndarray],
        chosen: dict[str, Any],
    ) -> np.ndarray:  # fmt: skip
        profiles = self._profiles(fitted, query, z_pilot, shared, chosen["matches"])
        return fitted.base[None, :] + sum(chosen[name] * profiles[name] for name in ("matched", "pathway", "targets"))

    def _choose(
        self, fold: Fold, count: np.ndarray, target: np.ndarray, shared: dict[str, np.ndarray], val: Pilot
    ) -> tuple[dict[str, Any], float]:
        """m and the weights, then the kriging noise (or none), with the best mean per-drug PCC on the validation
        drugs' non-pilot lines."""
        scored = (fold.roles[val.drugs] == VAL) & (count[val.drugs] > 0)
        if not len(val.drugs) or (scored.sum(axis=1) < 3).all():
            raise ModelError(f"fold {fold.name}: no validation drug has a pilot and 3 more lines to choose on")
        fitted = Standardised.fit(count * (fold.roles == TRAIN), target)
        _, _, z_pilot = val.standardised()
        truth = target[val.drugs]
        best: tuple[float, dict[str, Any]] = (-np.inf, {})
        for m in self.options.matches:
            p = self._profiles(fitted, val, z_pilot, shared, m)
            for b, a, t in itertools.product(self.options.weights, repeat=3):
                z = fitted.base[None, :] + b * p["matched"] + a * p["pathway"] + t * p["targets"]
                score = np.nanmean(row_pcc(z, truth, scored))
                if score > best[0]:
                    best = (float(score), {"matches": m, "matched": b, "pathway": a, "targets": t, "kriging": None})
        z = self._z(fitted, val, z_pilot, shared, best[1])
        cov = cell_covariance(fitted)
        for noise in self.options.kriging:
            score = np.nanmean(row_pcc(krige(z, val, z_pilot, cov, noise), truth, scored))
            if score > best[0]:
                best = (float(score), best[1] | {"kriging": noise})
        return best[1], best[0]
