"""What a run and a report write: per-entity CSVs, statistics in metrics.json, report tables and figures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import tiny_spec
from PIL import Image
from scipy import stats

from fused_train.cli import cli
from fused_train.plots import curve_mean
from fused_train.runs import RunSpec, predictions, summarise_run, train
from fused_train.splits import FoldSelectionError
from fused_train.stats import entity_pcc, holm


@pytest.fixture(scope="module")
def lodo_run(trained_on: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    dataset, cache = trained_on
    run_dir = tmp_path_factory.mktemp("report") / "fused-lodo"
    train(tiny_spec(dataset, epochs=3), run_dir, fold="0-5", cache_dir=cache, quiet=True)
    summarise_run(run_dir)
    return run_dir


def test_every_run_writes_per_drug_and_per_cell_csvs(lodo_run: Path) -> None:
    per_drug = pd.read_csv(lodo_run / "per_drug.csv", dtype={"drug_id": str})
    per_cell = pd.read_csv(lodo_run / "per_cell.csv", dtype={"cell_id": str})
    assert list(per_drug.columns) == ["drug_id", "predictor", "seed", "n_pairs", "pcc", "spearman", "rmse"]
    frame = predictions(lodo_run)
    assert len(per_drug) == 6 * 5 and set(per_drug["predictor"]) == {"fused", *["global-mean", "drug-mean",
                                                                              "cell-mean", "mean-effects"]}  # fmt: skip
    row = per_drug[per_drug["predictor"] == "fused"].iloc[0]
    pairs = frame[frame["drug_id"] == row["drug_id"]]
    assert row["pcc"] == pytest.approx(stats.pearsonr(pairs["ln_ic50"], pairs["pred_fused"]).statistic)
    assert row["n_pairs"] == len(pairs)
    assert per_cell["cell_id"].nunique() == frame["cell_id"].nunique()


def test_metrics_json_holds_intervals_and_paired_tests(lodo_run: Path) -> None:
    statistics = json.loads((lodo_run / "metrics.json").read_text())["statistics"]
    assert statistics["entity"] == "drug_id" and statistics["method"]["n_resamples"] == 2000
    vs_cell_mean = next(c for c in statistics["paired"] if (c["a"], c["b"]) == ("fused", "cell-mean"))
    frame = predictions(lodo_run)
    d = (entity_pcc(frame, "drug_id", "pred_fused") - entity_pcc(frame, "drug_id", "pred_cell-mean")).dropna()
    assert vs_cell_mean["n"] == len(d) and vs_cell_mean["wins"] == int((d > 0).sum())
    assert vs_cell_mean["p_two_sided"] == pytest.approx(stats.wilcoxon(d).pvalue)
    interval = statistics["intervals"]["fused"]["entity_pcc_mean"]
    assert interval["low"] <= interval["estimate"] <= interval["high"]


def test_report_tables_figures_and_folders_that_are_not_runs(lodo_run: Path, tmp_path: Path) -> None:
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "grid.csv").write_text("lr\n")  # what `runs/*` also matches
    out = tmp_path / "report"
    args = ["report", str(lodo_run), str(tmp_path / "not-a-run"), str(tmp_path / "grid.csv"), "--out", str(out),
            "--svg", "--compare-models", str(tmp_path / "deepcdr-*")]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert "not-a-run: not a run directory (no config.json)" in result.stderr
    assert "grid.csv: not a directory" in result.stderr
    assert "deepcdr-*: no such file or directory" in result.stderr  # a shell pattern that matched no run
    report = pd.read_csv(out / "report.csv")
    model = report[report["predictor"] == "fused"].iloc[0]
    assert model["drugs won"].endswith("/6") and model["PCC 95% CI"].startswith("[")
    assert "Δ per-drug PCC vs cell-mean [95% CI]" in report.columns
    paired = pd.read_csv(out / "paired.csv")
    assert list(paired["versus"]) == ["naive: global-mean", "naive: drug-mean", "naive: cell-mean",
                                      "naive: mean-effects"]  # fmt: skip
    assert "## Paired comparisons" in (out / "report.md").read_text()
    p = [float(x) for x in paired["p (two-sided)"]]  # Holm over the table's four tests: 4, 3, 2, 1 x the sorted p
    assert [float(x) for x in paired["p Holm (two-sided)"]] == pytest.approx(holm(p), rel=0.06, nan_ok=True)
    assert all(not float(h) < q for h, q in zip(paired["p Holm (two-sided)"], p, strict=True))  # never smaller
    for name in ("learning_curves", "predicted_vs_observed", "per_drug_pcc", "per_tissue_pcc", "critical_difference"):
        width, height = Image.open(out / f"{name}.png").size
        assert width > 400 and height > 300
        assert (out / f"{name}.svg").read_text().startswith("<?xml")


def test_a_report_of_nothing_but_non_runs_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "report").mkdir()
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "report")], standalone_mode=False)
    assert "no finished run among the paths given" in str(result.exception)


def test_a_bad_fold_leaves_no_run_directory(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    with pytest.raises(FoldSelectionError, match="this split has folds 0-9"):
        train(tiny_spec(dataset), tmp_path / "run", fold="300", cache_dir=cache)
    assert not (tmp_path / "run").exists()


def test_learning_curve_mean_keeps_a_finished_folds_last_value() -> None:
    long = pd.DataFrame({"epoch": [0, 1, 2, 3], "val_pcc": [0.1, 0.2, 0.3, 0.4]})
    short = pd.DataFrame({"epoch": [0, 1], "val_pcc": [0.5, 0.6]})
    mean = curve_mean([long, short], "val_pcc")
    np.testing.assert_allclose(mean.to_numpy(), [0.3, 0.4, 0.45, 0.5])  # the short fold stays at 0.6


def test_models_are_compared_with_each_other_on_request(lodo_run: Path, trained_on: tuple[str, Path],
                                                        tmp_path: Path) -> None:  # fmt: skip
    dataset, cache = trained_on
    other = tmp_path / "fused-lodo-expression"
    train(replace(tiny_spec(dataset, epochs=2), omics=()), other, fold="0-5", cache_dir=cache, quiet=True)
    from fused_train.report import paired_table

    summarise_run(other)
    table = paired_table([lodo_run, other], between_models=True)
    between = table[~table["versus"].str.startswith("naive")]
    assert len(between) == 1 and between.iloc[0]["drugs"] == 6


def test_two_runs_that_differ_only_in_options_are_told_apart_by_their_directories(
    trained_on: tuple[str, Path], tmp_path: Path
) -> None:
    from fused_train.report import paired_table

    dataset, cache = trained_on
    runs = [tmp_path / "neighbours-k2", tmp_path / "neighbours-k3"]
    for run, k in zip(runs, (2, 3), strict=True):
        spec = RunSpec(model="neighbours", drug_encoder="morgan", omics=("methylation",), dataset=dataset,
                       options={"k": [k]})  # fmt: skip
        train(spec, run, fold="0-3", cache_dir=cache, quiet=True)
        summarise_run(run)
    table = paired_table(runs, between_models=True)
    between = table[~table["versus"].str.startswith("naive")]
    assert list(between[["run", "versus"]].iloc[0]) == ["neighbours-k2", "neighbours-k3"]
    assert set(table["run"]) == {"neighbours-k2", "neighbours-k3"}


def test_a_report_has_no_empty_rows_nor_empty_files(lodo_run: Path, trained_on: tuple[str, Path],
                                                    tmp_path: Path) -> None:  # fmt: skip
    from fused_train.report import write_report

    paths = write_report([lodo_run], tmp_path / "lodo")
    markdown = paths["markdown"].read_text()
    shown = markdown[markdown.index("## Paired comparisons") : markdown.index("## LODO by target pathway")]
    assert "naive: cell-mean" in shown and "| naive: drug-mean" not in shown  # the drug mean ranks no drug in LODO
    assert "Not shown (no entity where both PCCs are defined): fused · morgan" in shown
    assert "vs naive: drug-mean" in shown
    assert len(pd.read_csv(paths["pathways"])) > 0
    dataset, cache = trained_on
    drug_known = tmp_path / "fused-drug-known"
    train(tiny_spec(dataset, split="drug-known", epochs=2), drug_known, cache_dir=cache, quiet=True)
    paths = write_report([drug_known], tmp_path / "drug-known")
    assert "pathways" not in paths and not (tmp_path / "drug-known" / "per_pathway.csv").exists()
