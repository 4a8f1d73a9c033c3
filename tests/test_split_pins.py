"""The folds of the existing splits are pinned: a change to how splits are written must not move a single role.

The hashes were computed before splits became objects (``fused_train/splits/``); a run resumed after an upgrade
trains the remaining folds on exactly the roles its finished folds had.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fused_train.splits import SPLITS, drug_blind, make_folds, pilot_shots

PINNED = {
    "drug-known": "7b4c5dbb58afc2e0",
    "lodo": "53e7bab7c5454fc3",
    "cell-out": "38807c4c74e4bbfa",
    "pilot-5": "cd720764552274b1",
    "pilot-10": "479be18d0f5b28e0",
    "pilot-20": "958c9b7dcec55052",
    "pilot-40": "a8ab52688912e90f",
    "pilot-5-tissue": "294f4eaf899da28a",
    "pilot-10-tissue": "2fd27030ee6f2b9b",
    "pilot-20-tissue": "a827855ce913cbc6",
    "pilot-40-tissue": "3484bef290f700f2",
    "fit": "0c111b90393d5fee",
}
"""Per split: the first 16 hex digits of the sha256 over seeds 0 and 1 of every fold's name, split, seed and roles."""


def tiny_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """12 drugs x 60 cell lines, ~80% measured (a few cells twice), 4 TCGA types and lines without one."""
    d, c = np.meshgrid(np.arange(12), np.arange(60), indexing="ij")
    count = (((d * 7 + c * 3) % 5) != 0).astype(np.int64) + ((d + c) % 11 == 0)
    drug_ids = np.array([f"D{k:02d}" for k in range(12)])
    groups = np.array(["", "BRCA", "LUAD", "SKCM", "COAD"])[(np.arange(60) * 3) % 5]
    return count, drug_ids, groups


def fold_hash(split: str) -> str:
    count, drug_ids, groups = tiny_grid()
    digest = hashlib.sha256()
    for seed in (0, 1):
        for fold in make_folds(split, count, drug_ids, groups, seed):
            digest.update(f"{fold.name}|{fold.split}|{fold.seed}|".encode())
            digest.update(fold.roles.astype(np.int8).tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("split", PINNED)
def test_fold_names_and_roles_are_unchanged(split: str) -> None:
    assert fold_hash(split) == PINNED[split]


def test_the_names_callers_import_keep_their_meaning() -> None:
    """``drug_blind`` and ``pilot_shots`` take a split's name, as before splits became objects."""
    assert [s for s in SPLITS if drug_blind(s)] == [s for s in SPLITS if s == "lodo" or s.startswith("pilot-")]
    assert pilot_shots("pilot-10-tissue") == 10 and pilot_shots("pilot-40") == 40 and pilot_shots("lodo") is None
    assert drug_blind("LDO") and not drug_blind("LTO")
