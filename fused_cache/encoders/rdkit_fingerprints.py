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


class RDKit2DEncoder(Encoder):
    """All RDKit 2D descriptors, unscaled: scaling belongs in training, fitted on training rows only."""

    name = "rdkit2d"
    entity = "drug"

    def __init__(self) -> None:
        self._names = [name for name, _ in Descriptors.descList]
        self.dim = len(self._names)

    def settings(self) -> dict[str, Any]:
        return {"descriptors": self._names, "rdkit": rdkit.__version__}

    def check(self, batch: DrugBatch) -> dict[str, str]:
        return invalid_smiles(batch)

    def embed(self, batch: DrugBatch) -> np.ndarray:
        rows = [Descriptors.CalcMolDescriptors(Chem.MolFromSmiles(s), missingVal=np.nan) for s in batch.smiles]
        values = np.array([[row[n] for n in self._names] for row in rows], dtype=np.float64)
        # A few descriptors overflow float32 or are undefined for some molecules; keep them visible as NaN.
        values[~np.isfinite(values) | (np.abs(values) > np.finfo(np.float32).max)] = np.nan
        return values.astype(np.float32)
