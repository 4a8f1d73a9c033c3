"""The bundled gdsc-deepcdr dataset reproduces DeepCDR's selection, and user data is validated at the boundary."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fused_cache import datasets
from fused_cache.datasets import DEEPCDR_TCGA_LABELS, Dataset, DatasetError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="source files ../shared/data not present")


def test_counts_match_deepcdr(gdsc: Dataset) -> None:
    assert len(gdsc.pairs) == 107_446
    assert gdsc.pairs["drug_id"].nunique() == len(gdsc.drugs) == 223
    assert gdsc.pairs["cell_id"].nunique() == len(gdsc.cells) == 561


def test_drugs_with_two_gdsc_ids_keep_both_measurements(gdsc: Dataset) -> None:
    two_ids = gdsc.pairs.groupby("drug_id")["gdsc_drug_id"].nunique()
    assert (two_ids == 2).sum() == 15
    assert (gdsc.drugs["gdsc_drug_ids"].str.contains(";")).sum() == 15
    assert gdsc.pairs.duplicated(["drug_id", "cell_id"]).sum() == 6_383


def test_pairs_outside_deepcdr_tcga_labels_are_kept(gdsc: Dataset) -> None:
    tcga = gdsc.pairs.merge(gdsc.cells, on="cell_id")["tcga_type"]
    assert (~tcga.isin(DEEPCDR_TCGA_LABELS)).sum() == 13_132


def test_omics_coverage(gdsc: Dataset) -> None:
    have = gdsc.availability()
    assert have["expression"].sum() == 548
    assert have["methylation"].sum() == 561
    assert (have["expression"] & have["mutation"]).sum() == 535
    assert gdsc.omics["expression"].shape[1] == 697
    assert gdsc.omics["expression"].isna().any(axis=1).sum() == 215
    pairs, excluded = gdsc.pairs_with(["expression"])
    assert len(pairs) == 104_827 and excluded.excluded == {"expression": 2_619}


def test_approximate_expression_only_on_request(gdsc: Dataset) -> None:
    approx = datasets.load("gdsc-deepcdr-approx")
    assert approx.name == "gdsc-deepcdr-approx"
    assert approx.omics["expression"].shape == (561, 697) and not approx.omics["expression"].isna().any().any()
    assert gdsc.omics["expression"].shape[0] == 548


@needs_shared
def test_spot_values_against_source_files(gdsc: Dataset) -> None:
    ic50 = pd.read_csv(SHARED / "deepcdr" / "GDSC_IC50.csv", index_col=0)
    for _, row in gdsc.pairs.sample(25, random_state=0).iterrows():
        assert row["ln_ic50"] == ic50.loc[f"GDSC:{row['gdsc_drug_id']}", row["cell_id"]]
    expr = pd.read_csv(SHARED / "expression" / "deepcdr_expression_exact_561x697_with_NaN.csv.gz", index_col=0)
    pd.testing.assert_frame_equal(gdsc.omics["expression"], expr.loc[gdsc.omics["expression"].index], check_names=False)
    smiles = pd.read_csv(SHARED / "deepcdr" / "223drugs_pubchem_smiles.txt", sep="\t", header=None, dtype=str)
    assert dict(zip(gdsc.drugs["drug_id"], gdsc.drugs["smiles"], strict=True)) == dict(
        zip(smiles[0], smiles[1], strict=True)
    )


def _write(tmp_path: Path, pairs: pd.DataFrame, drugs: pd.DataFrame, omics: pd.DataFrame | None = None) -> dict:
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    drugs.to_parquet(tmp_path / "drugs.parquet", index=False)
    paths = {"pairs": tmp_path / "pairs.csv", "drugs": tmp_path / "drugs.parquet"}
    if omics is not None:
        omics.to_csv(tmp_path / "expr.csv")
        paths["omics"] = {"expression": tmp_path / "expr.csv"}
    return paths


@pytest.fixture()
def user_tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    pairs = pd.DataFrame({"drug_id": ["d1", "d1", "d2"], "cell_id": ["c1", "c2", "c1"], "ln_ic50": [1.0, 2.5, -0.3]})
    drugs = pd.DataFrame({"drug_id": ["d1", "d2"], "smiles": ["CCO", "c1ccccc1"]})
    expr = pd.DataFrame({"TP53": [1.0, 2.0], "EGFR": [0.5, 0.0]}, index=pd.Index(["c1", "c2"], name="cell_id"))
    return pairs, drugs, expr


def test_user_data_from_files(tmp_path: Path, user_tables) -> None:
    ds = Dataset.from_files(**_write(tmp_path, *user_tables))
    assert len(ds.pairs) == 3 and list(ds.cells["cell_id"]) == ["c1", "c2"]
    assert ds.omics["expression"].loc["c2", "TP53"] == 2.0
    assert datasets.load(str(tmp_path)).name == tmp_path.name  # a directory of files is a dataset too


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p, d, e: (p.assign(drug_id=["d1", "d9", "d2"]), d, e), "drug_id 'd9'"),
        (lambda p, d, e: (p.assign(ln_ic50=[1.0, "high", 0.2]), d, e), "row 1"),
        (lambda p, d, e: (p.assign(ln_ic50=[1.0, np.nan, 0.2]), d, e), "row 1"),
        (lambda p, d, e: (p, d.drop(columns="smiles"), e), "lacks column(s) ['smiles']"),
        (lambda p, d, e: (p.iloc[:0], d, e), "no rows"),
        (lambda p, d, e: (p, d, pd.concat([e, e.iloc[:1]])), "cell 'c1' more than once"),
        (lambda p, d, e: (p, pd.concat([d, d.iloc[:1]]), e), "drug_id 'd1' more than once"),
    ],
    ids=["unknown-drug", "non-numeric-label", "nan-label", "no-smiles-column", "empty", "dup-omics", "dup-drug"],
)
def test_bad_user_data_names_the_problem(tmp_path: Path, user_tables, change, message: str) -> None:
    with pytest.raises(DatasetError, match=re.escape(message)):
        Dataset.from_files(**_write(tmp_path, *change(*user_tables)))


def test_unknown_dataset_name() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        datasets.load("nope")
