"""Ablation: does ``stacked`` gain from the omics of a drug's own target genes in each cell line?

    python benchmarks/stacked_target_genes.py OUT_RUN [--fold all]

Runs ``stacked`` on the LODO split (MiniMol, expression + methylation + mutation) with three more pair features: the
largest mutation value (0/1) of the drug's target genes in the cell line, and the mean expression and the mean
methylation z-score (over the cell lines) of those genes. A drug's targets are the dataset's annotation (the same
that ``neighbours`` reads for a held-out drug); a target that is not a gene of a store's list (families such as
"PDGFR", processes such as "DNA crosslinker") gives nothing, and a drug with no listed gene gets missing values,
which LightGBM treats as such. Compare the result with a plain ``stacked`` run of the same split and seed
(``python benchmarks/compare_runs.py --model stacked runs/stacked-lodo OUT_RUN``). Nothing of the model is changed
outside this process.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

import fused_train.models.stacked as stacked
from fused_cache import datasets
from fused_cache.stores import Store
from fused_train.data import Inputs
from fused_train.runs import RunSpec, load_run_inputs, train
from fused_train.scaling import standardise

OMICS = ("expression", "methylation", "mutation")


def store_genes(path: str) -> list[str]:
    """The gene of each feature of an omics store (methylation features are GENE_chrom_start_end regions)."""
    with Store(path) as store:
        return [feature.split("_")[0] for feature in store.manifest["fingerprint"]["settings"]["genes"]]


def target_features(inputs: Inputs, dataset: str) -> np.ndarray:
    """(A, C, 3): per drug and cell line, the mutation, expression and methylation features of its target genes."""
    drugs = datasets.load(dataset).drugs.set_index("drug_id").reindex(inputs.drug_ids)
    targets = [[t.strip() for t in str(s).split(";")] if isinstance(s, str) else [] for s in drugs["targets"]]
    out = np.full((len(inputs.drug_ids), len(inputs.cell_ids), len(OMICS)), np.nan)
    for k, name in enumerate(OMICS):
        x = inputs.cells[name].astype(np.float64)
        mean, sd = standardise(x)  # inputs, not labels: every cell line of the grid
        z = (x - mean) / sd
        columns: dict[str, list[int]] = {}
        for i, gene in enumerate(store_genes(inputs.stores[name])):
            columns.setdefault(gene, []).append(i)
        for a, genes in enumerate(targets):
            index = [i for g in genes for i in columns.get(g, [])]
            if index:
                out[a, :, k] = x[:, index].max(axis=1) if name == "mutation" else z[:, index].mean(axis=1)
        click.echo(f"{name}: {int(np.isfinite(out[:, 0, k]).sum())} of {len(targets)} drugs have a target gene")
    return out


@click.command()
@click.argument("out_run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--fold", default="all", show_default=True, help="Folds to run (as fused-train run --fold).")
def main(out_run: Path, fold: str) -> None:
    spec = RunSpec(model="stacked", drug_encoder="minimol", omics=("methylation", "mutation"), split="lodo")
    extra = target_features(load_run_inputs(spec), spec.dataset)
    plain = stacked.features

    def with_targets(drugs, fitted, queries, ks, cell_x):  # noqa: ANN001, ANN202 (stacked.features' signature)
        return np.concatenate([plain(drugs, fitted, queries, ks, cell_x), extra[queries]], axis=-1)

    stacked.features = with_targets
    train(spec, out_run, fold=fold, quiet=True)
    click.echo(f"wrote {out_run}; compare with python benchmarks/compare_runs.py --model stacked RUN {out_run}")


if __name__ == "__main__":
    main()
