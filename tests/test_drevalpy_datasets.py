"""drevalpy's datasets read here (``--dataset drevalpy:DIR/NAME``, ``--response``): fixtures in drevalpy's exact layout
written from the bundled data, read back, refused where they lack what we need, and trained on."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import subset, write_dataset, write_drevalpy

from fused_cache import datasets
from fused_cache.cli import cli as cache_cli
from fused_cache.datasets import Dataset, DatasetError
from fused_train.cli import cli as train_cli


@pytest.fixture()
def gdsc2(gdsc: Dataset, tmp_path: Path) -> tuple[Dataset, Path]:
    """6 drugs x 20 cell lines with expression and mutation, as drevalpy's data/GDSC2/ would hold them."""
    small = subset(gdsc, 6, 20, modalities=("expression", "mutation"))
    return small, write_drevalpy(small, tmp_path / "data" / "GDSC2")


def test_a_drevalpy_dataset_reads_as_ours(gdsc2: tuple[Dataset, Path]) -> None:
    small, folder = gdsc2
    ds = datasets.load(f"drevalpy:{folder}")
    assert ds.name == "GDSC2" and ds.response == "ln_ic50" and ds.key == datasets.key_of(f"drevalpy:{folder}")
    names = small.cells.set_index("cell_id")["cell_name"]
    expected = small.pairs.assign(cell_id=names.loc[small.pairs["cell_id"]].to_numpy())
    np.testing.assert_allclose(ds.pairs["ln_ic50"], expected["ln_ic50"], rtol=1e-6)  # LN_IC50 is our ln_ic50
    assert list(ds.pairs["drug_id"]) == list(expected["drug_id"]) and list(ds.pairs["cell_id"]) == list(
        expected["cell_id"]
    )
    assert dict(zip(ds.drugs["drug_id"], ds.drugs["smiles"], strict=True)) == dict(
        zip(small.drugs["drug_id"], small.drugs["smiles"], strict=True)
    )
    assert list(ds.cells.set_index("cell_id").loc[names.to_numpy(), "depmap_id"]) == list(names.index)  # DepMap kept
    expression = small.omics["expression"].set_axis(names.loc[small.omics["expression"].index].to_numpy())
    pd.testing.assert_frame_equal(ds.omics["expression"], expression, check_names=False, check_dtype=False, rtol=1e-6)
    mutation = ds.omics["mutation"]  # written as True/False
    np.testing.assert_array_equal(mutation.to_numpy(), (small.omics["mutation"].to_numpy() != 0).astype(float))


def test_response_chooses_the_measure(gdsc2: tuple[Dataset, Path]) -> None:
    small, folder = gdsc2
    auc = datasets.load(f"drevalpy:{folder}", response="AUC")
    assert auc.response == "AUC"
    np.testing.assert_allclose(auc.pairs["ln_ic50"], 1 / (1 + np.exp(-small.pairs["ln_ic50"].to_numpy())), rtol=1e-6)
    with pytest.raises(
        DatasetError, match=r"no measure 'pEC50' \(--response pEC50\); its measures: \['LN_IC50', 'AUC'\]"
    ):
        datasets.load(f"drevalpy:{folder}", response="pEC50")
    with pytest.raises(DatasetError, match="column 'tissue' holds text, not a measure"):
        datasets.load(f"drevalpy:{folder}", response="tissue")
    with pytest.raises(DatasetError, match="gdsc-deepcdr has no response 'AUC'; its only measure is 'ln_ic50'"):
        datasets.load("gdsc-deepcdr", response="AUC")


def test_rows_without_the_measure_or_smiles_are_left_out_and_said(
    gdsc2: tuple[Dataset, Path], caplog: pytest.LogCaptureFixture
) -> None:
    small, folder = gdsc2
    response = pd.read_csv(folder / "GDSC2.csv", dtype=str)
    smiles = pd.read_csv(folder / "drug_smiles.csv", dtype=str)
    dropped = smiles["pubchem_id"].iloc[0]
    response.loc[response.index[response["pubchem_id"] != dropped][:3], "AUC"] = ""  # 3 rows of drugs with SMILES
    response.to_csv(folder / "GDSC2.csv", index=False)
    smiles.iloc[1:].to_csv(folder / "drug_smiles.csv", index=False)
    with caplog.at_level(logging.WARNING):
        ds = datasets.load(f"drevalpy:{folder}", response="AUC")
    assert "3 of" in caplog.text and "have no AUC and are left out" in caplog.text
    assert "1 drugs have no SMILES in drug_smiles.csv" in caplog.text and dropped in caplog.text
    kept = (response["AUC"] != "") & (response["pubchem_id"] != dropped)
    assert len(ds.pairs) == kept.sum() and dropped not in set(ds.drugs["drug_id"])
    ln_ic50 = datasets.load(f"drevalpy:{folder}")  # the same drugs and cell lines, so the same stores, either way
    assert ln_ic50.drugs.equals(ds.drugs) and ln_ic50.cells.equals(ds.cells) and len(ln_ic50.pairs) > len(ds.pairs)


def test_response_chooses_a_column_of_our_own_format(small: Dataset, tmp_path: Path) -> None:
    pairs = small.pairs.assign(auc=np.linspace(0.1, 0.9, len(small.pairs)))
    folder = write_dataset(replace(small, pairs=pairs), tmp_path / "mine")
    np.testing.assert_allclose(datasets.load(str(folder), response="auc").pairs["ln_ic50"], pairs["auc"])
    with pytest.raises(DatasetError, match=r"has no response column 'pEC50'; its columns are \['drug_id'"):
        datasets.load(str(folder), response="pEC50")


def test_a_dataset_without_smiles_is_refused(gdsc2: tuple[Dataset, Path]) -> None:
    _, folder = gdsc2
    (folder / "drug_smiles.csv").unlink()
    with pytest.raises(DatasetError, match="has no drug_smiles.csv: our drug encoders need each drug's SMILES"):
        datasets.load(f"drevalpy:{folder}")
    with pytest.raises(DatasetError, match="no drevalpy dataset folder"):
        datasets.load(f"drevalpy:{folder.parent / 'CCLE'}")


def test_fused_train_runs_on_a_drevalpy_dataset_with_another_response(
    gdsc2: tuple[Dataset, Path], tmp_path: Path
) -> None:
    _, folder = gdsc2
    name, cache = f"drevalpy:{folder}", str(tmp_path / "cache")
    result = CliRunner().invoke(cache_cli, ["build", "--encoder", "morgan,expression", "--dataset", name,
                                            "--cache-dir", cache, "--quiet"], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    args = ["run", "--dataset", name, "--response", "AUC", "--cache-dir", cache, "--drug-encoder", "morgan",
            "--split", "lodo", "--fold", "0-1", "--epochs", "2", "--width", "16", "--heads", "2", "--proj", "8",
            "--hidden", "16,8", "--quiet", "--out", str(tmp_path / "run")]  # fmt: skip
    result = CliRunner().invoke(train_cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"] == name and config["response"] == "AUC"
    folds = pd.concat(pd.read_parquet(f) for f in (tmp_path / "run" / "folds").glob("*.parquet"))
    assert folds["ln_ic50"].between(0, 1).all()  # the label column holds the AUC
