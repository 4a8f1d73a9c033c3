"""Datasets: the bundled ``gdsc-deepcdr`` benchmark and user data loaded from files.

>>> from fused_cache import datasets
>>> ds = datasets.load("gdsc-deepcdr")
>>> len(ds.pairs), len(ds.drugs), len(ds.cells)
(107446, 223, 561)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fused_cache.datasets.dataset import Dataset, DatasetError, Exclusions

__all__ = ["BUNDLED", "DEEPCDR_TCGA_LABELS", "Dataset", "DatasetError", "Exclusions", "load"]

_GDSC_DIR = Path(__file__).parent / "gdsc_deepcdr"
BUNDLED = ("gdsc-deepcdr", "gdsc-deepcdr-approx")

DEEPCDR_TCGA_LABELS = (
    "ALL", "BLCA", "BRCA", "CESC", "DLBC", "LIHC", "LUAD", "ESCA", "GBM", "HNSC", "KIRC", "LAML", "LCML",
    "LGG", "LUSC", "MESO", "MM", "NB", "OV", "PAAD", "SCLC", "SKCM", "STAD", "THCA", "COAD/READ",
)  # fmt: skip
"""The 25 TCGA labels DeepCDR uses; pairs of cell lines outside them are kept, not dropped."""


def load(name: str = "gdsc-deepcdr") -> Dataset:
    """Load a bundled dataset by name, or a directory holding pairs/drugs(/cells) and omics files.

    ``gdsc-deepcdr`` gives DeepCDR's exact log2(TPM+1) expression only (548 cell lines; NaN where a gene is
    unmeasured). ``gdsc-deepcdr-approx`` is the same data with the gap-filled expression matrix (561 cell lines, 2.65%
    of values approximate; see DATA.md): a separate dataset name, so every store and run built from it says so.
    """
    if name not in BUNDLED:
        return _load_directory(Path(name))
    expression = "expression" if name == "gdsc-deepcdr" else "expression_approx"
    return Dataset(
        name=name,
        drugs=pd.read_parquet(_GDSC_DIR / "drugs.parquet"),
        cells=pd.read_parquet(_GDSC_DIR / "cells.parquet"),
        pairs=pd.read_parquet(_GDSC_DIR / "pairs.parquet"),
        omics={
            "expression": _omics_matrix(expression),
            "methylation": _omics_matrix("methylation"),
            "mutation": _omics_matrix("mutation"),
        },
    )


def _omics_matrix(name: str) -> pd.DataFrame:
    """A bundled matrix, stored gene-major for fast loading, returned as cell lines x genes."""
    return pd.read_parquet(_GDSC_DIR / f"{name}.parquet").T.rename_axis(index="cell_id", columns=None)


def _load_directory(path: Path) -> Dataset:
    """A folder with pairs.{csv,parquet}, drugs.*, optional cells.*, and omics as ``omics_<modality>.*``."""
    if not path.is_dir():
        raise DatasetError(
            f"unknown dataset {str(path)!r}: use one of {list(BUNDLED)} "
            "or a directory with pairs, drugs and omics files"
        )

    def find(stem: str) -> Path | None:
        hits = [p for p in path.iterdir() if p.name.split(".")[0] == stem]
        return hits[0] if hits else None

    pairs, drugs = find("pairs"), find("drugs")
    if pairs is None or drugs is None:
        raise DatasetError(f"dataset directory {path} needs pairs.csv (or .parquet) and drugs.csv (or .parquet)")
    omics = {p.name.split(".")[0].removeprefix("omics_"): p for p in path.iterdir() if p.name.startswith("omics_")}
    return Dataset.from_files(pairs=pairs, drugs=drugs, omics=omics, cells=find("cells"), name=path.name)
