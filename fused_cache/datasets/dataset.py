"""A drug-response dataset: drugs, cell lines, measured pairs and per-cell omics matrices.

Identity: a drug is its ``drug_id`` (the PubChem CID for the bundled data), a cell line its ``cell_id`` (DepMap id).
Everything downstream joins on these ids, never on row order. Validation happens here, at the boundary, so that a bad
file fails with the row or column that is wrong instead of deep inside an encoder or a training loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

PAIR_COLUMNS = ("drug_id", "cell_id", "ln_ic50")
DRUG_COLUMNS = ("drug_id", "smiles")


class DatasetError(ValueError):
    """Bad input data; the message names the table, row or column and what to do."""


@dataclass(frozen=True)
class Exclusions:
    """What a selection of pairs left out, and why: nothing is dropped silently."""

    kept: int
    excluded: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.excluded:
            return f"{self.kept} pairs kept, none excluded"
        why = ", ".join(f"{n} lack {m}" for m, n in self.excluded.items())
        return f"{self.kept} pairs kept; excluded: {why}"


@dataclass(frozen=True)
class Dataset:
    """Tables of one dataset.

    ``drugs``: drug_id, smiles (+ optional name, gdsc_drug_ids). ``cells``: cell_id (+ optional tcga_type).
    ``pairs``: drug_id, cell_id, ln_ic50 (+ optional gdsc_drug_id). ``omics``: modality -> matrix indexed by cell_id,
    one column per feature (gene); a cell line missing from a matrix has no data for that modality.
    """

    name: str
    drugs: pd.DataFrame
    cells: pd.DataFrame
    pairs: pd.DataFrame
    omics: Mapping[str, pd.DataFrame]

    def __post_init__(self) -> None:
        validate(self)

    def availability(self) -> pd.DataFrame:
        """Boolean table cell_id x modality: which cell lines have which omics."""
        ids = self.cells["cell_id"]
        return pd.DataFrame({m: ids.isin(x.index).to_numpy() for m, x in self.omics.items()}, index=ids.to_numpy())

    def pairs_with(self, modalities: Sequence[str]) -> tuple[pd.DataFrame, Exclusions]:
        """Pairs whose cell line has every modality in ``modalities``, and a count of what was excluded per modality."""
        keep = np.ones(len(self.pairs), dtype=bool)
        excluded: dict[str, int] = {}
        for m in modalities:
            if m not in self.omics:
                raise DatasetError(f"dataset {self.name!r} has no modality {m!r}; it has {sorted(self.omics)}")
            has = self.pairs["cell_id"].isin(self.omics[m].index).to_numpy()
            excluded[m] = int((keep & ~has).sum())
            keep &= has
        return self.pairs[keep].reset_index(drop=True), Exclusions(
            int(keep.sum()), {k: v for k, v in excluded.items() if v}
        )

    @classmethod
    def from_files(
        cls,
        pairs: str | Path,
        drugs: str | Path,
        omics: Mapping[str, str | Path] | None = None,
        cells: str | Path | None = None,
        name: str | None = None,
    ) -> Dataset:
        """Load a user dataset from CSV or Parquet files (format in the README, "Bring your own data").

        ``pairs`` needs drug_id, cell_id, ln_ic50; ``drugs`` needs drug_id, smiles; each omics file has cell_id as
        its first column and one column per feature. ``cells`` is optional (cell_id, tcga_type); without it the cell
        lines are those named in the pairs.
        """
        pairs_df = _read_table(pairs, "pairs")
        drugs_df = _read_table(drugs, "drugs")
        omics_df = {}
        for modality, path in (omics or {}).items():
            matrix = _read_table(path, f"omics {modality!r}")
            omics_df[modality] = matrix.set_index(matrix.columns[0]).rename_axis("cell_id")
        _require_columns(pairs_df, PAIR_COLUMNS, "pairs", pairs)
        _require_columns(drugs_df, DRUG_COLUMNS, "drugs", drugs)
        for frame in (pairs_df, drugs_df):
            frame["drug_id"] = frame["drug_id"].astype(str)
        pairs_df["cell_id"] = pairs_df["cell_id"].astype(str)
        if cells is None:
            cells_df = pd.DataFrame({"cell_id": pd.unique(pairs_df["cell_id"])})
        else:
            cells_df = _read_table(cells, "cells")
            _require_columns(cells_df, ("cell_id",), "cells", cells)
            cells_df["cell_id"] = cells_df["cell_id"].astype(str)
        for matrix in omics_df.values():
            matrix.index = matrix.index.astype(str)
        return cls(name or Path(pairs).stem, drugs_df, cells_df, pairs_df, omics_df)


def _read_table(path: str | Path, what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{what} file {path} does not exist")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix in {".csv", ".gz", ".tsv", ".txt"}:
        frame = pd.read_csv(path, sep="\t" if ".tsv" in path.suffixes or path.suffix == ".txt" else ",")
    else:
        raise DatasetError(f"{what} file {path}: use .csv, .tsv or .parquet")
    if frame.empty:
        raise DatasetError(f"{what} file {path} has no rows")
    return frame


def _require_columns(frame: pd.DataFrame, needed: Sequence[str], what: str, path: object) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{what} table {path} lacks column(s) {missing}; it has {list(frame.columns)}. Needed: {list(needed)}"
        )


def validate(ds: Dataset) -> None:
    """Raise DatasetError naming the first offending row, id or column."""
    for what, frame in (("drugs", ds.drugs), ("cells", ds.cells), ("pairs", ds.pairs)):
        if frame.empty:
            raise DatasetError(f"{ds.name}: the {what} table is empty")
    _require_columns(ds.pairs, PAIR_COLUMNS, "pairs", ds.name)
    _require_columns(ds.drugs, DRUG_COLUMNS, "drugs", ds.name)
    _require_columns(ds.cells, ("cell_id",), "cells", ds.name)
    for what, frame, key in (("drugs", ds.drugs, "drug_id"), ("cells", ds.cells, "cell_id")):
        dup = frame[key][frame[key].duplicated()]
        if len(dup):
            raise DatasetError(f"{ds.name}: {what} table lists {key} {dup.iloc[0]!r} more than once")
    bad_smiles = ds.drugs["smiles"].isna() | (ds.drugs["smiles"].astype(str).str.strip() == "")
    if bad_smiles.any():
        raise DatasetError(f"{ds.name}: drug {ds.drugs['drug_id'][bad_smiles].iloc[0]!r} has an empty SMILES")
    labels = pd.to_numeric(ds.pairs["ln_ic50"], errors="coerce")
    bad = labels.isna() | ~np.isfinite(labels.fillna(0))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        drug, cell = ds.pairs["drug_id"].iloc[row], ds.pairs["cell_id"].iloc[row]
        raise DatasetError(
            f"{ds.name}: pairs row {row} (drug {drug!r}, cell {cell!r})"
            f" has ln_ic50 {ds.pairs['ln_ic50'].iloc[row]!r}, which is not a finite number; fix or remove that row"
        )
    for key, table in (("drug_id", ds.drugs), ("cell_id", ds.cells)):
        unknown = ~ds.pairs[key].isin(table[key])
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DatasetError(
                f"{ds.name}: pairs row {row} names {key} {ds.pairs[key].iloc[row]!r}, which is not in the "
                f"{'drugs' if key == 'drug_id' else 'cells'} table ({int(unknown.sum())} such rows)"
            )
    for modality, matrix in ds.omics.items():
        if matrix.empty:
            raise DatasetError(f"{ds.name}: omics {modality!r} matrix is empty")
        dup = matrix.index[matrix.index.duplicated()]
        if len(dup):
            raise DatasetError(f"{ds.name}: omics {modality!r} lists cell {dup[0]!r} more than once")
        dup_cols = matrix.columns[matrix.columns.duplicated()]
        if len(dup_cols):
            raise DatasetError(f"{ds.name}: omics {modality!r} has feature column {dup_cols[0]!r} more than once")
        non_numeric = [c for c, dtype in matrix.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)]
        if non_numeric:
            raise DatasetError(f"{ds.name}: omics {modality!r} column {non_numeric[0]!r} is not numeric")
