"""Paired statistics against scipy and against a hand-computed case; bootstrap intervals against a direct loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fused_train import stats as fstats


def test_paired_test_on_a_hand_made_case() -> None:
    # five drugs; the model's PCC is undefined for d3 (e.g. constant predictions), d2 is a tie
    model = pd.Series({"d1": 0.5, "d2": 0.6, "d3": np.nan, "d4": 0.3, "d5": 0.4})
    baseline = pd.Series({"d1": 0.4, "d2": 0.6, "d3": 0.2, "d4": 0.1, "d5": 0.45})
    test = fstats.paired_test(model, baseline)
    assert (test.n, test.undefined, test.wins, test.losses, test.ties) == (4, 1, 2, 1, 1)
    assert test.difference.estimate == pytest.approx((0.1 + 0 + 0.2 - 0.05) / 4)
    # the tie is dropped; |d| = 0.1, 0.2, 0.05 rank 2, 3, 1: W+ = 5 of 6. Exact null over the 8 sign patterns:
    # W+ in {0, 1, 2, 3, 3, 4, 5, 6}, so P(W+ >= 5) = 2/8 and the two-sided p doubles it.
    assert test.p_greater == pytest.approx(0.25)
    assert test.p_two_sided == pytest.approx(0.5)
    d = np.array([0.1, 0.2, -0.05])
    assert test.p_two_sided == pytest.approx(stats.wilcoxon(d).pvalue)
    assert test.p_greater == pytest.approx(stats.wilcoxon(d, alternative="greater").pvalue)
    assert test.mean_a == pytest.approx(np.mean([0.5, 0.6, 0.3, 0.4]))
    assert test.sd_b == pytest.approx(np.std([0.4, 0.6, 0.1, 0.45], ddof=1))


def test_paired_test_matches_scipy_on_many_drugs() -> None:
    rng = np.random.default_rng(1)
    base = pd.Series(rng.uniform(0.2, 0.7, 80), index=[f"drug{i}" for i in range(80)])
    model = base + rng.normal(0.03, 0.05, 80)
    test = fstats.paired_test(model, base)
    assert test.p_two_sided == pytest.approx(stats.wilcoxon(model - base).pvalue)
    assert test.p_greater == pytest.approx(stats.wilcoxon(model - base, alternative="greater").pvalue)
    assert test.p_greater < 0.05 and test.difference.low < 0.03 < test.difference.high
    assert np.isnan(fstats.paired_test(base, base).p_two_sided)  # nothing to test when every pair ties


def _frame(n_drugs: int = 12, seed: int = 0) -> pd.DataFrame:
    """Test pairs of a toy run: per drug 15 cell lines, a prediction with some signal."""
    rng = np.random.default_rng(seed)
    drugs = np.repeat([f"d{i:02d}" for i in range(n_drugs)], 15)
    truth = rng.normal(size=len(drugs)) + np.repeat(rng.normal(size=n_drugs), 15)
    return pd.DataFrame({"seed": 0, "drug_id": drugs, "ln_ic50": truth,
                         "pred_model": truth + rng.normal(scale=1.5, size=len(drugs))})  # fmt: skip


def test_bootstrap_intervals_resample_drugs() -> None:
    frame = _frame()
    got = fstats.intervals(frame, "drug_id", "pred_model", n_resamples=300)
    # the same resamples drawn directly: drugs with replacement, all pairs of a drawn drug pooled
    drugs = np.array(sorted(frame["drug_id"].unique()))
    draws = np.random.default_rng(fstats.SEED).integers(0, len(drugs), size=(300, len(drugs)))
    groups = {d: g for d, g in frame.groupby("drug_id")}
    per_drug = {d: stats.pearsonr(g["ln_ic50"], g["pred_model"]).statistic for d, g in groups.items()}
    pooled, means = [], []
    for row in draws:
        sample = pd.concat([groups[drugs[i]] for i in row])
        pooled.append(stats.pearsonr(sample["ln_ic50"], sample["pred_model"]).statistic)
        means.append(np.mean([per_drug[drugs[i]] for i in row]))
    assert (got["pcc"].low, got["pcc"].high) == pytest.approx(tuple(np.percentile(pooled, [2.5, 97.5])))
    assert (got["entity_pcc_mean"].low, got["entity_pcc_mean"].high) == pytest.approx(
        tuple(np.percentile(means, [2.5, 97.5]))
    )
    assert got["pcc"].estimate == pytest.approx(stats.pearsonr(frame["ln_ic50"], frame["pred_model"]).statistic)
    assert got["entity_pcc_mean"].estimate == pytest.approx(np.mean(list(per_drug.values())))
    assert fstats.intervals(frame, "drug_id", "pred_model", n_resamples=300) == got  # seeded: reproducible


def test_several_seeds_average_per_drug_and_pooled() -> None:
    a, b = _frame(seed=0), _frame(seed=1).assign(seed=1)
    both = pd.concat([a, b], ignore_index=True)
    pcc = fstats.entity_pcc(both, "drug_id", "pred_model")
    expected = (fstats.entity_pcc(a, "drug_id", "pred_model") + fstats.entity_pcc(b, "drug_id", "pred_model")) / 2
    pd.testing.assert_series_equal(pcc, expected)
    pooled = fstats.intervals(both, "drug_id", "pred_model", n_resamples=50)["pcc"].estimate
    per_seed = [stats.pearsonr(f["ln_ic50"], f["pred_model"]).statistic for f in (a, b)]
    assert pooled == pytest.approx(np.mean(per_seed))


def test_compare_pairs_every_model_with_every_baseline() -> None:
    frame = _frame().assign(pred_mean=lambda f: f.groupby("drug_id")["ln_ic50"].transform("mean"))
    frame["pred_noisy"] = frame["ln_ic50"] + np.random.default_rng(3).normal(scale=3, size=len(frame))
    result = fstats.compare(frame, "drug_id", ["model", "mean", "noisy"], baselines=["mean", "noisy"])
    pairs = [(c["a"], c["b"]) for c in result["paired"]]
    assert pairs == [("model", "mean"), ("model", "noisy")]
    by_mean = result["paired"][0]
    assert by_mean["n"] == 0 and by_mean["undefined"] == 12  # a constant prediction per drug has no per-drug PCC
    assert result["intervals"]["model"]["pcc"]["low"] < result["intervals"]["model"]["pcc"]["high"]
    assert result["method"]["n_resamples"] == fstats.N_RESAMPLES


def test_a_constant_predictor_has_no_pooled_pcc_interval() -> None:
    frame = _frame().assign(pred_constant=1.7)
    got = fstats.intervals(frame, "drug_id", "pred_constant", n_resamples=50)
    assert np.isnan(got["pcc"].estimate) and np.isnan(got["pcc"].low) and np.isnan(got["entity_pcc_mean"].high)


def test_holm_by_hand_and_against_statsmodels() -> None:
    # sorted 0.01, 0.02, 0.04, 0.5 -> 4 x 0.01, 3 x 0.02, 2 x 0.04 (kept monotone), 1 x 0.5; NaN is no test
    adjusted = fstats.holm([0.04, 0.01, np.nan, 0.5, 0.02])
    np.testing.assert_allclose(adjusted, [0.08, 0.04, np.nan, 0.5, 0.06])
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(3).uniform(0, 0.2, 30)
    np.testing.assert_allclose(fstats.holm(p), multitest.multipletests(p, method="holm")[1])


def test_ranking_is_friedman_and_nemenyi_over_complete_entities() -> None:
    rng = np.random.default_rng(1)
    pcc = pd.DataFrame({"good": rng.uniform(0.6, 0.8, 40), "middle": rng.uniform(0.4, 0.7, 40),
                        "bad": rng.uniform(0.0, 0.5, 40)})  # fmt: skip
    pcc.loc[3, "middle"] = np.nan  # an undefined PCC leaves its entity out of every predictor's ranks
    pcc["constant"] = np.nan  # a predictor without any defined PCC is left out and named
    result = fstats.ranking(pcc)
    assert result.left_out == ["constant"] and fstats.ranking(pcc[["good", "bad", "constant"]]) is None
    complete = pcc.drop(index=3, columns="constant")
    assert result.entities == 39 and result.undefined == 1
    assert list(result.mean_ranks.index) == ["good", "middle", "bad"] and result.mean_ranks["good"] < 1.5
    assert result.mean_ranks.mean() == pytest.approx(2.0)  # ranks 1..3 on every entity
    assert result.friedman_p == pytest.approx(stats.friedmanchisquare(*complete.to_numpy().T).pvalue)
    assert result.nemenyi.loc["good", "bad"] < 0.05 and result.nemenyi.loc["good", "good"] == 1
