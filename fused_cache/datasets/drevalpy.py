"""A dataset in drevalpy's layout (``--dataset drevalpy:DIR/NAME``), so that GDSC1, GDSC2, CCLE or CTRPv2 as drevalpy
downloads them run here with our encoders.

drevalpy 1.6 (``drevalpy/datasets/loader.py``, ``drevalpy/models/utils.py``) keeps a dataset in ``<data_path>/<NAME>/``:
``<NAME>.csv`` (one row per measurement: ``pubchem_id``, ``cell_line_name``, optional ``tissue`` and one column per
measure, e.g. ``LN_IC50``, ``AUC``, ``pEC50``, ``LN_IC50_curvecurator``), ``drug_smiles.csv`` (``pubchem_id``,
``canonical_smiles``; its featurizers read it), ``drug_names.csv``, ``cell_line_names.csv`` and the omics views
``gene_expression.csv``, ``methylation.csv``, ``mutations.csv`` (indexed by ``cell_line_name``, an optional
``cellosaurus_id`` column). We read them as drevalpy does: commas are stripped from ``pubchem_id``, rows without the
chosen measure are left out (``remove_nan_responses``), a cell line listed twice in a view is the mean of its rows.
What we leave out is logged as a warning, never dropped quietly.

Ids: a drug is its PubChem CID (as in the bundled data), a cell line its ``cell_line_name`` (drevalpy's id; its DepMap
id, where ``cell_line_names.csv`` or the response file has a ``depmap_id`` column, is kept in the cells table).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from fused_cache.datasets.dataset import Dataset, DatasetError
from fused_cache.tables import MISSING, read_table

log = logging.getLogger(__name__)

MEASURES = {"ln_ic50": "LN_IC50"}
"""drevalpy's column of a measure whose name differs from ours (``--response ln_ic50``, the default, is ``LN_IC50``)."""
VIEWS = {"gene_expression": "expression", "methylation": "methylation", "mutations": "mutation"}
"""drevalpy's omics views -> our modalities (the omics encoders' inputs)."""
ID_COLUMNS = ("cellosaurus_id", "depmap_id")
"""Columns of a view that are ids, not features (drevalpy drops ``cellosaurus_id`` too)."""


def load_drevalpy(folder: Path, response: str) -> Dataset:
    """The drevalpy dataset in ``folder`` (``<data_path>/<NAME>``), learning the ``response`` measure."""
    name = folder.name
    path = folder / f"{name}.csv"
    if not folder.is_dir():
        raise DatasetError(f"no drevalpy dataset folder {folder} (expected <data_path>/<NAME>/ with <NAME>.csv)")
    if not path.is_file():
        raise DatasetError(f"drevalpy dataset {folder} has no response file {path.name}")
    frame = read_table(path, "drevalpy response", ids=("pubchem_id", "cell_line_name"))
    for column in ("pubchem_id", "cell_line_name"):
        if column not in frame.columns:
            raise DatasetError(f"{path} has no {column!r} column; its columns are {list(frame.columns)}")
    column = MEASURES.get(response, response)
    measures = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    if column not in measures:
        what = f"column {column!r} holds text, not a measure" if column in frame.columns else f"no measure {column!r}"
        raise DatasetError(f"{path}: {what} (--response {response}); its measures: {measures}")
    frame["pubchem_id"] = frame["pubchem_id"].str.replace(",", "")
    # drugs and cell lines come from every row, whatever the measure, so that one build of the stores serves every
    # --response; the pairs are the rows with the measure and a drug with SMILES
    drugs = _drugs(folder, frame["pubchem_id"].unique())
    no_smiles = ~frame["pubchem_id"].isin(drugs["drug_id"])
    if no_smiles.any():
        missing = sorted(frame.loc[no_smiles, "pubchem_id"].unique())
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        log.warning("%s: %d drugs have no SMILES in drug_smiles.csv; their %d rows are left out: %s", folder,
                    len(missing), int(no_smiles.sum()), shown)  # fmt: skip
    frame = frame[~no_smiles]
    cells = _cells(folder, frame)
    unmeasured = frame[column].isna()
    if unmeasured.any():
        log.warning("%s: %d of %d rows have no %s and are left out (as drevalpy does)", path, int(unmeasured.sum()),
                    len(frame), column)  # fmt: skip
    frame = frame[~unmeasured]
    if frame.empty:
        raise DatasetError(f"{path}: no row has both a {column} value and a drug with SMILES")
    pairs = pd.DataFrame({"drug_id": frame["pubchem_id"], "cell_id": frame["cell_line_name"],
                          "ln_ic50": frame[column].astype(float)}).reset_index(drop=True)  # fmt: skip
    omics = {ours: _view(folder / f"{view}.csv", ours, cells["cell_id"]) for view, ours in VIEWS.items()
             if (folder / f"{view}.csv").is_file()}  # fmt: skip
    return Dataset(name, drugs.reset_index(drop=True), cells, pairs, {m: x for m, x in omics.items() if len(x)},
                   folder.resolve(), response)  # fmt: skip


def _drugs(folder: Path, ids: np.ndarray) -> pd.DataFrame:
    """``drug_id``, ``smiles`` (+ ``name``) of the drugs with a SMILES in ``drug_smiles.csv``."""
    path = folder / "drug_smiles.csv"
    if not path.is_file():
        raise DatasetError(
            f"drevalpy dataset {folder} has no drug_smiles.csv: our drug encoders need each drug's SMILES; write it "
            f"with columns pubchem_id, canonical_smiles for the {len(ids)} drugs of {folder.name}.csv"
        )
    smiles = read_table(path, "drug SMILES", ids=("pubchem_id",))
    if not {"pubchem_id", "canonical_smiles"} <= set(smiles.columns):
        raise DatasetError(f"{path} needs columns pubchem_id, canonical_smiles; it has {list(smiles.columns)}")
    smiles = smiles.assign(pubchem_id=smiles["pubchem_id"].str.replace(",", ""))
    smiles = smiles[smiles["canonical_smiles"].fillna("").astype(str).str.strip() != ""]
    drugs = smiles.drop_duplicates("pubchem_id").rename(columns={"pubchem_id": "drug_id", "canonical_smiles": "smiles"})
    names = folder / "drug_names.csv"
    if names.is_file():
        table = read_table(names, "drug names", ids=("pubchem_id",))
        if "drug_name" in table.columns:
            named = table.drop_duplicates("pubchem_id").set_index("pubchem_id")["drug_name"]
            drugs["name"] = drugs["drug_id"].map(named).fillna("").astype(str)
    return drugs[drugs["drug_id"].isin(ids)][[c for c in ("drug_id", "smiles", "name") if c in drugs]]


def _cells(folder: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell line of the response file: ``cell_id`` (its drevalpy name), ``tissue`` and ``depmap_id``
    where the response file or ``cell_line_names.csv`` has them."""
    cells = frame.drop_duplicates("cell_line_name")
    table = pd.DataFrame({"cell_id": cells["cell_line_name"].to_numpy()})
    for column in ("tissue", "depmap_id"):
        if column in cells.columns:
            table[column] = cells[column].fillna("").astype(str).to_numpy()
    path = folder / "cell_line_names.csv"
    if path.is_file() and "depmap_id" not in table.columns:
        names = read_table(path, "cell line names", ids=("cell_line_name",))
        if "depmap_id" in names.columns:
            depmap = names.drop_duplicates("cell_line_name").set_index("cell_line_name")["depmap_id"]
            table["depmap_id"] = table["cell_id"].map(depmap).fillna("").astype(str)
    return table


def _view(path: Path, modality: str, cells: pd.Series) -> pd.DataFrame:
    """An omics view as a matrix indexed by ``cell_line_name`` (the response file's cell lines only), features as
    floats (``True``/``False`` mutations as 1/0), a cell line listed twice averaged as drevalpy averages it."""
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "cell_line_name" not in raw.columns:
        raise DatasetError(f"{path} has no cell_line_name column; drevalpy's views are indexed by it")
    ids = raw.pop("cell_line_name")
    values = raw.drop(columns=[c for c in ID_COLUMNS if c in raw.columns]).apply(lambda c: c.str.strip())
    values = values.replace({"True": "1", "False": "0"}).mask(lambda v: v.isin(MISSING))
    try:
        matrix = values.astype(np.float64).set_axis(ids.to_numpy()).rename_axis("cell_id")
    except ValueError as err:
        raise DatasetError(f"{path} ({modality}) has a value that is not a number: {err}") from err
    matrix = matrix[matrix.index.isin(cells)]
    if matrix.index.duplicated().any():
        twice = matrix.index[matrix.index.duplicated()].unique()
        log.warning("%s: %d cell lines are listed more than once; each is the mean of its rows (as drevalpy reads "
                    "them): %s", path, len(twice), ", ".join(twice[:10]))  # fmt: skip
        matrix = matrix.groupby(level=0, sort=False).mean()
    return matrix[~matrix.isna().all(axis=1)]
