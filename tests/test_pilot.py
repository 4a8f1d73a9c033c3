"""A new drug screened on a few cell lines: the pilot-K splits and the matching model that reads the pilot."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from helpers import with_scrambled_test_labels
from scipy.stats import pearsonr
from test_unseen_drugs import _planted

from fused_train.models.matching import Matching, MatchingOptions, Pilot, krige
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


def test_a_tissue_pilot_gives_each_tissue_its_share_of_the_lines() -> None:
    """30 lines of tissue A, 20 of B, 10 of C: a 10-line pilot takes 5, 3.33 and 1.67, rounded by largest remainder."""
    groups = np.repeat(["A", "B", "C"], [30, 20, 10])
    count = np.ones((8, 60))
    count[0, 0] = 0  # a line the drug was not measured on is never drawn
    drugs = np.array([f"d{i}" for i in range(8)])
    folds = make_folds("pilot-10-tissue", count, drugs, groups, seed=2, val_fraction=0.25)
    for fold in folds:
        assert fold.name.startswith("pilot-10-tissue-seed2-") and fold.split == "pilot-10-tissue"
        for drug in np.flatnonzero((fold.roles == PILOT).any(axis=1)):
            lines = fold.roles[drug] == PILOT
            assert [int(lines[groups == g].sum()) for g in "ABC"] == [5, 3, 2]
            assert not (lines & (count[drug] == 0)).any()
    again = make_folds("pilot-10-tissue", count, drugs, groups, seed=2, val_fraction=0.25)[0]
    at_random = make_folds("pilot-10", count, drugs, groups, seed=2, val_fraction=0.25)[0]
    np.testing.assert_array_equal(again.roles, folds[0].roles)
    assert not np.array_equal(at_random.roles == PILOT, folds[0].roles == PILOT)


def test_a_tissue_pilot_without_tissues_is_refused() -> None:
    with pytest.raises(FoldSelectionError, match="no cell line a TCGA type .* use pilot-5$"):
        make_folds("pilot-5-tissue", np.ones((4, 30)), np.array(["a", "b", "c", "d"]), np.full(30, ""))


def test_kriging_carries_a_pilot_miss_to_the_lines_that_vary_with_it() -> None:
    """Lines 0 and 1 vary together, line 3 on its own: a miss seen on pilot line 0 moves line 1, not line 3."""
    cov = np.array([[1.0, 0.9, 0, 0], [0.9, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    pilot = Pilot(np.array([0]), np.array([[True, False, True, False]]), np.zeros((1, 4)))
    z_pilot = np.array([[1.0, 0, -1.0, 0]])
    for noise, low, high in ((0.01, 0.85, 0.95), (100.0, 0.0, 0.02)):
        moved = krige(np.zeros((1, 4)), pilot, z_pilot, cov, noise)[0]
        assert low < moved[1] < high and moved[3] == 0.0
    np.testing.assert_array_equal(krige(z_pilot, pilot, z_pilot, cov, 0.3), z_pilot)  # nothing missed, nothing moved


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
        matched, chosen = Matching(MatchingOptions()).predict_fold(inputs, fold)
        plain, _ = Neighbours(NeighboursOptions()).predict_fold(inputs, fold)
        assert chosen["matched"] > 0
        better += pearsonr(matched[held, lines], target[held, lines])[0] > pearsonr(plain[held, lines],
                                                                                   target[held, lines])[0]  # fmt: skip
    assert better >= 0.8 * len(folds)


def test_matching_never_reads_the_held_out_drugs_other_lines() -> None:
    inputs = _planted()
    fold = _folds(inputs, "pilot-10")[4]
    clean, chosen = Matching(MatchingOptions()).predict_fold(inputs, fold)
    poisoned, chosen_poisoned = Matching(MatchingOptions()).predict_fold(with_scrambled_test_labels(inputs, fold), fold)
    np.testing.assert_array_equal(poisoned, clean)
    assert chosen_poisoned == chosen


def test_matching_refuses_a_split_without_a_pilot() -> None:
    inputs = _planted()
    with pytest.raises(ModelError, match="needs a pilot screen: use --split pilot-K, not 'lodo'"):
        Matching(MatchingOptions()).predict_fold(inputs, _folds(inputs, "lodo")[0])
