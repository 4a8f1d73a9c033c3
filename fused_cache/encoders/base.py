"""The encoder interface: every representation of a drug or a cell line is a plugin behind it.

An encoder has a ``name``, the ``entity`` it embeds (``"drug"`` or ``"cell"``), an output ``dim``, a ``fingerprint()``
of everything that determines its output (settings and the weights' sha256), ``check(batch)`` that names invalid
items, and ``embed(batch)`` that returns float32 (n, dim). Cell encoders read one omics matrix, named by ``modality``.
Adding an encoder = one module here + one line in ``registry.py``.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from fused_cache.items import Batch, CellBatch, DrugBatch  # encoder inputs live with the dataset layer (items.py)

Entity = Literal["drug", "cell"]


class EncoderError(ValueError):
    """Bad input to an encoder; the message names the item id and what to do."""


class CheckpointError(EncoderError):
    """A model checkpoint is missing, incomplete or does not match its config; the message names the file or key."""


@dataclass(frozen=True)
class Ragged:
    """Variable-size outputs (e.g. atom graphs): for each array name, one array per item."""

    arrays: Mapping[str, list[np.ndarray]]


class Encoder(ABC):
    """Base class of all encoders. Subclasses set ``name``, ``entity``, ``dim`` and implement ``embed``."""

    name: ClassVar[str]
    entity: ClassVar[Entity]
    modality: ClassVar[str | None] = None
    """For cell encoders: the omics matrix they read (e.g. ``"expression"``)."""
    version: ClassVar[int] = 1
    """Bump when the code changes what the encoder outputs, so that old stores are not reused."""

    dim: int

    LOADED: ClassVar[tuple[str, ...]] = ("_model", "_tokenizer", "_device")
    """Attributes that hold a lazily loaded model; pickling drops them, so that an encoder ships to a Dask worker
    as its small settings and each worker loads its own copy of the weights."""

    def __getstate__(self) -> dict[str, Any]:
        return {k: None if k in self.LOADED else v for k, v in self.__dict__.items()}

    def settings(self) -> dict[str, Any]:
        """Every setting that changes the output, JSON-serialisable."""
        return {}

    def weights_sha256(self) -> str | None:
        """sha256 of the weights file(s), or None for encoders without learned weights."""
        return None

    def model_info(self) -> dict[str, Any]:
        """Model name, revision and checkpoint path, for the manifest (not part of the fingerprint)."""
        return {}

    def fingerprint(self) -> dict[str, Any]:
        """Everything that determines the output: a store built with an equal fingerprint can be reused."""
        return {
            "encoder": self.name,
            "entity": self.entity,
            "modality": self.modality,
            "version": self.version,
            "dim": self.dim,
            "settings": self.settings(),
            "weights_sha256": self.weights_sha256(),
        }

    def fit(self, batch: Batch) -> dict[str, Any]:
        """Fix input-dependent settings on the full input before batching; returns notes for the manifest."""
        return {}

    def lengths(self, batch: Batch) -> np.ndarray | None:
        """Tokens per item for sequence models, or None. The build batches items of similar length together, so
        that dynamic padding pads little; the output of an item does not depend on its batch."""
        return None

    def check(self, batch: Batch) -> dict[str, str]:
        """Invalid items as id -> reason. The build raises on them, or skips and records them with --on-error skip."""
        return {}

    @abstractmethod
    def embed(self, batch: Batch) -> np.ndarray | Ragged:
        """float32 array (len(batch), dim) for valid items (or ``Ragged`` for variable-size outputs)."""


class GeneVocabularyEncoder(Encoder):
    """An expression FM with a fixed gene vocabulary: one token per expressed gene it knows (scGPT, scFoundation).

    Subclasses set ``label`` and say which input columns the vocabulary knows; validation and token counts follow.
    """

    label: ClassVar[str]

    @abstractmethod
    def known_columns(self, genes: list[str]) -> np.ndarray:
        """Indices of the input genes that the model's vocabulary or panel holds."""

    def lengths(self, batch: CellBatch) -> np.ndarray:
        return (np.nan_to_num(batch.values[:, self.known_columns(batch.genes)]) > 0).sum(axis=1)

    def check(self, batch: CellBatch) -> dict[str, str]:
        return invalid_expression(batch, self.known_columns(batch.genes), self.label)


@cache
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) so that a no-op rebuild does not re-read large weights."""
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def weights_file(directory: Path, names: tuple[str, ...], hint: str) -> Path:
    """The first of ``names`` found in a checkpoint directory (e.g. model.safetensors before pytorch_model.bin)."""
    for name in names:
        if (directory / name).exists():
            return directory / name
    raise CheckpointError(f"checkpoint directory {directory} has no weights ({' or '.join(names)}). {hint}")


MAX_SMILES_LENGTH = 1000
"""The longest SMILES any drug encoder takes (the bundled drugs have at most 179 characters): one item's time is
bounded, and a pasted sequence or polymer is reported instead of running for hours."""


def invalid_smiles(batch: DrugBatch, max_atoms: int | None = None) -> dict[str, str]:
    """Drugs whose SMILES RDKit cannot parse, is longer than MAX_SMILES_LENGTH, or (``max_atoms``) whose molecule has
    more heavy atoms than an encoder takes; checked here because some models happily embed garbage strings."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    bad = {}
    for drug_id, smiles in zip(batch.ids, batch.smiles, strict=True):
        if not isinstance(smiles, str) or not smiles.strip():
            bad[drug_id] = "empty SMILES"
        elif len(smiles) > MAX_SMILES_LENGTH:
            bad[drug_id] = f"SMILES is {len(smiles)} characters; drug encoders take at most {MAX_SMILES_LENGTH}"
        elif (mol := Chem.MolFromSmiles(smiles)) is None:
            bad[drug_id] = f"invalid SMILES {smiles!r} (RDKit cannot parse it)"
        elif max_atoms is not None and mol.GetNumHeavyAtoms() > max_atoms:
            bad[drug_id] = f"molecule has {mol.GetNumHeavyAtoms()} heavy atoms; this encoder takes at most {max_atoms}"
    return bad


def invalid_expression(batch: CellBatch, columns: np.ndarray, model: str) -> dict[str, str]:
    """Cell lines an expression FM cannot embed: an infinite or negative value, or nothing expressed among the genes
    the model knows (``columns`` of ``batch.genes``)."""
    bad = {}
    for cell_id, row in zip(batch.ids, batch.values[:, columns], strict=True):
        if np.isinf(row).any():
            bad[cell_id] = "expression has an infinite value"
        elif (row < 0).any():
            gene = batch.genes[columns[int(np.flatnonzero(row < 0)[0])]]
            bad[cell_id] = f"expression of gene {gene!r} is negative; {model} takes non-negative expression"
        elif not (row > 0).any():
            bad[cell_id] = f"no gene known to {model} is expressed (all zero or unmeasured)"
    return bad


def resolve_checkpoint(encoder: str, checkpoint: str | Path | None, required: list[str], hint: str) -> Path:
    """The checkpoint directory: ``--checkpoint DIR``, else ``$FUSED_MODELS_DIR/<encoder>``.

    Raises CheckpointError that lists the files to put where (``hint`` says where to get them), so that a user
    without weights learns exactly what to do and nothing is written.
    """
    import os

    if checkpoint is None and os.environ.get("FUSED_MODELS_DIR"):
        checkpoint = Path(os.environ["FUSED_MODELS_DIR"]) / encoder
    if checkpoint is None:
        raise CheckpointError(
            f"encoder {encoder!r} needs a local checkpoint directory with: {', '.join(required)}. {hint} "
            f"Pass --checkpoint DIR, or put the files in $FUSED_MODELS_DIR/{encoder}/."
        )
    path = Path(checkpoint)
    missing = [f for f in required if not (path / f).exists()]
    if missing:
        raise CheckpointError(
            f"checkpoint directory {path} for encoder {encoder!r} lacks {', '.join(missing)} "
            f"(needs: {', '.join(required)}). {hint}"
        )
    return path
