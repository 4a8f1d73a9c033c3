"""ChemNet (Preuer et al. 2018), the pretrained SMILES network shipped inside the PyPI package ``fcd``.

The embedding is ChemNet's 512-d penultimate activation, as used by the Fréchet ChemNet Distance. Like MiniMol
(``minimol.py``) it needs no download. SMILES are validated and canonicalised with RDKit first, because ChemNet
itself embeds any string, garbage included. torch and the model load on the first ``embed``, so that a no-op
rebuild (which needs only the fingerprint) stays fast.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from rdkit import Chem

from fused_cache.encoders.base import DrugBatch, Encoder, file_sha256, invalid_smiles

PAD_LEN = 350
"""ChemNet's input length; longer SMILES would change the padding of their whole batch, so they are rejected."""
FORWARD_BATCH = 32
"""Molecules per forward pass, always. oneDNN picks its kernels by shape: a molecule's embedding differed in the last
bits (up to 6e-6) between passes of 1-3 molecules and larger ones, so a store's bytes depended on --batch-size. With
one fixed shape (a short pass is padded with copies of its last molecule) they do not."""


class ChemNetEncoder(Encoder):
    name = "chemnet"
    entity = "drug"
    dim = 512
    version = 2  # 2: forward passes of FORWARD_BATCH molecules, whatever the build's batch size

    def __init__(self, device: str = "auto") -> None:
        spec = importlib.util.find_spec("fcd")
        if spec is None or spec.origin is None:
            raise ImportError("the chemnet encoder needs the PyPI package 'fcd' (pip install fcd)")
        self._weights = Path(spec.origin).parent / "ChemNet_v0.13_pretrained.pt"
        self._device_name = device
        self._model: Any = None

    def settings(self) -> dict[str, Any]:
        return {"canonical_smiles": True, "pad_len": PAD_LEN, "layer": "penultimate"}

    def weights_sha256(self) -> str:
        return file_sha256(self._weights)

    def model_info(self) -> dict[str, Any]:
        return {"model": "ChemNet v0.13 (fcd)", "revision": metadata.version("fcd"), "path": str(self._weights)}

    def check(self, batch: DrugBatch) -> dict[str, str]:
        bad = invalid_smiles(batch)
        for drug_id, smiles in zip(batch.ids, batch.smiles, strict=True):
            length = 0 if drug_id in bad else len(_canonical(smiles))
            if length >= PAD_LEN:
                bad[drug_id] = f"canonical SMILES is {length} characters; ChemNet takes < {PAD_LEN}"
        return bad

    def embed(self, batch: DrugBatch) -> np.ndarray:
        import torch
        from fcd import load_ref_model
        from fcd.utils import get_one_hot

        from fused_cache.devices import inference, select_device

        if self._model is None:
            self._device = select_device(self._device_name)
            self._model = load_ref_model().to(self._device).eval()
        onehot = np.stack([get_one_hot(_canonical(s), pad_len=PAD_LEN) for s in batch.smiles])
        out = []
        for start in range(0, len(onehot), FORWARD_BATCH):
            chunk = onehot[start : start + FORWARD_BATCH]
            n = len(chunk)
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], FORWARD_BATCH - n, axis=0)])
            x = torch.from_numpy(chunk).transpose(1, 2).float().to(self._device)
            with inference(self._device):
                out.append(self._model(x).float().cpu().numpy()[:n])
        return np.concatenate(out)


@lru_cache(maxsize=1 << 16)
def _canonical(smiles: str) -> str:
    """RDKit canonical SMILES, memoised: ``check`` and ``embed`` of one build both need it."""
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
