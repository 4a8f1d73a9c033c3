"""Pooled and per-entity metrics of predictions: PCC, RMSE, Spearman.

Pooled metrics treat every test pair alike. Per-drug (or per-cell-line) metrics ask the question LODO is about: does
the model rank the cell lines correctly for one drug? A predictor that is constant within an entity (a drug mean for a
held-out drug) has no per-entity PCC: it is reported as undefined, and the count of such entities is given.

Per-drug metrics come with per-screen metrics beside them (``per_screen_*``): a screen is a drug's rows of one GDSC
drug id (``screens``). 15 compounds of the bundled data were screened twice under two GDSC ids (another assay and
concentration range); a per-drug PCC pools both screens' rows, so it also scores the gap between the two screens'
levels, which a predictor that gives one value per drug and cell line cannot follow. Per screen, each screen is scored
on its own rows, for every predictor alike; for every other drug the two are equal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def pcc(y: np.ndarray, p: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant or there are fewer than 3 points."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if len(y) < 3:
        return float("nan")
    yc, pc = y - y.mean(), p - p.mean()
    denom = np.sqrt((yc**2).sum() * (pc**2).sum())
    if denom <= 1e-12 * max(1.0, float(np.abs(y).max())):
        return float("nan")
    return float((yc * pc).sum() / denom)


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, dtype=np.float64) - np.asarray(p, dtype=np.float64)) ** 2)))


def spearman(y: np.ndarray, p: np.ndarray) -> float:
    if len(y) < 3 or np.ptp(p) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(y, p).statistic)


def per_entity(frame: pd.DataFrame, by: str, pred: str, truth: str = "ln_ic50") -> pd.DataFrame:
    """PCC and RMSE per value of ``by`` (drug_id or cell_id), with the number of pairs."""
    rows = [
        {by: key, "n": len(g), "pcc": pcc(g[truth].to_numpy(), g[pred].to_numpy()),
         "rmse": rmse(g[truth].to_numpy(), g[pred].to_numpy())}
        for key, g in frame.groupby(by, sort=True)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def entity_table(frame: pd.DataFrame, by: str, names: list[str], truth: str = "ln_ic50") -> pd.DataFrame:
    """One row per (predictor, seed, entity): pairs, PCC, Spearman and RMSE, in long format as drevalpy's
    ``evaluation_results_per_drug.csv``, so that other tools (and plots) can read a run's per-entity results."""
    rows = []
    for seed, part in frame.groupby("seed"):
        for name in names:
            for key, g in part.groupby(by, sort=True):
                y, p = g[truth].to_numpy(), g[f"pred_{name}"].to_numpy()
                rows.append({by: key, "predictor": name, "seed": seed, "n_pairs": len(g), "pcc": pcc(y, p),
                             "spearman": spearman(y, p), "rmse": rmse(y, p)})  # fmt: skip
    return pd.DataFrame(rows, columns=[by, "predictor", "seed", "n_pairs", "pcc", "spearman", "rmse"])


SCREEN = "screen_id"
"""The column ``screens`` fills: a drug's rows of one GDSC drug id."""


def screens(frame: pd.DataFrame) -> pd.Series:
    """Each pair's screen: ``<drug_id>/<gdsc_drug_id>``, or the drug_id where pairs carry no GDSC id."""
    drug = frame["drug_id"].astype(str)
    if "gdsc_drug_id" not in frame:
        return drug.rename(SCREEN)
    known = frame["gdsc_drug_id"].notna()
    gdsc = frame["gdsc_drug_id"].astype("Int64").astype(str)
    return drug.where(~known, drug + "/" + gdsc).rename(SCREEN)


def summarise(frame: pd.DataFrame, pred: str, by: str | None, truth: str = "ln_ic50") -> dict[str, float]:
    """Pooled PCC, RMSE, Spearman, and the mean and sd of per-entity PCC and RMSE over entities ``by`` (for drugs,
    also over screens: ``screens``)."""
    y, p = frame[truth].to_numpy(), frame[pred].to_numpy()
    out = {"n_pairs": float(len(frame)), "pcc": pcc(y, p), "rmse": rmse(y, p), "spearman": spearman(y, p)}
    if by is not None:
        out |= _entity_summary(frame, by, pred, truth)
    if by == "drug_id":
        out |= _entity_summary(frame.assign(**{SCREEN: screens(frame)}), SCREEN, pred, truth)
    return out


def _entity_summary(frame: pd.DataFrame, by: str, pred: str, truth: str) -> dict[str, float]:
    table = per_entity(frame, by, pred, truth)
    defined = table["pcc"].dropna()
    return {
        f"{_short(by)}_pcc_mean": float(defined.mean()) if len(defined) else float("nan"),
        f"{_short(by)}_pcc_sd": float(defined.std(ddof=1)) if len(defined) > 1 else float("nan"),
        f"{_short(by)}_pcc_undefined": float(table["pcc"].isna().sum()),
        f"{_short(by)}_rmse_mean": float(table["rmse"].mean()),
        f"{_short(by)}_rmse_sd": float(table["rmse"].std(ddof=1)) if len(table) > 1 else float("nan"),
    }


def weighted_pcc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Pearson correlation of grid cells weighted by their number of measurements."""
    my, mp = np.average(y, weights=w), np.average(p, weights=w)
    cov = np.average((y - my) * (p - mp), weights=w)
    var = np.average((y - my) ** 2, weights=w) * np.average((p - mp) ** 2, weights=w)
    return float(cov / np.sqrt(var)) if var > 0 else float("nan")


def mean_row_pcc(w: np.ndarray, y: np.ndarray, p: np.ndarray) -> float:
    """Mean over grid rows (drugs) with at least 3 weighted cells and non-constant values of their weighted PCC."""
    n = w.sum(axis=1, keepdims=True)
    ok = (n[:, 0] >= 3) & ((w > 0).sum(axis=1) >= 3)
    n = np.where(n > 0, n, 1)
    my, mp = (w * y).sum(axis=1, keepdims=True) / n, (w * p).sum(axis=1, keepdims=True) / n
    cov = (w * (y - my) * (p - mp)).sum(axis=1)
    var = (w * (y - my) ** 2).sum(axis=1) * (w * (p - mp) ** 2).sum(axis=1)
    ok &= var > 0
    return float(np.mean(cov[ok] / np.sqrt(var[ok]))) if ok.any() else float("nan")


def _short(by: str) -> str:
    return {"drug_id": "per_drug", "cell_id": "per_cell", SCREEN: "per_screen"}.get(by, by)
