"""What a dataset offers an encoder: the items (drugs with SMILES, cell lines with one omics row) and their hashes.

Shared by the build, which records the hashes in every store, and by the trainer, which recomputes them from the
dataset it is asked to train on and refuses a store built from other inputs. Kept apart from the encoders so that the
trainer can import it without loading encoder code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from fused_cache.datasets import Dataset, DatasetError
from fused_cache.manifest import input_hash


@dataclass(frozen=True)
class DrugBatch:
    """Drugs to embed: ids and their SMILES."""

    ids: list[str]
    smiles: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray | list[int]) -> DrugBatch:
        return DrugBatch([self.ids[i] for i in index], [self.smiles[i] for i in index])

    def item_hashes(self) -> list[str]:
        return [_hash(f"{i}\t{s}".encode()) for i, s in zip(self.ids, self.smiles, strict=True)]


@dataclass(frozen=True)
class CellBatch:
    """Cell lines to embed: ids, the gene (feature) names and a float32 matrix (n, genes); NaN = not measured."""

    ids: list[str]
    genes: list[str]
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray | list[int]) -> CellBatch:
        return CellBatch([self.ids[i] for i in index], self.genes, self.values[np.asarray(index, dtype=np.int64)])

    def item_hashes(self) -> list[str]:
        genes = _hash("\t".join(self.genes).encode())
        rows = np.ascontiguousarray(self.values, dtype="<f4")
        return [_hash(f"{i}\t{genes}\t".encode() + row.tobytes()) for i, row in zip(self.ids, rows, strict=True)]


Batch = DrugBatch | CellBatch


def dataset_items(dataset: Dataset, entity: str, modality: str | None = None) -> Batch:
    """The items an encoder of ``entity`` embeds: all drugs with their SMILES, or the cell lines that have the
    ``modality`` matrix (expression when not given), with every column of it."""
    if entity == "drug":
        return DrugBatch(dataset.drugs["drug_id"].astype(str).tolist(), dataset.drugs["smiles"].astype(str).tolist())
    modality = modality or "expression"
    if modality not in dataset.omics:
        raise DatasetError(f"dataset {dataset.name!r} has no {modality!r} matrix; it has {sorted(dataset.omics)}")
    matrix = dataset.omics[modality]
    matrix = matrix[matrix.index.isin(dataset.cells["cell_id"])]
    return CellBatch(matrix.index.astype(str).tolist(), matrix.columns.astype(str).tolist(), matrix.to_numpy("float32"))


def source_hash(items: Batch) -> str:
    """Hash of everything a dataset offered an encoder, items it skipped included: equal only for equal inputs."""
    return input_hash(items.ids, items.item_hashes())


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]
