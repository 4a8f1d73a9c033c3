"""A new split is one class plus one registry line (docs/add-a-split.md): runs, the report and the fold export
take it without other changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fused_train.cli import make_cli
from fused_train.seeding import rng
from fused_train.splits import registry
from fused_train.splits.base import Shares, Split
from fused_train.splits.folds import TEST, TRAIN, VAL, Fold, stratified_pick


class CellHalves(Split):
    """Two folds: each holds out a random half of the cell lines; validation lines from the other half."""

    name = "cell-halves"
    title = "half the cell lines out"
    aliases = ("HALVES",)
    holds_out = "cell"

    def folds(
        self, measured: np.ndarray, drug_ids: np.ndarray, cell_groups: np.ndarray, seed: int, shares: Shares
    ) -> list[Fold]:
        half = rng(self.name, seed).permutation(measured.shape[1]) % 2
        folds = []
        for i in (0, 1):
            train_lines = np.flatnonzero(half != i)
            val_lines = stratified_pick(
                train_lines, cell_groups[train_lines], shares.val_fraction, rng(self.name, seed, i)
            )
            roles = measured.astype(np.int8) * TRAIN
            roles[:, val_lines] *= VAL
            roles[:, half == i] *= TEST
            folds.append(Fold(f"{self.name}-seed{seed}-{i}", self.name, seed, roles))
        return folds


def test_a_registered_toy_split_runs_reports_and_exports(
    trained_on: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.SPLITS, "cell-halves", CellHalves())  # the one registry line
    cli, runner = make_cli(), CliRunner()
    assert "HALVES = cell-halves" in runner.invoke(cli, ["run", "--help"]).output
    dataset, cache = trained_on
    common = ["--drug-encoder", "morgan", "--omics", "methylation", "--dataset", dataset, "--cache-dir", str(cache)]
    args = ["run", "--model", "fused", "--split", "halves", "--epochs", "2", "--width", "16", "--heads", "2",
            "--proj", "8", "--hidden", "16,8", "--cells-per-step", "16", "--quiet", *common,
            "--out", str(tmp_path / "run")]  # fmt: skip
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert "trained 2 folds now" in result.output and "per_cell_pcc_mean" in result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["split"] == "cell-halves" and config["train"]["select_by"] == "rmse"
    assert sorted(p.name for p in (tmp_path / "run" / "models").iterdir()) == ["cell-halves-seed0-0",
                                                                               "cell-halves-seed0-1"]  # fmt: skip
    folds = pd.concat(pd.read_parquet(p) for p in (tmp_path / "run" / "folds").glob("*.parquet"))
    assert folds["cell_id"].nunique() == 40 and not folds.groupby("cell_id")["fold"].nunique().gt(1).any()

    result = runner.invoke(cli, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    report = pd.read_csv(tmp_path / "report" / "report.csv")
    fused = report[report["predictor"] == "fused"].iloc[0]
    statistics = json.loads((tmp_path / "run" / "metrics.json").read_text())["statistics"]
    vs_drug_mean = next(c for c in statistics["paired"] if c["b"] == "drug-mean")  # paired over cell lines
    assert statistics["entity"] == "cell_id" and vs_drug_mean["n"] + vs_drug_mean["undefined"] == 40
    assert fused["split"] == "cell-halves" and fused["cell lines won"] == f"{vs_drug_mean['wins']}/{vs_drug_mean['n']}"

    args = ["splits", "--split", "HALVES", *common, "--export", str(tmp_path / "folds")]
    result = runner.invoke(cli, args, catch_exceptions=False)
    membership = pd.read_csv(tmp_path / "folds" / "folds.csv")
    assert list(membership.columns) == ["fold", "seed", "cell_id", "role"]
    assert (membership["role"] == "test").sum() == 40
