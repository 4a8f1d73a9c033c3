"""Issue #12, cases 5 and 6 and the input-file crashes: a dataset directory is read exactly as written, or refused
with a message that names the file, row or id and what to do."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from fused_cache import datasets
from fused_cache.datasets import DatasetError


def write(folder: Path, pairs: str, drugs: str, expression: str | None = None) -> Path:
    """A user dataset directory from CSV text."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pairs.csv").write_text(pairs)
    (folder / "drugs.csv").write_text(drugs)
    if expression is not None:
        (folder / "omics_expression.csv").write_text(expression)
    return folder


PAIRS = "drug_id,cell_id,ln_ic50\nd1,c1,1.0\nd1,c2,2.5\nd2,c1,-0.3\n"
DRUGS = "drug_id,smiles\nd1,CCO\nd2,c1ccccc1\n"
EXPRESSION = "cell_id,TP53,EGFR\nc1,1.0,0.5\nc2,2.0,0.0\n"


def refused(folder: Path, message: str) -> None:
    with pytest.raises(DatasetError, match=re.escape(message)):
        datasets.load(str(folder))


def test_tables_are_found_by_exact_name_only(tmp_path: Path) -> None:
    folder = write(tmp_path / "d", PAIRS, DRUGS, EXPRESSION)
    (folder / "pairs.old.csv").write_text("drug_id,cell_id,ln_ic50\nd1,c1,99\n")
    (folder / "omics_expression.old.csv").write_text("cell_id,TP53\nc1,99\n")
    ds = datasets.load(str(folder))
    assert len(ds.pairs) == 3 and ds.omics["expression"].shape == (2, 2)  # the .old files are not tables

    pd.read_csv(folder / "pairs.csv").to_parquet(folder / "pairs.parquet")
    refused(folder, "has 2 pairs tables: pairs.csv, pairs.parquet; keep one")


def test_ids_are_text_exactly_as_written(tmp_path: Path) -> None:
    pairs = "drug_id,cell_id,ln_ic50,gdsc_drug_id\n007,NA,1.0,1401\n7,NA,2.0,1402\n7,c2,0.5,1402\n"
    drugs = "drug_id,smiles\n007,CCO\n7,CCN\n"
    ds = datasets.load(str(write(tmp_path / "d", pairs, drugs, "cell_id,TP53,EGFR\nNA,1.0,2.0\nc2,,3.0\n")))
    assert list(ds.drugs["drug_id"]) == ["007", "7"]  # two drugs, not one id twice
    assert list(ds.cells["cell_id"]) == ["NA", "c2"]  # NA is a cell line here, not a missing value
    assert list(ds.omics["expression"].index) == ["NA", "c2"]
    assert ds.pairs["gdsc_drug_id"].tolist() == [1401, 1402, 1402]  # other columns parse as numbers as usual
    assert ds.omics["expression"]["TP53"].isna().tolist() == [False, True]  # an empty value is 'not measured'


@pytest.mark.parametrize(
    ("pairs", "drugs", "expression", "message"),
    [
        (PAIRS, DRUGS, "cell_id,TP53\nc1 ,1.0\nc2,2.0\n", "omics 'expression' row 0: cell_id 'c1 ' has leading"),
        (PAIRS.replace("d2,c1", ",c1"), DRUGS, None, "pairs row 2: drug_id is empty"),
        (PAIRS, DRUGS, "cell_id,TP53,TP53\nc1,1.0,1.0\n", "has column 'TP53' more than once"),
        (PAIRS, DRUGS, "cell_id,TP53\nc1,\nc2,2.0\n", "row of cell 'c1' has no value"),
        (PAIRS + "d1,c1,1.0\n", DRUGS, None, "pairs rows 0 and 3 are identical (drug 'd1', cell 'c1'"),
        (PAIRS.replace("-0.3", "NA"), DRUGS, None, "pairs row 2 (drug 'd2', cell 'c1') has ln_ic50 nan"),
    ],
    ids=["space-in-omics-id", "empty-drug-id", "repeated-column", "empty-omics-row", "identical-pairs", "na-label"],
)
def test_changed_ids_and_rows_are_refused(
    tmp_path: Path, pairs: str, drugs: str, expression: str | None, message: str
) -> None:
    refused(write(tmp_path / "d", pairs, drugs, expression), message)


def test_repeated_measurements_are_kept_and_listed(tmp_path: Path) -> None:
    ds = datasets.load(str(write(tmp_path / "d", PAIRS + "d1,c1,3.0\n", DRUGS)))
    assert len(ds.pairs) == 4  # both measurements of (d1, c1) are kept ...
    table = ds.replicates()  # ... and listed, with how they differ
    assert table.to_dict("records") == [{"drug_id": "d1", "cell_id": "c1", "measurements": 2, "min": 1.0, "max": 3.0}]


def test_float_ids_in_parquet_are_refused(tmp_path: Path) -> None:
    folder = write(tmp_path / "d", PAIRS, DRUGS)
    (folder / "drugs.csv").unlink()
    pd.DataFrame({"drug_id": [1401.0, None], "smiles": ["CCO", "CCN"]}).to_parquet(folder / "drugs.parquet")
    refused(folder, "column 'drug_id' holds floating-point numbers (e.g. 1401.0)")


def test_unreadable_input_files_are_named(tmp_path: Path) -> None:
    folder = write(tmp_path / "d", PAIRS, DRUGS)
    (folder / "drugs.csv").write_text("")
    refused(folder, f"drugs file {folder / 'drugs.csv'} is empty (0 bytes)")
    (folder / "drugs.csv").write_text(DRUGS)
    (folder / "pairs.csv").unlink()
    (folder / "pairs.csv").mkdir()
    refused(folder, f"pairs file {folder / 'pairs.csv'} is a directory")
    (folder / "pairs.csv").rmdir()
    (folder / "pairs.parquet").write_bytes(b"not parquet")
    refused(folder, "cannot be read as Parquet")


def test_two_folders_with_one_name_are_two_datasets(tmp_path: Path) -> None:
    a = datasets.load(str(write(tmp_path / "a" / "mydata", PAIRS, DRUGS)))
    b = datasets.load(str(write(tmp_path / "b" / "mydata", PAIRS, DRUGS)))
    assert a.name == b.name == "mydata" and a.key != b.key
    assert a.key.startswith("mydata-") and datasets.key_of(str(tmp_path / "a" / "mydata")) == a.key
    assert datasets.load("gdsc-deepcdr").key == "gdsc-deepcdr"  # bundled names stay readable
