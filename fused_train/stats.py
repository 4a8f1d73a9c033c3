"""Paired statistics of two predictors over the same test entities, and bootstrap intervals over entities.

The unit of evidence is the entity a split holds out: a drug (per-drug PCC: does a predictor rank the cell lines of a
drug?), or a cell line in leave-cell-out and leave-tissue-out. Two predictors evaluated on the same folds give one PCC
each per entity, so they are compared *paired*, entity by entity:

- ``paired_test(a, b)``: the per-entity differences a - b over entities where both PCCs are defined (an entity where
  either predictor is constant, or that has fewer than 3 pairs, is left out and counted in ``undefined``); their mean
  with a bootstrap interval, wins/losses/ties, and Wilcoxon signed-rank p-values (``scipy.stats.wilcoxon``), two-sided
  and one-sided for "a > b". Zero differences are dropped before ranking (``zero_method="wilcox"``) and count as
  ties; tied absolute differences share their mean rank. scipy computes the exact distribution for up to 50
  non-zero differences without ties, the normal approximation otherwise. With no non-zero difference p is NaN.
- ``holm(p)``: Holm's step-down correction of a family of p-values (the report's paired table is one family).
- ``ranking(pcc)``: many predictors over the same entities, as DrEval ranks them: the Friedman test over entities and
  the Nemenyi post-hoc test of every two predictors (``scikit_posthocs.posthoc_nemenyi_friedman``) on the entities
  where every predictor's PCC is defined, with each predictor's mean rank (1 = the highest PCC). A predictor without
  any defined PCC (the global and drug means per drug: constant within a drug) is left out and named.
- ``intervals(frame, by, pred)``: percentile bootstrap intervals of the pooled PCC and the mean per-entity PCC,
  resampling entities (all pairs of an entity go together) with replacement.

Every bootstrap draws ``N_RESAMPLES`` resamples from ``numpy.random.default_rng(SEED)``: the same entities get the
same resamples whichever predictor is measured, and a rerun gives the same interval.

Runs with several seeds: an entity's PCC is the mean over the seeds in which it is defined, and the pooled PCC of a
resample is the mean over seeds of each seed's pooled PCC (as the report's "mean over seeds").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fused_train.metrics import per_entity

N_RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
METHOD = {
    "test": "Wilcoxon signed-rank over entities (scipy.stats.wilcoxon, zero_method='wilcox', method='auto')",
    "pairing": "entities with a defined PCC under both predictors; others counted as undefined",
    "bootstrap": "percentile, entities resampled with replacement",
    "n_resamples": N_RESAMPLES,
    "seed": SEED,
    "level": LEVEL,
}
"""What ``metrics.json`` records about how its statistics were computed."""


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval."""

    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class PairedTest:
    """Predictor ``a`` against ``b``, entity by entity (difference = a - b)."""

    n: int
    """Entities with a defined PCC under both."""
    undefined: int
    """Entities left out because either PCC is undefined."""
    mean_a: float
    sd_a: float
    mean_b: float
    sd_b: float
    difference: Interval
    """Mean per-entity difference with its bootstrap interval."""
    median_difference: float
    wins: int
    """Entities where a's PCC is higher."""
    losses: int
    ties: int
    p_two_sided: float
    p_greater: float
    """One-sided p-value of 'a > b'."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def entity_pcc(frame: pd.DataFrame, by: str, pred: str, truth: str = "ln_ic50") -> pd.Series:
    """PCC per entity ``by`` (NaN where undefined), the mean over seeds where the frame holds several."""
    seeds = frame["seed"] if "seed" in frame else pd.Series(0, index=frame.index)
    per_seed = [per_entity(part, by, pred, truth).set_index(by)["pcc"] for _, part in frame.groupby(seeds)]
    return pd.concat(per_seed, axis=1).mean(axis=1, skipna=True).rename(pred)


def paired_test(
    a: pd.Series, b: pd.Series, n_resamples: int = N_RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> PairedTest:
    """Compare per-entity PCCs ``a`` and ``b`` (Series indexed by entity id) on the entities both define."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1)
    defined = both.dropna()
    x, y = defined["a"].to_numpy(), defined["b"].to_numpy()
    d = x - y
    n = len(d)
    if np.count_nonzero(d) == 0:
        p_two = p_greater = float("nan")
    else:
        p_two = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
        p_greater = float(stats.wilcoxon(d, zero_method="wilcox", alternative="greater").pvalue)
    boot = _resample_means(d, n_resamples, seed)
    return PairedTest(
        n=n,
        undefined=len(both) - n,
        mean_a=_mean(x),
        sd_a=_sd(x),
        mean_b=_mean(y),
        sd_b=_sd(y),
        difference=Interval(_mean(d), *_percentiles(boot, level)),
        median_difference=float(np.median(d)) if n else float("nan"),
        wins=int((d > 0).sum()),
        losses=int((d < 0).sum()),
        ties=int((d == 0).sum()),
        p_two_sided=p_two,
        p_greater=p_greater,
    )


def holm(p: Any) -> np.ndarray:
    """Holm-adjusted p-values, in the order given: the k-th smallest of m is multiplied by m - k + 1, made monotone
    and capped at 1. NaN (no test) stays NaN and is not counted in m."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    order = defined[np.argsort(p[defined], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


@dataclass(frozen=True)
class Ranking:
    """Friedman and Nemenyi tests of predictors over entities (``ranking``)."""

    mean_ranks: pd.Series
    """Per predictor, its mean rank over entities (1 = the highest PCC), best first."""
    friedman_p: float
    nemenyi: pd.DataFrame
    """Nemenyi p-value of every two predictors."""
    entities: int
    undefined: int
    """Entities left out because some predictor's PCC is undefined there."""
    left_out: list[str]
    """Predictors without a defined PCC on any entity."""


def ranking(pcc: pd.DataFrame) -> Ranking | None:
    """``pcc``: entities x predictors; None unless at least 3 predictors have a PCC on at least 2 common entities.
    Ties share their mean rank."""
    import scikit_posthocs

    left_out = [c for c in pcc.columns if pcc[c].isna().all()]
    complete = pcc.drop(columns=left_out).dropna()
    if complete.shape[1] < 3 or len(complete) < 2:
        return None
    ranks = complete.rank(axis=1, ascending=False).mean().sort_values()
    friedman = stats.friedmanchisquare(*complete.to_numpy().T).pvalue
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(complete.to_numpy())
    nemenyi.index = nemenyi.columns = complete.columns
    return Ranking(ranks, float(friedman), nemenyi, len(complete), len(pcc) - len(complete), left_out)


def intervals(
    frame: pd.DataFrame, by: str, pred: str, truth: str = "ln_ic50", n_resamples: int = N_RESAMPLES,
    seed: int = SEED, level: float = LEVEL,
) -> dict[str, Interval]:  # fmt: skip
    """Bootstrap intervals of the pooled PCC (``pcc``) and of the mean per-entity PCC (``entity_pcc_mean``).

    Resamples entities: a resample of drugs pools all pairs of the drugs drawn (a drug drawn twice counts twice).
    """
    values = entity_pcc(frame, by, pred, truth)
    entities = values.index.to_numpy()
    sums = _sufficient_stats(frame, by, pred, truth, entities)  # (seeds, entities, 6)
    counts = _resample_counts(len(entities), n_resamples, seed)  # (resamples, entities)
    pooled = _nanmean(_pcc_from_sums(np.einsum("re,sek->srk", counts, sums)))
    defined = values.notna().to_numpy()
    weights = counts * defined
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights * np.nan_to_num(values.to_numpy())).sum(axis=1) / weights.sum(axis=1)
    estimate_pooled = float(_nanmean(_pcc_from_sums(sums.sum(axis=1))))
    return {
        "pcc": Interval(estimate_pooled, *_percentiles(pooled, level)),
        "entity_pcc_mean": Interval(_mean(values.dropna().to_numpy()), *_percentiles(means, level)),
    }


def compare(frame: pd.DataFrame, by: str, predictors: list[str], baselines: list[str]) -> dict[str, Any]:
    """Intervals of every predictor, and each non-baseline predictor paired against every baseline.

    ``frame`` holds a run's test pairs with one ``pred_<name>`` column per predictor (``fused_train.runs.predictions``).
    """
    pcc = {name: entity_pcc(frame, by, f"pred_{name}") for name in predictors}
    return {
        "method": METHOD,
        "entity": by,
        "intervals": {
            name: {k: asdict(v) for k, v in intervals(frame, by, f"pred_{name}").items()} for name in predictors
        },
        "paired": [
            {"a": a, "b": b, **paired_test(pcc[a], pcc[b]).to_json()}
            for a in predictors
            if a not in baselines
            for b in baselines
        ],
    }


def _sufficient_stats(frame: pd.DataFrame, by: str, pred: str, truth: str, entities: np.ndarray) -> np.ndarray:
    """Per seed and entity: n, sum y, sum p, sum y^2, sum p^2, sum y p (what a pooled PCC of any resample needs)."""
    seeds = frame["seed"] if "seed" in frame else pd.Series(0, index=frame.index)
    y, p = frame[truth].to_numpy(np.float64), frame[pred].to_numpy(np.float64)
    parts = pd.DataFrame({"seed": seeds.to_numpy(), "entity": frame[by].to_numpy(), "n": 1.0, "y": y, "p": p,
                          "yy": y * y, "pp": p * p, "yp": y * p})  # fmt: skip
    sums = parts.groupby(["seed", "entity"]).sum()
    seed_values = sums.index.get_level_values("seed").unique()
    full = pd.MultiIndex.from_product([seed_values, entities], names=["seed", "entity"])
    return sums.reindex(full, fill_value=0.0).to_numpy().reshape(len(seed_values), len(entities), 6)


def _pcc_from_sums(s: np.ndarray) -> np.ndarray:
    """PCC from sums (as ``metrics.pcc``: NaN below 3 pairs or when a side is constant up to rounding)."""
    n, sy, sp, syy, spp, syp = np.moveaxis(s, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = syp - sy * sp / n
        var_y, var_p = syy - sy * sy / n, spp - sp * sp / n
        ok = (n >= 3) & (var_y > 1e-10 * syy) & (var_p > 1e-10 * spp)
        return np.where(ok, cov / np.sqrt(np.where(ok, var_y * var_p, 1.0)), np.nan)


def _resample_counts(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each of ``n`` entities is drawn in each resample (n draws with replacement)."""
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n)) if n else np.zeros((n_resamples, 0))
    return np.stack([np.bincount(row.astype(np.int64), minlength=n) for row in draws]).astype(np.float64)


def _resample_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    if len(values) == 0:
        return np.full(n_resamples, np.nan)
    counts = _resample_counts(len(values), n_resamples, seed)
    return counts @ values / len(values)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    if np.isnan(values).all():
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _nanmean(x: np.ndarray) -> np.ndarray:
    """Mean over the first axis (seeds) of the defined values; NaN, without a warning, where none is."""
    ok = ~np.isnan(x)
    n = ok.sum(axis=0)
    return np.where(n > 0, np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else float("nan")


def _sd(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")
