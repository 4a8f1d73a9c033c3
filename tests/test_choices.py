"""How often fitted models choose the edge of their search: ``fused_train.choices`` and the report's table of it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import run_console

from fused_train.choices import run_summary
from fused_train.cli import cli, main
from fused_train.runs import RunError


def fake_run(folder: Path, model: str, options: dict, chosen: list[dict]) -> Path:
    """A run directory as far as choices go: config.json with the options searched, one choices file per fold."""
    (folder / "choices").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": model, "split": "pilot-20", "options": options}))
    for i, choices in enumerate(chosen):
        (folder / "choices" / f"fold-{i}.json").write_text(json.dumps(choices))
    return folder


def test_no_kriging_counts_as_the_largest_noise_and_edges_past_a_quarter_say_widen(tmp_path: Path) -> None:
    options = {"matches": [5, 10, 20, 40], "weights": [0.0, 0.5, 1.0], "kriging": [0.3, 1.0]}
    fold = {"matched": 0.5, "pathway": 0.0, "targets": 0.5}
    chosen = [fold | {"matches": 40, "kriging": None}, fold | {"matches": 40, "kriging": 1.0},
              fold | {"matches": 10, "kriging": 0.3}, fold | {"matches": 20, "kriging": 1.0}]  # fmt: skip
    table = run_summary(fake_run(tmp_path / "run", "matching", options, chosen)).set_index("choice")
    assert table.loc["kriging", "candidates"] == "0.3, 1, none"
    assert (table.loc["kriging", "at smallest"], table.loc["kriging", "at largest"]) == (1, 1)
    assert (table.loc["matches", "at largest"], table.loc["matches", "widen"]) == (2, "up")
    assert table.loc["matches", "most chosen"] == "40 (2)"
    assert table.loc["pathway", "widen"] == "down" and table.loc["matched", "widen"] == ""
    assert set(table["folds"]) == {4}


def test_trees_rounds_range_from_one_to_max_rounds(tmp_path: Path) -> None:
    chosen = [{"leaves": 15, "rounds": 1000}, {"leaves": 63, "rounds": 37}, {"leaves": 15, "rounds": 1}]
    run = fake_run(tmp_path / "run", "trees", {"leaves": [15, 63], "max_rounds": 1000}, chosen)
    table = run_summary(run).set_index("choice")
    assert table.loc["rounds", "candidates"] == "1 .. 1000"
    assert (table.loc["rounds", "at smallest"], table.loc["rounds", "at largest"]) == (1, 1)
    assert (table.loc["leaves", "at smallest"], table.loc["leaves", "at largest"]) == (2, 1)


def test_a_model_that_searches_nothing_here_has_no_rows(tmp_path: Path) -> None:
    assert run_summary(fake_run(tmp_path / "run", "fused", {}, [{"epoch": 3}])).empty


def test_a_choice_outside_the_runs_candidates_is_refused(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", "neighbours", {"k": [3, 5], "weights": [0.0, 0.5]},
                   [{"k": 10, "pathway": 0.0, "similar": 0.5, "targets": 0.5}])  # fmt: skip
    with pytest.raises(RunError, match=r"fold-0.json: k = 10 is not among the candidates .*\(3, 5\)"):
        run_summary(run)


def test_the_report_counts_the_edges_of_a_tiny_run(
    trained_on: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, cache = trained_on
    run = tmp_path / "neighbours"
    args = ["run", "--model", "neighbours", "--drug-encoder", "morgan", "--dataset", dataset, "--cache-dir",
            str(cache), "--omics", "methylation", "--fold", "0-3", "--k", "2,3", "--weights", "0,0.5", "--quiet",
            "--out", str(run)]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["report", str(run), "--out", str(tmp_path / "report")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "## Choices at the edge of their search" in result.output
    table = pd.read_csv(tmp_path / "report" / "choices_summary.csv", keep_default_na=False).set_index("choice")
    chosen = [json.loads(f.read_text()) for f in (run / "choices").glob("*.json")]
    assert table.loc["k", "folds"] == len(chosen) == 4
    assert table.loc["k", "at smallest"] == sum(c["k"] == 2 for c in chosen)
    assert table.loc["similar", "at largest"] == sum(c["similar"] == 0.5 for c in chosen)

    first = sorted((run / "choices").glob("*.json"))[0]
    first.write_text(json.dumps(json.loads(first.read_text()) | {"k": 7}))
    code, err = run_console(main, "fused-train", capsys, "report", str(run), "--out", str(tmp_path / "again"))
    assert code == 3 and "k = 7 is not among the candidates" in err and len(err.strip().splitlines()) == 1
