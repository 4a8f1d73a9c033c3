"""Tiny randomly initialised molecular FM checkpoints, in exactly the layout their authors publish on Hugging Face.

ChemBERTa: a RoBERTa masked-LM folder as ``save_pretrained`` writes it (``config.json``, ``model.safetensors`` with
``roberta.``-prefixed keys and the ``lm_head``), plus a byte-level BPE ``vocab.json`` / ``merges.txt`` trained on the
bundled SMILES, ``tokenizer_config.json`` and no ``tokenizer.json`` (like seyonec/ChemBERTa-zinc-base-v1).
Full size: ``write_chemberta(d, hidden=768, layers=6, heads=12)``.
MoLFormer: ``config.json`` with the published fields, ``vocab.json`` and ``model.safetensors`` of MolformerForMaskedLM.
Full size: ``write_molformer(d, hidden=768, layers=12, heads=12, features=32)``.
"""

from __future__ import annotations

import json
from pathlib import Path

from fused_cache import datasets


def write_chemberta(directory: str | Path, *, hidden: int = 32, layers: int = 2, heads: int = 2, seed: int = 0) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(datasets.load("gdsc-deepcdr").drugs["smiles"], vocab_size=400, special_tokens=specials)
    bpe.save_model(str(directory))
    tokenizer = RobertaTokenizerFast.from_pretrained(directory)
    tokenizer.save_pretrained(directory)
    (directory / "tokenizer.json").unlink()
    config = RobertaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, max_position_embeddings=514, type_vocab_size=1,
    )  # fmt: skip
    torch.manual_seed(seed)
    RobertaForMaskedLM(config).save_pretrained(directory)
    return directory


MOLFORMER_CONFIG = {
    "architectures": ["MolformerForMaskedLM"],
    "model_type": "molformer",
    "vocab_size": 2362,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 768,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "embedding_dropout_prob": 0.2,
    "max_position_embeddings": 202,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "linear_attention_eps": 1e-6,
    "num_random_features": 32,
    "feature_map_kernel": "relu",
    "deterministic_eval": False,
    "pad_token_id": 2,
}
"""The published config.json's fields (ibm/MoLFormer-XL-both-10pct), sizes overridden by ``write_molformer``."""


def write_molformer(
    directory: str | Path, *, hidden: int = 32, layers: int = 2, heads: int = 2, features: int = 8, seed: int = 0
) -> Path:
    """A random MolformerForMaskedLM checkpoint: ``molformer.``-prefixed encoder keys, each layer's stored
    random-feature matrix ``attention.self.feature_map.weight`` (head_dim x num_random_features) and the LM head;
    the vocabulary covers the bundled SMILES."""
    import torch
    from safetensors.torch import save_file

    from fused_cache.encoders.molformer import PATTERN

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens = sorted({t for s in datasets.load("gdsc-deepcdr").drugs["smiles"] for t in PATTERN.findall(s)})
    vocab = {t: i for i, t in enumerate(["<bos>", "<eos>", "<pad>", "<unk>", "<mask>", *tokens])}
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * std

    d, n = hidden, len(vocab)
    state = {"molformer.embeddings.word_embeddings.weight": randn(n, d, std=1.0)}
    for i in range(layers):
        p = f"molformer.encoder.layer.{i}."
        for name, (n_in, n_out) in {"attention.self.query": (d, d), "attention.self.key": (d, d),
                                    "attention.self.value": (d, d), "attention.output.dense": (d, d),
                                    "intermediate.dense": (d, d), "output.dense": (d, d)}.items():  # fmt: skip
            state[f"{p}{name}.weight"], state[f"{p}{name}.bias"] = randn(n_out, n_in), randn(n_out)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            state[f"{p}{norm}.weight"], state[f"{p}{norm}.bias"] = 1 + randn(d, std=0.1), randn(d, std=0.1)
        state[f"{p}attention.self.feature_map.weight"] = randn(d // heads, features, std=1.0)
    state["molformer.LayerNorm.weight"], state["molformer.LayerNorm.bias"] = 1 + randn(d, std=0.1), randn(d, std=0.1)
    state["lm_head.transform.dense.weight"], state["lm_head.transform.dense.bias"] = randn(d, d), randn(d)
    state["lm_head.transform.LayerNorm.weight"], state["lm_head.transform.LayerNorm.bias"] = randn(d) + 1, randn(d)
    state["lm_head.decoder.weight"] = randn(n, d)
    save_file(state, directory / "model.safetensors", metadata={"format": "pt"})
    sizes = {"vocab_size": n, "hidden_size": d, "num_hidden_layers": layers, "num_attention_heads": heads}
    config = MOLFORMER_CONFIG | sizes | {"intermediate_size": d, "num_random_features": features}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    (directory / "vocab.json").write_text(json.dumps(vocab, indent=2))
    return directory
