"""Classical RDKit drug representations: Morgan (ECFP) bit vectors and raw 2D descriptors."""

from __future__ import annotations

from typing import Any

import numpy as np
import rdkit
from rdkit import Chem
from rdkit.Chem import Descriptors, rdFingerprintGenerator

from fused_cache.encoders.base import DrugBatch, Encoder, invalid_smiles


class MorganEncoder(Encoder):
    """ECFP bit vector (radius 2 = ECFP4, 2048 bits by default)."""

    name = "morgan"
    entity = "drug"

    def __init__(self, radius: int = 2, n_bits: int = 2048) -> None:
        self.radius, self.dim = radius, n_bits

    def settings(self) -> dict[str, Any]:
        return {"radius": self.radius, "n_bits": self.dim, "rdkit": rdkit.__version__}

    def check(self, batch: DrugBatch) -> dict[str, str]:
        return invalid_smiles(batch)

    def embed(self, batch: DrugBatch) -> np.ndarray:
        # made per call: RDKit generators cannot be pickled, and encoders travel to cluster workers
        generator = rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.dim)
        return np.stack(
            [generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)).astype(np.float32) for s in batch.smiles]
        )


MAX_ATOMS = 250
"""Largest molecule (heavy atoms) rdkit2d takes: some descriptors grow steeply with size (about 1.4 s for a 400-atom
chain, 17 s for 800 on one core), so larger inputs are reported instead of hanging a build."""


class RDKit2DEncoder(Encoder):
    """RDKit 2D descriptors, unscaled: scaling belongs in training, fitted on training rows only.

    A descriptor that is not finite for some drug of the input (undefined, such as cisplatin's BCUT2D, or beyond
    float32) is dropped for every drug and named in the manifest with those drugs (``fit``): a store never holds a
    non-finite value, and no value is invented.
    """

    name = "rdkit2d"
    entity = "drug"
    version = 2
    LOADED = (*Encoder.LOADED, "_computed")

    def __init__(self, max_atoms: int = MAX_ATOMS) -> None:
        self._all = [name for name, _ in Descriptors.descList]
        self._names = list(self._all)
        self.max_atoms = max_atoms
        self.dim = len(self._names)
        self._computed: dict[str, np.ndarray] | None = None

    def settings(self) -> dict[str, Any]:
        return {"descriptors": self._names, "max_atoms": self.max_atoms, "rdkit": rdkit.__version__}

    def check(self, batch: DrugBatch) -> dict[str, str]:
        return invalid_smiles(batch, max_atoms=self.max_atoms)

    def fit(self, batch: DrugBatch) -> dict[str, Any]:
        """Keep the descriptors that are finite for every valid drug of the input; name the others and their drugs."""
        bad = self.check(batch)
        valid = batch.take([i for i, drug_id in enumerate(batch.ids) if drug_id not in bad])
        finite = np.isfinite(self._descriptors(valid))
        keep = finite.all(axis=0)
        self._names = [name for name, k in zip(self._all, keep, strict=True) if k]
        self.dim = len(self._names)
        dropped = {name: np.flatnonzero(~finite[:, j]) for j, name in enumerate(self._all) if not keep[j]}
        return {"dropped_features": {name: [valid.ids[i] for i in rows] for name, rows in dropped.items()}}

    def embed(self, batch: DrugBatch) -> np.ndarray:
        columns = [self._all.index(name) for name in self._names]
        return self._descriptors(batch)[:, columns].astype(np.float32)

    def _descriptors(self, batch: DrugBatch) -> np.ndarray:
        """Every descriptor (n, all) in float64, NaN where undefined or beyond float32; memoised per SMILES, so that
        ``fit`` and ``embed`` of one build compute them once."""
        if self._computed is None:
            self._computed = {}
        for smiles in batch.smiles:
            if smiles not in self._computed:
                row = Descriptors.CalcMolDescriptors(Chem.MolFromSmiles(smiles), missingVal=np.nan)
                values = np.array([row[n] for n in self._all], dtype=np.float64)
                values[~np.isfinite(values) | (np.abs(values) > np.finfo(np.float32).max)] = np.nan
                self._computed[smiles] = values
        return np.stack([self._computed[s] for s in batch.smiles]).reshape(len(batch), len(self._all))
