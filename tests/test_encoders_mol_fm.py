"""Molecular FM encoders on tiny random checkpoints in the published layouts: the same numbers as an independent
computation, invariance to batching, and errors that name the file or key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fm_checkpoints_mol import write_chemberta, write_molformer
from helpers import subset
from safetensors.torch import load_file, save_file

from fused_cache import CheckpointError, build_store
from fused_cache.cli import cli
from fused_cache.datasets import Dataset
from fused_cache.encoders.base import DrugBatch
from fused_cache.encoders.chemberta import ChemBERTaEncoder
from fused_cache.encoders.molformer import PATTERN, MoLFormerEncoder


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


@pytest.fixture(scope="module")
def molformer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_molformer(tmp_path_factory.mktemp("molformer"))


def _molformer_by_hand(directory: Path, smiles: str) -> np.ndarray:
    """MoLFormer's forward for one SMILES, written out in float64 numpy from the raw checkpoint."""
    state = {k: v.double().numpy() for k, v in load_file(directory / "model.safetensors").items()}
    config = json.loads((directory / "config.json").read_text())
    vocab = json.loads((directory / "vocab.json").read_text())
    ids = [vocab[t] for t in ["<bos>", *PATTERN.findall(smiles), "<eos>"]]
    d, h = config["hidden_size"], config["num_attention_heads"]
    dh = d // h

    def linear(x: np.ndarray, name: str) -> np.ndarray:
        return x @ state[f"{name}.weight"].T + state[f"{name}.bias"]

    def layer_norm(x: np.ndarray, name: str) -> np.ndarray:
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + config["layer_norm_eps"]) * state[f"{name}.weight"] + state[f"{name}.bias"]

    def gelu(x: np.ndarray) -> np.ndarray:
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))

    position = np.arange(len(ids))[:, None]
    angle = position * (1.0 / 10000 ** (np.arange(0, dh, 2) / dh))[None]
    cos, sin = np.cos(np.concatenate([angle, angle], 1)), np.sin(np.concatenate([angle, angle], 1))

    def rotate(x: np.ndarray) -> np.ndarray:
        half = x.shape[-1] // 2
        return x * cos + np.concatenate([-x[:, half:], x[:, :half]], 1) * sin

    x = state["molformer.embeddings.word_embeddings.weight"][ids]
    for i in range(config["num_hidden_layers"]):
        p = f"molformer.encoder.layer.{i}."
        q, k, v = (linear(x, f"{p}attention.self.{n}") for n in ("query", "key", "value"))
        w = state[f"{p}attention.self.feature_map.weight"]
        heads = []
        for j in range(h):
            cols = slice(j * dh, (j + 1) * dh)
            qf, kf = np.maximum(rotate(q[:, cols]) @ w, 0), np.maximum(rotate(k[:, cols]) @ w, 0)
            scores = qf @ kf.T  # linear attention = kernel attention normalised over keys
            heads.append(scores @ v[:, cols] / np.maximum(scores.sum(1, keepdims=True), config["linear_attention_eps"]))
        x = layer_norm(
            linear(np.concatenate(heads, 1), f"{p}attention.output.dense") + x, f"{p}attention.output.LayerNorm"
        )
        ff = linear(gelu(linear(x, f"{p}intermediate.dense")), f"{p}output.dense")
        x = layer_norm(ff + x, f"{p}output.LayerNorm")
    return layer_norm(x, "molformer.LayerNorm").mean(0)


def test_molformer_matches_a_hand_written_forward(molformer_dir: Path, gdsc: Dataset) -> None:
    batch = _drugs(gdsc, 4)
    encoder = MoLFormerEncoder(molformer_dir)
    assert encoder.check(batch) == {}
    embeddings = encoder.embed(batch)  # padded batch of different lengths
    assert embeddings.shape == (4, 32)
    for row, smiles in zip(embeddings, batch.smiles, strict=True):
        np.testing.assert_allclose(row, _molformer_by_hand(molformer_dir, smiles), atol=2e-4)
    np.testing.assert_array_equal(embeddings, encoder.embed(batch))


def test_molformer_names_bad_tokens_keys_and_configs(molformer_dir: Path, tmp_path: Path) -> None:
    encoder = MoLFormerEncoder(molformer_dir, max_length=10)
    bad = encoder.check(DrugBatch(["x", "long", "odd"], ["C1CC(", "CC(N)C(O)C(S)C(F)CC", "[Xe]"]))
    assert "invalid SMILES" in bad["x"] and "at most 10" in bad["long"] and "'[Xe]'" in bad["odd"]
    state = load_file(molformer_dir / "model.safetensors")
    broken = write_molformer(tmp_path / "missing")
    save_file({k: v for k, v in state.items() if "feature_map" not in k}, broken / "model.safetensors")
    with pytest.raises(CheckpointError, match="feature_map.weight"):
        MoLFormerEncoder(broken).embed(DrugBatch(["a"], ["CCO"]))
    wrong = write_molformer(tmp_path / "wrong", heads=4)
    save_file(state, wrong / "model.safetensors")  # 2-head weights under a 4-head config
    with pytest.raises(CheckpointError, match="feature_map.weight.*shape"):
        MoLFormerEncoder(wrong).embed(DrugBatch(["a"], ["CCO"]))
    (wrong / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(CheckpointError, match="not a MoLFormer config"):
        MoLFormerEncoder(wrong)


def test_builds_batch_smiles_of_similar_length(
    molformer_dir: Path, gdsc: Dataset, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[int]] = []
    embed = MoLFormerEncoder.embed

    def recording(self: MoLFormerEncoder, batch: DrugBatch) -> np.ndarray:
        seen.append([len(self.tokens(s)) for s in batch.smiles])
        return embed(self, batch)

    monkeypatch.setattr(MoLFormerEncoder, "embed", recording)
    report = build_store(subset(gdsc, 9, 2), "molformer", cache, batch_size=3, quiet=True,
                         encoder_options={"checkpoint": molformer_dir})  # fmt: skip
    flat = [n for batch in seen for n in batch]
    assert len(seen) == 3 and flat == sorted(flat)  # padding stays small
    direct = MoLFormerEncoder(molformer_dir).embed(_drugs(gdsc, 9))
    np.testing.assert_allclose(report.store.embeddings[:], direct, atol=1e-5)  # rows stay in input order
