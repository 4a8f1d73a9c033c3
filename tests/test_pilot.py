"""A new drug screened on a few cell lines: the pilot-K splits and the matching model that reads the pilot."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import with_scrambled_test_labels
from scipy.stats import pearsonr
from test_unseen_drugs import _planted

from fused_train.models.matching import Matching, MatchingOptions
from fused_train.models.neighbours import Neighbours, NeighboursOptions
from fused_train.models.registry import ModelError
from fused_train.splits import PILOT, TEST, VAL, FoldSelectionError, make_folds


def _folds(inputs, split: str = "pilot-5", seed: int = 0) -> list:
    count, _ = inputs.grid()
    return make_folds(split, count, inputs.drug_ids, inputs.cell_groups, seed=seed, val_fraction=0.25)


def test_a_pilot_fold_reveals_k_lines_of_the_held_out_and_of_each_validation_drug() -> None:
    inputs = _planted()
    for fold, lodo in zip(_folds(inputs), _folds(inputs, "lodo"), strict=True):
        held_out = (fold.roles == TEST).any(axis=1)
        validation = (lodo.roles == VAL).any(axis=1)
        assert ((fold.roles == PILOT).sum(axis=1) == np.where(held_out | validation, 5, 0)).all()
        changed = fold.roles != lodo.roles  # only the pilot lines differ from the LODO fold
        assert (fold.roles[changed] == PILOT).all() and np.isin(lodo.roles[changed], (TEST, VAL)).all()
    again, other = _folds(inputs)[3], _folds(inputs, seed=1)[3]
    np.testing.assert_array_equal(again.roles, _folds(inputs)[3].roles)
    assert not np.array_equal(again.roles == PILOT, other.roles == PILOT)


def test_a_pilot_larger_than_the_drugs_lines_is_refused() -> None:
    with pytest.raises(FoldSelectionError, match="'a' has 30 measured cell lines; a pilot-40 fold needs at least 43"):
        make_folds("pilot-40", np.ones((4, 30)), np.array(["a", "b", "c", "d"]), np.full(30, ""))
    inputs = _planted(n_cells=41)
    with pytest.raises(FoldSelectionError, match="a pilot-40 fold needs at least 43"):
        _folds(inputs, "pilot-40")


def test_matching_reads_the_pilot_and_beats_the_plain_neighbours_on_the_same_lines() -> None:
    """Drugs whose profiles have a drug-specific part no annotation tells: only the pilot can find its partners."""
    inputs = _planted(n_pathways=6, per_pathway=4, n_cells=80, seed=3)
    rng = np.random.default_rng(1)
    pairs = inputs.pairs.copy()
    count, target = inputs.grid()
    twins = rng.normal(size=(len(inputs.drug_ids) // 2, count.shape[1]))  # drug 2i and 2i+1 share a hidden profile
    hidden = np.repeat(twins, 2, axis=0) * 2
    pairs["ln_ic50"] += hidden[pairs["drug_index"], pairs["cell_index"]]
    inputs = replace(inputs, pairs=pairs, drug_annotations={k: [frozenset()] * len(inputs.drug_ids)
                                                            for k in inputs.drug_annotations})  # fmt: skip
    _, target = inputs.grid()
    better = 0
    folds = _folds(inputs, "pilot-10")
    for fold in folds:
        test = fold.roles == TEST
        held = int(np.flatnonzero(test.any(axis=1))[0])
        lines = test[held]
        matched, chosen = Matching(MatchingOptions()).predict(inputs, fold)
        plain, _ = Neighbours(NeighboursOptions()).predict(inputs, fold)
        assert chosen["matched"] > 0
        better += pearsonr(matched[held, lines], target[held, lines])[0] > pearsonr(plain[held, lines],
                                                                                   target[held, lines])[0]  # fmt: skip
    assert better >= 0.8 * len(folds)


def test_matching_never_reads_the_held_out_drugs_other_lines() -> None:
    inputs = _planted()
    fold = _folds(inputs, "pilot-10")[4]
    clean, chosen = Matching(MatchingOptions()).predict(inputs, fold)
    poisoned, chosen_poisoned = Matching(MatchingOptions()).predict(with_scrambled_test_labels(inputs, fold), fold)
    np.testing.assert_array_equal(poisoned, clean)
    assert chosen_poisoned == chosen


def test_matching_refuses_a_split_without_a_pilot() -> None:
    inputs = _planted()
    with pytest.raises(ModelError, match="needs a pilot screen: use --split pilot-K, not 'lodo'"):
        Matching(MatchingOptions()).predict(inputs, _folds(inputs, "lodo")[0])
