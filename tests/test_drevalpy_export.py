"""A complete drevalpy dataset from our data (``fused-train drevalpy``): the layout drevalpy reads, checked with pandas
always and run through drevalpy itself when it is installed."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from fused_cache import datasets, open_store
from fused_train.cli import cli
from fused_train.drevalpy_dataset import write_drevalpy_dataset
from fused_train.pairs import EmbeddingPairs, membership
from fused_train.runs import RunError


@pytest.fixture(scope="module")
def exported(trained_on: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``fused-train drevalpy`` on the small dataset: morgan, expression, methylation, the first two LODO folds."""
    dataset, cache = trained_on
    data_path = tmp_path_factory.mktemp("drevalpy") / "data"
    result = CliRunner().invoke(cli, ["drevalpy", "--dataset", dataset, "--cache-dir", str(cache), "--drug-encoder",
                                      "morgan", "--omics", "methylation", "--split", "LDO", "--fold", "0-1", "--out",
                                      str(data_path), "--name", "small"], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    return data_path, result.output


def test_the_export_is_what_drevalpy_reads(trained_on: tuple[str, Path], exported: tuple[Path, str]) -> None:
    dataset, cache = trained_on
    data_path, output = exported
    folder = data_path / "small"
    ds = datasets.load(dataset)
    inputs = EmbeddingPairs.from_stores(dataset, "morgan", ["expression", "methylation"], cache).inputs
    # the response file: drevalpy's id columns and measure name, one row per pair we train on
    response = pd.read_csv(folder / "small.csv", dtype={"pubchem_id": str, "cell_line_name": str})
    assert {"pubchem_id", "cell_line_name", "tissue", "LN_IC50"} <= set(response.columns)
    assert len(response) == len(inputs.pairs)
    np.testing.assert_array_equal(response["LN_IC50"], inputs.pairs["ln_ic50"])
    assert list(response["pubchem_id"]) == list(inputs.pairs["drug_id"])
    # cell lines are named as in the feature files and cell_line_names.csv
    expression = pd.read_csv(folder / "gene_expression.csv", index_col="cell_line_name")
    names = pd.read_csv(folder / "cell_line_names.csv", index_col="cell_line_name")
    assert set(response["cell_line_name"]) <= set(expression.index)
    assert list(names.loc[response["cell_line_name"], "depmap_id"]) == list(inputs.pairs["cell_id"])
    # gene lists under the names drevalpy's default views read, holding our expression genes
    genes = open_store("expression", dataset=dataset, cache_dir=cache).manifest["fingerprint"]["settings"]["genes"]
    for name in ("landmark_genes", "landmark_genes_reduced", "gene_expression_intersection"):
        assert list(pd.read_csv(data_path / "meta" / "gene_lists" / f"{name}.csv")["Symbol"]) == genes
    assert "left out meta/gene_lists/drug_target_genes_all_drugs.csv: needs the mutation store" in output
    # the fingerprint map: bits x drugs, each column RDKit's 128-bit Morgan fingerprint (radius 2) of our SMILES
    fingerprints = pd.read_csv(folder / "drug_fingerprints" / "pubchem_id_to_demorgan_128_map.csv")
    smiles = ds.drugs.set_index("drug_id")["smiles"]
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=128)
    assert fingerprints.shape == (128, len(inputs.drug_ids))
    for drug in fingerprints.columns:
        expected = generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(smiles[drug]))
        np.testing.assert_array_equal(fingerprints[drug].to_numpy(), expected)
    smiles_file = pd.read_csv(folder / "drug_smiles.csv", dtype=str)
    assert list(smiles_file.columns) == ["pubchem_id", "canonical_smiles"]
    # our folds, by drevalpy's id columns
    folds = pd.read_csv(folder / "fused_folds.csv", dtype=str)
    ours = membership(inputs, EmbeddingPairs(inputs).folds("lodo")[:2])
    assert list(folds.columns) == ["fold", "pubchem_id", "role"]
    assert folds.equals(ours.drop(columns="seed").rename(columns={"drug_id": "pubchem_id"}).astype(str))
    assert "--custom_splitter_path" in output and "--no_refitting" in output


class _Responses:
    """The part of drevalpy's DrugResponseDataset a splitter uses (``drug_ids``, ``cell_line_ids``, copy, mask)."""

    def __init__(self, drug_ids: np.ndarray, cell_line_ids: np.ndarray) -> None:
        self.drug_ids, self.cell_line_ids = drug_ids, cell_line_ids

    def copy(self) -> _Responses:
        return _Responses(self.drug_ids.copy(), self.cell_line_ids.copy())

    def mask(self, keep: np.ndarray) -> None:
        self.drug_ids, self.cell_line_ids = self.drug_ids[keep], self.cell_line_ids[keep]


def test_the_splitter_gives_drevalpy_our_folds(exported: tuple[Path, str]) -> None:
    folder = exported[0] / "small"
    spec = importlib.util.spec_from_file_location("splitter", folder / "fused_splits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    response = pd.read_csv(folder / "small.csv", dtype=str)
    splits = module.create_splits(_Responses(response["pubchem_id"].to_numpy(), response["cell_line_name"].to_numpy()),
                                  None)  # fmt: skip
    folds = pd.read_csv(folder / "fused_folds.csv", dtype=str)
    assert [s["metadata"]["fold"] for s in splits] == list(folds["fold"].unique())
    for split, (_, fold) in zip(splits, folds.groupby("fold", sort=False), strict=True):
        for theirs, ours in (("train", "train"), ("validation", "val"), ("test", "test")):
            assert set(split[theirs].drug_ids) == set(fold.loc[fold["role"] == ours, "pubchem_id"])
        assert sum(len(split[r].drug_ids) for r in ("train", "validation", "test")) == len(response)


def test_nothing_is_overwritten(trained_on: tuple[str, Path], exported: tuple[Path, str], tmp_path: Path) -> None:
    dataset, cache = trained_on
    data_path = exported[0]
    with pytest.raises(RunError, match="exists; pass another data path"):
        write_drevalpy_dataset(data_path, "small", dataset, "morgan", ["expression"], cache_dir=cache)
    other = tmp_path / "data"
    (other / "meta" / "gene_lists").mkdir(parents=True)
    pd.DataFrame({"Symbol": ["TP53", "EGFR"]}).to_csv(other / "meta" / "gene_lists" / "landmark_genes.csv", index=False)
    with pytest.raises(RunError, match="landmark_genes.csv exists with other genes"):
        write_drevalpy_dataset(other, "small", dataset, "morgan", ["expression"], cache_dir=cache)
    assert not (other / "small").exists() and list(other.iterdir()) == [other / "meta"]  # nothing half-written
    with pytest.raises(RunError, match="drevalpy has no split like 'pilot-5'"):
        write_drevalpy_dataset(tmp_path / "x", "small", dataset, "morgan", ["expression"], "pilot-5", cache_dir=cache)


def _drevalpy() -> list[str]:
    """How to call drevalpy: its command on PATH, else its module in this interpreter; skipped without either."""
    if shutil.which("drevalpy"):
        return [shutil.which("drevalpy")]
    pytest.importorskip("drevalpy")
    return [sys.executable, "-m", "drevalpy.cli.main"]


def test_drevalpy_runs_on_the_export_with_our_folds(exported: tuple[Path, str], tmp_path: Path) -> None:
    """The printed command, run as printed (ElasticNet without tuning, to stay short): drevalpy tests on our folds."""
    command = _drevalpy()
    data_path, output = exported
    printed = output.strip().splitlines()[-1].split()
    assert printed[0] == "drevalpy"
    subprocess.run([*command, *printed[1:], "--no_hyperparameter_tuning"], cwd=tmp_path, check=True)  # fmt: skip
    folds = pd.read_csv(data_path / "small" / "fused_folds.csv", dtype=str)
    for i, (_, fold) in enumerate(folds.groupby("fold", sort=False)):
        predictions = pd.read_csv(tmp_path / "results" / "small" / "small" / "LDO" / "ElasticNet" / "predictions" /
                                  f"predictions_split_{i}.csv", dtype={"pubchem_id": str})  # fmt: skip
        assert set(predictions["pubchem_id"]) == set(fold.loc[fold["role"] == "test", "pubchem_id"])
        assert np.isfinite(predictions["predictions"]).all()
