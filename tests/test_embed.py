"""fused-cache embed: molecules or expression profiles without a response table, through the same cache."""

from __future__ import annotations

from pathlib import Path

import anndata
import numpy as np
import pandas as pd
from click.testing import CliRunner

from fused_cache import build_store, open_store
from fused_cache.cli import cli
from fused_cache.datasets import Dataset


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_embed_a_smiles_list_reuses_the_cache(gdsc: Dataset, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    build_store(gdsc, "morgan", cache, quiet=True)  # the 223 bundled drugs
    known = gdsc.drugs.head(2)
    smiles = pd.DataFrame({"drug_id": [*known["drug_id"], "aspirin"], "SMILES": [*known["smiles"],
                                                                                 "CC(=O)Oc1ccccc1C(=O)O"]})  # fmt: skip
    smiles.to_csv(tmp_path / "mols.csv", index=False)
    out = invoke("embed", "--encoder", "morgan", "--smiles", str(tmp_path / "mols.csv"), "--out",
                 str(tmp_path / "mols.parquet"), "--cache-dir", str(cache), "--quiet")  # fmt: skip
    assert "embedded 1, reused 2" in out  # the two bundled drugs come from the gdsc store
    frame = pd.read_parquet(tmp_path / "mols.parquet")
    assert list(frame.index) == list(smiles["drug_id"]) and frame.shape == (3, 2048)
    bundled = open_store("morgan", dataset="gdsc-deepcdr", cache_dir=cache).to_pandas()
    np.testing.assert_array_equal(frame.iloc[:2].to_numpy(), bundled.loc[known["drug_id"]].to_numpy())
    assert frame.loc["aspirin"].sum() > 0
    assert open_store("morgan", dataset="embed-mols", cache_dir=cache).manifest["n"] == 3  # a ref of its own


def test_embed_an_anndata_of_expression_profiles(gdsc: Dataset, tmp_path: Path) -> None:
    matrix = gdsc.omics["expression"].iloc[:5, :50]
    adata = anndata.AnnData(X=matrix.to_numpy(np.float32), obs=pd.DataFrame(index=matrix.index),
                            var=pd.DataFrame(index=matrix.columns))  # fmt: skip
    adata.write_h5ad(tmp_path / "cells.h5ad")
    invoke("embed", "--encoder", "expression", "--adata", str(tmp_path / "cells.h5ad"), "--out",
           str(tmp_path / "out.h5ad"), "--cache-dir", str(tmp_path / "cache"), "--quiet")  # fmt: skip
    result = anndata.read_h5ad(tmp_path / "out.h5ad")
    kept = list(result.var_names)  # genes unmeasured in any of these cell lines are dropped, as in every build
    assert list(result.obs_names) == list(matrix.index) and set(kept) <= set(matrix.columns)
    np.testing.assert_array_equal(result.obsm["X_expression"], matrix[kept].to_numpy(np.float32))


def test_embed_refuses_the_wrong_kind_of_input(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("smiles\nCCO\n")
    result = CliRunner().invoke(cli, ["embed", "--encoder", "expression", "--smiles", str(tmp_path / "m.csv"),
                                      "--out", str(tmp_path / "o.csv")])  # fmt: skip
    assert result.exit_code == 2 and "embeds cells: use --adata" in result.output
