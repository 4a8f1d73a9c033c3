"""scFoundation (Hao et al., Nature Methods 2024) cell embeddings of bulk expression, from the published models.ckpt.

The checkpoint directory holds the authors' ``models.ckpt``: ``{"gene" | "cell" | "rde": {"config": ..., "state_dict":
{"model.<name>": tensor}}}``; the ``cell`` model is used (``--version ce``). The steps are the bulk mode of the authors'
``model/get_embedding.py`` as they ran it for DeepCDR (``--input_type bulk --output_type cell --pre_normalized T``):

1. align expression to the bundled 19,264-gene panel by symbol; panel genes absent or unmeasured (NaN) are 0;
2. ``normalize="log1p-cp10k"`` (default): each profile is scaled to sum 1e4 and log1p-transformed, exactly what the
   authors' ``DeepCDR/prog/run_pytorch_embedding.py`` did to DeepCDR's log2(TPM+1) (this data) before embedding it;
   ``"none"`` feeds the values as they are (their bulk mode with ``--pre_normalized T`` on any pre-normalised input);
3. append the T and S total-count tokens: in bulk mode with pre-normalised input both are the sum of the row
   (``tgthighres`` applies to single-cell input only);
4. keep the positive tokens in panel order (``gatherData``); value embedding = AutoDiscretizationEmbedding2, plus the
   gene position embedding (T and S at positions 19264 and 19265); transformer encoder; final LayerNorm;
5. pool: ``max`` over all tokens (hidden-d; what the authors used for DeepCDR), or ``all`` = [S, T, max over genes,
   mean over genes] (4 x hidden).

The published file pickles Python objects besides tensors: it loads only with ``trust_checkpoint=True``. Because the
output size lives in that file, the constructor reads its config (memory-mapped, cheap); weights load on first embed.
"""

from __future__ import annotations

from functools import cache
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

FILES = ["models.ckpt"]
HINT = (
    "Download models.ckpt (scFoundation; its 'cell' model is used) from the link in model/README.md of "
    "github.com/biomap-research/scFoundation; the weights are under the authors' non-commercial model licence."
)
TRUST_ADVICE = (
    "the published models.ckpt is such a file. If you trust it (e.g. you downloaded it from the authors' link), "
    "pass --trust-checkpoint (trust_checkpoint=True)"
)
PANEL = Path(__file__).parent / "data" / "scfoundation_genes.tsv"
MODEL = "cell"
POOLS = {"max": 1, "all": 4}
NORMALIZATIONS = ("log1p-cp10k", "none")
DECODER = ("decoder.", "decoder_embed.", "norm.", "to_final.")
"""The MAE decoder's part of the state dict; cell embeddings come from the encoder alone."""


class ScFoundationEncoder(GeneVocabularyEncoder):
    name = "scfoundation"
    label = "scFoundation"
    entity = "cell"
    modality = "expression"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        device: str = "auto",
        pool: str = "max",
        trust_checkpoint: bool = False,
        normalize: str = "log1p-cp10k",
    ) -> None:
        if pool not in POOLS:
            raise EncoderError(f"pool must be one of {', '.join(POOLS)}, not {pool!r}")
        if normalize not in NORMALIZATIONS:
            raise EncoderError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, not {normalize!r}")
        self._file = resolve_checkpoint(self.name, checkpoint, FILES, HINT) / "models.ckpt"
        self._sha = file_sha256(self._file)
        stat = self._file.stat()
        self._config = _read_config(str(self._file.resolve()), stat.st_size, stat.st_mtime_ns, trust_checkpoint)
        self.pool = pool
        self.normalize = normalize
        self.trust_checkpoint = trust_checkpoint
        self.dim = self._config["hidden_dim"] * POOLS[pool]
        self._device_name = device
        self._model: Any = None
        self._device: Any = None
        self._columns_of: tuple[tuple[str, ...], np.ndarray, np.ndarray] | None = None

    def settings(self) -> dict[str, Any]:
        return {
            "model": MODEL,
            "pool": self.pool,
            "input_type": "bulk",
            "normalize": self.normalize,
            "absent_genes": "zero",
            "total_count_tokens": "T = S = sum of the (normalised) panel row",
            "tgthighres": "unused (bulk input)",
            "gene_panel_sha256": file_sha256(PANEL),
        }

    def weights_sha256(self) -> str:
        return self._sha

    def model_info(self) -> dict[str, Any]:
        return {"model": f"scFoundation ({MODEL})", "path": str(self._file), "config": self._config}

    def fit(self, batch: CellBatch) -> dict[str, Any]:
        """Report how the input covers the panel; panel genes it lacks are zero for every cell line."""
        columns, _ = self._columns(batch.genes)
        matched = set(columns.tolist())
        return {
            "genes_in_panel": f"{len(columns)}/{len(batch.genes)}",
            "genes_not_in_panel": [g for i, g in enumerate(batch.genes) if i not in matched],
            "panel_coverage": f"{len(columns)}/{len(gene_panel())} panel genes from the input, the rest zero-filled",
        }

    def known_columns(self, genes: list[str]) -> np.ndarray:
        return self._columns(genes)[0]

    def embed(self, batch: CellBatch) -> np.ndarray:
        import torch

        from fused_cache.devices import inference

        model = self._load_model()
        columns, positions = self._columns(batch.genes)
        rows = np.nan_to_num(batch.values[:, columns].astype(np.float64), nan=0.0)
        if self.normalize == "log1p-cp10k":
            rows = np.log1p(rows / rows.sum(axis=1, keepdims=True) * 1e4)
        n_panel = len(gene_panel())
        token_positions = np.concatenate([positions, [n_panel, n_panel + 1]])
        cells = []
        for row in rows:
            tokens = np.concatenate([row, [row.sum(), row.sum()]]).astype(np.float32)
            cells.append((tokens[tokens > 0], token_positions[tokens > 0]))
        lengths = np.array([len(tokens) for tokens, _ in cells])
        if (lengths < 3).any():
            cell = batch.ids[int(np.flatnonzero(lengths < 3)[0])]
            raise EncoderError(f"cell {cell!r}: no gene of the scFoundation panel is expressed")
        pad = self._config["pad_token_id"]
        values = np.full((len(cells), lengths.max()), pad, dtype=np.float32)
        places = np.full(values.shape, pad, dtype=np.int64)
        for i, (tokens, token_places) in enumerate(cells):
            values[i, : lengths[i]] = tokens
            places[i, : lengths[i]] = token_places
        padding = np.arange(values.shape[1])[None, :] >= lengths[:, None]
        with inference(self._device):
            device = self._device
            out = _encode(model, self._config, *(torch.from_numpy(a).to(device) for a in (values, places, padding)))
            return _pool(out.float(), torch.from_numpy(padding).to(device), self.pool).cpu().numpy()

    def _columns(self, genes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Input columns whose gene is in the panel, in panel order, and their panel positions (memoised)."""
        if self._columns_of is None or self._columns_of[0] != tuple(genes):
            position = {g: i for i, g in enumerate(gene_panel())}
            found: dict[str, int] = {}
            for i, gene in enumerate(genes):
                if gene in position:
                    if gene in found:
                        raise EncoderError(f"gene {gene!r} occurs twice in the expression columns")
                    found[gene] = i
            ordered = sorted(found, key=position.__getitem__)
            self._columns_of = (
                tuple(genes),
                np.array([found[g] for g in ordered], dtype=np.int64),
                np.array([position[g] for g in ordered], dtype=np.int64),
            )
        return self._columns_of[1], self._columns_of[2]

    def _load_model(self) -> Any:
        if self._model is None:
            from fused_cache.devices import select_device

            entry = _model_entry(load_checkpoint_file(self._file, self.trust_checkpoint, TRUST_ADVICE), self._file)
            state = {}
            for key, value in entry["state_dict"].items():
                if not str(key).startswith("model."):
                    raise CheckpointError(f"{self._file}: state_dict key {key!r} lacks the published 'model.' prefix")
                if not str(key).startswith(tuple(f"model.{part}" for part in DECODER)):
                    state[str(key).removeprefix("model.")] = value
            model = _build_model(self._config)
            fields = ", ".join(
                f"{k}={v}" for k, v in self._config.items() if k not in ("pad_token_id", "mask_token_id")
            )
            load_state_checked(model, state, self._file, f"the {MODEL!r} config ({fields})")
            self._device = select_device(self._device_name)
            self._model = model.to(self._device).eval()
        return self._model


@cache
def gene_panel() -> tuple[str, ...]:
    """The 19,264 panel genes in model position order (the file's ``index`` column is checked to be 0..n-1)."""
    lines = PANEL.read_text().splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    if lines[0].split("\t") != ["gene_name", "index"] or [int(i) for _, i in rows] != list(range(len(rows))):
        raise EncoderError(f"{PANEL} is damaged: expected columns gene_name, index with index 0..n-1")
    return tuple(gene for gene, _ in rows)


@cache
def _read_config(path: str, size: int, mtime_ns: int, trust: bool) -> dict[str, Any]:
    """The cell model's encoder config, memoised per (file, size, mtime) like the weights' sha."""
    entry = _model_entry(load_checkpoint_file(Path(path), trust, TRUST_ADVICE), Path(path))
    config = entry["config"]
    try:
        merged = {**config["model_config"][config["model"]], **config["dataset_config"]["rnaseq"]}
    except (KeyError, TypeError) as err:
        raise CheckpointError(
            f"{path}: the {MODEL!r} config lacks {err} (published: config['model'], config['model_config'][model], "
            "config['dataset_config']['rnaseq'])"
        ) from None
    needed = ("seq_len", "bin_num", "bin_alpha", "pad_token_id", "mask_token_id")
    encoder = merged.get("encoder") if isinstance(merged.get("encoder"), dict) else {}
    missing = [f for f in needed if f not in merged] + [
        f"encoder.{f}" for f in ("hidden_dim", "depth", "heads", "module_type") if f not in encoder
    ]
    if missing:
        raise CheckpointError(f"{path}: the {MODEL!r} config lacks {', '.join(missing)}")
    if config["model"] != "mae_autobin" or encoder["module_type"] != "transformer":
        raise CheckpointError(
            f"{path}: the {MODEL!r} model is {config['model']!r} with a {encoder['module_type']!r} encoder; only "
            "'mae_autobin' with a 'transformer' encoder (the published cell model) is implemented"
        )
    if encoder["hidden_dim"] % encoder["heads"]:
        raise CheckpointError(
            f"{path}: encoder hidden_dim={encoder['hidden_dim']} is not divisible by heads={encoder['heads']}"
        )
    if merged["seq_len"] < len(gene_panel()) + 2:
        raise CheckpointError(
            f"{path}: seq_len={merged['seq_len']}, but the {len(gene_panel())}-gene panel plus the T and S tokens "
            f"needs {len(gene_panel()) + 2}"
        )
    return {
        "hidden_dim": int(encoder["hidden_dim"]),
        "depth": int(encoder["depth"]),
        "heads": int(encoder["heads"]),
        "seq_len": int(merged["seq_len"]),
        "bin_num": int(merged["bin_num"]),
        "bin_alpha": float(merged["bin_alpha"]),
        "pad_token_id": int(merged["pad_token_id"]),
        "mask_token_id": int(merged["mask_token_id"]),
    }


def _model_entry(ckpt: Any, path: Path) -> dict[str, Any]:
    if not isinstance(ckpt, dict) or MODEL not in ckpt:
        keys = ", ".join(map(repr, ckpt)) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} has no {MODEL!r} model ({keys}); it should be the published models.ckpt")
    entry = ckpt[MODEL]
    if not isinstance(entry, dict) or not {"config", "state_dict"} <= set(entry):
        raise CheckpointError(f"{path}: {MODEL!r} must hold 'config' and 'state_dict', as the published file does")
    return entry


def _build_model(config: dict[str, Any]) -> Any:
    """MaeAutobin's encoder side (token_emb, pos_emb, encoder), named as in the published state dict, no dropout."""
    from torch import nn

    d, bins = config["hidden_dim"], config["bin_num"]
    model = nn.Module()
    model.token_emb = nn.Module()
    model.token_emb.mlp = nn.Linear(1, bins)
    model.token_emb.mlp2 = nn.Linear(bins, bins)
    model.token_emb.emb = nn.Embedding(bins, d)
    model.token_emb.emb_mask = nn.Embedding(1, d)
    model.token_emb.emb_pad = nn.Embedding(1, d)
    model.pos_emb = nn.Embedding(config["seq_len"] + 1, d)
    model.encoder = nn.Module()
    model.encoder.transformer_encoder = nn.ModuleList(
        nn.TransformerEncoderLayer(d, config["heads"], 4 * d, dropout=0.0, batch_first=True)
        for _ in range(config["depth"])
    )
    model.encoder.norm = nn.LayerNorm(d)
    return model


def _encode(model: Any, config: dict[str, Any], values: Any, positions: Any, padding: Any) -> Any:
    """AutoDiscretizationEmbedding2 + position embedding -> transformer encoder -> LayerNorm: (cells, tokens, d)."""
    import torch

    token_emb = model.token_emb
    hidden = torch.nn.functional.leaky_relu(token_emb.mlp(values.unsqueeze(-1)), 0.1)
    weights = torch.softmax(config["bin_alpha"] * hidden + token_emb.mlp2(hidden), dim=-1)
    x = weights @ token_emb.emb.weight
    x = torch.where((values == config["mask_token_id"]).unsqueeze(-1), token_emb.emb_mask.weight[0], x)
    x = torch.where((values == config["pad_token_id"]).unsqueeze(-1), token_emb.emb_pad.weight[0], x)
    x = x + model.pos_emb(positions)
    keep = ~padding[:, None, None, :]
    for layer in model.encoder.transformer_encoder:
        x = post_norm_layer(layer, x, keep)
    return model.encoder.norm(x)


def _pool(out: Any, padding: Any, pool: str) -> Any:
    """get_embedding.py's pooling, with padded positions left out (the authors embed one cell at a time)."""
    import torch

    if pool == "max":
        return out.masked_fill(padding.unsqueeze(-1), float("-inf")).amax(dim=1)
    lengths = (~padding).sum(dim=1)
    rows = torch.arange(len(out), device=out.device)
    genes = torch.arange(out.shape[1], device=out.device)[None, :] < (lengths - 2)[:, None]
    gene_max = out.masked_fill(~genes.unsqueeze(-1), float("-inf")).amax(dim=1)
    gene_mean = (out * genes.unsqueeze(-1)).sum(dim=1) / genes.sum(dim=1, keepdim=True)
    return torch.cat([out[rows, lengths - 1], out[rows, lengths - 2], gene_max, gene_mean], dim=1)
