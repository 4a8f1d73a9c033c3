"""fused-train's command line comes from the model registry: a new model is one class plus one registry line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from fused_train.cli import make_cli
from fused_train.data import InputShapes
from fused_train.models import registry
from fused_train.models.registry import option
from fused_train.models.slots import SlotModel, linear, take_rows


@dataclass(frozen=True)
class AdditiveOptions:
    shrink: float = option(1.0, "Factor on the cell-line term.")


class Additive(SlotModel):
    """A drug term plus a cell-line term: the smallest model the engine can train."""

    Options = AdditiveOptions

    def __init__(self, n_slots: int, shapes: InputShapes, options: AdditiveOptions = AdditiveOptions()) -> None:
        super().__init__(n_slots)
        self.shrink, self.cell_names = options.shrink, list(shapes.cell_dims)
        self.add_linear("drug", shapes.drug_dim, 1)
        for name, dim in shapes.cell_dims.items():
            self.add_linear(name, dim, 1)

    def forward(self, drug: torch.Tensor, drug_rows: torch.Tensor | None, cells: dict) -> torch.Tensor:
        per_drug = linear(take_rows(drug, drug_rows), self.drug, self.drug_b)  # (S, a, 1)
        per_cell = sum(linear(cells[n], getattr(self, n), getattr(self, f"{n}_b")) for n in self.cell_names)
        return per_drug + self.shrink * per_cell.transpose(1, 2)  # (S, a, c)


def test_a_registered_toy_model_runs_and_reports(
    trained_on: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.MODELS, "additive", f"{__name__}:Additive")  # the one registry line
    cli, runner = make_cli(), CliRunner()
    dataset, cache = trained_on
    assert "Factor on the cell-line term" in runner.invoke(cli, ["run", "--help"]).output
    args = [
        "run",
        "--model",
        "additive",
        "--shrink",
        "0.5",
        "--drug-encoder",
        "morgan",
        "--dataset",
        dataset,
        "--cache-dir",
        str(cache),
        "--epochs",
        "2",
        "--fold",
        "0-1",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    ]
    result = runner.invoke(cli, args, catch_exceptions=False)  # fmt: skip
    assert "trained 2 folds now" in result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"] == "additive" and config["options"] == {"shrink": 0.5}
    result = runner.invoke(cli, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "report" / "report.md").read_text().splitlines()
    assert any("| additive " in row for row in rows) and any("naive: cell-mean" in row for row in rows)


def test_model_options_show_each_models_default_and_refuse_foreign_options(trained_on: tuple[str, Path]) -> None:
    cli, runner = make_cli(), CliRunner()
    usage = runner.invoke(cli, ["run", "--help"]).output
    assert "fused: Hidden widths of the MLP" in usage and "[default: 256,64]" in usage
    assert "deepcdr: GCN layer widths" in usage and "[default: 256,256,256,100]" in usage
    dataset, cache = trained_on
    args = ["run", "--model", "fused", "--gcn", "16,8", "--dataset", dataset, "--cache-dir", str(cache)]
    result = runner.invoke(cli, args, standalone_mode=False)
    assert "model 'fused' has no option 'gcn'" in str(result.exception)
    args = ["run", "--model", "fused", "--drug-encoder", "graph", "--dataset", dataset, "--cache-dir", str(cache)]
    result = runner.invoke(cli, args, standalone_mode=False)
    assert "the model needs a dense drug embedding, but the 'graph' store holds graph" in str(result.exception)
