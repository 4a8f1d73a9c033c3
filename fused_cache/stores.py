"""Versioned embedding stores on disk: Zarr v3 (a directory) or HDF5 (one file), readable without this project.

Layout under the cache root::

    <root>/<entity>/<encoder>/<version>.zarr/     or  <version>.h5
        ids            (n,) strings
        embeddings     (n, dim) float32 (or float16)
        item_hashes    (n,) strings: hash of each item's input, for incremental rebuilds
        <name>, <name>_offsets   ragged arrays (e.g. atom_features, edges of the graph encoder)
        manifest.json  (Zarr: a file in the directory and the group's attributes; HDF5: the file's attributes)
    <root>/refs/<dataset>/<entity>/<encoder>.json   which version a dataset's build produced

A store is written under a temporary name and published with one atomic rename, so a reader never sees half a store.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import zarr

from fused_cache.manifest import array_checksum

FORMATS = {"zarr": ".zarr", "hdf5": ".h5"}
ENTITIES = ("drug", "cell")


class StoreNotFound(FileNotFoundError):
    """No store for the requested encoder; the message says which `fused-cache build` makes it."""

    def __init__(self, message: str, encoder: str | None = None) -> None:
        super().__init__(message)
        self.encoder = encoder


class CorruptStore(RuntimeError):
    """A store whose arrays do not match its manifest's checksum, or that cannot be read."""


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``--cache-dir``, else ``$FUSED_CACHE_DIR``, else the user cache directory (e.g. ~/.cache/fused)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("FUSED_CACHE_DIR"):
        return Path(os.environ["FUSED_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("fused"))


def store_path(root: Path, entity: str, encoder: str, version: str, fmt: str) -> Path:
    return root / entity / encoder / f"{version}{FORMATS[fmt]}"


def ref_path(root: Path, dataset: str, entity: str, encoder: str) -> Path:
    return root / "refs" / dataset / entity / f"{encoder}.json"


class Store:
    """Read access to one store. Arrays are read lazily: ``embeddings[rows]`` reads only those rows."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StoreNotFound(f"no store at {self.path}")
        self.format = "hdf5" if self.path.suffix == ".h5" else "zarr"
        try:
            if self.format == "hdf5":
                self._handle: Any = h5py.File(self.path, "r")
                self.manifest: dict[str, Any] = json.loads(self._handle.attrs["manifest"])
            else:
                self._handle = zarr.open_group(self.path, mode="r")
                self.manifest = json.loads((self.path / "manifest.json").read_text())
        except (OSError, KeyError, ValueError) as err:
            raise CorruptStore(f"store {self.path} cannot be read ({err}); delete it and rebuild") from err

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.format == "hdf5":
            self._handle.close()

    def __repr__(self) -> str:
        m = self.manifest
        return f"Store({m['encoder']} {m['entity']} v{m['version']}, n={m['n']}, dim={m['dim']}, {self.path})"

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @cached_property
    def ids(self) -> np.ndarray:
        return _strings(self._handle["ids"][:])

    @cached_property
    def item_hashes(self) -> np.ndarray:
        return _strings(self._handle["item_hashes"][:])

    @property
    def embeddings(self) -> Any:
        """(n, dim) array-like (zarr or h5py), read lazily; ``np.asarray(store.embeddings)`` loads all of it."""
        return self._handle["embeddings"]

    def array(self, name: str) -> Any:
        return self._handle[name]

    def ragged(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Concatenated values and offsets (n+1) of a ragged array: item i is ``values[offsets[i]:offsets[i+1]]``."""
        return np.asarray(self._handle[name][:]), np.asarray(self._handle[f"{name}_offsets"][:])

    def index_of(self, ids: list[str] | np.ndarray) -> np.ndarray:
        """Row of each id; raises KeyError naming the first id the store lacks."""
        position = {v: i for i, v in enumerate(self.ids)}
        missing = [i for i in ids if i not in position]
        if missing:
            raise KeyError(
                f"store {self.path} has no {self.manifest['entity']} {missing[0]!r} ({len(missing)} missing)"
            )
        return np.array([position[i] for i in ids], dtype=np.int64)

    def to_pandas(self) -> pd.DataFrame:
        """Embeddings as a DataFrame indexed by id (columns 0..dim-1)."""
        return pd.DataFrame(
            np.asarray(self.embeddings[:]), index=pd.Index(self.ids, name=f"{self.manifest['entity']}_id")
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, loaded (for checksums and export)."""
        loaded = {name: np.asarray(self._handle[name][:]) for name in self.manifest["arrays"]}
        return {name: _strings(a) if a.dtype.kind in "OSUT" else a for name, a in loaded.items()}

    def verify(self) -> list[str]:
        """Problems found (empty when the arrays match the manifest's checksum)."""
        try:
            arrays = self.arrays()
        except Exception as err:  # a damaged chunk surfaces as a codec/IO error of any type
            return [f"{self.path}: arrays cannot be read ({type(err).__name__}: {err})"]
        if array_checksum(arrays) != self.manifest["checksum"]:
            return [f"{self.path}: checksum mismatch, the arrays changed after they were written; rebuild it"]
        return []


def _strings(values: np.ndarray) -> np.ndarray:
    """Plain numpy ``str`` arrays from zarr's StringDType or h5py's bytes."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values.astype(object)], dtype=str)


def write_store(
    path: Path, arrays: Mapping[str, np.ndarray], manifest: Mapping[str, Any], chunk_rows: int = 4096
) -> bool:
    """Write a complete store under a temporary name, then publish it with one atomic rename.

    Returns False (and discards the copy) when another writer published the same version first: equal versions
    hold equal content, so either copy will do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    target = tmp / path.name
    try:
        text = json.dumps(dict(manifest), indent=2, sort_keys=True)
        if path.suffix == ".h5":
            _write_hdf5(target, arrays, text)
        else:
            _write_zarr(target, arrays, text, chunk_rows)
        try:
            os.rename(target, path)
        except OSError:
            if path.exists():
                return False
            raise
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_zarr(path: Path, arrays: Mapping[str, np.ndarray], manifest: str, chunk_rows: int) -> None:
    """Arrays with ``dimension_names`` (so ``xarray.open_zarr`` reads a store) and consolidated metadata (so readers
    list the arrays from zarr.json instead of the directory, where manifest.json would make zarr warn)."""
    group = zarr.open_group(path, mode="w")
    for name, array in arrays.items():
        dims = dimension_names(name, array.ndim)
        if array.dtype.kind in "OUT":
            out = group.create_array(name, shape=array.shape, dtype=str, dimension_names=dims)
            out[:] = array.astype(object)
        else:
            chunks = (max(1, min(chunk_rows, len(array))), *array.shape[1:])
            group.create_array(name, data=array, chunks=chunks, dimension_names=dims)
    group.attrs["manifest"] = json.loads(manifest)
    with warnings.catch_warnings():  # "consolidated metadata is not yet part of the Zarr v3 spec": zarr-python reads it
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(path)
    (path / "manifest.json").write_text(manifest)


def dimension_names(name: str, ndim: int) -> tuple[str, ...]:
    """Shared dimension names: ``item`` for per-item arrays, ``offset`` (n+1) for ragged offsets, and the values of
    a ragged array along ``<name>_row`` (e.g. one row per atom)."""
    if name in ("ids", "item_hashes", "embeddings"):
        return ("item", "feature")[:ndim]
    if name.endswith("_offsets"):
        return ("offset",)
    return (f"{name}_row", *(f"{name}_dim{i}" for i in range(1, ndim)))


def _write_hdf5(path: Path, arrays: Mapping[str, np.ndarray], manifest: str) -> None:
    with h5py.File(path, "w") as handle:
        for name, array in arrays.items():
            if array.dtype.kind in "OUT":
                handle.create_dataset(name, data=array.astype(object), dtype=h5py.string_dtype())
            else:
                handle.create_dataset(name, data=array)
        handle.attrs["manifest"] = manifest


def write_ref(root: Path, dataset: str, entity: str, encoder: str, store: Path) -> None:
    """Record that ``dataset``'s build of ``encoder`` is ``store`` (atomically: a reader sees old or new ref)."""
    path = ref_path(root, dataset, entity, encoder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"store": str(store.relative_to(root))}))
    os.replace(tmp, path)


def read_ref(root: Path, dataset: str, entity: str, encoder: str) -> Path | None:
    path = ref_path(root, dataset, entity, encoder)
    if not path.exists():
        return None
    return root / json.loads(path.read_text())["store"]


def open_store(
    encoder: str, entity: str | None = None, dataset: str = "gdsc-deepcdr", cache_dir: str | Path | None = None
) -> Store:
    """The store that ``fused-cache build --encoder ENCODER --dataset DATASET`` last produced."""
    root = cache_root(cache_dir)
    advice = f"run: fused-cache build --encoder {encoder} --dataset {dataset} --cache-dir {root}"
    for kind in (entity,) if entity else ENTITIES:
        path = read_ref(root, dataset, kind, encoder)
        if path is not None:
            if not path.exists():
                raise StoreNotFound(f"{path} is referenced for {dataset} but missing; {advice}", encoder)
            return Store(path)
    raise StoreNotFound(f"no {encoder!r} store for dataset {dataset!r} under {root}; {advice}", encoder)


def iter_stores(root: Path) -> Iterator[Path]:
    """Every published store under the root (temporary and partial builds are hidden behind a leading dot)."""
    for entity in ENTITIES:
        for path in sorted((root / entity).glob("*/*")):
            if not path.name.startswith(".") and path.suffix in FORMATS.values():
                yield path


def iter_refs(root: Path) -> Iterator[tuple[str, str, str, Path]]:
    """(dataset, entity, encoder, store path) for every ref."""
    for ref in sorted((root / "refs").glob("*/*/*.json")):
        yield ref.parent.parent.name, ref.parent.name, ref.stem, root / json.loads(ref.read_text())["store"]


def gc(root: Path, dry_run: bool = False) -> list[Path]:
    """Remove store versions that no ref points to, and leftovers of killed builds. Returns what it removed.

    A leftover whose build still runs (its per-version lock is held) is left alone.
    """
    from filelock import FileLock, Timeout

    referenced = {path.resolve() for *_, path in iter_refs(root)}
    doomed = [p for p in iter_stores(root) if p.resolve() not in referenced]
    for entity in ENTITIES:
        for leftover in sorted((root / entity).glob("*/.tmp-*")) + sorted((root / entity).glob("*/.partial-*")):
            version = leftover.name.removeprefix(".tmp-").removeprefix(".partial-").split(".")[0]
            try:
                with FileLock(leftover.parent / f".{version}.lock", timeout=0):
                    doomed.append(leftover)
            except Timeout:
                continue
    if not dry_run:
        for path in doomed:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return doomed
