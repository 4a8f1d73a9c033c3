"""Leave-tissue-out (``--split tissue-out``, alias LTO): one fold per TCGA type with enough cell lines, validation on
whole other tissues, results per cell line and per tissue beside the naive drug mean."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import run_console, tiny_spec, write_dataset

from fused_cache import build_store, datasets
from fused_cache.datasets import Dataset
from fused_train.cli import main, make_cli
from fused_train.metrics import pcc
from fused_train.runs import RunSpec
from fused_train.splits import TEST, TRAIN, UNUSED, VAL, FoldSelectionError, make_folds, split_of
from fused_train.splits.tissue_out import MIN_LINES, TissueOut
from fused_train.stats import entity_pcc

TYPES = {"LUAD": 12, "BRCA": 10, "SKCM": 10, "SCLC": 5, "UNABLE TO CLASSIFY": 2, "": 3}
"""The toy datasets' cell lines per TCGA type: three types large enough to hold out, one too small, two not a type."""


def toy_grid(measured_share: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    groups = np.array([t for t, n in TYPES.items() for _ in range(n)])
    count = (np.random.default_rng(0).random((6, len(groups))) < measured_share).astype(np.int64)
    count[:, 0] = 1  # every line measured at least once
    count[0] = 1
    return count, np.array([f"D{i}" for i in range(6)]), groups


def test_each_fold_tests_one_tissue_and_validates_on_other_tissues(caplog: pytest.LogCaptureFixture) -> None:
    count, drug_ids, groups = toy_grid()
    with caplog.at_level(logging.INFO, logger="fused_train"):
        folds = make_folds("LTO", count, drug_ids, groups, seed=3)
    assert [f.name for f in folds] == ["tissue-out-seed3-BRCA", "tissue-out-seed3-LUAD", "tissue-out-seed3-SKCM"]
    assert "3 folds, one per TCGA type with >= 10 cell lines; 1 types too small to hold out" in caplog.text
    assert "SCLC (5)" in caplog.text
    for fold in folds:
        assert fold.split == "tissue-out"
        tissue = fold.name.rsplit("-", 1)[1]
        assert ((fold.roles != UNUSED) == (count > 0)).all()
        lines = {role: np.flatnonzero((fold.roles == role).any(axis=0)) for role in (TRAIN, VAL, TEST)}
        assert set(groups[lines[TEST]]) == {tissue} and len(lines[TEST]) == TYPES[tissue]
        assert tissue not in set(groups[lines[VAL]]) and not set(groups[lines[VAL]]) & {"", "UNABLE TO CLASSIFY"}
        for role, cells in lines.items():  # no cell line in two roles
            assert (np.isin(fold.roles[:, cells], (role, UNUSED))).all()
        val_tissues = set(groups[lines[VAL]])  # validation is whole tissues
        assert (np.flatnonzero(np.isin(groups, list(val_tissues))) == lines[VAL]).all()
        assert {"", "UNABLE TO CLASSIFY"} <= set(groups[lines[TRAIN]])  # no type: always training
        assert "SCLC" in set(groups[np.concatenate([lines[TRAIN], lines[VAL]])])  # too small: never tested
    again = make_folds("tissue-out", count, drug_ids, groups, seed=3)
    assert all((a.roles == b.roles).all() for a, b in zip(folds, again, strict=True))


def test_the_threshold_is_stated_and_types_too_small_are_listed() -> None:
    count, _, groups = toy_grid()
    assert TissueOut().min_lines == MIN_LINES == 10
    held, small = TissueOut(min_lines=11).tissues(count > 0, groups)
    assert held == {"LUAD": 12} and small == {"BRCA": 10, "SCLC": 5, "SKCM": 10}


def test_bundled_data_has_twenty_tissue_folds(gdsc: Dataset) -> None:
    cells = gdsc.cells.set_index("cell_id")["tcga_type"].fillna("")
    measured = np.ones((1, len(cells)), dtype=bool)
    held, small = TissueOut().tissues(measured, cells.to_numpy())
    assert len(held) == 20 and min(held.values()) == 11 and held["LUAD"] == 48
    assert small == {"CLL": 3, "LCML": 9, "LGG": 7, "LUSC": 9, "MB": 3, "MESO": 4, "PRAD": 4, "THCA": 8, "UCEC": 6}


def test_a_dataset_without_tissues_or_without_a_large_one_is_refused() -> None:
    count, drug_ids, groups = toy_grid()
    with pytest.raises(FoldSelectionError, match="the dataset gives no cell line a TCGA type"):
        make_folds("tissue-out", count, drug_ids, np.full(len(groups), ""))
    with pytest.raises(FoldSelectionError, match=r"no TCGA type has 10 cell lines with measurements \(largest: LUAD"):
        make_folds("tissue-out", count[:, 5:17], drug_ids, groups[5:17])  # 7 LUAD and 5 BRCA lines
    two = np.array(["LUAD"] * 12 + ["BRCA"] * 3)
    with pytest.raises(FoldSelectionError, match="holding out LUAD leaves no other tissue to train on"):
        make_folds("tissue-out", np.ones((3, 15)), drug_ids[:3], two)


def test_the_command_line_refuses_lto_on_data_without_a_large_tissue_in_one_line(
    trained_on: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, cache = trained_on  # 40 cell lines, at most 6 of one type
    args = ["run", "--model", "naive", "--split", "LTO", "--drug-encoder", "morgan", "--dataset", dataset,
            "--cache-dir", str(cache), "--out", str(tmp_path / "run")]  # fmt: skip
    code, output = run_console(main, "fused-train", capsys, *args)
    assert code == 2 and output.strip().splitlines() == [
        "error: --split tissue-out: no TCGA type has 10 cell lines with measurements (largest: SCLC, 6); use cell-out"
    ]
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_lto_is_an_alias_and_config_json_records_the_name() -> None:
    spec = tiny_spec("gdsc-deepcdr", split="LTO")
    assert spec.split == "tissue-out" and spec.to_json()["split"] == "tissue-out"
    assert spec.train.select_by == "rmse" and spec.saves_models_by_default
    assert RunSpec.from_json(spec.to_json()) == spec
    assert split_of("lto") is split_of("tissue-out") and split_of("tissue-out").entity == "cell_id"
    with pytest.raises(FoldSelectionError, match="unknown split 'LXO'; choose one of drug-known \\(LPO\\)"):
        tiny_spec("gdsc-deepcdr", split="LXO")


@pytest.fixture(scope="module")
def tissues_dataset(gdsc: Dataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """8 drugs x 42 cell lines of the bundled data with expression and methylation, TYPES lines per type."""
    root = tmp_path_factory.mktemp("tissues")
    cells = gdsc.cells[gdsc.cells["cell_id"].isin(gdsc.omics["expression"].index)
                       & gdsc.cells["cell_id"].isin(gdsc.omics["methylation"].index)]  # fmt: skip
    types = cells["tcga_type"].fillna("")
    cells = pd.concat([cells[types == t].head(n) for t, n in TYPES.items()]).reset_index(drop=True)
    drugs = gdsc.drugs.head(8).reset_index(drop=True)
    pairs = gdsc.pairs[gdsc.pairs["drug_id"].isin(drugs["drug_id"]) & gdsc.pairs["cell_id"].isin(cells["cell_id"])]
    omics = {m: gdsc.omics[m].loc[lambda x: x.index.isin(cells["cell_id"])] for m in ("expression", "methylation")}
    path = write_dataset(Dataset("tissues", drugs, cells, pairs.reset_index(drop=True), omics), root / "tissues")
    for encoder in ("morgan", "expression", "methylation"):
        build_store(datasets.load(str(path)), encoder, root / "cache", quiet=True)
    return str(path), root / "cache"


def test_naive_and_fused_runs_on_lto_report_per_tissue(tissues_dataset: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = tissues_dataset
    cli, runner = make_cli(), CliRunner()
    common = ["--drug-encoder", "morgan", "--omics", "methylation", "--dataset", dataset, "--cache-dir", str(cache),
              "--quiet"]  # fmt: skip
    naive = ["run", "--model", "naive", "--split", "LTO", *common, "--out", str(tmp_path / "naive")]
    result = runner.invoke(cli, naive, catch_exceptions=False)
    assert "trained 3 folds now" in result.output and "per_cell_pcc_mean" in result.output
    tiny = ["--width", "16", "--heads", "2", "--proj", "8", "--hidden", "16,8", "--cells-per-step", "16"]
    fused = ["run", "--model", "fused", "--split", "lto", "--epochs", "2", *tiny, *common,
             "--out", str(tmp_path / "fused")]  # fmt: skip
    result = runner.invoke(cli, fused, catch_exceptions=False)
    assert "trained 3 folds now" in result.output
    config = json.loads((tmp_path / "fused" / "config.json").read_text())
    assert config["split"] == "tissue-out" and config["train"]["select_by"] == "rmse"
    assert sorted(p.name for p in (tmp_path / "fused" / "models").iterdir()) == [
        "tissue-out-seed0-BRCA", "tissue-out-seed0-LUAD", "tissue-out-seed0-SKCM"]  # fmt: skip
    statistics = json.loads((tmp_path / "fused" / "metrics.json").read_text())["statistics"]
    assert statistics["entity"] == "cell_id" and {"fused", "drug-mean"} <= set(statistics["intervals"])

    out = tmp_path / "report"
    args = ["report", str(tmp_path / "naive"), str(tmp_path / "fused"), "--out", str(out), "--compare-models"]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    markdown = (out / "report.md").read_text()
    assert "## Per held-out TCGA type" in markdown
    table = pd.read_csv(out / "per_tissue.csv").fillna({"model": ""})
    assert sorted(table["TCGA type"].unique()) == ["BRCA", "LUAD", "SKCM"]
    fused_rows = table[table["model"] == "fused"].set_index("TCGA type")
    naive_rows = table[table["model"] == ""].set_index("TCGA type")
    assert fused_rows.loc["LUAD", "cell lines"] == 12 and fused_rows.loc["LUAD", "cell lines won"].endswith("/12")
    frame = pd.read_parquet(tmp_path / "fused" / "folds" / "tissue-out-seed0-LUAD.parquet")
    assert fused_rows.loc["LUAD", "PCC"] == round(pcc(frame["ln_ic50"], frame["pred_fused"]), 3)
    per_cell = entity_pcc(frame, "cell_id", "pred_drug-mean").mean()
    assert fused_rows.loc["LUAD", "drug-mean per-cell PCC"] == round(per_cell, 3)
    assert naive_rows.loc["LUAD", "drug-mean PCC"] == fused_rows.loc["LUAD", "drug-mean PCC"]  # same folds
    assert np.isnan(naive_rows.loc["LUAD", "PCC"])  # a naive run has no model
    report = pd.read_csv(out / "report.csv")
    assert "Δ per-cell PCC vs drug-mean [95% CI]" in report.columns
    assert set(report["split"]) == {"tissue-out"}


def test_splits_export_writes_one_row_per_cell_line_and_fold(tissues_dataset: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = tissues_dataset
    args = ["splits", "--split", "LTO", "--drug-encoder", "morgan", "--omics", "methylation", "--dataset", dataset,
            "--cache-dir", str(cache), "--export", str(tmp_path / "folds")]  # fmt: skip
    result = CliRunner().invoke(make_cli(), args, catch_exceptions=False)
    assert "3 tissue-out folds" in result.output
    folds = pd.read_csv(tmp_path / "folds" / "folds.csv", keep_default_na=False)
    assert list(folds.columns) == ["fold", "seed", "cell_id", "role"]
    luad = folds[folds["fold"] == "tissue-out-seed0-LUAD"]
    assert (luad["role"] == "test").sum() == 12 and luad["cell_id"].is_unique
