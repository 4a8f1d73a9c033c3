"""Molecular FM encoders on tiny random checkpoints in the published layouts: the same numbers as an independent
computation, invariance to batching, and errors that name the file or key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import subset
from fm_checkpoints_mol import write_chemberta
from safetensors.torch import load_file, save_file

from fused_cache import CheckpointError, build_store
from fused_cache.cli import cli
from fused_cache.datasets import Dataset
from fused_cache.encoders.base import DrugBatch
from fused_cache.encoders.chemberta import ChemBERTaEncoder


@pytest.fixture(scope="module")
def chemberta_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chemberta(tmp_path_factory.mktemp("chemberta"))


def _drugs(gdsc: Dataset, n: int = 6) -> DrugBatch:
    drugs = gdsc.drugs.head(n)
    return DrugBatch(list(drugs["drug_id"]), list(drugs["smiles"]))


def test_chemberta_is_the_masked_mean_of_roberta_hidden_states(chemberta_dir: Path, gdsc: Dataset) -> None:
    from transformers import AutoTokenizer, RobertaForMaskedLM

    batch = _drugs(gdsc)
    embeddings = ChemBERTaEncoder(chemberta_dir).embed(batch)
    assert embeddings.shape == (6, 32) and embeddings.dtype == np.float32
    mlm = RobertaForMaskedLM.from_pretrained(chemberta_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(chemberta_dir)
    with torch.no_grad():
        for row, smiles in zip(embeddings, batch.smiles, strict=True):
            hidden = mlm.roberta(**tokenizer(smiles, return_tensors="pt")).last_hidden_state[0]  # one SMILES: no pad
            np.testing.assert_allclose(row, hidden.mean(dim=0).numpy(), atol=1e-5)
    first = ChemBERTaEncoder(chemberta_dir, pooling="cls").embed(batch.take([0]))
    with torch.no_grad():
        expected = mlm.roberta(**tokenizer(batch.smiles[0], return_tensors="pt")).last_hidden_state[0, 0]
    np.testing.assert_allclose(first[0], expected.numpy(), atol=1e-5)


def test_chemberta_does_not_depend_on_batching(chemberta_dir: Path, gdsc: Dataset) -> None:
    encoder = ChemBERTaEncoder(chemberta_dir)
    batch = _drugs(gdsc)
    together = encoder.embed(batch)
    alone = np.concatenate([encoder.embed(batch.take([i])) for i in range(len(batch))])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_array_equal(together, encoder.embed(batch))


def test_chemberta_store_and_no_op_rebuild(chemberta_dir: Path, gdsc: Dataset, cache: Path) -> None:
    ds = subset(gdsc, 5, 3)
    first = build_store(ds, "chemberta", cache, quiet=True, encoder_options={"checkpoint": chemberta_dir})
    assert first.created and first.store.embeddings.shape == (5, 32)
    assert first.store.manifest["fingerprint"]["weights_sha256"]
    again = build_store(ds, "chemberta", cache, quiet=True, encoder_options={"checkpoint": chemberta_dir})
    assert not again.created


def test_chemberta_rejects_invalid_and_too_long_smiles(chemberta_dir: Path) -> None:
    encoder = ChemBERTaEncoder(chemberta_dir, max_length=8)
    bad = encoder.check(DrugBatch(["ok", "garbage", "long"], ["CCO", "C1CC(", "CC(N)C(O)C(S)C(F)C(Cl)C(Br)C(I)C(=O)O"]))
    assert set(bad) == {"garbage", "long"}
    assert "invalid SMILES" in bad["garbage"] and "at most 8" in bad["long"]


def test_checkpoint_errors_name_the_file_or_key(
    chemberta_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FUSED_MODELS_DIR", raising=False)
    with pytest.raises(CheckpointError, match="config.json, vocab.json, merges.txt"):
        ChemBERTaEncoder()
    state = load_file(chemberta_dir / "model.safetensors")
    for name, change in (
        ("missing", lambda s: {k: v for k, v in s.items() if "layer.0.attention.self.query.weight" not in k}),
        ("unexpected", lambda s: s | {"roberta.extra.weight": torch.zeros(2)}),
    ):
        broken = write_chemberta(tmp_path / name)
        save_file(change(dict(state)), broken / "model.safetensors", metadata={"format": "pt"})
        key = "query.weight" if name == "missing" else "roberta.extra.weight"
        with pytest.raises(CheckpointError, match=key):
            ChemBERTaEncoder(broken).embed(DrugBatch(["a"], ["CCO"]))
    wrong = write_chemberta(tmp_path / "wrong-config")
    config = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps(config | {"hidden_size": 64, "intermediate_size": 256}))
    with pytest.raises(CheckpointError, match="does not match"):
        ChemBERTaEncoder(wrong).embed(DrugBatch(["a"], ["CCO"]))
    (wrong / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no weights"):
        ChemBERTaEncoder(wrong)


def test_build_without_a_checkpoint_says_what_to_put_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FUSED_MODELS_DIR", raising=False)
    result = CliRunner().invoke(cli, ["build", "--encoder", "chemberta", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code != 0
    assert "merges.txt" in str(result.exception) and "FUSED_MODELS_DIR" in str(result.exception)
    assert not (tmp_path / "c" / "drug").exists()
