"""Cell-line names and tissues beside DepMap ids, for tables a person reads (predictions).

Everything joins on ``cell_id``; a name is for the reader only. Cell lines the dataset does not describe (new ones
given to ``predict``) get empty names rather than guessed ones.
"""

from __future__ import annotations

import pandas as pd

from fused_cache import datasets

COLUMNS = ("cell_name", "tcga_type")
"""What is added, as the dataset's cells table names it (``tcga_type``: the TCGA cancer type, the tissue)."""


def annotate_cells(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """``frame`` with the dataset's ``cell_name`` and ``tcga_type`` inserted after ``cell_id`` (those it has)."""
    if "cell_id" not in frame:
        raise ValueError(f"no cell_id column to annotate (columns: {', '.join(map(str, frame.columns))})")
    cells = datasets.load(dataset).cells.set_index("cell_id")
    present = [c for c in COLUMNS if c in cells]
    clash = [c for c in present if c in frame]
    if clash:
        raise ValueError(f"the table already has {', '.join(clash)}; annotate a table without them")
    out = frame.copy()
    at = out.columns.get_loc("cell_id") + 1
    for offset, column in enumerate(present):
        out.insert(at + offset, column, out["cell_id"].map(cells[column]).fillna("").astype(str))
    return out
