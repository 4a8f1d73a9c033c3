"""Splits: no fold lets its test entities into training or validation, and folds cover what they should."""

from __future__ import annotations

import numpy as np

from fused_cache import datasets
from fused_train.splits import TEST, TRAIN, UNUSED, VAL, make_folds


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
