"""Tiny randomly initialised molecular FM checkpoints, in exactly the layout their authors publish on Hugging Face.

ChemBERTa: a RoBERTa masked-LM folder as ``save_pretrained`` writes it (``config.json``, ``model.safetensors`` with
``roberta.``-prefixed keys and the ``lm_head``), plus a byte-level BPE ``vocab.json`` / ``merges.txt`` trained on the
bundled SMILES, ``tokenizer_config.json`` and no ``tokenizer.json`` (like seyonec/ChemBERTa-zinc-base-v1).
Full size: ``write_chemberta(d, hidden=768, layers=6, heads=12)``.
"""

from __future__ import annotations

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
