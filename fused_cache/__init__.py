"""fused_cache: compute frozen encoder embeddings once into versioned, verifiable stores, and read them anywhere.

>>> from fused_cache import datasets, build_store, open_store
>>> ds = datasets.load("gdsc-deepcdr")
>>> build_store(ds, "morgan")                          # no-op when up to date
>>> store = open_store("morgan", entity="drug")         # .ids, .embeddings (lazy), .manifest, .to_pandas()

Reading a store needs numpy, zarr and h5py only (fused-drp without extras): the datasets (pandas), the build and
the encoders are imported on first use, so a reader of stores never loads them (the trainer never loads encoder code).
"""

from __future__ import annotations

import importlib
from typing import Any

from fused_cache.stores import CacheNotWritable, CorruptStore, StaleStore, Store, StoreNotFound, cache_root, open_store

_LAZY = {
    "Dataset": "fused_cache.datasets",
    "DatasetError": "fused_cache.datasets",
    "BuildReport": "fused_cache.build",
    "build_store": "fused_cache.build",
    "CheckpointError": "fused_cache.encoders.base",
    "Encoder": "fused_cache.encoders.base",
    "EncoderError": "fused_cache.encoders.base",
    "ENCODERS": "fused_cache.encoders.registry",
    "get_encoder": "fused_cache.encoders.registry",
}


def __getattr__(name: str) -> Any:
    if name == "datasets":
        return importlib.import_module("fused_cache.datasets")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fused_cache' has no attribute {name!r}")


__all__ = [
    "ENCODERS",
    "BuildReport",
    "CacheNotWritable",
    "CheckpointError",
    "CorruptStore",
    "Dataset",
    "DatasetError",
    "Encoder",
    "EncoderError",
    "StaleStore",
    "Store",
    "StoreNotFound",
    "build_store",
    "cache_root",
    "datasets",
    "get_encoder",
    "open_store",
]
