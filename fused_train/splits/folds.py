"""What every split produces: folds, each a role grid over the measured (drug, cell line) grid cells.

Roles are given to grid cells, not to pair rows, so the two measurements of one CID on one cell line (two GDSC drug
ids) always share a role.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNUSED, TRAIN, VAL, TEST, PILOT = 0, 1, 2, 3, 4


class FoldSelectionError(ValueError):
    """A --fold or --split value that names no folds."""


@dataclass(frozen=True)
class Fold:
    """One train/validation/test assignment. ``name`` is unique within a run and names its output files."""

    name: str
    split: str
    seed: int
    roles: np.ndarray
    """(drugs, cells) int8 of UNUSED/TRAIN/VAL/TEST/PILOT."""


def select(folds: list[Fold], spec: str, strata: list[str] | None = None) -> list[Fold]:
    """``all``, ``N`` or ``N-M`` (inclusive, 0-based), a comma-separated list of fold names or numbers, or
    ``sample:N[:SEED]``: N folds drawn with SEED (default 0), stratified by ``strata`` (one label per fold, e.g. the
    held-out drug's target pathway; None: one stratum), in the folds' order."""
    if spec == "all":
        return folds
    if spec.startswith("sample:"):
        return _sample(folds, spec, strata or [""] * len(folds))
    chosen: list[Fold] = []
    by_name = {f.name: f for f in folds}
    for part in spec.split(","):
        if part in by_name:
            chosen.append(by_name[part])
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise FoldSelectionError(
                f"--fold {spec!r}: use all, N, N-M, sample:N[:SEED] or fold names (e.g. {folds[0].name})"
            )
        first, last = int(lo), int(hi or lo)
        if last >= len(folds) or first > last:
            raise FoldSelectionError(f"--fold {spec!r}: this split has folds 0-{len(folds) - 1}")
        chosen.extend(folds[first : last + 1])
    return chosen


def _sample(folds: list[Fold], spec: str, strata: list[str]) -> list[Fold]:
    """Proportional allocation over the strata (largest remainders, ties broken by the seed), then a seeded draw
    within each: the same folds for the same folds, strata, N and SEED on any machine."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(x.isdigit() for x in parts[1:]) or int(parts[1]) == 0:
        raise FoldSelectionError(f"--fold {spec!r}: use sample:N or sample:N:SEED (N >= 1, e.g. sample:32:0)")
    n, seed = int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
    if n > len(folds):
        raise FoldSelectionError(f"--fold {spec!r}: this split has {len(folds)} folds; sample at most that many")
    labels = np.asarray(strata)
    names, sizes = np.unique(labels, return_counts=True)
    rng = np.random.default_rng(seed)
    share = n * sizes / len(folds)
    take = np.floor(share).astype(int)
    order = np.lexsort((rng.random(len(names)), -(share - take)))  # largest remainder first, seeded tie-break
    take[order[: n - take.sum()]] += 1
    picked = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == name))[:k] for name, k in zip(names, take, strict=True)]
    )
    return [folds[i] for i in np.sort(picked)]


def stratified_pick(items: np.ndarray, groups: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A ``fraction`` of ``items`` drawn within each group (rounded, at least one from groups of two or more)."""
    picked = []
    for group in np.unique(groups):
        members = items[groups == group]
        n = int(round(fraction * len(members)))
        if n == 0 and len(members) >= 2 and fraction > 0:
            n = 1
        picked.append(rng.permutation(members)[:n])
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=np.int64)
