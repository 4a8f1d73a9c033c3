"""Tiny randomly initialised scGPT and scFoundation checkpoints, in exactly the layout their authors publish.

scGPT (the folder ``scGPT_human``): ``best_model.pt`` = the TransformerModel state dict (flash-attn naming
``self_attn.Wqkv`` unless ``flash_keys=False``; the pre-training heads included), ``vocab.json`` = gene symbol -> id
with ``<pad>``, ``<cls>``, ``<eoc>`` last, ``args.json`` = the published training arguments.
scFoundation: ``models.ckpt`` = ``{"gene" | "cell" | "rde": {"config": {"model", "model_config": {model: ...},
"dataset_config": {"rnaseq": ...}}, "state_dict": {"model.<name>": tensor}}}``, the MAE decoder (Performer) included.

Defaults are tiny; the published sizes are ``write_scgpt(d, embsize=512, nlayers=12, nheads=8, vocab_size=60697)`` and
``write_scfoundation(d, hidden=768, layers=12, heads=12, decoder_hidden=512, decoder_layers=6, decoder_heads=8)``.
"""

from __future__ import annotations

import datetime
import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import torch

from fused_cache import datasets

SCGPT_ARGS: dict[str, Any] = {
    "data_source": "/scratch/ssd004/datasets/cellxgene/scb_strict/human",
    "save_dir": "/scratch/ssd004/datasets/cellxgene/save/cellxgene_census_human-May23-08-36-2023",
    "load_model": None,
    "n_hvg": None,
    "valid_size_or_ratio": 0.003,
    "dist_backend": "nccl",
    "grad_accu_steps": 1,
    "pad_token": "<pad>",
    "input_style": "binned",
    "input_emb_style": "continuous",
    "n_bins": 51,
    "max_seq_len": 1200,
    "training_tasks": "both",
    "dist_url": "tcp://gpu188.cluster.local:53833",
    "mask_ratio": [0.25, 0.5, 0.75],
    "trunc_by_sample": True,
    "vocab_path": "/scratch/ssd004/datasets/cellxgene/scFormer/scformer/tokenizer/default_census_vocab.json",
    "rank": 0,
    "batch_size": 32,
    "eval_batch_size": 64,
    "epochs": 6,
    "lr": 0.0001,
    "scheduler_interval": 100,
    "scheduler_factor": 0.99,
    "warmup_ratio_or_step": 10000.0,
    "no_cls": True,
    "no_cce": True,
    "fp16": True,
    "fast_transformer": True,
    "nlayers": 12,
    "nheads": 8,
    "embsize": 512,
    "d_hid": 512,
    "dropout": 0.2,
    "n_layers_cls": 3,
    "log_interval": 9000,
    "save_interval": 27000,
    "mask_value": -1,
    "pad_value": -2,
    "USE_CLS": False,
    "USE_CCE": False,
    "MVC": True,
    "USE_GENERATIVE_TRAINING": True,
    "world_size": 16,
    "distributed": True,
    "local_rank": 0,
    "gpu": 0,
}
"""scGPT_human's args.json as published (the sizes are overridden by the writer's arguments)."""


@cache
def dataset_genes() -> tuple[str, ...]:
    """The bundled dataset's expression genes, from which the tiny scGPT vocabulary is built."""
    return tuple(datasets.load("gdsc-deepcdr").omics["expression"].columns)


def write_scgpt(
    directory: str | Path,
    *,
    embsize: int = 32,
    nlayers: int = 2,
    nheads: int = 2,
    d_hid: int | None = None,
    n_genes: int | None = None,
    vocab_size: int | None = None,
    flash_keys: bool = True,
    seed: int = 0,
) -> Path:
    """A random scGPT checkpoint folder; its vocabulary is the first ``n_genes`` dataset genes (sorted), padded with
    placeholder tokens up to ``vocab_size``, then ``<pad>``, ``<cls>``, ``<eoc>``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    genes = sorted(dataset_genes())[:n_genes]
    tokens = genes + [f"placeholder-{i}" for i in range(max(0, (vocab_size or 0) - len(genes) - 3))]
    vocab = {token: i for i, token in enumerate([*tokens, "<pad>", "<cls>", "<eoc>"])}
    d, hid = embsize, d_hid or embsize
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {
        "encoder.embedding.weight": _randn(gen, len(vocab), d, std=1.0),
        **_layer_norm(gen, "encoder.enc_norm", d),
        "flag_encoder.weight": _randn(gen, 2, d, std=1.0),
        **_linear(gen, "value_encoder.linear1", 1, d, std=0.1),
        **_linear(gen, "value_encoder.linear2", d, d),
        **_layer_norm(gen, "value_encoder.norm", d),
    }
    qkv = "self_attn.Wqkv." if flash_keys else "self_attn.in_proj_"
    for i in range(nlayers):
        prefix = f"transformer_encoder.layers.{i}."
        attention = _linear(gen, "qkv", d, 3 * d)
        state[f"{prefix}{qkv}weight"] = attention["qkv.weight"]
        state[f"{prefix}{qkv}bias"] = attention["qkv.bias"]
        state |= _linear(gen, f"{prefix}self_attn.out_proj", d, d)
        state |= _linear(gen, f"{prefix}linear1", d, hid) | _linear(gen, f"{prefix}linear2", hid, d)
        state |= _layer_norm(gen, f"{prefix}norm1", d) | _layer_norm(gen, f"{prefix}norm2", d)
    for i, (n_in, n_out) in zip((0, 2, 4), ((d, d), (d, d), (d, 1)), strict=True):
        state |= _linear(gen, f"decoder.fc.{i}", n_in, n_out)
    state |= _linear(gen, "mvc_decoder.gene2query", d, d)
    state["mvc_decoder.W.weight"] = _randn(gen, d, d)
    torch.save(state, directory / "best_model.pt")
    (directory / "vocab.json").write_text(json.dumps(vocab, indent=2))
    args = SCGPT_ARGS | {"embsize": embsize, "nlayers": nlayers, "nheads": nheads, "d_hid": hid}
    (directory / "args.json").write_text(json.dumps(args, indent=2))
    return directory


def write_scfoundation(
    directory: str | Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    decoder_hidden: int | None = None,
    decoder_layers: int = 1,
    decoder_heads: int = 2,
    models: tuple[str, ...] = ("gene", "cell", "rde"),
    plain_pickle: bool = False,
    seed: int = 0,
) -> Path:
    """A random ``models.ckpt`` (one entry per name in ``models``, each with its own weights). ``plain_pickle`` adds
    a non-tensor Python object, as the published file holds, so that only ``weights_only=False`` loads it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ckpt: dict[str, Any] = {}
    for k, name in enumerate(models):
        config = _scfoundation_config(hidden, layers, heads, decoder_hidden or hidden, decoder_layers, decoder_heads)
        gen = torch.Generator().manual_seed(seed + k)
        state = _scfoundation_state(gen, config["model_config"]["mae_autobin"])
        ckpt[name] = {"config": config, "state_dict": {f"model.{key}": value for key, value in state.items()}}
        if plain_pickle:
            ckpt[name]["saved"] = datetime.date(2023, 5, 1)
    torch.save(ckpt, directory / "models.ckpt")
    return directory


def _scfoundation_config(
    hidden: int, layers: int, heads: int, decoder_hidden: int, decoder_layers: int, decoder_heads: int
) -> dict[str, Any]:
    """The published config: model_config['mae_autobin'] and dataset_config['rnaseq'] (merged by load.convertconfig)."""
    seq_len = 19266
    model = {
        "mask_gene_name": False,
        "gene_num": seq_len,
        "seq_len": seq_len,
        "encoder": {
            "hidden_dim": hidden,
            "depth": layers,
            "heads": heads,
            "dim_head": hidden // heads,
            "seq_len": seq_len,
            "module_type": "transformer",
            "norm_first": False,
        },
        "decoder": {
            "hidden_dim": decoder_hidden,
            "depth": decoder_layers,
            "heads": decoder_heads,
            "dim_head": decoder_hidden // decoder_heads,
            "module_type": "performer",
            "seq_len": seq_len,
            "norm_first": False,
        },
        "n_class": 104,
        "pad_token_id": 103,
        "mask_token_id": 102,
        "bin_num": 100,
        "bin_alpha": 1.0,
        "rawcount": True,
        "model": "mae_autobin",
    }
    rnaseq = {
        "test_valid_train_idx_dict": "",
        "valid_data_path": "",
        "num_tokens": 13,
        "train_data_path": None,
        "isPanA": False,
        "isPlanA1": False,
        "max_files_to_load": 5,
        "bin_type": "auto_bin",
        "value_mask_prob": 0.3,
        "zero_mask_prob": 0.03,
        "replace_prob": 0.8,
        "random_token_prob": 0.1,
        "mask_ignore_token_ids": [0],
        "decoder_add_zero": True,
        "mae_encoder_max_seq_len": 15000,
        "isPlanA": False,
        "mask_prob": 0.3,
    }
    return {"model": "mae_autobin", "model_config": {"mae_autobin": model}, "dataset_config": {"rnaseq": rnaseq}}


def _scfoundation_state(gen: torch.Generator, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """MaeAutobin's state dict: token_emb, pos_emb, transformer encoder, Performer decoder and output head."""
    d, bins, dd = config["encoder"]["hidden_dim"], config["bin_num"], config["decoder"]["hidden_dim"]
    state = {
        **_linear(gen, "token_emb.mlp", 1, bins, std=1.0),
        **_linear(gen, "token_emb.mlp2", bins, bins),
        "token_emb.emb.weight": _randn(gen, bins, d, std=1.0),
        "token_emb.emb_mask.weight": _randn(gen, 1, d, std=1.0),
        "token_emb.emb_pad.weight": _randn(gen, 1, d, std=1.0),
        "pos_emb.weight": _randn(gen, config["seq_len"] + 1, d, std=1.0),
    }
    for i in range(config["encoder"]["depth"]):
        prefix = f"encoder.transformer_encoder.{i}."
        attention = _linear(gen, "qkv", d, 3 * d)
        state[f"{prefix}self_attn.in_proj_weight"] = attention["qkv.weight"]
        state[f"{prefix}self_attn.in_proj_bias"] = attention["qkv.bias"]
        state |= _linear(gen, f"{prefix}self_attn.out_proj", d, d)
        state |= _linear(gen, f"{prefix}linear1", d, 4 * d) | _linear(gen, f"{prefix}linear2", 4 * d, d)
        state |= _layer_norm(gen, f"{prefix}norm1", d) | _layer_norm(gen, f"{prefix}norm2", d)
    state |= _layer_norm(gen, "encoder.norm", d)
    dim_head, dec_heads = config["decoder"]["dim_head"], config["decoder"]["heads"]
    inner, features = dim_head * dec_heads, int(dim_head * math.log(dim_head))
    for i in range(config["decoder"]["depth"]):
        prefix = f"decoder.performer.net.layers.{i}."
        state |= _layer_norm(gen, f"{prefix}0.norm", dd)
        state[f"{prefix}0.fn.fast_attention.projection_matrix"] = _randn(gen, features, dim_head, std=1.0)
        for part in ("to_q", "to_k", "to_v"):
            state |= _linear(gen, f"{prefix}0.fn.{part}", dd, inner)
        state |= _linear(gen, f"{prefix}0.fn.to_out", inner, dd)
        state |= _layer_norm(gen, f"{prefix}1.norm", dd)
        state |= _linear(gen, f"{prefix}1.fn.fn.w1", dd, 4 * dd) | _linear(gen, f"{prefix}1.fn.fn.w2", 4 * dd, dd)
    state["decoder.performer.calls_since_last_redraw"] = torch.tensor(0)
    state |= _layer_norm(gen, "decoder.norm", dd)
    state |= _linear(gen, "decoder_embed", d, dd) | _layer_norm(gen, "norm", dd) | _linear(gen, "to_final", dd, 1)
    return state


def _randn(gen: torch.Generator, *shape: int, std: float | None = None) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * (shape[-1] ** -0.5 if std is None else std)


def _linear(gen: torch.Generator, name: str, n_in: int, n_out: int, std: float | None = None) -> dict[str, Any]:
    return {f"{name}.weight": _randn(gen, n_out, n_in, std=std), f"{name}.bias": _randn(gen, n_out, std=0.1)}


def _layer_norm(gen: torch.Generator, name: str, d: int) -> dict[str, torch.Tensor]:
    return {f"{name}.weight": 1 + _randn(gen, d, std=0.1), f"{name}.bias": _randn(gen, d, std=0.1)}
