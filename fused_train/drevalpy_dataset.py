"""A complete drevalpy dataset from our data, stores and folds, so that one ``drevalpy`` command runs its models on it.

drevalpy 1.6 reads a dataset from ``<data_path>/<name>/`` and gene lists from ``<data_path>/meta/gene_lists/``
(``drevalpy/datasets/loader.py``, ``drevalpy/models/utils.py``). We write there:

- ``<name>/<name>.csv``: the response file, one row per measured pair our stores cover (``pubchem_id``,
  ``cell_line_name``, ``depmap_id``, ``tissue`` and the measure, ``LN_IC50`` for our ln IC50);
- the feature files of ``fused_cache.export`` for the drug store and every cell store (``gene_expression.csv``,
  ``methylation.csv``, ``mutations.csv``, ``drug_<encoder>_embeddings.csv``, ``cell_line_names.csv``,
  ``drug_names.csv``), and ``drug_smiles.csv`` (``pubchem_id``, ``canonical_smiles``: our SMILES, which drevalpy's
  featurizers read);
- ``drug_fingerprints/pubchem_id_to_demorgan_128_map.csv``: our ``morgan`` store (ECFP4) folded to 128 bits, which is
  RDKit's 128-bit Morgan fingerprint of radius 2 (bit = hash mod size, and 128 divides the store's size);
- ``meta/gene_lists/<list>.csv`` (column ``Symbol``) under the names drevalpy's default views read, each holding genes
  of our stores (``GENE_LISTS``), not the lists drevalpy ships: its models then read all our genes;
- ``<name>/fused_folds.csv`` and ``<name>/fused_splits.py``: our exact folds, and the ``create_splits`` hook that
  ``drevalpy --custom_splitter_path`` calls (``drevalpy/datasets/splits/providers.py``) to use them.

A view we cannot fill (no ``morgan`` store, no expression store) is left out and listed in ``DrevalpyDataset.left_out``.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fused_cache import datasets, open_store
from fused_cache.export import drevalpy_cells, export
from fused_cache.stores import StoreNotFound
from fused_train.pairs import EmbeddingPairs, membership
from fused_train.runs import RunError, fold_strata
from fused_train.splits import select

TEST_MODES = {"drug-known": "LPO", "lodo": "LDO", "cell-out": "LCO", "tissue-out": "LTO"}
"""drevalpy's test mode of each split it can check (its leakage test groups by pair, drug or cell line)."""
MEASURES = {"ln_ic50": "LN_IC50"}
"""drevalpy's column name of a response measure where it differs from ours."""
FINGERPRINT_BITS = 128
FOLDS_FILE, SPLITTER_FILE = "fused_folds.csv", "fused_splits.py"
GENE_LISTS = {
    "landmark_genes": ("expression",),
    "landmark_genes_reduced": ("expression",),
    "gene_expression_intersection": ("expression",),
    "drug_target_genes_all_drugs": ("expression", "mutation"),
    "methylation_intersection": ("methylation",),
}
"""Gene list name drevalpy's models read -> the stores whose common genes it holds (each listed gene must be in every
view the list subsets: ``drug_target_genes_all_drugs`` subsets both expression and mutations)."""

SPLITTER = '''"""Our folds for drevalpy (written by fused-train drevalpy): drevalpy ... --custom_splitter_path {path}"""

from pathlib import Path

import numpy as np
import pandas as pd

ROLES = {{"train": "train", "val": "validation", "test": "test"}}


def create_splits(response_data, params):
    folds = pd.read_csv(Path(__file__).with_name("{folds}"), dtype=str, keep_default_na=False)
    keys = [k for k in ("pubchem_id", "cell_line_name") if k in folds.columns]
    ids = pd.DataFrame({{"pubchem_id": response_data.drug_ids.astype(str),
                        "cell_line_name": response_data.cell_line_ids.astype(str)}})
    splits = []
    for name, part in folds.groupby("fold", sort=False):
        role = ids[keys].merge(part[keys + ["role"]], on=keys, how="left")["role"].to_numpy()
        split = {{"metadata": {{"fold": name}}}}
        for ours, theirs in ROLES.items():
            split[theirs] = response_data.copy()
            split[theirs].mask(np.asarray(role == ours, dtype=bool))
        splits.append(split)
    return splits
'''


@dataclass
class DrevalpyDataset:
    """What ``write_drevalpy_dataset`` wrote, what it left out and why, and the command that runs drevalpy on it."""

    folder: Path
    written: list[Path] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    command: str = ""
    folds: int = 0
    pairs: int = 0


def write_drevalpy_dataset(
    data_path: Path, name: str, dataset: str = "gdsc-deepcdr", drug_encoder: str = "morgan",
    cell_encoders: Sequence[str] = ("expression",), split: str = "lodo", seeds: Sequence[int] = (0,),
    fold: str = "all", cache_dir: str | Path | None = None,
) -> DrevalpyDataset:  # fmt: skip
    """Write ``<data_path>/<name>/`` (refused if it exists: nothing is overwritten) and the gene lists; the folds are
    those of ``fused-train run --split SPLIT --seeds SEEDS --fold FOLD`` on the same stores."""
    if split not in TEST_MODES:
        raise RunError(f"drevalpy has no split like {split!r}; export one of {', '.join(TEST_MODES)}")
    folder = data_path / name
    if folder.exists():
        raise RunError(f"{folder} exists; pass another data path or --name, or delete it")
    pairs = EmbeddingPairs.from_stores(dataset, drug_encoder, list(cell_encoders), cache_dir)
    inputs, ds = pairs.inputs, datasets.load(dataset)
    folds = [f for seed in seeds for f in pairs.folds(split, seed)]
    chosen = select(folds, fold, fold_strata(folds, inputs))
    measure = MEASURES.get(ds.response, ds.response)
    result = DrevalpyDataset(folder, folds=len(chosen), pairs=len(inputs.pairs))
    tmp = data_path / f".{name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        cells = drevalpy_cells(inputs.cell_ids.astype(str), ds).set_index("depmap_id")
        response = inputs.pairs[["drug_id", "cell_id", "ln_ic50"]].rename(columns={"ln_ic50": measure})
        response.insert(0, "cell_line_name", cells.loc[response["cell_id"], "cell_line_name"].to_numpy())
        response.insert(2, "tissue", cells.loc[response["cell_id"], "tissue"].to_numpy())
        response = response.rename(columns={"drug_id": "pubchem_id", "cell_id": "depmap_id"})
        tmp.mkdir(parents=True)
        response.to_csv(tmp / f"{name}.csv", index=False)
        stores = {}
        for encoder in dict.fromkeys([drug_encoder, *cell_encoders]):
            with open_store(encoder, dataset=ds, cache_dir=cache_dir) as store:
                export(store, "drevalpy", tmp, ds)
                stores[encoder] = store.manifest
        smiles = ds.drugs[ds.drugs["drug_id"].isin(inputs.drug_ids)][["drug_id", "smiles"]]
        smiles.set_axis(["pubchem_id", "canonical_smiles"], axis=1).to_csv(tmp / "drug_smiles.csv", index=False)
        _fingerprints(ds, inputs.drug_ids, tmp, cache_dir, result.left_out)
        roles = membership(inputs, chosen).drop(columns="seed")
        if "drug_id" in roles:
            roles = roles.rename(columns={"drug_id": "pubchem_id"})
        if "cell_id" in roles:
            roles["cell_id"] = cells.loc[roles["cell_id"], "cell_line_name"].to_numpy()
            roles = roles.rename(columns={"cell_id": "cell_line_name"})
        roles.to_csv(tmp / FOLDS_FILE, index=False)
        splitter = folder / SPLITTER_FILE
        (tmp / SPLITTER_FILE).write_text(SPLITTER.format(path=splitter.resolve(), folds=FOLDS_FILE))
        lists = _gene_lists(stores, result.left_out)
        _publish_gene_lists(lists, data_path / "meta" / "gene_lists")
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.written = sorted(folder.rglob("*.csv")) + [splitter] + [data_path / "meta" / "gene_lists" / f"{n}.csv"
                                                                   for n in lists]  # fmt: skip
    result.command = shlex.join([
        "drevalpy", "--run_id", name, "--path_data", str(data_path.resolve()), "--dataset_name", name,
        "--models", "ElasticNet", "--test_mode", TEST_MODES[split], "--measure", measure, "--no_refitting",
        "--custom_splitter_path", str(splitter.resolve()),
    ])  # fmt: skip
    return result


def _fingerprints(ds: datasets.Dataset, drug_ids: np.ndarray, folder: Path, cache_dir: str | Path | None,
                  left_out: dict[str, str]) -> None:  # fmt: skip
    """drevalpy's 128-bit Morgan map (bits x drugs, one column per PubChem CID) from our ``morgan`` store."""
    target = f"drug_fingerprints/pubchem_id_to_demorgan_{FINGERPRINT_BITS}_map.csv"
    try:
        store = open_store("morgan", dataset=ds, cache_dir=cache_dir)
    except StoreNotFound:
        left_out[target] = "no morgan store of this dataset: fused-cache build --encoder morgan"
        return
    with store:
        settings = store.manifest["fingerprint"]["settings"]
        if settings["radius"] != 2 or settings["n_bits"] % FINGERPRINT_BITS:
            left_out[target] = f"the morgan store has radius {settings['radius']}, {settings['n_bits']} bits"
            return
        arrays = store.load()
    bits = arrays["embeddings"].reshape(len(arrays["ids"]), -1, FINGERPRINT_BITS).max(axis=1)  # fold: OR
    table = pd.DataFrame(bits.T.astype(np.int8), columns=arrays["ids"])
    keep = [d for d in table.columns if d in set(drug_ids)]
    (folder / "drug_fingerprints").mkdir()
    table[keep].to_csv(folder / target, index=False)


def _gene_lists(stores: dict[str, dict], left_out: dict[str, str]) -> dict[str, list[str]]:
    """Each list of ``GENE_LISTS`` whose stores were exported: the genes they share, in the first store's order."""
    lists = {}
    for name, needs in GENE_LISTS.items():
        missing = [s for s in needs if s not in stores]
        if missing:
            left_out[f"meta/gene_lists/{name}.csv"] = f"needs the {' and '.join(missing)} store(s) in the export"
            continue
        genes = [stores[s]["fingerprint"]["settings"]["genes"] for s in needs]
        common = set.intersection(*map(set, genes))
        lists[name] = [g for g in genes[0] if g in common]
    return lists


def _publish_gene_lists(lists: dict[str, list[str]], folder: Path) -> None:
    """Write the gene lists, or refuse when a list of that name is there with other genes (another dataset's in a
    shared data path): nothing is overwritten."""
    tables = {name: pd.DataFrame({"Symbol": genes}) for name, genes in lists.items()}
    for name, table in tables.items():
        path = folder / f"{name}.csv"
        if path.exists() and not pd.read_csv(path, dtype=str)["Symbol"].equals(table["Symbol"]):
            raise RunError(f"{path} exists with other genes (another dataset's list?); export to a data path of "
                           "its own")  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)
