"""Naive predictors and metrics against values computed by hand and by scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fused_train import metrics
from fused_train.models.naive import naive_predictions
from fused_train.splits import TEST, TRAIN, VAL


def test_naive_predictors_match_hand_computed_values() -> None:
    # drugs x cells; drug 0 measured twice on cell 0 (mean 2.0); cell 2 of drug 1 is the test cell
    count = np.array([[2, 1, 1], [1, 1, 1]], dtype=np.float32)
    target = np.array([[2.0, 4.0, 0.0], [1.0, 3.0, 9.0]], dtype=np.float32)
    roles = np.array([[TRAIN, TRAIN, VAL], [TRAIN, TRAIN, TEST]], dtype=np.int8)
    pred = naive_predictions(count, target, roles)
    # fitting rows: 2,2 | 4 | 0 | 1 | 3 -> global mean 12 / 6 = 2
    assert pred["global-mean"][1, 2] == pytest.approx(2.0)
    assert pred["drug-mean"][1, 2] == pytest.approx(2.0)  # drug 1: (1 + 3) / 2
    assert pred["cell-mean"][1, 2] == pytest.approx(0.0)  # cell 2: only drug 0's 0.0
    # drug offsets: d0 = 8/4 - 2 = 0, d1 = 0; cell 2 offset after both: 0 - 2 - 0 = -2
    assert pred["mean-effects"][1, 2] == pytest.approx(0.0)
    assert pred["mean-effects"][0, 0] == pytest.approx(2 + 0 + ((2 - 2) * 2 + (1 - 2)) / 3)


def test_metrics_match_scipy() -> None:
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=200), rng.normal(size=200)
    p += y
    assert metrics.pcc(y, p) == pytest.approx(stats.pearsonr(y, p).statistic)
    assert metrics.spearman(y, p) == pytest.approx(stats.spearmanr(y, p).statistic)
    assert metrics.rmse(y, p) == pytest.approx(np.sqrt(np.mean((y - p) ** 2)))
    frame = pd.DataFrame({"drug_id": np.repeat(["a", "b"], 100), "ln_ic50": y, "pred": p})
    table = metrics.per_entity(frame, "drug_id", "pred")
    assert table["pcc"].tolist() == pytest.approx([stats.pearsonr(y[:100], p[:100]).statistic,
                                                   stats.pearsonr(y[100:], p[100:]).statistic])  # fmt: skip
    assert np.isnan(metrics.pcc(y, np.ones_like(y)))  # constant predictions have no correlation


def test_a_compound_screened_twice_is_two_screens_per_screen_and_one_drug_per_drug() -> None:
    """Drug "1" was screened under GDSC ids 10 and 11 at two levels; the prediction follows the lines, not the level.
    Per drug, one PCC over both screens' rows; per screen, each screen's own PCC (drug "2" is one screen)."""
    rng = np.random.default_rng(0)
    lines = rng.normal(size=8)
    frame = pd.DataFrame({
        "drug_id": ["1"] * 16 + ["2"] * 8,
        "gdsc_drug_id": [10] * 8 + [11] * 8 + [20] * 8,
        "ln_ic50": np.concatenate([lines, 3 + lines + rng.normal(scale=0.5, size=8), -lines]),
        "pred": np.concatenate([lines, lines, -lines + rng.normal(scale=0.5, size=8)]),
    })  # fmt: skip
    assert sorted(metrics.screens(frame).unique()) == ["1/10", "1/11", "2/20"]
    out = metrics.summarise(frame, "pred", "drug_id")
    drug_1, drug_2 = (frame[frame["drug_id"] == d] for d in ("1", "2"))
    screen_11 = drug_1[drug_1["gdsc_drug_id"] == 11]
    by_drug = [metrics.pcc(g["ln_ic50"], g["pred"]) for g in (drug_1, drug_2)]
    by_screen = [1.0, metrics.pcc(screen_11["ln_ic50"], screen_11["pred"]), by_drug[1]]
    assert out["per_drug_pcc_mean"] == pytest.approx(np.mean(by_drug))
    assert out["per_screen_pcc_mean"] == pytest.approx(np.mean(by_screen))
    assert out["per_screen_pcc_mean"] > out["per_drug_pcc_mean"]
    without_ids = metrics.summarise(frame.drop(columns="gdsc_drug_id"), "pred", "drug_id")
    assert without_ids["per_screen_pcc_mean"] == pytest.approx(out["per_drug_pcc_mean"])
