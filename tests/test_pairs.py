"""Training your own model on our embeddings and our exact folds: EmbeddingPairs and fused-train splits --export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from fused_train import EmbeddingPairs
from fused_train.cli import cli
from fused_train.runs import predictions, train


@pytest.fixture(scope="module")
def pairs(trained_on: tuple[str, Path]) -> EmbeddingPairs:
    dataset, cache = trained_on
    return EmbeddingPairs.from_stores(dataset, "morgan", ["expression", "methylation"], cache)


def test_a_dataloader_batches_embeddings_and_labels(pairs: EmbeddingPairs) -> None:
    batch = next(iter(torch.utils.data.DataLoader(pairs, batch_size=8)))
    assert batch["drug"].shape == (8, 2048) and set(batch["cells"]) == {"expression", "methylation"}
    first = pairs.inputs.pairs.iloc[0]
    assert batch["drug_id"][0] == first["drug_id"] and batch["ln_ic50"][0] == pytest.approx(first["ln_ic50"])
    row = list(pairs.inputs.cell_ids).index(first["cell_id"])
    np.testing.assert_array_equal(batch["cells"]["expression"][0].numpy(), pairs.inputs.cells["expression"][row])


def test_folds_are_the_ones_fused_train_runs(pairs: EmbeddingPairs, trained_on: tuple[str, Path],
                                             tmp_path: Path) -> None:  # fmt: skip
    from helpers import tiny_spec

    dataset, cache = trained_on
    train(tiny_spec(dataset, epochs=1), tmp_path / "run", fold="0-1", cache_dir=cache, quiet=True)
    tested = predictions(tmp_path / "run")
    for fold in pairs.folds("lodo")[:2]:
        test = pairs.subset(fold, "test")
        ours = {(test[i]["drug_id"], test[i]["cell_id"]) for i in range(len(test))}
        run = tested[tested["fold"] == fold.name]
        assert ours == set(zip(run["drug_id"], run["cell_id"], strict=True))
        sizes = [len(pairs.subset(fold, role)) for role in ("train", "val", "test")]
        assert sum(sizes) == len(pairs) and min(sizes) > 0


def test_splits_export_writes_fold_membership(trained_on: tuple[str, Path], pairs: EmbeddingPairs,
                                              tmp_path: Path) -> None:  # fmt: skip
    dataset, cache = trained_on
    args = ["splits", "--split", "LDO", "--drug-encoder", "morgan", "--omics", "methylation", "--dataset", dataset,
            "--cache-dir", str(cache), "--export", str(tmp_path / "folds")]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert "10 lodo folds" in result.output
    folds = pd.read_csv(tmp_path / "folds" / "folds.csv", dtype=str)
    assert list(folds.columns) == ["fold", "seed", "drug_id", "role"]
    first = pairs.folds("lodo")[0]
    mine = folds[folds["fold"] == first.name]
    held_out = mine.loc[mine["role"] == "test", "drug_id"].tolist()
    assert held_out == [str(pairs.inputs.drug_ids[0])] and len(mine) == 10
    assert len(pd.read_csv(tmp_path / "folds" / "pairs.csv")) == len(pairs)

    args[args.index("LDO")] = "LPO"
    CliRunner().invoke(cli, [*args, "--force"], catch_exceptions=False)  # replaces the LODO export
    known = pd.read_csv(tmp_path / "folds" / "folds.csv", dtype=str)
    assert list(known.columns) == ["fold", "seed", "drug_id", "cell_id", "role"]
    # one row per measured (drug, cell line): a CID measured under two GDSC ids has both pairs in one role
    assert len(known) == len(pairs.inputs.pairs[["drug_id", "cell_id"]].drop_duplicates())
