"""Progress of long work: plain lines at a set interval when stderr is not a terminal, the same lines in run.log."""

from __future__ import annotations

import io
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import click
import numpy as np
import pytest
from helpers import tiny_spec

from fused_cache import progress as progress_module
from fused_cache.progress import INTERVAL_VARIABLE, PlainProgress, progress
from fused_train.models.slots import SlotAdam
from fused_train.runs import train


def test_a_slow_run_prints_progress_lines_while_a_fold_trains(
    trained_on: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, cache = trained_on
    step = SlotAdam.step

    def slow_step(self: SlotAdam) -> None:
        time.sleep(0.05)
        step(self)

    monkeypatch.setattr(SlotAdam, "step", slow_step)
    monkeypatch.setenv(INTERVAL_VARIABLE, "0.2")
    with (tmp_path / "stderr.txt").open("w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        train(tiny_spec(dataset, epochs=8), tmp_path / "run", fold="0", cache_dir=cache)  # 8 x 3 steps, >= 1.2 s
    lines = (tmp_path / "stderr.txt").read_text().splitlines()
    progress_lines = [line for line in lines if line.startswith("training: ")]
    during = [line for line in progress_lines if line.startswith("training: 0/1 folds")]
    assert len(during) >= 3, lines  # while the only fold trains, before anything finishes
    assert re.search(r"epoch \d-\d in 1 slots, best val drug-pcc -?[\d.]+, at most 0:00:\d\d left \(cap 8 epochs\)",
                     during[-1]), during[-1]  # fmt: skip
    assert sum(line.startswith("training: 1/1 folds (100%)") for line in progress_lines) == 1  # the end, once
    log = (tmp_path / "run" / "run.log").read_text()
    assert all(line in log for line in progress_lines)


def test_a_fold_whose_best_epoch_is_the_last_allowed_warns(
    trained_on: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, cache = trained_on
    train(tiny_spec(dataset, epochs=1), tmp_path / "run", fold="0", cache_dir=cache, quiet=True)
    warning = "best epoch is the last allowed (0); raise --epochs"
    assert warning in capsys.readouterr().err and warning in (tmp_path / "run" / "run.log").read_text()


def test_lines_come_at_most_an_interval_apart_while_steps_take_8_s(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 8))
    monkeypatch.setattr(progress_module, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    out = io.StringIO()
    bar = PlainProgress(1, "training", "folds", interval=30.0, file=out)
    for _ in range(40):  # 320 s of steps
        bar.tick()
    clocks = re.findall(r"(\d+):(\d\d):(\d\d) elapsed", out.getvalue())
    elapsed = [3600 * int(h) + 60 * int(m) + int(sec) for h, m, sec in clocks]
    gaps = np.diff([0, *elapsed])
    assert len(gaps) >= 10 and gaps.max() <= 30 and gaps.min() > 30 - 8, out.getvalue()


def test_the_final_line_is_not_repeated() -> None:
    out = io.StringIO()
    bar = PlainProgress(2, "training", "folds", interval=0.0, file=out)
    bar.update()
    bar.update()
    bar.close()
    assert out.getvalue().splitlines()[-1].startswith("training: 2/2 folds (100%)")
    assert len(out.getvalue().splitlines()) == 2


def test_a_bad_interval_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_VARIABLE, "soon")
    with pytest.raises(click.UsageError, match="FUSED_PROGRESS_INTERVAL='soon'"):
        progress(10, "training", "folds")
