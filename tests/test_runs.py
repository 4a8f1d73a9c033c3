"""Run directories: resume, reports, errors that name what to do, and the package boundary of the trainer."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import tiny_spec

from fused_train.cli import cli, main
from fused_train.runs import RunSpec, predictions, summarise_run, train


def test_run_resumes_reports_and_explains_errors(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    runner = CliRunner()
    args = ["run", "--model", "fused", "--drug-encoder", "morgan", "--omics", "methylation", "--dataset", dataset,
            "--cache-dir", str(cache), "--epochs", "2", "--width", "16", "--heads", "2", "--proj", "8",
            "--hidden", "16,8", "--quiet", "--out", str(tmp_path / "run")]  # fmt: skip
    first = runner.invoke(cli, [*args, "--fold", "0-1"], catch_exceptions=False)
    assert "trained 2 folds now" in first.output
    again = runner.invoke(cli, [*args, "--fold", "0-2"], catch_exceptions=False)
    assert "trained 1 folds now" in again.output
    frame = predictions(tmp_path / "run")
    assert frame["fold"].nunique() == 3 and {"pred_fused", "pred_mean-effects"} <= set(frame.columns)
    assert (tmp_path / "run" / "curves").is_dir()
    table = summarise_run(tmp_path / "run")
    assert set(table["predictor"]) == {"fused", "global-mean", "drug-mean", "cell-mean", "mean-effects"}

    out = runner.invoke(cli, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")])
    assert out.exit_code == 0, out.output
    assert "naive: mean-effects" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "learning_curves.png").stat().st_size > 0

    more_epochs = [a if a != "2" else "3" for a in args]  # --epochs 3 and --heads 3 over width 16: refused first
    changed = runner.invoke(cli, more_epochs, standalone_mode=False)
    assert "must be divisible by the number of heads 3" in str(changed.exception)
    changed = runner.invoke(cli, [*args[: args.index("--epochs") + 1], "3", *args[args.index("--epochs") + 2 :]],
                            standalone_mode=False)  # fmt: skip
    assert "holds a different run" in str(changed.exception)


def test_missing_store_names_the_build_command(
    trained_on: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, cache = trained_on
    with pytest.raises(FileNotFoundError, match="fused-cache build --encoder chemnet"):
        train(replace(tiny_spec(dataset), drug_encoder="chemnet"), tmp_path / "run", cache_dir=cache)
    args = ["run", "--dataset", dataset, "--cache-dir", str(cache), "--drug-encoder", "chemnett"]
    argv = ["fused-train", *args, "--out", str(tmp_path / "typo")]
    with pytest.raises(SystemExit) as exit_, mock.patch.object(sys, "argv", argv):
        main()
    assert exit_.value.code == 2 and "'chemnett' is not an encoder" in capsys.readouterr().err


def test_the_trainer_never_imports_encoders_or_the_build() -> None:
    """Data flows one way: fused_train reads stores and never loads encoder or build code."""
    code = (
        "import sys, fused_train, fused_train.report; "
        "print([m for m in sys.modules if m == 'fused_cache.build' or m.startswith('fused_cache.encoders')])"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_fold_selection_errors_are_clear(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    args = ["run", "--dataset", dataset, "--cache-dir", str(cache), "--drug-encoder", "morgan", "--fold", "99"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r")], standalone_mode=False)
    assert "this split has folds 0-9" in str(result.exception)


@pytest.mark.parametrize(
    ("select_by", "column", "words"),
    [("auto", "val_drug_pcc", "per-drug PCC"), ("rmse", "val_rmse", "RMSE")],  # auto on lodo: per-drug PCC
)
def test_grid_ranks_settings_by_validation_only(
    trained_on: tuple[str, Path], tmp_path: Path, select_by: str, column: str, words: str
) -> None:
    dataset, cache = trained_on
    args = ["grid", "--drug-encoder", "morgan", "--dataset", dataset, "--cache-dir", str(cache), "--fold", "0-1",
            "--epochs", "2", "--lr", "0.01", "--lr", "0.0001", "--heads", "2", "--hidden", "16,8", "--width", "16",
            "--proj", "8", "--precision", "fp32", "--select-by", select_by, "--quiet",
            "--out", str(tmp_path / "grid")]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    table = pd.read_csv(tmp_path / "grid" / "grid.csv")
    best_first = (
        table[column].is_monotonic_decreasing if column == "val_drug_pcc" else table[column].is_monotonic_increasing
    )
    assert len(table) == 2 and best_first
    for _, row in table.iterrows():
        curves = [pd.read_csv(f) for f in (Path(row["run"]) / "curves").glob("*.csv")]
        best = [c[column].max() if column == "val_drug_pcc" else c[column].min() for c in curves]
        assert row[column] == pytest.approx(np.mean(best))
    assert f"best by validation {words}" in result.output


def test_grid_refuses_a_model_that_chooses_its_own_options(
    trained_on: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """neighbours has no learning curve to rank by: the grid says so instead of ranking nothing."""
    dataset, cache = trained_on
    argv = ["fused-train", "grid", "--model", "neighbours", "--drug-encoder", "morgan", "--dataset", dataset,
            "--cache-dir", str(cache), "--fold", "0", "--out", str(tmp_path / "grid")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_, mock.patch.object(sys, "argv", argv):
        main()
    assert exit_.value.code == 2 and "neighbours chooses its own options" in capsys.readouterr().err
    assert not (tmp_path / "grid").exists()


def test_deepcdr_gcn_and_cell_out_train_and_report_per_cell_line(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    spec = replace(tiny_spec(dataset, split="cell-out", epochs=2), model="deepcdr", drug_encoder="graph",
                   options={"gcn": [16, 8], "branch": [16, 8]})  # fmt: skip
    spec = replace(spec, train=replace(spec.train, precision="bf16"))  # autocast through the sparse GCN
    assert len(train(spec, tmp_path / "run", cache_dir=cache, quiet=True)) == 5
    frame = predictions(tmp_path / "run")
    assert np.isfinite(frame["pred_deepcdr"]).all()
    assert frame["cell_id"].nunique() == 40  # every cell line is held out once
    assert "per_cell_pcc_mean" in summarise_run(tmp_path / "run").columns


def test_a_run_spec_reads_back_from_its_config_json(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    spec = tiny_spec(dataset, epochs=1)
    train(spec, tmp_path / "run", fold="0", cache_dir=cache, quiet=True)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert RunSpec.from_json(config).to_json() == config


@pytest.mark.parametrize(
    ("split", "metric"),
    [("lodo", "drug-pcc"), ("pilot-5", "drug-pcc"), ("drug-known", "rmse"), ("cell-out", "rmse"), ("fit", "rmse")],
)
def test_the_selection_metric_follows_the_split_unless_given(split: str, metric: str) -> None:
    """``auto`` is resolved when the spec is made, so config.json records the metric that chose every epoch."""
    spec = tiny_spec("gdsc-deepcdr", split=split)
    assert spec.train.select_by == metric
    assert RunSpec.from_json(spec.to_json()).train.select_by == metric
    other = "rmse" if metric == "drug-pcc" else "drug-pcc"
    assert replace(spec, train=replace(spec.train, select_by=other)).train.select_by == other
