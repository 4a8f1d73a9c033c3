"""Our RDKit atom graphs equal DeepCDR's published ones (drug_graph_feat.zip) for all 223 drugs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from fused_cache.datasets import Dataset
from fused_cache.encoders.base import DrugBatch
from fused_cache.encoders.graph import GraphEncoder

ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "deepcdr" / "drug_graph_feat.zip"


@pytest.mark.skipif(not ZIP.exists(), reason="DeepCDR's drug_graph_feat.zip (../shared/data) not present")
def test_atom_features_and_bonds_match_deepcdr(gdsc: Dataset) -> None:
    graphs = GraphEncoder().embed(DrugBatch(list(gdsc.drugs["drug_id"]), list(gdsc.drugs["smiles"])))
    with zipfile.ZipFile(ZIP) as archive:
        for drug, ours, edges in zip(gdsc.drugs["drug_id"], *graphs.arrays.values(), strict=True):
            with h5py.File(io.BytesIO(archive.read(f"drug_graph_feat/{drug}.hkl")), "r") as hkl:
                theirs = hkl["data_0/data_0"][:]  # hickle list: [features, adjacency list, degree list]
                neighbours = sum(len(hkl["data_0/data_1"][k]) for k in hkl["data_0/data_1"])
            # DeepChem renumbers atoms canonically, so compare the rows as multisets
            np.testing.assert_array_equal(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)], err_msg=drug)
            assert len(edges) == neighbours, drug
