"""Conventions both command-line tools keep: --version, -v and run.log, help on every option, progress in logs."""

from __future__ import annotations

import io
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from helpers import tiny_spec

from fused_cache.cli import cli as cache_cli
from fused_cache.extras import DISTRIBUTION
from fused_cache.progress import PlainProgress
from fused_train.cli import cli as train_cli
from fused_train.runs import train


@pytest.mark.parametrize("cli", [cache_cli, train_cli])
def test_version_and_help_on_every_option(cli: click.Group) -> None:
    assert version(DISTRIBUTION) in CliRunner().invoke(cli, ["--version"]).output
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts[0]} has no help text"
        assert any("--verbose" in p.opts for p in command.params), f"{name} has no -v/--verbose"


def test_patience_help_follows_select_by() -> None:
    usage = CliRunner().invoke(train_cli, ["run", "--help"]).output
    patience = usage[usage.index("--patience") : usage.index("--cells-per-step")]
    assert "--select-by" in patience and "RMSE" not in patience


def test_a_run_writes_run_log_and_verbose_shows_it(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    train(tiny_spec(dataset, epochs=1), tmp_path / "run", fold="0", cache_dir=cache, quiet=True)
    text = (tmp_path / "run" / "run.log").read_text()
    assert "1 folds selected" in text and "finished: best epoch 0 of 1" in text
    args = ["run", "-v", "--drug-encoder", "morgan", "--omics", "methylation", "--dataset", dataset, "--cache-dir",
            str(cache), "--epochs", "1", "--width", "16", "--heads", "2", "--proj", "8", "--hidden", "16,8",
            "--fold", "1", "--split", "LDO", "--quiet", "--out", str(tmp_path / "cli-run")]  # fmt: skip
    result = CliRunner().invoke(train_cli, args, catch_exceptions=False)
    assert "INFO fused_train.runs" in result.stderr and "finished: best epoch" in result.stderr
    assert "trained 1 folds" in (tmp_path / "cli-run" / "run.log").read_text()


def test_build_takes_a_comma_separated_encoder_list(tmp_path: Path) -> None:
    args = ["build", "--encoder", "morgan,methylation", "--cache-dir", str(tmp_path), "--quiet"]
    output = CliRunner().invoke(cache_cli, args, catch_exceptions=False).output
    assert "morgan: built" in output and "methylation: built" in output


def test_progress_in_a_log_file_is_plain_lines_counting_items() -> None:
    out = io.StringIO()
    bar = PlainProgress(223, "chemnet", "drugs", interval=0.0, file=out)
    bar.update(64)
    bar.update(64)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("chemnet: 64/223 drugs (29%)") and lines[-1].startswith("chemnet: 128/223 drugs")
    assert "\r" not in out.getvalue()
