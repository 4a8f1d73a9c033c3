"""MoLFormer (Ross et al., Nature Machine Intelligence 2022): linear-attention transformer over SMILES tokens.

The checkpoint is the published ``ibm/MoLFormer-XL-both-10pct`` folder: ``config.json`` (``model_type: molformer``),
``vocab.json`` (token -> id, with ``<bos>``, ``<eos>``, ``<pad>``, ``<unk>``), and the weights. Its Hugging Face
remote code does not run on transformers 5, so the forward is written here in plain torch and loads the published
state dict (``molformer.``-prefixed keys; the masked-LM head is ignored). Per layer: q, k, v projections; rotary
position embeddings on q and k; the feature map phi(x) = kernel(x W) with the stored random-feature matrix W (the
deterministic evaluation of ``deterministic_eval=True``); linear attention phi(Q) (phi(K)^T V) / (phi(Q) sum phi(K))
with padded keys zeroed; post-LayerNorm residual blocks; a final LayerNorm. The embedding is the mean of the final
LayerNorm output over a SMILES' tokens (768-d). SMILES are split by MoLFormer's regular expression; a token missing
from the vocabulary or a SMILES longer than ``max_length`` tokens is reported by ``check``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from fused_cache.encoders.base import (
    CheckpointError,
    DrugBatch,
    Encoder,
    file_sha256,
    invalid_smiles,
    resolve_checkpoint,
    weights_file,
)
from fused_cache.encoders.torch_checkpoints import load_checkpoint_file

FILES = ["config.json", "vocab.json"]
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
HINT = (
    "Download ibm/MoLFormer-XL-both-10pct from the Hugging Face hub on a machine with internet access "
    "(config.json, vocab.json and model.safetensors or pytorch_model.bin)."
)
PATTERN = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"
)
"""MoLFormer's SMILES tokenizer regex (the one of Schwaller et al.'s Molecular Transformer)."""
CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "num_random_features")  # fmt: skip
IGNORED = ("lm_head.", "rotary_embeddings.inv_freq", "rotary_embeddings.cos_cached", "rotary_embeddings.sin_cached")


class MoLFormerEncoder(Encoder):
    name = "molformer"
    entity = "drug"

    def __init__(self, checkpoint: str | Path | None = None, device: str = "auto", max_length: int = 202) -> None:
        self.path = resolve_checkpoint(self.name, checkpoint, FILES, HINT)
        self.weights = weights_file(self.path, WEIGHTS, HINT)
        self.config = json.loads((self.path / "config.json").read_text())
        missing = [f for f in CONFIG_FIELDS if f not in self.config]
        if self.config.get("model_type") != "molformer" or missing:
            raise CheckpointError(
                f"{self.path / 'config.json'} is not a MoLFormer config (model_type "
                f"{self.config.get('model_type')!r}; missing {missing or 'nothing'})"
            )
        self.dim = int(self.config["hidden_size"])
        self.max_length = min(max_length, int(self.config.get("max_position_embeddings", max_length)))
        self.vocab: dict[str, int] = json.loads((self.path / "vocab.json").read_text())
        for token in ("<bos>", "<eos>", "<pad>"):
            if token not in self.vocab:
                raise CheckpointError(f"{self.path / 'vocab.json'} lacks the special token {token!r}")
        self._device_name = device
        self._model: Any = None

    def settings(self) -> dict[str, Any]:
        return {"pooling": "masked mean of the final LayerNorm", "max_length": self.max_length, "smiles": "as given",
                "feature_map": "stored weights (deterministic_eval)"}  # fmt: skip

    def weights_sha256(self) -> str:
        return file_sha256(self.weights)

    def model_info(self) -> dict[str, Any]:
        return {"model": self.config.get("_name_or_path", "ibm/MoLFormer-XL-both-10pct"), "path": str(self.path)}

    def tokens(self, smiles: str) -> list[str]:
        return ["<bos>", *PATTERN.findall(smiles), "<eos>"]

    def lengths(self, batch: DrugBatch) -> np.ndarray:
        return np.array([len(self.tokens(s)) for s in batch.smiles])

    def check(self, batch: DrugBatch) -> dict[str, str]:
        bad = invalid_smiles(batch)
        for drug_id, smiles in zip(batch.ids, batch.smiles, strict=True):
            if drug_id in bad:
                continue
            tokens = self.tokens(smiles)
            unknown = [t for t in tokens if t not in self.vocab]
            if "".join(tokens[1:-1]) != smiles:
                bad[drug_id] = "SMILES has characters MoLFormer's tokenizer does not split"
            elif unknown:
                bad[drug_id] = f"SMILES token {unknown[0]!r} is not in MoLFormer's vocabulary"
            elif len(tokens) > self.max_length:
                bad[drug_id] = f"SMILES is {len(tokens)} tokens; MoLFormer takes at most {self.max_length}"
        return bad

    def embed(self, batch: DrugBatch) -> np.ndarray:
        import torch

        from fused_cache.devices import inference

        model = self._load_model()
        ids = [[self.vocab[t] for t in self.tokens(s)] for s in batch.smiles]
        length = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), length), self.vocab["<pad>"], dtype=torch.long)
        mask = torch.zeros((len(ids), length))
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.tensor(x)
            mask[row, : len(x)] = 1
        input_ids, mask = input_ids.to(self._device), mask.to(self._device)
        with inference(self._device):
            hidden = model(input_ids, mask).float()
        m = mask.unsqueeze(-1)
        return ((hidden * m).sum(dim=1) / m.sum(dim=1)).cpu().numpy().astype(np.float32)

    def _load_model(self) -> Any:
        if self._model is None:
            from fused_cache.devices import select_device

            model = _model_class()(self.config)
            state = _read_weights(self.weights)
            state = {k.removeprefix("molformer."): v for k, v in state.items() if not k.startswith(IGNORED)}
            state = {k: v for k, v in state.items() if not k.endswith(IGNORED[1:])}
            _check_keys(model, state, self.weights)
            model.load_state_dict(state)
            self._device = select_device(self._device_name)
            self._model = model.to(self._device).eval()
        return self._model


def _read_weights(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as err:  # safetensors raises its own error types for damaged files
            raise CheckpointError(f"{path} could not be read as safetensors: {err}") from err
    return load_checkpoint_file(path, trust=False, refused="use the model.safetensors of the published folder")


def _check_keys(model: Any, state: dict[str, Any], path: Path) -> None:
    expected = model.state_dict()
    for kind, keys in (("lacks", [k for k in expected if k not in state]),
                       ("has unexpected", [k for k in state if k not in expected])):  # fmt: skip
        if keys:
            raise CheckpointError(f"{path} {kind} key {keys[0]!r} ({len(keys)} in all) for its config.json")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: {key!r} has shape {tuple(value.shape)}, config.json implies {tuple(expected[key].shape)}"
            )


def _model_class() -> Any:
    import torch
    from torch import nn
    from transformers.activations import ACT2FN

    class Layer(nn.Module):
        """One MoLFormer block, with the published module names."""

        def __init__(self, c: dict[str, Any]) -> None:
            super().__init__()
            d, eps = c["hidden_size"], c.get("layer_norm_eps", 1e-12)
            self.heads, self.eps_attention = c["num_attention_heads"], c.get("linear_attention_eps", 1e-6)
            head = d // self.heads
            self.attention = nn.Module()
            self.attention.self = nn.Module()
            for name in ("query", "key", "value"):
                setattr(self.attention.self, name, nn.Linear(d, d))
            self.attention.self.feature_map = nn.Module()
            self.attention.self.feature_map.register_buffer("weight", torch.zeros(head, c["num_random_features"]))
            self.attention.output = nn.Module()
            self.attention.output.dense = nn.Linear(d, d)
            self.attention.output.LayerNorm = nn.LayerNorm(d, eps=eps)
            self.intermediate = nn.Module()
            self.intermediate.dense = nn.Linear(d, c["intermediate_size"])
            self.output = nn.Module()
            self.output.dense = nn.Linear(c["intermediate_size"], d)
            self.output.LayerNorm = nn.LayerNorm(d, eps=eps)
            self.act = ACT2FN[c.get("hidden_act", "gelu")]
            self.kernel = ACT2FN[c.get("feature_map_kernel", "relu")]

        def forward(self, x: Any, mask: Any, cos: Any, sin: Any) -> Any:
            n, length, d = x.shape
            a = self.attention.self

            def heads(t: Any) -> Any:
                return t.view(n, length, self.heads, d // self.heads).transpose(1, 2)

            q, k, v = heads(a.query(x)), heads(a.key(x)), heads(a.value(x))
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            q, k = self.kernel(q @ a.feature_map.weight), self.kernel(k @ a.feature_map.weight)
            k = k * mask[:, None, :, None]
            norm = (q @ k.sum(dim=-2).unsqueeze(-1)).clamp(min=self.eps_attention)
            context = ((q @ (k.transpose(-1, -2) @ v)) / norm).transpose(1, 2).reshape(n, length, d)
            x = self.attention.output.LayerNorm(self.attention.output.dense(context) + x)
            return self.output.LayerNorm(self.output.dense(self.act(self.intermediate.dense(x))) + x)

    class Model(nn.Module):
        def __init__(self, c: dict[str, Any]) -> None:
            super().__init__()
            d = c["hidden_size"]
            self.embeddings = nn.Module()
            self.embeddings.word_embeddings = nn.Embedding(c["vocab_size"], d)
            self.encoder = nn.Module()
            self.encoder.layer = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
            self.LayerNorm = nn.LayerNorm(d, eps=c.get("layer_norm_eps", 1e-12))
            head = d // c["num_attention_heads"]
            self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, head, 2).float() / head), persistent=False)

        def forward(self, input_ids: Any, mask: Any) -> Any:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device, dtype=self.inv_freq.dtype)
            angles = torch.outer(positions, self.inv_freq)
            angles = torch.cat([angles, angles], dim=-1)
            cos, sin = angles.cos(), angles.sin()
            x = self.embeddings.word_embeddings(input_ids)
            for layer in self.encoder.layer:
                x = layer(x, mask, cos, sin)
            return self.LayerNorm(x)

    return Model


def _rotate_half(x: Any) -> Any:
    import torch

    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)
