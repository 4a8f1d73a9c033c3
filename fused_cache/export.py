"""A store in the formats other tools read, with the metadata those tools' users expect.

- ``csv``: one row per item, the id column (``drug_id`` / ``cell_id``) first, then one column per feature.
- ``parquet``: the same table indexed by id; the store's version, encoder and manifest in the file's metadata.
- ``npy``: the matrix, with the ids in ``<name>.ids.txt``.
- ``h5ad`` (AnnData): ``X`` and ``obsm["X_<encoder>"]`` hold the embeddings (as scGPT's ``embed_data`` puts them in
  ``obsm``); ``obs`` is indexed by id with the cell line's name and TCGA type, or the drug's name and SMILES; ``var``
  names the features; ``uns`` holds the manifest.
- ``drevalpy``: a directory in drevalpy's feature layout (``<data_path>/<dataset_name>/`` of drevalpy 1.x, matched to
  ``drevalpy/models/utils.py`` and ``drevalpy/datasets/dataset.py``): a cell store becomes ``<view>.csv`` indexed by
  ``cell_line_name`` (read by ``load_and_select_gene_features(view, None, data_path, dataset_name)``), plus
  ``cell_line_names.csv`` (``cell_line_name``, ``depmap_id``, ``tissue`` = TCGA type); a drug store becomes
  ``drug_<encoder>_embeddings.csv`` with a ``pubchem_id`` column (read like drevalpy's
  ``drug_chemberta_embeddings.csv``, or by ``FeatureDataset.from_csv(path, "pubchem_id", view)``), plus
  ``drug_names.csv``.

Feature names are the store's gene names where it has them (omics stores), else ``<encoder>_<i>``. Every file is
written whole and replaces an existing one only with ``force`` (``fused_cache/outputs.py``); a drevalpy id table
already in the folder is merged with, when it is one (it has the id column), and refused otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fused_cache.datasets import Dataset
from fused_cache.outputs import OutputError, atomic_path, check_folder, check_new_file
from fused_cache.stores import Store


class ExportError(ValueError):
    """A store that cannot be written in the format asked for, or to the place asked for."""


FORMATS = ("csv", "parquet", "npy", "h5ad", "drevalpy")
DREVALPY_VIEWS = {"expression": "gene_expression", "methylation": "methylation", "mutation": "mutations"}
"""drevalpy's names of the omics views our omics stores hold; other stores become ``<encoder>_embeddings``."""


def feature_names(manifest: dict[str, Any]) -> list[str]:
    """Gene names of an omics store (recorded in its fingerprint), else ``<encoder>_0 .. <encoder>_<dim-1>``."""
    genes = manifest.get("fingerprint", {}).get("settings", {}).get("genes")
    if isinstance(genes, list) and len(genes) == manifest["dim"]:
        return [str(g) for g in genes]
    return [f"{manifest['encoder']}_{i}" for i in range(manifest["dim"])]


def metadata(entity: str, ids: np.ndarray, dataset: Dataset | None) -> pd.DataFrame:
    """Per item, what the dataset knows: cell line name and TCGA type, or drug name and SMILES (empty if unknown)."""
    key, columns = ("cell_id", ["cell_name", "tcga_type"]) if entity == "cell" else ("drug_id", ["name", "smiles"])
    index = pd.Index(ids, name=key)
    if dataset is None:
        return pd.DataFrame({c: "" for c in columns}, index=index)
    table = dataset.cells if entity == "cell" else dataset.drugs
    table = table.assign(**{key: table[key].astype(str)}).drop_duplicates(key).set_index(key)
    return table.reindex(index, columns=columns).fillna("").astype(str)


def table(store: Store) -> pd.DataFrame:
    """Embeddings indexed by id, one column per named feature, once the store verifies (``Store.load``)."""
    arrays = store.load()
    index = pd.Index(arrays["ids"], name=f"{store.manifest['entity']}_id")
    return pd.DataFrame(arrays["embeddings"], index=index, columns=feature_names(store.manifest))


def export(
    store: Store, fmt: str, out: Path, dataset: Dataset | None = None, force: bool = False, option: str = "--to"
) -> list[Path]:
    """Write ``store`` as ``fmt`` (one of ``FORMATS``) to ``out`` (a file, or a directory for drevalpy); an existing
    file is replaced only with ``force``. ``option`` names ``out`` in messages."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if "embeddings" not in store.manifest["arrays"]:
        raise ExportError(f"{store.manifest['encoder']!r} holds ragged arrays (atom graphs), not an embedding matrix")
    if fmt == "drevalpy":
        return to_drevalpy(table(store), store.manifest, out, dataset, force, option)
    try:
        for path in (out, out.with_suffix(".ids.txt")) if fmt == "npy" else (out,):
            check_new_file(path, force, option)
    except OutputError as err:
        raise ExportError(str(err)) from err
    frame = table(store)
    if fmt == "npy":
        ids = out.with_suffix(".ids.txt")
        with atomic_path(out) as tmp, atomic_path(ids) as tmp_ids:
            np.save(tmp, frame.to_numpy())
            tmp_ids.write_text("\n".join(frame.index) + "\n")
        return [out, ids]
    with atomic_path(out) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp)
        elif fmt == "parquet":
            _parquet(frame, store.manifest, tmp)
        else:
            _anndata(frame, store.manifest, tmp, dataset)
    return [out]


def _parquet(frame: pd.DataFrame, manifest: dict[str, Any], out: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(frame)
    extra = {b"fused_store_version": manifest["version"].encode(), b"fused_encoder": manifest["encoder"].encode(),
             b"fused_manifest": json.dumps(manifest).encode()}  # fmt: skip
    pq.write_table(arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **extra}), out)
    return out


def _anndata(frame: pd.DataFrame, manifest: dict[str, Any], out: Path, dataset: Dataset | None) -> Path:
    import anndata

    values = frame.to_numpy()
    adata = anndata.AnnData(
        X=values,
        obs=metadata(manifest["entity"], frame.index.to_numpy(), dataset),
        var=pd.DataFrame(index=pd.Index(frame.columns, name="feature")),
    )
    adata.obsm[f"X_{manifest['encoder']}"] = values
    adata.uns["fused_store_version"] = manifest["version"]
    adata.uns["fused_manifest"] = json.dumps(manifest)
    adata.write_h5ad(out)
    return out


def drevalpy_view(manifest: dict[str, Any]) -> str:
    """The view name drevalpy gives this store's features."""
    return DREVALPY_VIEWS.get(manifest["encoder"], f"{manifest['encoder']}_embeddings")


def to_drevalpy(
    frame: pd.DataFrame, manifest: dict[str, Any], folder: Path, dataset: Dataset | None, force: bool = False,
    option: str = "FOLDER",
) -> list[Path]:  # fmt: skip
    """drevalpy's feature files for one store in ``folder`` (drevalpy's ``<data_path>/<dataset_name>``); an existing
    feature file is replaced only with ``force``, a dataset directory of ours never written into.

    Cell lines are named as in drevalpy's GDSC/CCLE files (``cell_line_name`` = the cell line's name, its DepMap id
    where the dataset has no unique name); drugs by PubChem CID (``pubchem_id``), our drug id.
    """
    meta = metadata(manifest["entity"], frame.index.to_numpy(), dataset)
    view = drevalpy_view(manifest)
    if manifest["entity"] == "drug":
        names = meta.reset_index().rename(columns={"drug_id": "pubchem_id", "name": "drug_name"})
        features = frame.rename_axis("pubchem_id").reset_index()
        written = [folder / f"drug_{manifest['encoder']}_embeddings.csv", folder / "drug_names.csv"]
    else:
        names = drevalpy_cells(frame.index.to_numpy(), dataset)
        features = frame.set_axis(names["cell_line_name"].to_numpy()).rename_axis("cell_line_name").reset_index()
        written = [folder / f"{view}.csv", folder / "cell_line_names.csv"]
    try:
        check_folder(folder, [written[0].name], force, option)
    except OutputError as err:
        raise ExportError(str(err)) from err
    names = _merged_names(names, written[1], names.columns[0])  # before anything is written: it may refuse
    with atomic_path(written[0]) as tmp:
        features.to_csv(tmp, index=False)
    with atomic_path(written[1]) as tmp:
        names.to_csv(tmp, index=False)
    return written


def drevalpy_cells(ids: np.ndarray, dataset: Dataset | None) -> pd.DataFrame:
    """``cell_line_name``, ``depmap_id`` (our cell id) and ``tissue`` (TCGA type) of each cell line, as drevalpy's
    ``cell_line_names.csv`` has them: the name where it is unique among all the dataset's cell lines, else the DepMap
    id. Every drevalpy file of ours names cell lines through this table, so response, features and folds agree."""
    everyone = pd.unique(np.concatenate([ids, [] if dataset is None else dataset.cells["cell_id"].astype(str)]))
    names = metadata("cell", everyone, dataset).reset_index()
    names = names.rename(columns={"cell_id": "depmap_id", "tcga_type": "tissue"})
    unique = (names["cell_name"] != "") & ~names["cell_name"].duplicated(keep=False)
    names.insert(0, "cell_line_name", names["cell_name"].where(unique, names["depmap_id"]))
    return names.drop(columns="cell_name").set_index("depmap_id", drop=False).loc[ids].reset_index(drop=True)


def _merged_names(names: pd.DataFrame, path: Path, key: str) -> pd.DataFrame:
    """The id table with the rows an earlier export of another store put in ``path``; refuses a file of that name
    that is not such a table (no ``key`` column): it is someone else's, and would be lost."""
    if not path.exists():
        return names
    try:
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
    except ValueError as err:  # pandas' EmptyDataError and ParserError, a UnicodeDecodeError
        raise ExportError(f"{path} exists but cannot be read as drevalpy's id table ({err}); move it away") from err
    if key not in old.columns:
        columns = ", ".join(map(str, old.columns))
        raise ExportError(f"{path} exists but is not drevalpy's id table (no {key!r} column; columns: {columns}); "
                          "move it away or export into another folder")  # fmt: skip
    return pd.concat([old[~old[key].isin(names[key])], names], ignore_index=True)
