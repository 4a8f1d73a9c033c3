"""Train / validation / test roles of every measured (drug, cell line) grid cell, per fold.

A fold is a role grid (drugs x cells, int8): TRAIN, VAL, TEST, or UNUSED where nothing was measured. Roles are given to
grid cells, not to pair rows, so the two measurements of one CID on one cell line (two GDSC drug ids) always share a
role. Validation is carved from the training side only; it drives early stopping and model selection, so the test
entities never influence training, scaling or selection.

- ``drug-known``: random grid cells, 5% test stratified by the cell line's TCGA type, validation from the rest.
- ``lodo``: one fold per drug (= PubChem CID); validation drugs are drawn from the other drugs.
- ``cell-out``: k folds of cell lines (stratified by TCGA type); validation cell lines from the training ones.
- ``pilot-K`` (K = 5, 10, 20, 40): LODO with a pilot screen. Of the held-out drug, K measured cell lines drawn at
  random (seeded by the fold) are PILOT, revealed to the predictor with their ln IC50; the rest are TEST. Each
  validation drug gets the same: K PILOT cell lines, the rest VAL, so that choices are made as the test is scored.
  Models that do not read PILOT cells (every model but ``matching``, and the naive predictors) see plain LODO scored
  on the non-pilot lines.
- ``pilot-K-tissue``: the same with each pilot drawn across tissues: every TCGA type gets its share of the K lines in
  proportion to the drug's measured lines of that type (largest remainders), drawn at random within the type (lines
  without a type are one more group). Refused for a dataset whose cell lines have no TCGA type at all.
- ``fit`` (``fused-train fit``, not a benchmark split): every measured grid cell is TRAIN except a validation share
  for early stopping, drawn like drug-known's; no test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fused_train.seeding import rng as _rng

UNUSED, TRAIN, VAL, TEST, PILOT = 0, 1, 2, 3, 4
PILOT_SHOTS = (5, 10, 20, 40)
TISSUE = "-tissue"
"""Suffix of the pilot splits whose pilot lines are spread across tissues."""
SPLITS = ("drug-known", "lodo", "cell-out", *(f"pilot-{k}{draw}" for draw in ("", TISSUE) for k in PILOT_SHOTS))


def drug_blind(split: str) -> bool:
    """Whether the split holds whole drugs out (LODO and its pilot-K variants): their results are per drug."""
    return split == "lodo" or split.startswith("pilot-")


def pilot_shots(split: str) -> int | None:
    """K of a ``pilot-K`` or ``pilot-K-tissue`` split; None for the other splits."""
    if split not in SPLITS or not split.startswith("pilot-"):
        return None
    return int(split.removeprefix("pilot-").removesuffix(TISSUE))


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


def make_folds(
    split: str, count: np.ndarray, drug_ids: np.ndarray, cell_groups: np.ndarray, seed: int = 0,
    val_fraction: float = 0.1, test_fraction: float = 0.05, n_cell_folds: int = 5,
) -> list[Fold]:  # fmt: skip
    """All folds of one split. ``count`` (drugs x cells) says which grid cells were measured."""
    measured = count > 0
    if split == "drug-known":
        return [_drug_known(measured, cell_groups, seed, val_fraction, test_fraction)]
    if split == "lodo":
        return [_lodo(measured, drug_ids, d, seed, val_fraction) for d in range(len(drug_ids))]
    if split == "cell-out":
        return _cell_out(measured, cell_groups, seed, val_fraction, n_cell_folds)
    if (shots := pilot_shots(split)) is not None:
        groups = cell_groups if split.endswith(TISSUE) else None
        if groups is not None and (groups == "").all():
            raise FoldSelectionError(f"--split {split}: the dataset gives no cell line a TCGA type (tcga_type) to "
                                     f"spread the pilot over; use pilot-{shots}")  # fmt: skip
        lodo = (_lodo(measured, drug_ids, d, seed, val_fraction) for d in range(len(drug_ids)))
        return [_pilot(fold, drug_ids, shots, groups) for fold in lodo]
    if split == "fit":
        return [_fit(measured, cell_groups, seed, val_fraction)]
    raise FoldSelectionError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def select(folds: list[Fold], spec: str) -> list[Fold]:
    """``all``, ``N`` or ``N-M`` (inclusive, 0-based), or a comma-separated list of fold names or numbers."""
    if spec == "all":
        return folds
    chosen: list[Fold] = []
    by_name = {f.name: f for f in folds}
    for part in spec.split(","):
        if part in by_name:
            chosen.append(by_name[part])
            continue
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise FoldSelectionError(f"--fold {spec!r}: use all, N, N-M or fold names (e.g. {folds[0].name})")
        first, last = int(lo), int(hi or lo)
        if last >= len(folds) or first > last:
            raise FoldSelectionError(f"--fold {spec!r}: this split has folds 0-{len(folds) - 1}")
        chosen.extend(folds[first : last + 1])
    return chosen


def _stratified_pick(items: np.ndarray, groups: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A ``fraction`` of ``items`` drawn within each group (rounded, at least one from groups of two or more)."""
    picked = []
    for group in np.unique(groups):
        members = items[groups == group]
        n = int(round(fraction * len(members)))
        if n == 0 and len(members) >= 2 and fraction > 0:
            n = 1
        picked.append(rng.permutation(members)[:n])
    return np.sort(np.concatenate(picked)) if picked else np.array([], dtype=np.int64)


def _drug_known(measured: np.ndarray, cell_groups: np.ndarray, seed: int, val: float, test: float) -> Fold:
    rng = _rng("drug-known", seed)
    flat = np.flatnonzero(measured)
    groups = cell_groups[flat % measured.shape[1]]
    test_cells = _stratified_pick(flat, groups, test, rng)
    rest = np.setdiff1d(flat, test_cells)
    val_cells = _stratified_pick(rest, cell_groups[rest % measured.shape[1]], val, rng)
    roles = measured.astype(np.int8) * TRAIN
    roles.flat[val_cells] = VAL
    roles.flat[test_cells] = TEST
    return Fold(f"drug-known-seed{seed}", "drug-known", seed, roles)


def _fit(measured: np.ndarray, cell_groups: np.ndarray, seed: int, val: float) -> Fold:
    flat = np.flatnonzero(measured)
    val_cells = _stratified_pick(flat, cell_groups[flat % measured.shape[1]], val, _rng("fit", seed))
    roles = measured.astype(np.int8) * TRAIN
    roles.flat[val_cells] = VAL
    return Fold(f"fit-seed{seed}", "fit", seed, roles)


def _lodo(measured: np.ndarray, drug_ids: np.ndarray, held_out: int, seed: int, val: float) -> Fold:
    others = np.array([d for d in range(len(drug_ids)) if d != held_out])
    n_val = max(1, int(round(val * len(others))))
    val_drugs = _rng("lodo", seed, str(drug_ids[held_out])).choice(others, size=n_val, replace=False)
    roles = measured.astype(np.int8) * TRAIN
    roles[val_drugs] *= VAL
    roles[held_out] *= TEST
    return Fold(f"lodo-seed{seed}-{drug_ids[held_out]}", "lodo", seed, roles)


def _pilot(lodo: Fold, drug_ids: np.ndarray, shots: int, cell_groups: np.ndarray | None) -> Fold:
    """A LODO fold with ``shots`` PILOT cell lines of the held-out drug (from its TEST cells) and of each validation
    drug (from its VAL cells), drawn by a generator seeded by the fold; spread across ``cell_groups`` if given."""
    roles = lodo.roles.copy()
    held_out = int(np.flatnonzero((roles == TEST).any(axis=1))[0])
    draw = "" if cell_groups is None else TISSUE
    rng = _rng(f"pilot{draw}", lodo.seed, str(drug_ids[held_out]), shots)
    for drug in [held_out, *np.flatnonzero((roles == VAL).any(axis=1))]:
        cells = np.flatnonzero(roles[drug] > 0)
        if drug == held_out and len(cells) < shots + 3:
            raise FoldSelectionError(
                f"drug {str(drug_ids[drug])!r} has {len(cells)} measured cell lines; a pilot-{shots} fold needs at "
                f"least {shots + 3} (the pilot and 3 to score); choose a smaller pilot"
            )
        n = min(shots, len(cells))
        if cell_groups is None:
            roles[drug, rng.choice(cells, size=n, replace=False)] = PILOT
        else:
            roles[drug, _spread(cells, cell_groups, n, rng)] = PILOT
    split = f"pilot-{shots}{draw}"
    return Fold(f"{split}-seed{lodo.seed}-{drug_ids[held_out]}", split, lodo.seed, roles)


def _spread(cells: np.ndarray, cell_groups: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``cells``, each group's share in proportion to its size (largest remainders, ties in random order),
    drawn at random within the group."""
    groups, sizes = np.unique(cell_groups[cells], return_counts=True)
    quota = n * sizes / sizes.sum()
    take = np.floor(quota).astype(int)
    shuffled = rng.permutation(len(groups))
    extra = shuffled[np.argsort(-(quota - take)[shuffled], kind="stable")][: n - take.sum()]
    take[extra] += 1
    members = [cells[cell_groups[cells] == g] for g in groups]
    return np.concatenate([rng.choice(m, size=t, replace=False) for m, t in zip(members, take, strict=True)])


def _cell_out(measured: np.ndarray, cell_groups: np.ndarray, seed: int, val: float, k: int) -> list[Fold]:
    rng = _rng("cell-out", seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(cell_groups == g)) for g in np.unique(cell_groups)])
    fold_of = np.empty(len(cell_groups), dtype=np.int64)
    fold_of[order] = np.arange(len(order)) % k
    folds = []
    for i in range(k):
        train_cells = np.flatnonzero(fold_of != i)
        val_cells = _stratified_pick(train_cells, cell_groups[train_cells], val, _rng("cell-out", seed, i))
        roles = measured.astype(np.int8) * TRAIN
        roles[:, val_cells] *= VAL
        roles[:, fold_of == i] *= TEST
        folds.append(Fold(f"cell-out-seed{seed}-{i}", "cell-out", seed, roles))
    return folds
