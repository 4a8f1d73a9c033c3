"""The one reader of user tables (``fused_cache/tables.py``): ids as written, exact names, and one message per
problem whichever command reads the table."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from fused_cache.tables import DatasetError, find_tables, omics_modality, read_table


def test_ids_stay_text_exactly_as_written(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("drug_id,ln_ic50,note\n007,1.5,NA\n1e3,NA,x\nTRUE,2,\nNA,-1,y\n")
    table = read_table(tmp_path / "t.csv", "pairs", ids=("drug_id",))
    assert list(table["drug_id"]) == ["007", "1e3", "TRUE", "NA"]
    assert table["ln_ic50"].isna().tolist() == [False, True, False, False]  # numbers parse, NA is no value there
    as_written = read_table(tmp_path / "t.csv", "pilot", numeric=False)
    assert as_written.to_numpy().tolist()[1] == ["1e3", "NA", "x"]  # every column as text


def test_a_one_column_file_is_read_with_the_separator_its_name_gives(tmp_path: Path) -> None:
    (tmp_path / "mols.csv").write_text("smiles\nCCO\nc1ccccc1\n")
    assert read_table(tmp_path / "mols.csv", "smiles", numeric=False)["smiles"].tolist() == ["CCO", "c1ccccc1"]
    (tmp_path / "mols.tsv").write_text("drug_id\tsmiles\n7\tC,C\n")  # a comma in a TSV is not a separator
    assert read_table(tmp_path / "mols.tsv", "smiles", numeric=False).to_numpy().tolist() == [["7", "C,C"]]


def test_integer_ids_in_parquet_become_text_and_float_ids_are_refused(tmp_path: Path) -> None:
    pd.DataFrame({"drug_id": [7, 1401], "x": [1.0, 2.0]}).to_parquet(tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.parquet", "drugs", ids=("drug_id",))["drug_id"].tolist() == ["7", "1401"]
    pd.DataFrame({"drug_id": [7.0, 1401.0]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DatasetError, match=re.escape("column 'drug_id' holds floating-point numbers (e.g. 7.0)")):
        read_table(tmp_path / "t.parquet", "drugs", ids=("drug_id",))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("t.csv", "", "drugs file {path} is empty (0 bytes)"),
        ("t.csv", "drug_id,smiles\n", "drugs file {path} has no rows"),
        ("t.csv", "cell_id,TP53,TP53\nc1,1,2\n", "drugs file {path} has column 'TP53' more than once; keep one"),
        ("t.xlsx", "drug_id\n1\n", "drugs file {path}: use .csv, .tsv or .parquet"),
        ("none.csv", None, "drugs file {path} does not exist"),
    ],
    ids=["empty-file", "no-rows", "repeated-column", "unknown-suffix", "missing-file"],
)
def test_a_table_that_would_change_or_crash_is_refused(tmp_path: Path, name: str, text: str | None, message: str):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(DatasetError, match=re.escape(message.format(path=path))):
        read_table(path, "drugs")


def test_a_folders_tables_are_found_by_exact_name(tmp_path: Path) -> None:
    for name in ("omics_expression.csv", "omics_expression.old.csv", "omics_.csv", "notes.txt", "omics_mutation.tsv"):
        (tmp_path / name).write_text("cell_id,A\nc1,1\n")
    found = find_tables(tmp_path, "cells directory", lambda stem: omics_modality(stem) is not None)
    assert found == {"omics_expression": tmp_path / "omics_expression.csv",
                     "omics_mutation": tmp_path / "omics_mutation.tsv"}  # fmt: skip
    (tmp_path / "omics_mutation.parquet").write_text("")
    with pytest.raises(DatasetError, match="has 2 omics_mutation tables: omics_mutation.parquet, omics_mutation.tsv"):
        find_tables(tmp_path, "cells directory", lambda stem: omics_modality(stem) is not None)
