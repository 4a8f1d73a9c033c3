"""scGPT and scFoundation encoders on tiny random checkpoints written in the layout their authors publish.

Each encoder is compared with an independent float64 forward pass, written from the authors' code, for real cell
lines of the bundled dataset; then invariances (batch composition and padding, column order, repeats, pickling),
error messages, store builds and the CLI without weights.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from fm_checkpoints_sc import write_scfoundation, write_scgpt
from helpers import subset

from fused_cache.build import build_store
from fused_cache.cli import cli
from fused_cache.datasets import Dataset
from fused_cache.encoders.base import CellBatch, CheckpointError
from fused_cache.encoders.scfoundation import PANEL, ScFoundationEncoder
from fused_cache.encoders.scgpt import ScGPTEncoder, bin_values


@pytest.fixture(scope="module")
def scgpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scgpt(tmp_path_factory.mktemp("scgpt"))


@pytest.fixture(scope="module")
def scfoundation_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scfoundation(tmp_path_factory.mktemp("scfoundation"))


@pytest.fixture(scope="module")
def cells(gdsc: Dataset) -> CellBatch:
    """Six cell lines: the second has values tied on several quantile edges, the last lacks six genes (NaN)."""
    x = gdsc.omics["expression"].iloc[[0, 1, 2, 3, 4, 50]]
    return CellBatch(list(x.index), list(x.columns), x.to_numpy("float32"))


# --- independent forward passes (float64 numpy, one cell line, no padding) ---------------------------------------


def _numpy(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, np.ndarray]:
    return {k.removeprefix(prefix): v.double().numpy() for k, v in state.items()}


def _layer_norm(x: np.ndarray, p: dict[str, np.ndarray], name: str) -> np.ndarray:
    centred = x - x.mean(-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(-1, keepdims=True) + 1e-5) * p[f"{name}.weight"] + p[f"{name}.bias"]


def _post_norm_layer(x: np.ndarray, p: dict[str, np.ndarray], prefix: str, qkv: str, heads: int) -> np.ndarray:
    """One post-norm encoder layer (torch's TransformerEncoderLayer, flash-attn's packed Wqkv), ReLU FFN."""
    q, k, v = np.split(x @ p[f"{prefix}{qkv}weight"].T + p[f"{prefix}{qkv}bias"], 3, axis=1)
    width = x.shape[1] // heads
    mixed = []
    for h in range(heads):
        part = slice(h * width, (h + 1) * width)
        scores = q[:, part] @ k[:, part].T / np.sqrt(width)
        weights = np.exp(scores - scores.max(1, keepdims=True))
        mixed.append(weights / weights.sum(1, keepdims=True) @ v[:, part])
    attended = (
        np.concatenate(mixed, 1) @ p[f"{prefix}self_attn.out_proj.weight"].T + p[f"{prefix}self_attn.out_proj.bias"]
    )
    x = _layer_norm(x + attended, p, f"{prefix}norm1")
    hidden = np.maximum(x @ p[f"{prefix}linear1.weight"].T + p[f"{prefix}linear1.bias"], 0)
    return _layer_norm(x + hidden @ p[f"{prefix}linear2.weight"].T + p[f"{prefix}linear2.bias"], p, f"{prefix}norm2")


def scgpt_by_hand(directory: Path, genes: list[str], row: np.ndarray) -> np.ndarray:
    """scGPT's embed_data for one cell whose binning involves no random tie-break: the L2-normalised <cls> output."""
    p = _numpy(torch.load(directory / "best_model.pt", weights_only=True))
    vocab = json.loads((directory / "vocab.json").read_text())
    args = json.loads((directory / "args.json").read_text())
    expressed = [(vocab[g], v) for g, v in zip(genes, row, strict=True) if g in vocab and v > 0]
    values = np.array([v for _, v in expressed], dtype=np.float32)
    edges = np.quantile(values, np.linspace(0, 1, args["n_bins"] - 1))
    left, right = np.digitize(values, edges), np.digitize(values, edges, right=True)
    assert (left - right <= 1).all(), "this cell needs scGPT's random tie-break"
    ids = [vocab["<cls>"]] + [i for i, _ in expressed]
    binned = np.concatenate([[args["pad_value"]], left]).astype(np.float64)[:, None]
    x = _layer_norm(p["encoder.embedding.weight"][ids], p, "encoder.enc_norm")
    hidden = np.maximum(binned @ p["value_encoder.linear1.weight"].T + p["value_encoder.linear1.bias"], 0)
    value = hidden @ p["value_encoder.linear2.weight"].T + p["value_encoder.linear2.bias"]
    x = x + _layer_norm(value, p, "value_encoder.norm")
    for i in range(args["nlayers"]):
        x = _post_norm_layer(x, p, f"transformer_encoder.layers.{i}.", "self_attn.Wqkv.", args["nheads"])
    return x[0] / np.linalg.norm(x[0])


def scfoundation_by_hand(directory: Path, genes: list[str], row: np.ndarray, pool: str) -> np.ndarray:
    """get_embedding.py bulk mode (pre_normalized=T) on DeepCDR-style log1p(CP10k) input, one cell, 'cell' model."""
    entry = torch.load(directory / "models.ckpt", weights_only=True)["cell"]
    p = _numpy(entry["state_dict"], prefix="model.")
    config = entry["config"]["model_config"]["mae_autobin"]
    panel = pd.read_csv(PANEL, sep="\t")
    position = dict(zip(panel["gene_name"], panel["index"], strict=True))
    full = np.zeros(len(panel))
    for gene, value in zip(genes, row, strict=True):
        if gene in position and np.isfinite(value):
            full[position[gene]] = value
    full = np.log1p(full / full.sum() * 1e4)
    x = np.concatenate([full, [full.sum(), full.sum()]]).astype(np.float32).astype(np.float64)
    kept = np.flatnonzero(x > 0)
    hidden = x[kept, None] @ p["token_emb.mlp.weight"].T + p["token_emb.mlp.bias"]
    hidden = np.where(hidden > 0, hidden, 0.1 * hidden)
    logits = config["bin_alpha"] * hidden + hidden @ p["token_emb.mlp2.weight"].T + p["token_emb.mlp2.bias"]
    weights = np.exp(logits - logits.max(1, keepdims=True))
    e = weights / weights.sum(1, keepdims=True) @ p["token_emb.emb.weight"] + p["pos_emb.weight"][kept]
    for i in range(config["encoder"]["depth"]):
        e = _post_norm_layer(
            e, p, f"encoder.transformer_encoder.{i}.", "self_attn.in_proj_", config["encoder"]["heads"]
        )
    e = _layer_norm(e, p, "encoder.norm")
    if pool == "max":
        return e.max(0)
    return np.concatenate([e[-1], e[-2], e[:-2].max(0), e[:-2].mean(0)])


# --- outputs -----------------------------------------------------------------------------------------------------


def test_scgpt_matches_a_hand_written_forward(scgpt_dir: Path, cells: CellBatch) -> None:
    encoder = ScGPTEncoder(checkpoint=scgpt_dir, device="cpu")
    out = encoder.embed(cells)
    assert out.shape == (6, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], scgpt_by_hand(scgpt_dir, cells.genes, cells.values[0]), atol=1e-5)


@pytest.mark.parametrize("pool", ["max", "all"])
def test_scfoundation_matches_a_hand_written_forward(scfoundation_dir: Path, cells: CellBatch, pool: str) -> None:
    encoder = ScFoundationEncoder(checkpoint=scfoundation_dir, device="cpu", pool=pool)
    out = encoder.embed(cells)
    assert out.shape == (6, 32 if pool == "max" else 128)
    assert np.isnan(cells.values[5]).sum() == 6
    for i in (0, 5):
        expected = scfoundation_by_hand(scfoundation_dir, cells.genes, cells.values[i], pool)
        np.testing.assert_allclose(out[i], expected, atol=1e-5)


def test_binning_is_scgpts_without_its_randomness() -> None:
    rng = np.random.default_rng(0)
    tied = rng.choice(np.array([0.25, 0.5, 2.0, 3.5], dtype=np.float32), 300)
    values = np.concatenate([tied, rng.uniform(0.1, 9, 200).astype(np.float32)])
    bins = bin_values(values, 51)
    edges = np.quantile(values, np.linspace(0, 1, 50))
    left, right = np.digitize(values, edges), np.digitize(values, edges, right=True)
    # scGPT's _digitize draws ceil(u * (right - left) + left), u ~ U[0, 1): one of right+1..left, or left if equal
    assert ((bins >= np.minimum(right + 1, left)) & (bins <= left)).all()
    certain = left - right <= 1
    np.testing.assert_array_equal(bins[certain], left[certain])
    assert (~certain).sum() > 200 and bins.min() >= 1 and bins.max() <= 50
    for value in np.unique(values[~certain]):  # a tie is spread evenly over the bins scGPT would draw from
        counts = np.bincount(bins[values == value])[bins[values == value].min() :]
        assert len(counts) == left[values == value][0] - right[values == value][0] and np.ptp(counts) <= 1
    np.testing.assert_array_equal(bin_values(values, 51), bins)


@pytest.mark.parametrize("name", ["scgpt", "scfoundation"])
def test_outputs_ignore_batching_column_order_and_pickling(
    name: str, scgpt_dir: Path, scfoundation_dir: Path, cells: CellBatch
) -> None:
    make = _factory(name, scgpt_dir, scfoundation_dir)
    encoder = make()
    shipped = pickle.loads(pickle.dumps(encoder))  # as sent to a Dask worker before the model loads
    together = encoder.embed(cells)
    alone = np.concatenate([encoder.embed(cells.take([i])) for i in range(len(cells))])
    np.testing.assert_allclose(together, alone, atol=1e-5)  # padding and batch size change nothing
    np.testing.assert_array_equal(encoder.embed(cells), together)
    order = np.random.default_rng(1).permutation(len(cells.genes))
    permuted = CellBatch(cells.ids, [cells.genes[i] for i in order], cells.values[:, order])
    np.testing.assert_allclose(encoder.embed(permuted), together, atol=1e-5)
    state = pickle.loads(pickle.dumps(encoder)).__dict__
    assert state["_model"] is None and encoder._model is not None
    np.testing.assert_array_equal(shipped.embed(cells), together)


def test_scgpt_reads_torch_attention_names_too(tmp_path: Path, scgpt_dir: Path, cells: CellBatch) -> None:
    plain = write_scgpt(tmp_path / "plain", flash_keys=False)
    assert "transformer_encoder.layers.0.self_attn.in_proj_weight" in torch.load(plain / "best_model.pt")
    out = ScGPTEncoder(checkpoint=plain, device="cpu").embed(cells)
    np.testing.assert_array_equal(out, ScGPTEncoder(checkpoint=scgpt_dir, device="cpu").embed(cells))


def test_scgpt_gene_selection_is_seeded(scgpt_dir: Path, cells: CellBatch) -> None:
    encoder = ScGPTEncoder(checkpoint=scgpt_dir, device="cpu", max_length=50)
    assert encoder.fit(cells)["cells_over_max_length"] == 6
    out = encoder.embed(cells)
    np.testing.assert_allclose(out[2:3], encoder.embed(cells.take([2])), atol=1e-5)
    np.testing.assert_array_equal(ScGPTEncoder(checkpoint=scgpt_dir, device="cpu", max_length=50).embed(cells), out)
    other = ScGPTEncoder(checkpoint=scgpt_dir, device="cpu", max_length=50, seed=1)
    assert not np.allclose(other.embed(cells), out)
    assert other.settings()["seed"] == 1 and other.fingerprint() != encoder.fingerprint()
    full = ScGPTEncoder(checkpoint=scgpt_dir, device="cpu")
    assert full.settings()["max_length"] == 1200 and not np.allclose(full.embed(cells), out)


def test_unmatched_genes_are_reported(tmp_path: Path, scfoundation_dir: Path, cells: CellBatch) -> None:
    notes = ScGPTEncoder(checkpoint=write_scgpt(tmp_path / "small", n_genes=600), device="cpu").fit(cells)
    assert notes["genes_matched"] == "600/697"
    assert notes["unmatched_genes"] == [g for g in cells.genes if g in set(sorted(cells.genes)[600:])]
    notes = ScFoundationEncoder(checkpoint=scfoundation_dir, device="cpu").fit(cells)
    panel = set(pd.read_csv(PANEL, sep="\t")["gene_name"])
    outside = [g for g in cells.genes if g not in panel]
    assert notes["genes_not_in_panel"] == outside and "SEPT9" in outside
    assert notes["genes_in_panel"] == f"{697 - len(outside)}/697"
    assert notes["panel_coverage"].startswith(f"{697 - len(outside)}/19264")


def test_invalid_cells_are_named(scgpt_dir: Path, scfoundation_dir: Path, cells: CellBatch) -> None:
    values = cells.values.copy()
    values[1] = np.where(np.isnan(values[1]), np.nan, 0.0)
    values[2, 5] = -1.0
    values[3, 7] = np.inf
    bad = CellBatch(cells.ids, cells.genes, values)
    for encoder in (ScGPTEncoder(checkpoint=scgpt_dir), ScFoundationEncoder(checkpoint=scfoundation_dir)):
        reasons = encoder.check(bad)
        assert sorted(reasons) == sorted(cells.ids[1:4])
        assert "expressed" in reasons[cells.ids[1]] and "negative" in reasons[cells.ids[2]]
        assert "infinite" in reasons[cells.ids[3]]


# --- checkpoint errors ---------------------------------------------------------------------------------------------


def test_missing_checkpoint_lists_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FUSED_MODELS_DIR", raising=False)
    with pytest.raises(CheckpointError, match=r"best_model\.pt, vocab\.json, args\.json.*FUSED_MODELS_DIR/scgpt/"):
        ScGPTEncoder()
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"lacks best_model\.pt, args\.json"):
        ScGPTEncoder(checkpoint=tmp_path)
    with pytest.raises(CheckpointError, match=r"lacks models\.ckpt.*scFoundation"):
        ScFoundationEncoder(checkpoint=tmp_path)
    monkeypatch.setenv("FUSED_MODELS_DIR", str(tmp_path / "models"))
    write_scgpt(tmp_path / "models" / "scgpt")
    assert ScGPTEncoder().dim == 32


def _edited_scgpt(tmp_path: Path, source: Path, edit: Callable[[dict[str, Any]], None], file: str) -> Path:
    target = Path(shutil.copytree(source, tmp_path / f"edited-{len(list(tmp_path.iterdir()))}"))
    if file == "best_model.pt":
        state = torch.load(target / file, weights_only=True)
        edit(state)
        torch.save(state, target / file)
    else:
        content = json.loads((target / file).read_text())
        edit(content)
        (target / file).write_text(json.dumps(content))
    return target


def test_scgpt_names_what_is_wrong_with_a_checkpoint(tmp_path: Path, scgpt_dir: Path, cells: CellBatch) -> None:
    def embed(directory: Path) -> np.ndarray:
        return ScGPTEncoder(checkpoint=directory, device="cpu").embed(cells.take([0]))

    missing = _edited_scgpt(
        tmp_path, scgpt_dir, lambda s: s.pop("transformer_encoder.layers.1.linear2.bias"), "best_model.pt"
    )
    with pytest.raises(CheckpointError, match=r"lacks key 'transformer_encoder\.layers\.1\.linear2\.bias'.*nlayers=2"):
        embed(missing)

    def add_layer(state: dict[str, Any]) -> None:
        state["transformer_encoder.layers.2.norm1.weight"] = torch.ones(32)

    with pytest.raises(CheckpointError, match=r"unexpected key 'transformer_encoder\.layers\.2\.norm1\.weight'"):
        embed(_edited_scgpt(tmp_path, scgpt_dir, add_layer, "best_model.pt"))
    with pytest.raises(CheckpointError, match=r"'encoder\.embedding\.weight' has shape \(700, 32\).*embsize=64"):
        embed(_edited_scgpt(tmp_path, scgpt_dir, lambda a: a.update(embsize=64), "args.json"))

    def drop_gene(vocab: dict[str, Any]) -> None:
        vocab.pop(min(vocab, key=vocab.__getitem__))
        vocab.update({token: i for i, token in enumerate(sorted(vocab, key=vocab.__getitem__))})

    with pytest.raises(CheckpointError, match=r"vocab\.json \(699 tokens\)"):
        embed(_edited_scgpt(tmp_path, scgpt_dir, drop_gene, "vocab.json"))
    with pytest.raises(CheckpointError, match=r"args\.json lacks n_bins"):
        embed(_edited_scgpt(tmp_path, scgpt_dir, lambda a: a.pop("n_bins"), "args.json"))
    garbage = Path(shutil.copytree(scgpt_dir, tmp_path / "garbage"))
    (garbage / "best_model.pt").write_bytes(b"<html>not found</html>")
    with pytest.raises(CheckpointError, match=r"best_model\.pt is not a PyTorch checkpoint"):
        embed(garbage)


def _edited_scfoundation(tmp_path: Path, source: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    target = tmp_path / f"edited-{len(list(tmp_path.iterdir()))}"
    target.mkdir()
    ckpt = torch.load(source / "models.ckpt", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, target / "models.ckpt")
    return target


def test_scfoundation_names_what_is_wrong_with_a_checkpoint(
    tmp_path: Path, scfoundation_dir: Path, cells: CellBatch
) -> None:
    def embed(directory: Path) -> np.ndarray:
        return ScFoundationEncoder(checkpoint=directory, device="cpu").embed(cells.take([0]))

    def state(ckpt: dict[str, Any]) -> dict[str, Any]:
        return ckpt["cell"]["state_dict"]

    def encoder_config(ckpt: dict[str, Any]) -> dict[str, Any]:
        return ckpt["cell"]["config"]["model_config"]["mae_autobin"]["encoder"]

    with pytest.raises(CheckpointError, match=r"lacks key 'encoder\.norm\.bias'"):
        embed(_edited_scfoundation(tmp_path, scfoundation_dir, lambda c: state(c).pop("model.encoder.norm.bias")))

    def add_layer(ckpt: dict[str, Any]) -> None:
        state(ckpt)["model.encoder.transformer_encoder.2.norm1.weight"] = torch.ones(32)

    with pytest.raises(
        CheckpointError, match=r"unexpected key 'encoder\.transformer_encoder\.2\.norm1\.weight'.*depth=2"
    ):
        embed(_edited_scfoundation(tmp_path, scfoundation_dir, add_layer))
    with pytest.raises(CheckpointError, match=r"'token_emb\.emb\.weight' has shape \(100, 32\).*hidden_dim=64"):
        embed(_edited_scfoundation(tmp_path, scfoundation_dir, lambda c: encoder_config(c).update(hidden_dim=64)))
    with pytest.raises(CheckpointError, match=r"'performer' encoder; only 'mae_autobin' with a 'transformer'"):
        embed(
            _edited_scfoundation(
                tmp_path, scfoundation_dir, lambda c: encoder_config(c).update(module_type="performer")
            )
        )
    with pytest.raises(CheckpointError, match=r"no 'cell' model \('gene', 'rde'\)"):
        embed(_edited_scfoundation(tmp_path, scfoundation_dir, lambda c: c.pop("cell")))


def test_scfoundation_loads_a_pickled_checkpoint_only_when_trusted(
    tmp_path: Path, scfoundation_dir: Path, cells: CellBatch
) -> None:
    pickled = write_scfoundation(tmp_path, plain_pickle=True)
    with pytest.raises(CheckpointError, match=r"pickled Python objects \(datetime\.date\).*--trust-checkpoint"):
        ScFoundationEncoder(checkpoint=pickled)
    trusted = ScFoundationEncoder(checkpoint=pickled, device="cpu", trust_checkpoint=True)
    same = ScFoundationEncoder(checkpoint=scfoundation_dir, device="cpu")
    assert trusted.fingerprint()["settings"] == same.fingerprint()["settings"]
    np.testing.assert_array_equal(trusted.embed(cells), same.embed(cells))


def test_scfoundation_normalization_is_a_recorded_choice(scfoundation_dir: Path, cells: CellBatch) -> None:
    default = ScFoundationEncoder(checkpoint=scfoundation_dir, device="cpu")
    as_is = ScFoundationEncoder(checkpoint=scfoundation_dir, device="cpu", normalize="none")
    assert default.settings()["normalize"] == "log1p-cp10k" and as_is.settings()["normalize"] == "none"
    assert default.fingerprint() != as_is.fingerprint()
    assert not np.allclose(default.embed(cells), as_is.embed(cells))


# --- stores and CLI ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["scgpt", "scfoundation"])
def test_build_store_then_rebuild_is_a_noop(
    name: str, gdsc: Dataset, cache: Path, scgpt_dir: Path, scfoundation_dir: Path
) -> None:
    small = subset(gdsc, 2, 5)
    checkpoint = {"scgpt": scgpt_dir, "scfoundation": scfoundation_dir}[name]
    first = build_store(small, name, encoder_options={"checkpoint": checkpoint, "device": "cpu"}, quiet=True)
    n = len(small.omics["expression"])
    assert first.created and first.embedded == n and first.store.embeddings.shape == (n, 32)
    assert first.store.manifest["notes"] and first.store.manifest["model"]["path"].startswith(str(checkpoint))
    again = _factory(name, scgpt_dir, scfoundation_dir)()
    second = build_store(small, again, quiet=True)
    assert not second.created and second.store.path == first.store.path
    assert again._model is None  # a no-op rebuild needs the fingerprint only, never the weights


@pytest.mark.parametrize(
    ("name", "files"), [("scgpt", "best_model.pt, vocab.json, args.json"), ("scfoundation", "models.ckpt")]
)
def test_cli_without_weights_says_what_to_put_where(
    name: str, files: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FUSED_MODELS_DIR", raising=False)
    result = CliRunner().invoke(cli, ["build", "--encoder", name, "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code != 0 and isinstance(result.exception, CheckpointError)
    message = str(result.exception)
    assert files in message and f"$FUSED_MODELS_DIR/{name}/" in message and "--checkpoint DIR" in message
    assert list(tmp_path.iterdir()) == []


def _factory(name: str, scgpt_dir: Path, scfoundation_dir: Path) -> Callable[[], ScGPTEncoder | ScFoundationEncoder]:
    if name == "scgpt":
        return lambda: ScGPTEncoder(checkpoint=scgpt_dir, device="cpu")
    return lambda: ScFoundationEncoder(checkpoint=scfoundation_dir, device="cpu")
