"""Entity-level inputs of a training run: one feature matrix per token, read from fused-cache stores, plus the pairs.

Features are kept per entity (223 drugs, <= 561 cell lines), never per pair: models compute per-entity work once and
the engine evaluates pairs on the dense drug x cell grid. Pairs are joined on ids (PubChem CID, DepMap id), never on
row order. Nothing is dropped silently: pairs left out because a store lacks their drug or cell are listed with the
reason. Nothing stale or damaged is trained on: each store must verify (no chunk missing, checksum), must have been
built from exactly the items the dataset now holds, and must hold finite features of dim >= 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fused_cache.datasets import Dataset, annotation_sets
from fused_cache.stores import StaleStore, Store, build_command, cache_root, check_built_from, open_store


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
    store_versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per token: the store's path, version, input_hash and source_hash (what a run records as its provenance)."""
    excluded_pairs: pd.DataFrame | None = None
    """The pairs left out, with drug_id, cell_id, ln_ic50 and the reason."""
    drug_annotations: dict[str, list[frozenset[str]]] = field(default_factory=dict)
    """Per annotation of ``DRUG_ANNOTATIONS`` (targets, target_pathway), each drug's set (empty: unknown)."""

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
    checksum: bool | None = None,
) -> Inputs:
    """Open the stores of one drug encoder and of the cell encoders, and keep the pairs all of them cover.

    ``drug_kinds``: what the model accepts, "dense" (an embedding) and/or "graph" (a store of atom graphs).
    Raises StoreNotFound (with the ``fused-cache build`` to run) when a store is missing, CorruptStore when it does
    not verify (``checksum=False``, or $FUSED_SKIP_CHECKSUMS=1, skips only the checksum), StaleStore when it was built
    from other inputs than ``dataset`` holds or its features are not finite, InputError when the model cannot take
    the drug store's kind.
    """
    root = cache_root(cache_dir)
    drug_store, drug_arrays = _open_checked(drug_encoder, "drug", dataset, root, checksum)
    kind = "dense" if drug_store.dense else "graph"
    if kind not in drug_kinds:
        wanted = "atom graphs (--drug-encoder graph)" if "graph" in drug_kinds else "a dense drug embedding"
        raise InputError(f"the model needs {wanted}, but the {drug_encoder!r} store holds {kind} drug input; "
                         "choose another --drug-encoder or --model")  # fmt: skip
    cells = {name: _open_checked(name, "cell", dataset, root, checksum) for name in cell_encoders}
    pairs = dataset.pairs
    why = _missing(pairs["drug_id"], drug_store, drug_arrays, "drug")
    for store, arrays in cells.values():
        first = why["reason"] == ""
        why.loc[first] = _missing(pairs["cell_id"], store, arrays, "cell line").loc[first]
    keep = (why["reason"] == "").to_numpy()
    excluded = why.loc[~keep, "reason"].value_counts(sort=False).to_dict()
    excluded_pairs = pd.concat([pairs.loc[~keep, ["drug_id", "cell_id", "ln_ic50"]], why[~keep]], axis=1)
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
    opened = {drug_encoder: drug_store} | {name: store for name, (store, _) in cells.items()}
    return Inputs(
        dataset=dataset.name,
        drug_ids=drug_ids,
        cell_ids=cell_ids,
        drug=_drug_features(drug_store, drug_arrays, drug_ids),
        cells={name: _dense(arrays, cell_ids) for name, (_, arrays) in cells.items()},
        pairs=pairs,
        cell_groups=cell_groups,
        stores={name: str(store.path) for name, store in opened.items()},
        excluded={str(k): int(v) for k, v in excluded.items()},
        store_versions={name: _record(store) for name, store in opened.items()},
        excluded_pairs=excluded_pairs.reset_index(drop=True),
        drug_annotations=annotation_sets(dataset.drugs, drug_ids),
    )


def _open_checked(
    encoder: str, entity: str, dataset: Dataset, root: Path, checksum: bool | None
) -> tuple[Store, dict[str, np.ndarray]]:
    """A store and its arrays, once they verify, belong to ``dataset``'s current items and hold usable features."""
    store = open_store(encoder, entity=entity, dataset=dataset, cache_dir=root)
    arrays = store.load(checksum)
    check_built_from(store, dataset, root)
    values = arrays["embeddings"] if store.dense else arrays["atom_features"]
    advice = f"rebuild it: {build_command(encoder, dataset, root)}"
    if values.ndim != 2 or values.shape[1] < 1:
        raise StaleStore(f"store {store.path} holds features of shape {values.shape}; dim 0 is unusable; {advice}")
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        item = str(arrays["ids"][row]) if store.dense else "an atom"
        raise StaleStore(
            f"store {store.path} holds {int(bad.sum())} non-finite values (first: {entity} {item!r}, column "
            f"{column}: {values[row, column]}); stores built now never do, so {advice}"
        )
    return store, arrays


def _missing(ids: pd.Series, store: Store, arrays: dict[str, np.ndarray], what: str) -> pd.DataFrame:
    """Per pair, why ``store`` cannot give its drug or cell line: a reason ("" when it can) and, for an item the
    build skipped, the build's reason (e.g. the invalid SMILES)."""
    name, skipped = store.manifest["encoder"], store.manifest["skipped"]
    absent = ~ids.isin(set(arrays["ids"]))
    was_skipped = ids.isin(set(skipped))
    reason = np.where(was_skipped, f"{what} skipped by the {name} build", f"no {name} embedding of the {what}")
    return pd.DataFrame(
        {"reason": np.where(absent, reason, ""), "detail": ids.map(skipped).where(absent & was_skipped, "")},
        index=ids.index,
    )


def _record(store: Store) -> dict[str, Any]:
    m = store.manifest
    return {"path": str(store.path), "encoder": m["encoder"], "version": m["version"], "input_hash": m["input_hash"],
            "source_hash": m.get("source_hash"), "n": m["n"], "dim": m["dim"]}  # fmt: skip


def _rows(arrays: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    position = {v: i for i, v in enumerate(arrays["ids"])}
    return np.array([position[i] for i in ids], dtype=np.int64)


def _dense(arrays: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray:
    return np.asarray(arrays["embeddings"], dtype=np.float32)[_rows(arrays, ids)]


def _drug_features(store: Store, arrays: dict[str, np.ndarray], ids: np.ndarray) -> np.ndarray | Graphs:
    if store.dense:
        return _dense(arrays, ids)
    rows = _rows(arrays, ids)
    atoms, atom_off = arrays["atom_features"], arrays["atom_features_offsets"]
    edges, edge_off = arrays["edges"], arrays["edges_offsets"]
    a_parts = [atoms[atom_off[r] : atom_off[r + 1]] for r in rows]
    e_parts = [edges[edge_off[r] : edge_off[r + 1]] for r in rows]
    return Graphs(
        atom_features=np.concatenate(a_parts).astype(np.float32),
        atom_offsets=np.concatenate([[0], np.cumsum([len(p) for p in a_parts])]).astype(np.int64),
        edges=np.concatenate(e_parts).astype(np.int64),
        edge_offsets=np.concatenate([[0], np.cumsum([len(p) for p in e_parts])]).astype(np.int64),
    )
