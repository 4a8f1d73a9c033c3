"""Cross-study evaluation: fit on one dataset, predict another's shared drugs and cell lines (by PubChem CID and
DepMap id), naive predictors fitted on the training dataset, what could not be matched listed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import tiny_spec, write_drevalpy

from fused_cache import datasets
from fused_cache.datasets import Dataset
from fused_train.cli import cli
from fused_train.cross_study import cross_study
from fused_train.runs import RunError


@pytest.fixture(scope="module")
def other_screen(gdsc: Dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Dataset]:
    """A second screen in drevalpy's layout overlapping the training data (10 drugs x 40 cell lines, the first of
    each) in 5 drugs and 20 cell lines, its labels those of the bundled data plus noise (another lab's measurement)."""
    cells = gdsc.cells[gdsc.cells["cell_id"].isin(gdsc.omics["expression"].index)
                       & gdsc.cells["cell_id"].isin(gdsc.omics["methylation"].index)].iloc[20:60]  # fmt: skip
    drugs = gdsc.drugs.iloc[5:15]
    pairs = gdsc.pairs[gdsc.pairs["drug_id"].isin(drugs["drug_id"]) & gdsc.pairs["cell_id"].isin(cells["cell_id"])]
    noise = np.random.default_rng(0).normal(0, 0.5, len(pairs))
    screen = Dataset("screen", drugs.reset_index(drop=True), cells.reset_index(drop=True),
                     pairs.assign(ln_ic50=pairs["ln_ic50"] + noise).reset_index(drop=True),
                     {"expression": gdsc.omics["expression"].loc[cells["cell_id"]]})  # fmt: skip
    folder = write_drevalpy(screen, tmp_path_factory.mktemp("other") / "SCREEN")
    return f"drevalpy:{folder}", screen


def test_cross_study_scores_the_shared_pairs_beside_naive_predictors_of_the_training_data(
    trained_on: tuple[str, Path], other_screen: tuple[str, Dataset], tmp_path: Path
) -> None:
    dataset, cache = trained_on
    test_name, screen = other_screen
    train = datasets.load(dataset)
    out = tmp_path / "cs"
    args = ["cross-study", "--dataset", dataset, "--test-dataset", test_name, "--cache-dir", str(cache),
            "--drug-encoder", "morgan", "--omics", "methylation", "--epochs", "3", "--cells-per-step", "16",
            "--precision", "fp32", "--width", "16", "--heads", "2", "--proj", "8", "--hidden", "16,8", "--quiet",
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "test pairs matched (5 drugs, " in result.output and "unmatched: 5 drugs, 20 cell lines" in result.output
    metrics = pd.read_csv(out / "metrics.csv")
    shared = screen.pairs[screen.pairs["drug_id"].isin(train.drugs["drug_id"])
                          & screen.pairs["cell_id"].isin(train.cells["cell_id"])]  # fmt: skip
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert len(predictions) == len(shared) > 0
    assert list(predictions["train_cell_id"]) == list(shared["cell_id"])  # matched through DepMap ids, not names
    np.testing.assert_allclose(predictions["ln_ic50"], shared["ln_ic50"], rtol=1e-6)  # the test screen's labels
    cell_mean = train.pairs.groupby("cell_id")["ln_ic50"].mean()  # naive: fitted on the training dataset
    np.testing.assert_allclose(predictions["pred_cell-mean"], cell_mean.loc[shared["cell_id"]], rtol=1e-5)
    assert list(metrics["predictor"]) == ["fused", "global-mean", "drug-mean", "cell-mean", "mean-effects"]
    assert {"pcc", "rmse", "per_drug_pcc_mean", "per_cell_pcc_mean"} <= set(metrics.columns)
    per_drug = pd.read_csv(out / "per_drug.csv", dtype={"drug_id": str})
    assert set(per_drug["drug_id"]) == set(shared["drug_id"]) and "per_cell.csv" in {p.name for p in out.iterdir()}
    unmatched = pd.read_csv(out / "unmatched.csv", dtype={"id": str})
    drugs = unmatched[unmatched["entity"] == "drug"]
    assert set(drugs["id"]) == set(screen.drugs["drug_id"]) - set(train.drugs["drug_id"])
    assert (drugs["reason"] == "no training drug with this PubChem CID").all()
    summary = json.loads((out / "cross_study.json").read_text())
    assert summary["matched pairs"] == len(shared) and summary["unmatched"]["drug"] == 5
    assert summary["unmatched"]["cell"] == 20


def test_cross_study_refuses_what_it_cannot_do(
    trained_on: tuple[str, Path], other_screen: tuple[str, Dataset], tmp_path: Path
) -> None:
    dataset, cache = trained_on
    with pytest.raises(RunError, match="the test dataset is the training dataset"):
        cross_study(tiny_spec(dataset, split="fit"), dataset, tmp_path / "a", cache)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    with pytest.raises(RunError, match="exists and is not empty"):
        cross_study(tiny_spec(dataset, split="fit"), other_screen[0], tmp_path / "b", cache)
