"""ChemBERTa (Chithrananda et al. 2020; Ahmad et al. 2022): a RoBERTa masked-language model over SMILES.

The checkpoint is a Hugging Face RoBERTa folder as published (e.g. ``seyonec/ChemBERTa-zinc-base-v1``, 768-d, or
``DeepChem/ChemBERTa-77M-MLM``, 384-d): ``config.json``, ``vocab.json`` + ``merges.txt`` (byte-level BPE) and the
weights. The embedding is the masked mean of the last hidden states over a SMILES' tokens (``pooling="mean"``) or the
first token's (``"cls"``); never ``pooler_output``: an MLM checkpoint has no trained pooler. SMILES are used as given
(RDKit must parse them); one longer than ``max_length`` tokens is rejected rather than silently truncated.
"""

from __future__ import annotations

import json
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

FILES = ["config.json", "vocab.json", "merges.txt"]
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
HINT = (
    "Download a ChemBERTa folder (e.g. seyonec/ChemBERTa-zinc-base-v1 or DeepChem/ChemBERTa-77M-MLM) from the "
    "Hugging Face hub on a machine with internet access, with its weights (model.safetensors or pytorch_model.bin)."
)
POOLINGS = ("mean", "cls")


class ChemBERTaEncoder(Encoder):
    name = "chemberta"
    entity = "drug"

    def __init__(
        self, checkpoint: str | Path | None = None, device: str = "auto", pooling: str = "mean", max_length: int = 512
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        self.path = resolve_checkpoint(self.name, checkpoint, FILES, HINT)
        self.weights = weights_file(self.path, WEIGHTS, HINT)
        self.config = json.loads((self.path / "config.json").read_text())
        if self.config.get("model_type") != "roberta":
            raise CheckpointError(
                f"{self.path / 'config.json'} describes a {self.config.get('model_type')!r} model; ChemBERTa is RoBERTa"
            )
        self.dim = int(self.config["hidden_size"])
        limit = int(self.config.get("max_position_embeddings", 514)) - 2  # RoBERTa offsets positions by the pad id
        self.max_length = min(max_length, limit)
        self.pooling = pooling
        self._device_name = device
        self._model: Any = None
        self._tokenizer: Any = None

    def settings(self) -> dict[str, Any]:
        return {"pooling": self.pooling, "max_length": self.max_length, "smiles": "as given"}

    def weights_sha256(self) -> str:
        return file_sha256(self.weights)

    def model_info(self) -> dict[str, Any]:
        return {"model": self.config.get("_name_or_path", "ChemBERTa"), "path": str(self.path)}

    def lengths(self, batch: DrugBatch) -> np.ndarray:
        tokenizer = self._load_tokenizer()
        return np.array([len(tokenizer(s)["input_ids"]) for s in batch.smiles])

    def check(self, batch: DrugBatch) -> dict[str, str]:
        bad = invalid_smiles(batch)
        tokenizer = self._load_tokenizer()
        for drug_id, smiles in zip(batch.ids, batch.smiles, strict=True):
            if drug_id in bad:
                continue
            n = len(tokenizer(smiles)["input_ids"])
            if n > self.max_length:
                bad[drug_id] = f"SMILES is {n} tokens; this ChemBERTa takes at most {self.max_length}"
        return bad

    def embed(self, batch: DrugBatch) -> np.ndarray:

        from fused_cache.devices import inference

        model = self._load_model()
        tokens = self._load_tokenizer()(list(batch.smiles), padding=True, return_tensors="pt")
        tokens = {k: v.to(self._device) for k, v in tokens.items()}
        with inference(self._device):
            hidden = model(**tokens).last_hidden_state.float()
        if self.pooling == "cls":
            return hidden[:, 0].cpu().numpy()
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(dim=1) / mask.sum(dim=1)).cpu().numpy().astype(np.float32)

    def _load_tokenizer(self) -> Any:
        """The folder's byte-level BPE tokenizer, checked to be non-empty (a broken vocab would map all to <unk>)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            ids = tokenizer("CCO")["input_ids"]
            if len(tokenizer) < 10 or tokenizer.unk_token_id in ids:
                raise CheckpointError(
                    f"the tokenizer in {self.path} (vocab.json, merges.txt) is empty or does not cover SMILES"
                )
            self._tokenizer = tokenizer
        return self._tokenizer

    def _load_model(self) -> Any:
        if self._model is None:
            from transformers import RobertaModel
            from transformers.utils import logging

            from fused_cache.devices import select_device

            logging.set_verbosity_error()
            logging.disable_progress_bar()
            try:
                model, info = RobertaModel.from_pretrained(
                    self.path, local_files_only=True, output_loading_info=True, add_pooling_layer=False
                )
            except (OSError, RuntimeError, ValueError) as err:
                raise CheckpointError(f"{self.weights} does not match {self.path / 'config.json'}: {err}") from err
            unexpected = sorted(k for k in info["unexpected_keys"] if not k.startswith("lm_head."))
            for kind, keys in (("lacks", sorted(info["missing_keys"])), ("has unexpected", unexpected),
                               ("has misshapen", sorted(map(str, info["mismatched_keys"])))):  # fmt: skip
                if keys:
                    raise CheckpointError(f"{self.weights} {kind} key {keys[0]!r} ({len(keys)} in all) for config.json")
            self._device = select_device(self._device_name)
            self._model = model.to(self._device).eval()
        return self._model
