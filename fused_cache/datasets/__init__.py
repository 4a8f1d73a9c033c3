"""Datasets: the bundled ``gdsc-deepcdr`` benchmark and user data loaded from files.

>>> from fused_cache import datasets
>>> ds = datasets.load("gdsc-deepcdr")
>>> len(ds.pairs), len(ds.drugs), len(ds.cells)
(107446, 223, 561)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fused_cache.dataset_keys import BUNDLED, DREVALPY_PREFIX, key_of
from fused_cache.datasets.dataset import (
    DEFAULT_RESPONSE,
    DRUG_ANNOTATIONS,
    Dataset,
    DatasetError,
    Exclusions,
    annotation_sets,
    drug_annotations,
)
from fused_cache.datasets.drevalpy import load_drevalpy
from fused_cache.tables import find_tables, omics_modality

__all__ = [
    "BUNDLED", "DEEPCDR_TCGA_LABELS", "DEFAULT_RESPONSE", "DRUG_ANNOTATIONS", "Dataset", "DatasetError", "Exclusions",
    "annotation_sets", "drug_annotations", "key_of", "load",
]  # fmt: skip

_GDSC_DIR = Path(__file__).parent / "gdsc_deepcdr"

DEEPCDR_TCGA_LABELS = (
    "ALL", "BLCA", "BRCA", "CESC", "DLBC", "LIHC", "LUAD", "ESCA", "GBM", "HNSC", "KIRC", "LAML", "LCML",
    "LGG", "LUSC", "MESO", "MM", "NB", "OV", "PAAD", "SCLC", "SKCM", "STAD", "THCA", "COAD/READ",
)  # fmt: skip
"""The 25 TCGA labels DeepCDR uses; pairs of cell lines outside them are kept, not dropped."""


def load(name: str = "gdsc-deepcdr", response: str = DEFAULT_RESPONSE) -> Dataset:
    """Load a bundled dataset by name, a directory holding pairs/drugs(/cells) and omics files, or a drevalpy dataset
    folder (``drevalpy:DIR/NAME``, ``fused_cache/datasets/drevalpy.py``); ``response`` is the measure to learn.

    ``gdsc-deepcdr`` gives DeepCDR's exact log2(TPM+1) expression only (548 cell lines; NaN where a gene is
    unmeasured). ``gdsc-deepcdr-approx`` is the same data with the gap-filled expression matrix (561 cell lines, 2.65%
    of values approximate; see DATA.md): a separate dataset name, so every store and run built from it says so.
    """
    if name.startswith(DREVALPY_PREFIX):
        return load_drevalpy(Path(name.removeprefix(DREVALPY_PREFIX)), response)
    if name not in BUNDLED:
        return _load_directory(Path(name), response)
    if response != DEFAULT_RESPONSE:
        raise DatasetError(f"{name} has no response {response!r}; its only measure is {DEFAULT_RESPONSE!r}")
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


def _load_directory(path: Path, response: str) -> Dataset:
    """A folder with pairs, drugs, optional cells and ``omics_<modality>`` tables, each named exactly
    (``fused_cache.tables.SUFFIXES``)."""
    if not path.is_dir():
        raise DatasetError(
            f"unknown dataset {str(path)!r}: use one of {list(BUNDLED)} "
            "or a directory with pairs, drugs and omics files"
        )
    path = path.resolve()
    found = find_tables(path, "dataset directory", _is_dataset_table)
    if "pairs" not in found or "drugs" not in found:
        raise DatasetError(
            f"dataset directory {path} needs pairs.csv (or .tsv, .parquet) and drugs.csv (or .tsv, .parquet)"
        )
    omics = {m: file for stem, file in found.items() if (m := omics_modality(stem)) is not None}
    return Dataset.from_files(
        pairs=found["pairs"],
        drugs=found["drugs"],
        omics=omics,
        cells=found.get("cells"),
        name=path.name,
        source=path,
        response=response,
    )


def _is_dataset_table(stem: str) -> bool:
    return stem in ("pairs", "drugs", "cells") or omics_modality(stem) is not None
