"""The report draws per-drug PCC against the pilot size from pilot-K runs (and nothing without them)."""

from __future__ import annotations

from pathlib import Path

from helpers import tiny_spec

from fused_train.plots import pilot_screens
from fused_train.runs import RunSpec, summarise_run, train


def test_pilot_runs_give_the_figure_and_other_runs_none(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    runs = []
    for split in ("pilot-5", "pilot-5-tissue"):  # the small dataset has drugs with 12 lines: no pilot-10
        spec = RunSpec(model="matching", drug_encoder="morgan", omics=("methylation",), split=split,
                       dataset=dataset, options={"matches": [2, 4]})  # fmt: skip
        train(spec, tmp_path / split, fold="0-3", cache_dir=cache, quiet=True)
        summarise_run(tmp_path / split)
        runs.append(tmp_path / split)
    (path,) = pilot_screens(runs, tmp_path / "pilot_screens")
    assert path.stat().st_size > 10_000
    lodo = tmp_path / "lodo"
    train(tiny_spec(dataset, epochs=1), lodo, fold="0", cache_dir=cache, quiet=True)
    summarise_run(lodo)
    assert pilot_screens([lodo], tmp_path / "none") == []
