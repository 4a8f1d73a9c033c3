"""Omics matrices stored through the same machinery as FM embeddings, so the trainer has one input path.

These encoders copy a cell line's profile as it is (float32). A NaN means "not measured": by default, genes that are
unmeasured for any cell line being stored are dropped (named in the manifest) rather than filled with invented values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fused_cache.encoders.base import CellBatch, Encoder, EncoderError


class OmicsEncoder(Encoder):
    entity = "cell"

    def __init__(self, missing: str = "drop-genes") -> None:
        if missing not in {"drop-genes", "error"}:
            raise EncoderError(f"missing must be 'drop-genes' or 'error', not {missing!r}")
        self.missing = missing
        self.genes: list[str] | None = None
        self.dim = 0

    def fit(self, batch: CellBatch) -> dict[str, Any]:
        """Fix the stored gene set on the full input; genes unmeasured in any cell line are dropped and named."""
        measured = (
            ~np.isnan(batch.values).any(axis=0) if self.missing == "drop-genes" else np.ones(len(batch.genes), bool)
        )
        self.genes = [g for g, keep in zip(batch.genes, measured, strict=True) if keep]
        self.dim = len(self.genes)
        return {"dropped_features": [g for g, keep in zip(batch.genes, measured, strict=True) if not keep]}

    def settings(self) -> dict[str, Any]:
        return {"missing": self.missing, "genes": self.genes}

    def check(self, batch: CellBatch) -> dict[str, str]:
        columns = self._columns(batch)
        bad = {}
        for cell_id, row in zip(batch.ids, batch.values[:, columns], strict=True):
            if np.isnan(row).any():
                gene = self.genes[int(np.flatnonzero(np.isnan(row))[0])]
                bad[cell_id] = f"{self.modality} value of gene {gene!r} is NaN"
            elif not np.isfinite(row).all():
                bad[cell_id] = f"{self.modality} has an infinite value"
        return bad

    def embed(self, batch: CellBatch) -> np.ndarray:
        return batch.values[:, self._columns(batch)].astype(np.float32)

    def _columns(self, batch: CellBatch) -> np.ndarray:
        if self.genes is None:
            self.fit(batch)
        position = {g: i for i, g in enumerate(batch.genes)}
        missing = [g for g in self.genes if g not in position]
        if missing:
            raise EncoderError(f"{self.modality} input lacks gene {str(missing[0])!r} ({len(missing)} missing)")
        return np.array([position[g] for g in self.genes], dtype=np.int64)


class ExpressionEncoder(OmicsEncoder):
    name = "expression"
    modality = "expression"


class MethylationEncoder(OmicsEncoder):
    name = "methylation"
    modality = "methylation"


class MutationEncoder(OmicsEncoder):
    name = "mutation"
    modality = "mutation"
