"""Embed items that come without a drug-response table: a list of molecules, or an AnnData of expression profiles.

They go through the same build as a dataset (``build_store``): a store in the cache, its ref under the input's name,
and rows reused from any store of the same encoder that already holds an item with the same id and input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fused_cache.dataset_keys import dataset_key
from fused_cache.tables import DatasetError, check_file, check_ids, ids_as_text, no_repeated_columns, read_table


@dataclass(frozen=True)
class Items:
    """What ``build_store`` reads of a dataset: its name, drugs (drug_id, smiles), cells (cell_id) and omics."""

    name: str
    drugs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["drug_id", "smiles"]))
    cells: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["cell_id"]))
    omics: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    source: Path | None = None
    """No folder on disk: the store's ref is kept under the name."""

    @property
    def key(self) -> str:
        """Where the store's ref is kept: under the input's name, like a dataset with no source folder."""
        return dataset_key(self.name)


def read_smiles(path: Path, name: str | None = None) -> Items:
    """Molecules from a CSV/TSV/Parquet with a ``smiles`` column (any case); ids, as written, from ``drug_id`` or
    ``id`` if present, else mol0, mol1, ..."""
    table = read_table(path, "smiles", numeric=False)
    columns = {str(c).lower(): c for c in table.columns}
    if "smiles" not in columns:
        raise DatasetError(f"{path}: no 'smiles' column (columns: {', '.join(map(str, table.columns))})")
    smiles = table[columns["smiles"]].fillna("").astype(str).str.strip()
    id_column = columns.get("drug_id") or columns.get("id")
    if id_column is None:
        ids = pd.Series([f"mol{i}" for i in range(len(table))], name="drug_id")
    else:
        ids = ids_as_text(table[id_column], f"smiles file {path}")
        check_ids(str(path), "smiles", ids)
    empty = smiles == ""
    if empty.any():
        raise DatasetError(f"{path}: row {int(np.flatnonzero(empty.to_numpy())[0])} has an empty SMILES")
    drugs = pd.DataFrame({"drug_id": ids.to_numpy(), "smiles": smiles.to_numpy()})
    if "name" in columns:
        drugs["name"] = table[columns["name"]].to_numpy()
    return Items(name or f"embed-{path.stem}", drugs=drugs)


def read_adata(path: Path, modality: str, name: str | None = None) -> Items:
    """Expression profiles (cells x genes) of an AnnData file: ``X`` with gene symbols as ``var_names``."""
    import anndata

    check_file(path, "adata")
    try:
        adata = anndata.read_h5ad(path)
    except Exception as err:  # h5py and anndata raise several types for a file that is not an AnnData
        why = str(err).splitlines()[0] if str(err) else ""
        raise DatasetError(f"adata file {path} cannot be read as AnnData .h5ad ({type(err).__name__}: {why})") from err
    no_repeated_columns(list(adata.var_names), f"adata file {path}")
    values = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    matrix = pd.DataFrame(values.astype(np.float32), index=adata.obs_names.astype(str), columns=adata.var_names)
    check_ids(str(path), "adata obs_names", matrix.index.to_series().rename("cell_id"))
    cells = pd.DataFrame({"cell_id": matrix.index.to_numpy()})
    for column in ("cell_name", "tcga_type"):
        if column in adata.obs:
            cells[column] = adata.obs[column].astype(str).to_numpy()
    return Items(name or f"embed-{path.stem}", cells=cells, omics={modality: matrix.rename_axis("cell_id")})
