"""Stores that travel: every export read back with the library its users read it with, and plain Zarr/xarray reads."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import zarr
from click.testing import CliRunner

from fused_cache import Store, datasets, open_store
from fused_cache.cli import cli


def store_of(encoder: str, dataset: str, cache: Path) -> Store:
    """A store of the test dataset (a data directory: its refs are under a key of its resolved path)."""
    return open_store(encoder, dataset=dataset, cache_dir=cache)


def export(cache: Path, dataset: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["export", *args, "--dataset", dataset, "--cache-dir", str(cache)],
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def drevalpy_dir(trained_on: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """drevalpy's data_path/<dataset_name> holding our expression, methylation and morgan stores."""
    dataset, cache = trained_on
    folder = tmp_path_factory.mktemp("drevalpy") / "fused"
    for encoder in ("expression", "methylation", "morgan"):
        export(cache, dataset, encoder, "--to", "drevalpy", str(folder))
    return folder


def test_drevalpy_layout_as_documented(trained_on: tuple[str, Path], drevalpy_dir: Path) -> None:
    """The files drevalpy reads (drevalpy/models/utils.py, SimpleNeuralNetwork's ChemBERTa loader), read with pandas."""
    dataset, cache = trained_on
    cells = datasets.load(dataset).cells.set_index("cell_id")
    expression = store_of("expression", dataset, cache)
    table = pd.read_csv(drevalpy_dir / "gene_expression.csv", index_col="cell_line_name")
    assert list(table.columns) == expression.manifest["fingerprint"]["settings"]["genes"]  # genes, not numbers
    names = pd.read_csv(drevalpy_dir / "cell_line_names.csv", index_col="cell_line_name")
    assert list(names.columns) == ["depmap_id", "tissue"]
    assert list(names.loc[table.index, "depmap_id"]) == list(expression.ids)
    assert list(table.index) == list(cells.loc[expression.ids, "cell_name"])
    assert list(names.loc[table.index, "tissue"]) == list(cells.loc[expression.ids, "tcga_type"])
    np.testing.assert_allclose(table.to_numpy(), np.asarray(expression.embeddings[:]), rtol=1e-6)
    assert "methylation.csv" in {p.name for p in drevalpy_dir.iterdir()}

    morgan = store_of("morgan", dataset, cache)
    drugs = pd.read_csv(drevalpy_dir / "drug_morgan_embeddings.csv", dtype={"pubchem_id": str})
    assert drugs.columns[0] == "pubchem_id" and list(drugs["pubchem_id"]) == list(morgan.ids)
    np.testing.assert_array_equal(drugs.drop(columns="pubchem_id").to_numpy(), np.asarray(morgan.embeddings[:]))
    drug_names = pd.read_csv(drevalpy_dir / "drug_names.csv", dtype=str)
    assert list(drug_names.columns) == ["pubchem_id", "drug_name", "smiles"] and len(drug_names) == len(morgan.ids)


def test_drevalpy_reads_the_export_with_its_own_loaders(trained_on: tuple[str, Path], drevalpy_dir: Path) -> None:
    pytest.importorskip("drevalpy")
    from drevalpy.datasets.dataset import FeatureDataset
    from drevalpy.models.utils import (
        load_and_select_gene_features,
        load_cl_ids_from_csv,
        load_drug_ids_from_csv,
        load_tissues_from_csv,
    )

    dataset, cache = trained_on
    data_path, name = str(drevalpy_dir.parent), drevalpy_dir.name
    expression = store_of("expression", dataset, cache)
    features = load_and_select_gene_features("gene_expression", None, data_path, name)
    first = pd.read_csv(drevalpy_dir / "gene_expression.csv")["cell_line_name"][0]  # the store's first cell line
    np.testing.assert_allclose(features.features[first]["gene_expression"], expression.embeddings[0], rtol=1e-6)
    assert list(features.meta_info["gene_expression"]) == expression.manifest["fingerprint"]["settings"]["genes"]
    assert len(load_cl_ids_from_csv(data_path, name).features) == len(expression.ids)
    assert load_tissues_from_csv(data_path, name).features[first]["tissue"][0] != ""

    morgan = store_of("morgan", dataset, cache)
    drugs = FeatureDataset.from_csv(drevalpy_dir / "drug_morgan_embeddings.csv", "pubchem_id", "morgan_embeddings")
    np.testing.assert_array_equal(drugs.features[morgan.ids[0]]["morgan_embeddings"], morgan.embeddings[0])
    assert set(load_drug_ids_from_csv(data_path, name).features) == set(morgan.ids)


def test_csv_parquet_and_npy(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    store = store_of("methylation", dataset, cache)
    genes = store.manifest["fingerprint"]["settings"]["genes"]
    export(cache, dataset, "methylation", "--to", str(tmp_path / "m.csv"))
    frame = pd.read_csv(tmp_path / "m.csv", index_col="cell_id")
    assert list(frame.columns) == genes and list(frame.index) == list(store.ids)
    np.testing.assert_allclose(frame.to_numpy(), np.asarray(store.embeddings[:]), rtol=1e-6)

    export(cache, dataset, "methylation", "--to", str(tmp_path / "m.parquet"))
    parquet = pd.read_parquet(tmp_path / "m.parquet")
    assert list(parquet.columns) == genes and parquet.index.name == "cell_id"
    meta = pq.read_schema(tmp_path / "m.parquet").metadata
    assert meta[b"fused_store_version"].decode() == store.version and meta[b"fused_encoder"] == b"methylation"

    export(cache, dataset, "morgan", "--to", str(tmp_path / "d.parquet"))
    assert pd.read_parquet(tmp_path / "d.parquet").columns[0] == "morgan_0"  # no gene names: encoder_i
    export(cache, dataset, "morgan", "--to", str(tmp_path / "d.npy"))
    assert (tmp_path / "d.ids.txt").read_text().split() == list(store_of("morgan", dataset, cache).ids)  # fmt: skip


def test_anndata_carries_metadata(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    ds = datasets.load(dataset)
    export(cache, dataset, "expression", "--to", str(tmp_path / "cells.h5ad"))
    cells = anndata.read_h5ad(tmp_path / "cells.h5ad")
    store = store_of("expression", dataset, cache)
    assert list(cells.obs_names) == list(store.ids)
    expected = ds.cells.set_index("cell_id").loc[store.ids]
    assert list(cells.obs["tcga_type"]) == list(expected["tcga_type"])
    assert list(cells.obs["cell_name"]) == list(expected["cell_name"])
    assert list(cells.var_names) == store.manifest["fingerprint"]["settings"]["genes"]
    np.testing.assert_array_equal(cells.obsm["X_expression"], cells.X)
    assert cells.uns["fused_store_version"] == store.version

    export(cache, dataset, "morgan", "--to", str(tmp_path / "drugs.h5ad"))
    drugs = anndata.read_h5ad(tmp_path / "drugs.h5ad")
    smiles = ds.drugs.set_index("drug_id").loc[drugs.obs_names, "smiles"]
    assert list(drugs.obs["smiles"]) == list(smiles) and drugs.obsm["X_morgan"].shape == (10, 2048)


def test_a_ragged_store_and_a_bad_target_are_refused(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    args = ["--dataset", dataset, "--cache-dir", str(cache)]
    result = CliRunner().invoke(cli, ["export", "graph", "--to", str(tmp_path / "g.csv"), *args])
    assert result.exit_code == 2 and "stores ragged arrays" in result.output  # a usage error
    result = CliRunner().invoke(cli, ["export", "morgan", "--to", "drevalpy", *args])
    assert result.exit_code == 2 and "needs the output folder" in result.output


def test_path_prints_where_the_store_lives(trained_on: tuple[str, Path]) -> None:
    dataset, cache = trained_on
    result = CliRunner().invoke(cli, ["path", "morgan", "--dataset", dataset, "--cache-dir", str(cache)])
    assert result.output.strip() == str(store_of("morgan", dataset, cache).path)


def test_plain_zarr_reads_without_warnings_and_xarray_opens_the_store(trained_on: tuple[str, Path]) -> None:
    dataset, cache = trained_on
    path = store_of("expression", dataset, cache).path
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group = zarr.open_group(path, mode="r")
        assert set(group.keys()) == {"ids", "item_hashes", "embeddings"}
        ids = group["ids"][:]
    assert all(type(i) is str for i in ids.tolist()) and ids[0].startswith("ACH-")
    assert group["embeddings"].metadata.dimension_names == ("item", "feature")
    graph = zarr.open_group(store_of("graph", dataset, cache).path, mode="r")
    assert graph["atom_features_offsets"].metadata.dimension_names == ("offset",)
    xarray = pytest.importorskip("xarray")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opened = xarray.open_zarr(path)
    assert dict(opened.sizes) == {"item": 40, "feature": group["embeddings"].shape[1]}
    assert opened["ids"].values.tolist() == ids.tolist()
