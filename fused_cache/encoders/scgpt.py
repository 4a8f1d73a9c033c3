"""scGPT (Cui et al., Nature Methods 2024) cell embeddings from a local checkpoint, in plain torch.

The checkpoint directory is the one the authors publish (e.g. ``scGPT_human``): ``best_model.pt`` (a state dict, with
flash-attn's ``self_attn.Wqkv`` naming or torch's ``in_proj_``), ``vocab.json`` (gene symbol -> token id) and
``args.json`` (the training arguments). The steps follow the authors' ``scgpt.tasks.cell_emb.embed_data``: genes are
matched to the vocabulary by symbol; a cell's nonzero values are binned per cell into quantile bins 1..n_bins-1;
``<cls>`` (with value ``pad_value``) is prepended; gene embedding + continuous value encoding run through the post-norm
transformer layers; the ``<cls>`` output, L2-normalised, is the cell embedding.

Two steps that are random there are deterministic here, so that a store can be rebuilt bit for bit: values tied on
several bin edges are spread evenly over those bins (``bin_values``), and a cell with more than ``max_length - 1``
nonzero genes keeps a subset drawn with ``seed``. Bulk log2(TPM+1) is binned as it is: bins depend only on the order
of a cell's values, so any monotone normalisation (CP10k, log1p) would give the same bins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fused_cache.encoders.base import (
    CellBatch,
    CheckpointError,
    EncoderError,
    GeneVocabularyEncoder,
    file_sha256,
    resolve_checkpoint,
)
from fused_cache.encoders.torch_checkpoints import load_checkpoint_file, load_state_checked, post_norm_layer

FILES = ["best_model.pt", "vocab.json", "args.json"]
HINT = (
    "Get the scGPT whole-human model (the folder scGPT_human: best_model.pt, vocab.json, args.json) from the links "
    "in the README of github.com/bowang-lab/scGPT."
)
CONFIG_FIELDS = ("embsize", "nheads", "d_hid", "nlayers", "n_bins", "pad_token", "pad_value")
SPECIAL_TOKENS = ("<cls>", "<eoc>")
TRAINING_HEADS = ("decoder.", "mvc_decoder.", "flag_encoder.", "cls_decoder.")
"""Pre-training heads stored in the published state dict; the cell embedding never reads them."""
FLASH_RENAMES = (
    ("self_attn._impl.Wqkv.", "self_attn.in_proj_"),
    ("self_attn.Wqkv.", "self_attn.in_proj_"),
    ("self_attn._impl.out_proj.", "self_attn.out_proj."),
)
"""flash-attn packs q, k, v in one matrix exactly as torch's ``in_proj`` does (scgpt.utils.load_pretrained renames)."""
MAX_VALUE = 512
"""scGPT's ContinuousValueEncoder clips its input to this."""


class ScGPTEncoder(GeneVocabularyEncoder):
    name = "scgpt"
    label = "scGPT"
    entity = "cell"
    modality = "expression"

    def __init__(
        self, checkpoint: str | Path | None = None, device: str = "auto", max_length: int = 1200, seed: int = 0
    ) -> None:
        if max_length < 2:
            raise EncoderError(f"max_length must be at least 2 (<cls> and one gene), not {max_length}")
        self._dir = resolve_checkpoint(self.name, checkpoint, FILES, HINT)
        self._args = _read_args(self._dir / "args.json")
        self._vocab = _read_vocab(self._dir / "vocab.json", self._args["pad_token"])
        self._sha = file_sha256(self._dir / "best_model.pt")
        self.dim = self._args["embsize"]
        self.max_length = max_length
        self.seed = seed
        self._device_name = device
        self._model: Any = None
        self._device: Any = None
        self._columns_of: tuple[tuple[str, ...], np.ndarray, np.ndarray] | None = None

    def settings(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "seed": self.seed,
            "n_bins": self._args["n_bins"],
            "pad_value": self._args["pad_value"],
            "genes": "nonzero, matched by symbol",
            "binning": "per-cell quantiles; ties spread evenly over their bins in vocabulary order",
            "gene_selection": "all if they fit, else numpy default_rng(seed) subset per cell",
            "embedding": "cls, l2-normalised",
            "vocab_sha256": file_sha256(self._dir / "vocab.json"),
            "args_sha256": file_sha256(self._dir / "args.json"),
        }

    def weights_sha256(self) -> str:
        return self._sha

    def model_info(self) -> dict[str, Any]:
        return {
            "model": "scGPT",
            "path": str(self._dir),
            "config": {k: self._args[k] for k in CONFIG_FIELDS},
            "vocab_size": len(self._vocab),
        }

    def fit(self, batch: CellBatch) -> dict[str, Any]:
        """Report how many input genes the vocabulary knows; the others are left out of every cell."""
        columns, _ = self._columns(batch.genes)
        matched = set(columns.tolist())
        expressed = (batch.values[:, columns] > 0).sum(axis=1)
        return {
            "genes_matched": f"{len(columns)}/{len(batch.genes)}",
            "unmatched_genes": [g for i, g in enumerate(batch.genes) if i not in matched],
            "cells_over_max_length": int((expressed > self.max_length - 1).sum()),
        }

    def known_columns(self, genes: list[str]) -> np.ndarray:
        return self._columns(genes)[0]

    def embed(self, batch: CellBatch) -> np.ndarray:
        import torch

        from fused_cache.devices import inference

        model = self._load_model()
        columns, ids = self._columns(batch.genes)
        cells = [self._tokens(i, row, ids) for i, row in zip(batch.ids, batch.values[:, columns], strict=True)]
        lengths = np.array([len(genes) for genes, _ in cells])
        genes = np.full((len(cells), lengths.max()), self._vocab[self._args["pad_token"]], dtype=np.int64)
        values = np.full(genes.shape, self._args["pad_value"], dtype=np.float32)
        for row, (cell_genes, cell_values) in enumerate(cells):
            genes[row, : len(cell_genes)] = cell_genes
            values[row, : len(cell_values)] = cell_values
        padding = np.arange(genes.shape[1])[None, :] >= lengths[:, None]
        with inference(self._device):
            out = _cls_output(model, *(torch.from_numpy(a).to(self._device) for a in (genes, values, padding)))
            return torch.nn.functional.normalize(out.float(), dim=1).cpu().numpy()

    def _tokens(self, cell_id: str, row: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One cell's token ids and binned values: ``<cls>`` first, then its expressed genes in vocabulary order."""
        expressed = row > 0
        if not expressed.any():
            raise EncoderError(f"cell {cell_id!r}: no gene of the scGPT vocabulary is expressed")
        genes, values = ids[expressed], bin_values(row[expressed], self._args["n_bins"])
        if len(genes) > self.max_length - 1:
            keep = np.sort(np.random.default_rng(self.seed).choice(len(genes), self.max_length - 1, replace=False))
            genes, values = genes[keep], values[keep]
        return (
            np.concatenate([[self._vocab["<cls>"]], genes]),
            np.concatenate([[self._args["pad_value"]], values]).astype(np.float32),
        )

    def _columns(self, genes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Input columns whose gene is in the vocabulary, sorted by token id, and those ids (memoised per gene list)."""
        if self._columns_of is None or self._columns_of[0] != tuple(genes):
            specials = {self._args["pad_token"], *SPECIAL_TOKENS}
            found: dict[str, int] = {}
            for i, gene in enumerate(genes):
                if gene in self._vocab and gene not in specials:
                    if gene in found:
                        raise EncoderError(f"gene {gene!r} occurs twice in the expression columns")
                    found[gene] = i
            ids = np.array([self._vocab[g] for g in found], dtype=np.int64)
            order = np.argsort(ids, kind="stable")
            self._columns_of = (tuple(genes), np.array(list(found.values()), dtype=np.int64)[order], ids[order])
        return self._columns_of[1], self._columns_of[2]

    def _load_model(self) -> Any:
        if self._model is None:
            from fused_cache.devices import select_device

            path = self._dir / "best_model.pt"
            advice = "the published best_model.pt is a plain state dict; re-save yours with torch.save(state_dict)"
            state = load_checkpoint_file(path, trust=False, refused=advice)
            if not isinstance(state, dict):
                raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
            state = {_canonical_key(str(k)): v for k, v in state.items() if not str(k).startswith(TRAINING_HEADS)}
            model = _build_model(len(self._vocab), self._args)
            fields = ", ".join(f"{k}={self._args[k]}" for k in ("embsize", "d_hid", "nlayers"))
            load_state_checked(model, state, path, f"args.json ({fields}) and vocab.json ({len(self._vocab)} tokens)")
            self._device = select_device(self._device_name)
            self._model = model.to(self._device).eval()
        return self._model


def bin_values(values: np.ndarray, n_bins: int) -> np.ndarray:
    """scGPT's binning of one cell's nonzero values into 1..n_bins-1 by per-cell quantiles, without its randomness.

    scGPT (``preprocess.binning``) cuts at ``n_bins - 1`` quantiles of the cell's values. A value equal to several
    coinciding cut points (which happens when values tie) goes to a uniformly random one of the bins they span. Here
    the values of such a tie are spread evenly over those bins in their given order instead: reproducible, and with
    the bin counts the random assignment has on average. Every other value gets scGPT's bin.
    """
    edges = np.quantile(values, np.linspace(0, 1, n_bins - 1))
    high = np.digitize(values, edges)
    low = np.digitize(values, edges, right=True) + 1
    bins = high.copy()
    for value in np.unique(values[high > low]):
        tied = np.flatnonzero(values == value)
        span = high[tied[0]] - low[tied[0]] + 1
        bins[tied] = low[tied[0]] + np.arange(len(tied)) * span // len(tied)
    return bins


def _canonical_key(key: str) -> str:
    for old, new in FLASH_RENAMES:
        key = key.replace(old, new)
    return key


def _build_model(n_tokens: int, args: dict[str, Any]) -> Any:
    """scGPT's module tree (so that state dict keys match) with inference-only layers: no dropout, no heads."""
    from torch import nn

    d = args["embsize"]
    model = nn.Module()
    model.encoder = nn.Module()
    model.encoder.embedding = nn.Embedding(n_tokens, d)
    model.encoder.enc_norm = nn.LayerNorm(d)
    model.value_encoder = nn.Module()
    model.value_encoder.linear1 = nn.Linear(1, d)
    model.value_encoder.linear2 = nn.Linear(d, d)
    model.value_encoder.norm = nn.LayerNorm(d)
    model.transformer_encoder = nn.Module()
    model.transformer_encoder.layers = nn.ModuleList(
        nn.TransformerEncoderLayer(d, args["nheads"], args["d_hid"], dropout=0.0, batch_first=True)
        for _ in range(args["nlayers"])
    )
    return model


def _cls_output(model: Any, genes: Any, values: Any, padding: Any) -> Any:
    """TransformerModel._encode (gene embedding + continuous value encoding -> post-norm layers), at ``<cls>``."""
    import torch

    x = model.encoder.enc_norm(model.encoder.embedding(genes))
    encoder = model.value_encoder
    hidden = torch.relu(encoder.linear1(values.clamp(max=MAX_VALUE).unsqueeze(-1)))
    x = x + encoder.norm(encoder.linear2(hidden))
    keep = ~padding[:, None, None, :]
    for layer in model.transformer_encoder.layers:
        x = post_norm_layer(layer, x, keep)
    return x[:, 0]


def _read_args(path: Path) -> dict[str, Any]:
    """args.json, checked for the fields the cell embedding needs and for options this implementation lacks."""
    try:
        args = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable JSON file: {err}") from err
    if not isinstance(args, dict):
        raise CheckpointError(f"{path} must hold a JSON object of training arguments")
    missing = [f for f in CONFIG_FIELDS if f not in args]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)} (the published args.json has them)")
    sizes = ("embsize", "nheads", "d_hid", "nlayers", "n_bins")
    wrong = [f"{f}={args[f]!r}" for f in sizes if not isinstance(args[f], int) or args[f] < 1]
    if wrong or args["n_bins"] < 3 or args["embsize"] % args["nheads"]:
        raise CheckpointError(
            f"{path}: sizes must be positive integers, n_bins >= 3 and embsize divisible by nheads "
            f"({', '.join(wrong) or ', '.join(f'{f}={args[f]}' for f in sizes)})"
        )
    if args.get("input_emb_style", "continuous") != "continuous":
        raise CheckpointError(
            f"{path}: input_emb_style={args['input_emb_style']!r}; only 'continuous' (the published models and "
            "scGPT's embed_data) is implemented"
        )
    if args.get("pre_norm"):
        raise CheckpointError(f"{path}: pre_norm=true; only post-norm layers (the published models) are implemented")
    return args


def _read_vocab(path: Path, pad_token: str) -> dict[str, int]:
    """vocab.json (token -> consecutive ids); missing special tokens are appended, as scGPT's embed_data does."""
    try:
        vocab = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable JSON file: {err}") from err
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise CheckpointError(f"{path} must map tokens to integer ids")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise CheckpointError(f"{path}: token ids must be 0..{len(vocab) - 1}, each once")
    for token in (pad_token, *SPECIAL_TOKENS):
        vocab.setdefault(token, len(vocab))
    return vocab
