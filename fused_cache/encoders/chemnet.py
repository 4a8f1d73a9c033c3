"""ChemNet (Preuer et al. 2018), the pretrained SMILES network shipped inside the PyPI package ``fcd``.

The embedding is ChemNet's 512-d penultimate activation, as used by the Fréchet ChemNet Distance. It is the one
pretrained molecular network available offline. SMILES are validated and canonicalised with RDKit first, because
ChemNet itself embeds any string, garbage included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from rdkit import Chem

from fused_cache.devices import inference, select_device
from fused_cache.encoders.base import DrugBatch, Encoder, file_sha256, invalid_smiles

PAD_LEN = 350
"""ChemNet's input length; longer SMILES would change the padding of their whole batch, so they are rejected."""


class ChemNetEncoder(Encoder):
    name = "chemnet"
    entity = "drug"
    dim = 512

    def __init__(self, device: str = "auto") -> None:
        import fcd

        self._fcd = fcd
        self._weights = Path(fcd.__file__).parent / "ChemNet_v0.13_pretrained.pt"
        self._device = select_device(device)
        self._model = fcd.load_ref_model().to(self._device).eval()

    def settings(self) -> dict[str, Any]:
        return {"canonical_smiles": True, "pad_len": PAD_LEN, "layer": "penultimate"}

    def weights_sha256(self) -> str:
        return file_sha256(self._weights)

    def model_info(self) -> dict[str, Any]:
        return {"model": "ChemNet v0.13 (fcd)", "revision": self._fcd.__version__, "path": str(self._weights)}

    def check(self, batch: DrugBatch) -> dict[str, str]:
        bad = invalid_smiles(batch)
        for drug_id, smiles in zip(batch.ids, batch.smiles, strict=True):
            if drug_id not in bad and len(_canonical(smiles)) >= PAD_LEN:
                bad[drug_id] = f"canonical SMILES is {len(_canonical(smiles))} characters; ChemNet takes < {PAD_LEN}"
        return bad

    def embed(self, batch: DrugBatch) -> np.ndarray:
        from fcd.utils import get_one_hot

        onehot = np.stack([get_one_hot(_canonical(s), pad_len=PAD_LEN) for s in batch.smiles])
        x = torch.from_numpy(onehot).transpose(1, 2).float().to(self._device)
        with inference(self._device):
            return self._model(x).float().cpu().numpy()


def _canonical(smiles: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
