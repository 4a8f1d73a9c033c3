"""Atom graphs for the DeepCDR GCN baseline, rebuilt from SMILES with RDKit.

Each atom gets DeepCDR's 75 features (DeepChem's ConvMol atom features): element one-hot (44), degree (0-10),
implicit valence (0-6), formal charge, radical electrons, hybridisation (5), aromaticity, total H count (0-4).
Graphs vary in size, so the store keeps them ragged: concatenated atom features and edges plus per-drug offsets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rdkit
from rdkit import Chem

from fused_cache.encoders.base import DrugBatch, Encoder, Ragged, invalid_smiles

ELEMENTS = (
    "C", "N", "O", "S", "F", "Si", "P", "Cl", "Br", "Mg", "Na", "Ca", "Fe", "As", "Al", "I", "B", "V", "K", "Tl",
    "Yb", "Sb", "Sn", "Ag", "Pd", "Co", "Se", "Ti", "Zn", "H", "Li", "Ge", "Cu", "Au", "Ni", "Cd", "In", "Mn", "Zr",
    "Cr", "Pt", "Hg", "Pb", "Unknown",
)  # fmt: skip
HYBRIDISATIONS = (
    Chem.rdchem.HybridizationType.SP,
    Chem.rdchem.HybridizationType.SP2,
    Chem.rdchem.HybridizationType.SP3,
    Chem.rdchem.HybridizationType.SP3D,
    Chem.rdchem.HybridizationType.SP3D2,
)


def _one_hot(value: object, choices: tuple | range, clamp_last: bool = False) -> list[float]:
    if clamp_last and value not in choices:
        value = choices[-1]
    return [float(value == c) for c in choices]


def atom_features(atom: Chem.Atom) -> list[float]:
    """DeepCDR's 75 atom features for one RDKit atom."""
    return (
        _one_hot(atom.GetSymbol(), ELEMENTS, clamp_last=True)
        + _one_hot(atom.GetDegree(), range(11))
        + _one_hot(atom.GetValence(Chem.ValenceType.IMPLICIT), range(7))
        + [float(atom.GetFormalCharge()), float(atom.GetNumRadicalElectrons())]
        + _one_hot(atom.GetHybridization(), HYBRIDISATIONS)
        + [float(atom.GetIsAromatic())]
        + _one_hot(atom.GetTotalNumHs(), range(5))
    )


class GraphEncoder(Encoder):
    name = "graph"
    entity = "drug"
    dim = 75

    def settings(self) -> dict[str, Any]:
        return {"atom_features": "deepcdr-75", "edges": "undirected bonds, both directions", "rdkit": rdkit.__version__}

    def check(self, batch: DrugBatch) -> dict[str, str]:
        return invalid_smiles(batch)

    def embed(self, batch: DrugBatch) -> Ragged:
        features, edges = [], []
        for smiles in batch.smiles:
            mol = Chem.MolFromSmiles(smiles)
            features.append(np.array([atom_features(a) for a in mol.GetAtoms()], dtype=np.float32).reshape(-1, 75))
            bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
            both = bonds + [(j, i) for i, j in bonds]
            edges.append(np.array(both, dtype=np.int32).reshape(-1, 2))
        return Ragged({"atom_features": features, "edges": edges})
