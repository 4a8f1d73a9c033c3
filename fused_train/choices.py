"""How often a fitted model's settings, chosen per fold on validation rows, sit at the edge of what it searched.

A setting chosen at the smallest or largest candidate in many folds says the best setting may lie outside the search
space: widen it past an edge that more than ``WIDEN_SHARE`` of the folds choose (unless the edge is the least value
the setting can take, as a weight of 0). Each fitted model writes its choices per fold to ``choices/<fold>.json``;
its run's ``config.json`` holds the candidates it searched (its options). ``SEARCHED`` says which option holds the
candidates of each choice.

``matching`` chooses its kriging noise among ``--kriging`` or no kriging at all; no kriging is the limit of infinite
noise (the pilot's misses are then not carried to other lines), so it counts as the largest candidate. ``trees``
and ``stacked`` stop boosting by validation: their rounds are a choice among 1 .. ``--max-rounds``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fused_train.runs import RunError


@dataclass(frozen=True)
class Searched:
    """Where a choice's candidates are: listed in a run option, or (``bound``) every count from 1 up to the option's
    value; with ``none``, also "none" (written as null in the choices), counted as the largest."""

    option: str
    bound: bool = False
    none: bool = False

    def candidates(self, options: dict[str, Any]) -> list[float]:
        """Sorted; a bound's two ends."""
        if self.bound:
            return [1, options[self.option]]
        return sorted(options[self.option]) + ([math.inf] if self.none else [])

    def admits(self, value: Any, candidates: list[float]) -> bool:
        if not isinstance(value, int | float):
            return False
        return candidates[0] <= value <= candidates[-1] if self.bound else value in candidates

    def describe(self, candidates: list[float]) -> str:
        return f"1 .. {candidates[-1]:g}" if self.bound else ", ".join(map(_text, candidates))


def _text(value: float) -> str:
    return "none" if math.isinf(value) else f"{value:g}"


WEIGHTS = Searched("weights")
SEARCHED: dict[str, dict[str, Searched]] = {
    "neighbours": {"k": Searched("k"), "pathway": WEIGHTS, "similar": WEIGHTS, "targets": WEIGHTS},
    "matching": {"matches": Searched("matches"), "matched": WEIGHTS, "pathway": WEIGHTS, "targets": WEIGHTS,
                 "kriging": Searched("kriging", none=True)},
    "trees": {"leaves": Searched("leaves"), "rounds": Searched("max_rounds", bound=True)},
    "completion": {"penalty": Searched("penalty")},
    "stacked": {"leaves": Searched("leaves"), "rounds": Searched("max_rounds", bound=True)},
}  # fmt: skip
"""Per fitted model, each choice it writes (``choices/<fold>.json``) -> where its candidates are."""
WIDEN_SHARE = 0.25
"""A search is widened past an edge chosen in more than this share of the folds."""
COLUMNS = ["run", "model", "split", "choice", "candidates", "folds", "at smallest", "at largest", "widen",
           "most chosen"]  # fmt: skip


def _widen(low: int, high: int, folds: int) -> str:
    """Which edges were chosen in more than ``WIDEN_SHARE`` of the folds: "down", "up", both or neither."""
    return ", ".join(word for word, n in (("down", low), ("up", high)) if n > WIDEN_SHARE * folds)


def run_summary(run_dir: Path) -> pd.DataFrame:
    """One row per searched choice of a fitted model's run: folds, how many chose the smallest and the largest
    candidate, and the value chosen most often (no rows for other models). RunError when a fold's choice is not
    among the candidates the run's config.json records (the choices come from another run or another version)."""
    config = json.loads((run_dir / "config.json").read_text())
    searched = SEARCHED.get(config["model"], {})
    files = sorted((run_dir / "choices").glob("*.json"))
    chosen = [(f, json.loads(f.read_text())) for f in files]
    chosen = [(f, c) for f, c in chosen if c]  # a fold fitted without a test drug chooses nothing
    rows = []
    for name, searched_as in searched.items():
        candidates = searched_as.candidates(config["options"])
        values = []
        for file, choices in chosen:
            value = math.inf if searched_as.none and name in choices and choices[name] is None else choices.get(name)
            if not searched_as.admits(value, candidates):
                raise RunError(
                    f"{file}: {name} = {choices.get(name)!r} is not among the candidates in {run_dir / 'config.json'} "
                    f"({searched_as.describe(candidates)}): the choices do not belong to this run; rerun it"
                )
            values.append(float(value))
        counts = pd.Series(values, dtype=float).value_counts()
        low, high = sum(v == candidates[0] for v in values), sum(v == candidates[-1] for v in values)
        rows.append({
            "run": run_dir.name, "model": config["model"], "split": config["split"], "choice": name,
            "candidates": searched_as.describe(candidates), "folds": len(values), "at smallest": low,
            "at largest": high, "widen": _widen(low, high, len(values)),
            "most chosen": f"{_text(counts.index[0])} ({counts.iloc[0]})" if values else "n/a",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(run_dirs: list[Path]) -> pd.DataFrame:
    """``run_summary`` of every run, one table."""
    return (
        pd.concat([run_summary(r) for r in run_dirs], ignore_index=True) if run_dirs else pd.DataFrame(columns=COLUMNS)
    )


def write_summary(run_dirs: list[Path], out_dir: Path) -> tuple[Path, str]:
    """``choices_summary.csv`` in ``out_dir``, and the report's Markdown section of it (empty without fitted models)."""
    table = summary(run_dirs)
    path = out_dir / "choices_summary.csv"
    table.to_csv(path, index=False)
    if table.empty:
        return path, ""
    note = ("Folds whose setting, chosen on validation rows, is the smallest or the largest candidate searched (no "
            "kriging counts as the largest noise; trees' rounds range from 1 to --max-rounds); widen: the edges "
            f"chosen in more than {WIDEN_SHARE:.0%} of the folds, past which the search should go.")  # fmt: skip
    return path, "\n## Choices at the edge of their search\n\n" + note + "\n\n" + table.to_markdown(index=False) + "\n"
