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

from fused_cache.dataset_keys import dataset_key
from fused_cache.tables import DatasetError, check_ids, read_table, show

PAIR_COLUMNS = ("drug_id", "cell_id", "ln_ic50")
DEFAULT_RESPONSE = "ln_ic50"
"""The response measure a dataset is read with unless ``--response`` chooses another; whichever it is, the pairs
table holds it in its ``ln_ic50`` column (the label column every stage reads) and ``Dataset.response`` names it."""
DRUG_COLUMNS = ("drug_id", "smiles")
DRUG_ANNOTATIONS = ("targets", "target_pathway")
"""Optional drug columns: known targets and target pathways, ';'-separated text ('' or missing: unknown). For a new
compound they are normally known, so they are inputs like the SMILES, not labels."""


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

    ``drugs``: drug_id, smiles (+ optional name, gdsc_drug_ids and the ``DRUG_ANNOTATIONS``). ``cells``: cell_id
    (+ optional tcga_type). ``pairs``: drug_id, cell_id, ln_ic50 (+ optional gdsc_drug_id). ``omics``: modality ->
    matrix indexed by cell_id, one column per feature (gene); a cell line missing from a matrix has no data for that
    modality.
    """

    name: str
    drugs: pd.DataFrame
    cells: pd.DataFrame
    pairs: pd.DataFrame
    omics: Mapping[str, pd.DataFrame]
    source: Path | None = None
    """The resolved directory (or pairs file) the tables were read from; None for bundled and in-memory data."""
    response: str = DEFAULT_RESPONSE
    """The measure the pairs' ``ln_ic50`` column holds (``--response``): ln IC50 unless chosen otherwise."""

    def __post_init__(self) -> None:
        validate(self)

    @property
    def key(self) -> str:
        """What the refs of this dataset's stores are filed under (``refs/<key>/``): the name of a bundled or
        in-memory dataset, the name plus a hash of the resolved path for data read from files, so that two
        folders called ``mydata`` are two datasets."""
        return dataset_key(self.name, self.source)

    def replicates(self) -> pd.DataFrame:
        """(drug, cell line) pairs measured more than once: how often, and the range of their labels. Training keeps
        every measurement (the grid holds their mean, weighted by their count: the gradient of separate pairs)."""
        grouped = self.pairs.groupby(["drug_id", "cell_id"])["ln_ic50"]
        table = grouped.agg(measurements="size", min="min", max="max").reset_index()
        return table[table["measurements"] > 1].reset_index(drop=True)

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
        source: Path | None = None,
        response: str = DEFAULT_RESPONSE,
    ) -> Dataset:
        """Load a user dataset from CSV or Parquet files (format in docs/data.md, "Bring your own data").

        ``pairs`` needs drug_id, cell_id, ln_ic50; ``drugs`` needs drug_id, smiles (optional: targets, target_pathway,
        ';'-separated); each omics file has cell_id as its first column and one column per feature. ``cells`` is
        optional (cell_id, tcga_type); without it the cell lines are those named in the pairs. Ids are read as text,
        exactly as written (``007`` is not ``7``, ``NA`` is an id); ``source`` (default: the resolved pairs file)
        identifies the dataset's stores. ``response`` names the pairs column to learn (default ``ln_ic50``).
        """
        pairs_df = select_response(read_table(pairs, "pairs", ids=("drug_id", "cell_id")), response, pairs)
        drugs_df = read_table(drugs, "drugs", ids=("drug_id",))
        omics_df = {}
        for modality, path in (omics or {}).items():
            matrix = read_table(path, f"omics {modality!r}", ids=(0,), matrix=True)
            omics_df[modality] = matrix.set_index(matrix.columns[0]).rename_axis("cell_id")
        _require_columns(pairs_df, PAIR_COLUMNS, "pairs", pairs)
        _require_columns(drugs_df, DRUG_COLUMNS, "drugs", drugs)
        if cells is None:
            cells_df = pd.DataFrame({"cell_id": pd.unique(pairs_df["cell_id"])})
        else:
            cells_df = read_table(cells, "cells", ids=("cell_id",))
            _require_columns(cells_df, ("cell_id",), "cells", cells)
        source = source or Path(pairs).resolve()
        return cls(name or Path(pairs).stem, drugs_df, cells_df, pairs_df, omics_df, source, response)


def select_response(pairs: pd.DataFrame, response: str, where: object) -> pd.DataFrame:
    """``pairs`` with the ``response`` column as the label column ``ln_ic50`` (the measure ``ln_ic50`` held before is
    dropped when another is chosen); a missing column is refused, naming the columns there."""
    if response == "ln_ic50":
        return pairs  # checked with the other required columns
    if response not in pairs.columns:
        raise DatasetError(
            f"{where} has no response column {response!r}; its columns are {list(pairs.columns)} (--response)"
        )
    return pairs.drop(columns=["ln_ic50"], errors="ignore").rename(columns={response: "ln_ic50"})


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
    for what, values in (("drugs", ds.drugs["drug_id"]), ("cells", ds.cells["cell_id"]), ("pairs", ds.pairs["drug_id"]),
                         ("pairs", ds.pairs["cell_id"])):  # fmt: skip
        check_ids(ds.name, what, values)
    for what, frame, key in (("drugs", ds.drugs, "drug_id"), ("cells", ds.cells, "cell_id")):
        dup = frame[key][frame[key].duplicated()]
        if len(dup):
            raise DatasetError(f"{ds.name}: {what} table lists {key} {dup.iloc[0]!r} more than once")
    for column in set(DRUG_ANNOTATIONS) & set(ds.drugs.columns):
        text = ds.drugs[column].map(lambda v: isinstance(v, str) or v is None or (isinstance(v, float) and np.isnan(v)))
        if not text.all():
            row = int(np.flatnonzero(~text.to_numpy())[0])
            raise DatasetError(f"{ds.name}: drug {ds.drugs['drug_id'].iloc[row]!r} has {column} "
                               f"{ds.drugs[column].iloc[row]}; expected ';'-separated names (text)")  # fmt: skip
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
            f" has ln_ic50 {show(ds.pairs['ln_ic50'].iloc[row])}, which is not a finite number; fix or remove that row"
        )
    for key, table in (("drug_id", ds.drugs), ("cell_id", ds.cells)):
        unknown = ~ds.pairs[key].isin(table[key])
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0])
            raise DatasetError(
                f"{ds.name}: pairs row {row} names {key} {ds.pairs[key].iloc[row]!r}, which is not in the "
                f"{'drugs' if key == 'drug_id' else 'cells'} table ({int(unknown.sum())} such rows)"
            )
    copies = np.flatnonzero(ds.pairs.duplicated(keep=False).to_numpy())
    if len(copies):
        first = ds.pairs.iloc[copies[0]]
        twin = next(int(r) for r in copies[1:] if ds.pairs.iloc[r].equals(first))
        raise DatasetError(
            f"{ds.name}: pairs rows {copies[0]} and {twin} are identical (drug {first['drug_id']!r}, cell "
            f"{first['cell_id']!r}, ln_ic50 {show(first['ln_ic50'])}); remove the copy (a repeated measurement keeps "
            "its own value, and is kept)"
        )
    for modality, matrix in ds.omics.items():
        if matrix.empty:
            raise DatasetError(f"{ds.name}: omics {modality!r} matrix is empty")
        check_ids(ds.name, f"omics {modality!r}", matrix.index.to_series())
        dup = matrix.index[matrix.index.duplicated()]
        if len(dup):
            raise DatasetError(f"{ds.name}: omics {modality!r} lists cell {dup[0]!r} more than once")
        dup_cols = matrix.columns[matrix.columns.duplicated()]
        if len(dup_cols):
            raise DatasetError(f"{ds.name}: omics {modality!r} has feature column {dup_cols[0]!r} more than once")
        non_numeric = [c for c, dtype in matrix.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)]
        if non_numeric:
            raise DatasetError(f"{ds.name}: omics {modality!r} column {non_numeric[0]!r} is not numeric")
        empty = matrix.index[matrix.isna().all(axis=1).to_numpy()]
        if len(empty):
            raise DatasetError(
                f"{ds.name}: omics {modality!r} row of cell {empty[0]!r} has no value ({len(empty)} such rows); "
                "remove it: a cell line without data for a modality is left out of that file"
            )


def drug_annotations(drugs: pd.DataFrame, column: str) -> dict[str, frozenset[str]]:
    """Per drug id, the set of its ``column`` annotations (``DRUG_ANNOTATIONS``); empty when unknown or absent."""
    if column not in drugs.columns:
        return {str(d): frozenset() for d in drugs["drug_id"]}
    values = drugs[column].where(drugs[column].notna(), "").astype(str)
    return {
        str(d): frozenset(p.strip() for p in v.split(";") if p.strip())
        for d, v in zip(drugs["drug_id"], values, strict=True)
    }


def annotation_sets(drugs: pd.DataFrame, ids: Sequence[str]) -> dict[str, list[frozenset[str]]]:
    """Per annotation of ``DRUG_ANNOTATIONS``, each of ``ids``' sets in ``drugs`` (the last row of a repeated id;
    empty for an id ``drugs`` does not list): what models read as ``Inputs.drug_annotations``."""
    out = {}
    for column in DRUG_ANNOTATIONS:
        sets = drug_annotations(drugs, column)
        out[column] = [sets.get(str(d), frozenset()) for d in ids]
    return out
