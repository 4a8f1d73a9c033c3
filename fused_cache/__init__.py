"""fused_cache: compute frozen encoder embeddings once into versioned, verifiable stores, and read them anywhere.

>>> from fused_cache import datasets, build_store, open_store
>>> ds = datasets.load("gdsc-deepcdr")
>>> build_store(ds, "morgan")                          # no-op when up to date
>>> store = open_store("morgan", entity="drug")         # .ids, .embeddings (lazy), .manifest, .to_pandas()
"""

from fused_cache import datasets
from fused_cache.build import BuildReport, build_store
from fused_cache.datasets import Dataset, DatasetError
from fused_cache.encoders.base import CheckpointError, Encoder, EncoderError
from fused_cache.encoders.registry import ENCODERS, get_encoder
from fused_cache.stores import CorruptStore, Store, StoreNotFound, cache_root, open_store

__all__ = [
    "ENCODERS",
    "BuildReport",
    "CheckpointError",
    "CorruptStore",
    "Dataset",
    "DatasetError",
    "Encoder",
    "EncoderError",
    "Store",
    "StoreNotFound",
    "build_store",
    "cache_root",
    "datasets",
    "get_encoder",
    "open_store",
]
