"""Splits: no fold lets its test entities into training or validation, and folds cover what they should."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from fused_cache import datasets
from fused_cache.datasets import annotation_sets
from fused_train.runs import fold_strata
from fused_train.splits import TEST, TRAIN, UNUSED, VAL, FoldSelectionError, make_folds, select


def _grid(ds: datasets.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    drug_ids = np.array(sorted(ds.pairs["drug_id"].unique()))
    cell_ids = np.array(sorted(ds.pairs["cell_id"].unique()))
    count = np.zeros((len(drug_ids), len(cell_ids)))
    np.add.at(
        count, (np.searchsorted(drug_ids, ds.pairs["drug_id"]), np.searchsorted(cell_ids, ds.pairs["cell_id"])), 1
    )
    groups = ds.cells.set_index("cell_id")["tcga_type"].reindex(cell_ids).fillna("").to_numpy()
    return count, drug_ids, groups


def test_no_lodo_fold_sees_its_drug_in_training_or_validation(gdsc: datasets.Dataset) -> None:
    count, drug_ids, groups = _grid(gdsc)
    folds = make_folds("lodo", count, drug_ids, groups)
    assert len(folds) == 223
    pairs_of = gdsc.pairs.groupby("drug_id").size()
    for d, fold in enumerate(folds):
        test_rows = np.flatnonzero((fold.roles == TEST).any(axis=1))
        assert test_rows.tolist() == [d]
        assert not np.isin(fold.roles[d], (TRAIN, VAL)).any()
        assert count[fold.roles == TEST].sum() == pairs_of[drug_ids[d]]  # both GDSC ids of a CID held out together
        val_rows = np.flatnonzero((fold.roles == VAL).any(axis=1))
        assert d not in val_rows and len(val_rows) == 22
        assert ((fold.roles != UNUSED) == (count > 0)).all()


def test_drug_known_and_cell_out_splits(gdsc: datasets.Dataset) -> None:
    count, drug_ids, groups = _grid(gdsc)
    (known,) = make_folds("drug-known", count, drug_ids, groups, seed=1)
    assert abs(count[known.roles == TEST].sum() / count.sum() - 0.05) < 0.005
    assert (known.roles == TEST).any(axis=1).sum() > 200  # test pairs spread over the drugs
    cell_folds = make_folds("cell-out", count, drug_ids, groups)
    held = [np.flatnonzero((f.roles == TEST).any(axis=0)) for f in cell_folds]
    assert sorted(np.concatenate(held).tolist()) == list(range(count.shape[1]))
    for fold, cells in zip(cell_folds, held, strict=True):
        assert not np.isin(fold.roles[:, cells], (TRAIN, VAL)).any()


def test_fold_sample_is_seeded_and_stratified_by_target_pathway(gdsc: datasets.Dataset) -> None:
    """``--fold sample:N[:SEED]``: N LODO folds, the same for the same seed, each target pathway represented in
    proportion (largest remainders), in the folds' order; bad forms are refused."""
    count, drug_ids, groups = _grid(gdsc)
    folds = make_folds("lodo", count, drug_ids, groups)
    pathway = gdsc.drugs.set_index("drug_id")["target_pathway"].fillna("").reindex(drug_ids).to_numpy()
    strata = [str(pathway[np.flatnonzero((f.roles == TEST).any(axis=1))[0]]) for f in folds]
    chosen = select(folds, "sample:32", strata)
    assert len(chosen) == 32 and [f.name for f in chosen] == [f.name for f in select(folds, "sample:32:0", strata)]
    assert [f.name for f in chosen] != [f.name for f in select(folds, "sample:32:1", strata)]
    index = [folds.index(f) for f in chosen]
    assert index == sorted(index)
    names, sizes = np.unique(strata, return_counts=True)
    picked = dict(zip(*np.unique([strata[i] for i in index], return_counts=True), strict=True))
    for name, size in zip(names, sizes, strict=True):  # floor or ceiling of the proportional share
        assert np.floor(32 * size / 223) <= picked.get(name, 0) <= np.ceil(32 * size / 223)
    assert len(select(folds, "sample:5")) == 5  # no strata: one stratum
    for bad, message in [("sample:0", "use sample:N"), ("sample:x", "use sample:N"), ("sample:3:1:2", "use sample:N"),
                         ("sample:224", "this split has 223 folds")]:  # fmt: skip
        with pytest.raises(FoldSelectionError, match=message):
            select(folds, bad, strata)


def test_fold_strata_of_a_run_are_the_held_out_drugs_pathways(gdsc: datasets.Dataset) -> None:
    """What ``fused-train run --fold sample:N`` stratifies by: the LODO fold's held-out drug's pathway; one stratum
    for a split that holds out no drugs."""
    count, drug_ids, groups = _grid(gdsc)
    annotations = annotation_sets(gdsc.drugs, drug_ids)
    inputs = SimpleNamespace(drug_annotations=annotations)
    folds = make_folds("lodo", count, drug_ids, groups)
    strata = fold_strata(folds, inputs)
    assert strata[5] == ";".join(sorted(annotations["target_pathway"][5])) and len(set(strata)) > 10
    assert set(fold_strata(make_folds("drug-known", count, drug_ids, groups), inputs)) == {""}
