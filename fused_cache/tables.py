"""User tables (CSV, TSV, Parquet) read exactly as written: the one reader of every table a user gives.

Read naively, pandas changes a table without a word: ``007`` becomes 7, ``1e3`` 1000.0, ``TRUE`` True, ``NA`` a
missing value, a repeated column ``GENE`` is renamed ``GENE.1``, and a delimiter sniffer takes the ``s`` of a
one-column ``smiles`` file for the separator. Here ids stay text exactly as written, the separator follows the file's
name, a folder's tables are found by their exact names, and what would otherwise be a pandas traceback or such a quiet
change is a ``DatasetError`` that names the file and what to do. Used by the dataset loader, ``fused-train predict``
(``--drugs``, ``--cells``, ``--pilot``) and ``fused-cache embed`` (``--smiles``, ``--adata``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".parquet")
"""The endings of a table's file name: ``pairs.csv`` is a table, ``pairs.old.csv`` is a ``pairs.old`` table."""
TAB_SEPARATED = (".tsv", ".tsv.gz", ".txt")
MISSING = ("", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "NULL", "null", "None", "#N/A", "<NA>")
"""Text read as 'not measured' in numeric columns (labels, omics values); never in id columns, where NA is an id."""


class DatasetError(ValueError):
    """Bad input data; the message names the table, row or column and what to do."""


def table_stem(name: str) -> str | None:
    """The table name of a file name (``omics_expression`` of ``omics_expression.csv``), None if it is no table."""
    return next((name.removesuffix(s) for s in SUFFIXES if name.endswith(s)), None)


def omics_modality(stem: str) -> str | None:
    """The modality of an ``omics_<modality>`` table name (``expression``), None for other names (``omics_x.old``)."""
    modality = stem.removeprefix("omics_")
    return modality if stem.startswith("omics_") and modality and "." not in modality else None


def find_tables(folder: Path, what: str, wanted: Callable[[str], bool]) -> dict[str, Path]:
    """{table name: file} of the tables in ``folder`` whose exact name (``table_stem``) is ``wanted``; two files for
    one table (``pairs.csv`` and ``pairs.parquet``) are an error naming both, since either choice could be wrong."""
    tables: dict[str, list[Path]] = {}
    for file in sorted(folder.iterdir()):
        stem = table_stem(file.name)
        if stem is not None and wanted(stem):
            tables.setdefault(stem, []).append(file)
    for stem, files in tables.items():
        if len(files) > 1:
            raise DatasetError(
                f"{what} {folder} has {len(files)} {stem} tables: {', '.join(f.name for f in files)}; "
                "keep one (move or rename the others)"
            )
    return {stem: files[0] for stem, files in tables.items()}


def check_file(path: Path, what: str) -> None:
    """Refuse a path that cannot hold a table: missing, a directory, or empty (0 bytes)."""
    if not path.exists():
        raise DatasetError(f"{what} file {path} does not exist (no file at that path)")
    if path.is_dir():
        raise DatasetError(f"{what} file {path} is a directory; it must be a .csv, .tsv or .parquet file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{what} file {path} is empty (0 bytes)")


def read_table(
    path: str | Path, what: str, ids: Sequence[str | int] = (), matrix: bool = False, numeric: bool = True
) -> pd.DataFrame:
    """The table in ``path`` (``what`` names it in messages), with its ``ids`` columns (names, or positions) as text.

    In a CSV/TSV every column is read as text; with ``numeric`` each other column whose values are all numbers or
    MISSING markers becomes numeric (a ``matrix`` of omics values in one step), without it every column stays text as
    written. In Parquet, integer ids become text and floating-point ids are refused (``1401.0`` is a parsing accident).
    """
    path = Path(path)
    check_file(path, what)
    if path.name.endswith(".parquet"):
        frame = _read_parquet(path, what)
    elif table_stem(path.name) is not None:
        sep = "\t" if path.name.endswith(TAB_SEPARATED) else ","
        frame = _read_text(path, what, sep, ids, matrix, numeric)
    else:
        raise DatasetError(f"{what} file {path}: use .csv, .tsv or .parquet")
    if frame.empty:
        raise DatasetError(f"{what} file {path} has no rows")
    for column in {frame.columns[c] if isinstance(c, int) else c for c in ids} & set(frame.columns):
        frame[column] = ids_as_text(frame[column], f"{what} file {path}")
    return frame


def ids_as_text(values: pd.Series, where: str) -> pd.Series:
    """An id column as text: integers written out, floating-point numbers refused; anything else is left for
    ``check_ids`` to name."""
    if pd.api.types.is_float_dtype(values):
        example = show(values.iloc[0])
        raise DatasetError(
            f"{where}: column {values.name!r} holds floating-point numbers (e.g. {example}), not ids; "
            "write ids as text or integers"
        )
    if pd.api.types.is_integer_dtype(values):
        return values.astype(str)
    return values


def check_ids(name: str, what: str, values: pd.Series) -> None:
    """Ids are non-empty text without surrounding spaces: they are matched exactly, so ' ACH-1' would quietly miss
    'ACH-1', and a float id (1401.0) is a parsing accident."""
    text = values.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    problem = ~text
    if text.all():
        problem = (values.str.strip() != values).to_numpy() | (values == "").to_numpy()
    if not problem.any():
        return
    row = int(np.flatnonzero(problem)[0])
    value, label = values.iloc[row], values.name or "id"
    if not isinstance(value, str):
        why = f"is {type(value).__name__} {value!r}, not text; ids are strings (use .astype(str) on integer ids)"
    elif value == "":
        why = "is empty; every row needs an id"
    else:
        why = f"{value!r} has leading or trailing spaces; remove them (ids are matched exactly)"
    raise DatasetError(f"{name}: {what} row {row}: {label} {why} ({int(problem.sum())} such rows)")


def no_repeated_columns(columns: Sequence[object], where: str) -> None:
    """Refuse a column name given twice (pandas would rename the copy ``X.1`` and keep both)."""
    seen: set[str] = set()
    for column in map(str, columns):
        if column in seen:
            raise DatasetError(f"{where} has column {column!r} more than once; keep one")
        seen.add(column)


def show(value: object) -> str:
    """A value as the user wrote it: 1401.0 or 'high', not np.float64(1401.0)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _read_parquet(path: Path, what: str) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a damaged or foreign file
        raise DatasetError(f"{what} file {path} cannot be read as Parquet ({type(err).__name__}: {err})") from err
    no_repeated_columns(list(frame.columns), f"{what} file {path}")
    return frame


def _read_text(path: Path, what: str, sep: str, ids: Sequence[str | int], matrix: bool, numeric: bool) -> pd.DataFrame:
    """CSV/TSV read as text first, the header as a row of its own (so that a repeated name is seen); then, with
    ``numeric``, every non-id column whose values are all numbers or MISSING markers becomes numeric."""
    try:
        raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, header=None)
    except (ValueError, UnicodeDecodeError) as err:  # pandas' EmptyDataError and ParserError are ValueErrors
        raise DatasetError(f"{what} file {path} cannot be read ({type(err).__name__}: {err})") from err
    header = [str(c) for c in raw.iloc[0]]
    no_repeated_columns(header, f"{what} file {path}")
    frame = raw.iloc[1:].reset_index(drop=True)
    frame.columns = header
    if not numeric:
        return frame
    id_columns = {header[c] if isinstance(c, int) else c for c in ids}
    others = [c for c in header if c not in id_columns]
    block = frame[others].apply(lambda column: column.str.strip())
    block = block.mask(block.isin(MISSING))
    if matrix:
        try:
            frame[others] = block.astype(np.float64)
            return frame
        except ValueError:
            pass  # a column that is not numeric: left as text below, and named by the caller's validation
    for column in others:
        numbers = pd.to_numeric(block[column], errors="coerce")
        if (numbers.notna() | block[column].isna()).all():
            frame[column] = numbers
    return frame
