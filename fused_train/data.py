"""Entity-level inputs of a training run: one feature matrix per token, read from fused-cache stores, plus the pairs.

Features are kept per entity (223 drugs, <= 561 cell lines), never per pair: models compute per-entity work once and
the engine evaluates pairs on the dense drug x cell grid. Pairs are joined on ids (PubChem CID, DepMap id), never on
row order. Nothing is dropped silently: pairs left out because a store lacks their drug or cell are counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fused_cache.datasets import Dataset
from fused_cache.stores import open_store


class InputError(ValueError):
    """The stores do not fit the model (e.g. atom graphs for a model that needs an embedding)."""


@dataclass(frozen=True)
class Graphs:
    """Atom graphs of the drugs (the ``graph`` store): atom features, offsets (A+1) and directed edges per drug."""

    atom_features: np.ndarray
    atom_offsets: np.ndarray
    edges: np.ndarray
    edge_offsets: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.atom_features.shape[1])


@dataclass(frozen=True)
class InputShapes:
    """What a model is built for: the drug input's width and kind, and each cell token's width."""

    drug_dim: int
    drug_kind: str
    """``"dense"`` (an (A, d) embedding) or ``"graph"`` (atom graphs; ``drug_dim`` = atom feature width)."""
    cell_dims: dict[str, int]


@dataclass(frozen=True)
class Inputs:
    """Everything a model trains on. ``drug`` is (A, d) or Graphs; ``cells`` maps token name -> (C, d)."""

    dataset: str
    drug_ids: np.ndarray
    cell_ids: np.ndarray
    drug: np.ndarray | Graphs
    cells: dict[str, np.ndarray]
    pairs: pd.DataFrame
    """drug_id, cell_id, ln_ic50, gdsc_drug_id (if known), drug_index, cell_index."""
    cell_groups: np.ndarray
    """Per cell line, its TCGA type (for stratified splits), or "" when unknown."""
    stores: dict[str, str] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.drug_ids), len(self.cell_ids)

    @property
    def drug_kind(self) -> str:
        return "graph" if isinstance(self.drug, Graphs) else "dense"

    def shapes(self) -> InputShapes:
        drug_dim = self.drug.dim if isinstance(self.drug, Graphs) else self.drug.shape[1]
        return InputShapes(drug_dim, self.drug_kind, {name: x.shape[1] for name, x in self.cells.items()})

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Per (drug, cell) grid cell: number of measurements (0, 1 or 2) and their mean ln IC50 (0 where none).

        Two measurements of one CID on one cell line (two GDSC ids) share a grid cell; a squared loss weighted by
        the count around their mean has exactly the gradient of the two separate pairs.
        """
        count = np.zeros(self.shape, dtype=np.float32)
        total = np.zeros(self.shape, dtype=np.float64)
        d, c = self.pairs["drug_index"].to_numpy(), self.pairs["cell_index"].to_numpy()
        np.add.at(count, (d, c), 1)
        np.add.at(total, (d, c), self.pairs["ln_ic50"].to_numpy())
        mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        return count, mean.astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "drugs": len(self.drug_ids),
            "cells": len(self.cell_ids),
            "pairs": len(self.pairs),
            "excluded_pairs": self.excluded,
            "stores": self.stores,
            "features": {"drug": self.shapes().drug_dim} | self.shapes().cell_dims,
        }


def load_inputs(
    dataset: Dataset,
    drug_encoder: str,
    cell_encoders: Sequence[str],
    cache_dir: str | Path | None = None,
    drug_kinds: Sequence[str] = ("dense",),
) -> Inputs:
    """Open the stores of one drug encoder and of the cell encoders, and keep the pairs all of them cover.

    ``drug_kinds``: what the model accepts, "dense" (an embedding) and/or "graph" (a store of atom graphs).
    Raises StoreNotFound (with the ``fused-cache build`` to run) when a store is missing.
    """
    drug_store = open_store(drug_encoder, entity="drug", dataset=dataset.name, cache_dir=cache_dir)
    kind = "graph" if "atom_features_offsets" in drug_store.manifest["arrays"] else "dense"
    if kind not in drug_kinds:
        wanted = "atom graphs (--drug-encoder graph)" if "graph" in drug_kinds else "a dense drug embedding"
        raise InputError(f"the model needs {wanted}, but the {drug_encoder!r} store holds {kind} drug input; "
                         "choose another --drug-encoder or --model")  # fmt: skip
    cell_stores = {
        name: open_store(name, entity="cell", dataset=dataset.name, cache_dir=cache_dir) for name in cell_encoders
    }
    pairs = dataset.pairs
    excluded: dict[str, int] = {}
    keep = pairs["drug_id"].isin(set(drug_store.ids))
    excluded[f"no {drug_encoder} drug embedding"] = int((~keep).sum())
    for name, store in cell_stores.items():
        has = pairs["cell_id"].isin(set(store.ids))
        excluded[f"no {name} cell embedding"] = int((keep & ~has).sum())
        keep &= has
    pairs = pairs[keep].reset_index(drop=True)
    drug_ids = np.array(sorted(pairs["drug_id"].unique()), dtype=str)
    cell_ids = np.array(sorted(pairs["cell_id"].unique()), dtype=str)
    pairs = pairs.assign(
        drug_index=np.searchsorted(drug_ids, pairs["drug_id"].to_numpy()).astype(np.int64),
        cell_index=np.searchsorted(cell_ids, pairs["cell_id"].to_numpy()).astype(np.int64),
    )
    groups = dataset.cells.set_index("cell_id").get("tcga_type")
    cell_groups = (
        groups.reindex(cell_ids).fillna("").astype(str).to_numpy() if groups is not None else np.full(len(cell_ids), "")
    )
    return Inputs(
        dataset=dataset.name,
        drug_ids=drug_ids,
        cell_ids=cell_ids,
        drug=_graphs(drug_store, drug_ids) if kind == "graph" else _dense(drug_store, drug_ids),
        cells={name: _dense(store, cell_ids) for name, store in cell_stores.items()},
        pairs=pairs,
        cell_groups=cell_groups,
        stores={drug_encoder: str(drug_store.path)} | {n: str(s.path) for n, s in cell_stores.items()},
        excluded={k: v for k, v in excluded.items() if v},
    )


def _dense(store: Any, ids: np.ndarray) -> np.ndarray:
    rows = store.index_of(list(ids))
    return np.asarray(store.embeddings[:], dtype=np.float32)[rows]


def _graphs(store: Any, ids: np.ndarray) -> Graphs:
    rows = store.index_of(list(ids))
    atoms, atom_off = store.ragged("atom_features")
    edges, edge_off = store.ragged("edges")
    a_parts = [atoms[atom_off[r] : atom_off[r + 1]] for r in rows]
    e_parts = [edges[edge_off[r] : edge_off[r + 1]] for r in rows]
    return Graphs(
        atom_features=np.concatenate(a_parts).astype(np.float32),
        atom_offsets=np.concatenate([[0], np.cumsum([len(p) for p in a_parts])]).astype(np.int64),
        edges=np.concatenate(e_parts).astype(np.int64),
        edge_offsets=np.concatenate([[0], np.cumsum([len(p) for p in e_parts])]).astype(np.int64),
    )
