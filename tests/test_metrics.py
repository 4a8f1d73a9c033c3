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
