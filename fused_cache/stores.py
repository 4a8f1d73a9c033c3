"""Versioned embedding stores on disk: Zarr v3 (a directory) or HDF5 (one file), readable without this project.

Layout under the cache root::

    <root>/<entity>/<encoder>/<version>.zarr/     or  <version>.h5
        ids            (n,) strings
        embeddings     (n, dim) float32 (or float16)
        item_hashes    (n,) strings: hash of each item's input, for incremental rebuilds
        <name>, <name>_offsets   ragged arrays (e.g. atom_features, edges of the graph encoder)
        manifest.json  (Zarr: a file in the directory and the group's attributes; HDF5: the file's attributes)
    <root>/refs/<dataset key>/<entity>/<encoder>.json   which version a dataset's build produced
    <root>/refs/models/<hash of the model directory>.json   the stores a saved model needs (``protect``)
    <root>/.publish.lock   held while a build publishes a store and writes its ref, and while gc runs

A store is written under a temporary name and published with one atomic rename, so a reader never sees half a store.
The dataset key is the name of a bundled dataset, or for a directory its name plus a hash of its resolved path
(``Dataset.key``): two folders with the same name never share refs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import h5py
import numpy as np
import zarr

from fused_cache.dataset_keys import BUNDLED, key_of
from fused_cache.manifest import array_checksum

if TYPE_CHECKING:  # reading a store needs numpy, zarr and h5py only (a core install); these come with extras
    import pandas as pd
    from filelock import FileLock

    from fused_cache.datasets import Dataset

FORMATS = {"zarr": ".zarr", "hdf5": ".h5"}
ENTITIES = ("drug", "cell")
MANIFEST_KEYS = ("version", "encoder", "entity", "n", "dim", "dtype", "arrays", "checksum", "input_hash", "skipped")
SKIP_CHECKSUMS = "FUSED_SKIP_CHECKSUMS"
"""Environment variable: set to 1 to skip the checksum when a store is loaded for training or export (for stores too
large to read twice); missing chunks and non-finite values are still refused."""


class StoreNotFound(FileNotFoundError):
    """No store for the requested encoder; the message says which `fused-cache build` makes it."""

    def __init__(self, message: str, encoder: str | None = None) -> None:
        super().__init__(message)
        self.encoder = encoder


class CorruptStore(RuntimeError):
    """A store whose arrays do not match its manifest's checksum, or that cannot be read."""


class StaleStore(ValueError):
    """A store that cannot be trained on as it is: built from other inputs than the dataset now holds, or holding what
    current builds never write (non-finite values, dim 0); the message names the build that replaces it."""


class CacheNotWritable(PermissionError):
    """The cache directory cannot be written; the message names it and what to do."""


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


def ref_path(root: Path, key: str, entity: str, encoder: str) -> Path:
    return root / "refs" / key / entity / f"{encoder}.json"


def publish_lock(root: Path) -> FileLock:
    """One lock per cache root: a build holds it from publishing a store until its ref is written, gc for its whole
    run, so that gc never sees a published store whose ref is still to come."""
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    return FileLock(root / ".publish.lock")


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
        lacking = [k for k in MANIFEST_KEYS if k not in self.manifest] if isinstance(self.manifest, dict) else ["all"]
        if lacking:
            self.close()
            raise CorruptStore(f"store {self.path}: its manifest lacks {', '.join(lacking)}; delete it and rebuild")

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
    def dense(self) -> bool:
        """True for (n, dim) embeddings; False for ragged stores (the graph encoder's atom graphs)."""
        return "embeddings" in self.manifest["arrays"]

    @property
    def embeddings(self) -> Any:
        """(n, dim) array-like (zarr or h5py), read lazily; ``np.asarray(store.embeddings)`` loads all of it."""
        if not self.dense:
            raise ValueError(
                f"store {self.path} holds ragged arrays ({', '.join(self.manifest['arrays'])}), not embeddings; "
                "read them with Store.ragged(name)"
            )
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
                f"store {self.path} has no {self.manifest['entity']} {str(missing[0])!r} ({len(missing)} missing)"
            )
        return np.array([position[i] for i in ids], dtype=np.int64)

    def to_pandas(self) -> pd.DataFrame:
        """Embeddings as a DataFrame indexed by id (columns 0..dim-1)."""
        import pandas as pd

        return pd.DataFrame(
            np.asarray(self.embeddings[:]), index=pd.Index(self.ids, name=f"{self.manifest['entity']}_id")
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, loaded (for checksums and export)."""
        loaded = {name: np.asarray(self._handle[name][:]) for name in self.manifest["arrays"]}
        return {name: _strings(a) if a.dtype.kind in "OSUT" else a for name, a in loaded.items()}

    def missing_chunks(self) -> list[str]:
        """Arrays with chunks missing on disk: zarr would read them as zeros (stores are written with every chunk)."""
        if self.format == "hdf5":
            return []  # one file: a truncated one fails to open or to read
        problems = []
        for name in self.manifest["arrays"]:
            if name not in self._handle:
                problems.append(f"array {name!r} is missing")
                continue
            array = self._handle[name]
            if array.nchunks_initialized < array.nchunks:
                problems.append(f"{array.nchunks - array.nchunks_initialized} of {array.nchunks} chunks of {name!r}")
        return problems

    def verify(self) -> list[str]:
        """Problems found (empty when no chunk is missing and the arrays match the manifest's checksum, which is
        always computed here: $FUSED_SKIP_CHECKSUMS applies to loading for training and export only)."""
        try:
            self.load(checksum=True)
        except CorruptStore as err:
            return [str(err)]
        return []

    def load(self, checksum: bool | None = None) -> dict[str, np.ndarray]:
        """Every array, loaded and checked: no chunk missing and, unless ``checksum`` is False (default: True unless
        $FUSED_SKIP_CHECKSUMS=1), equal to the manifest's checksum. Raises CorruptStore naming the store."""
        advice = "rebuild it (fused-cache build rebuilds a corrupt version) or delete it"
        missing = self.missing_chunks()
        if missing:
            raise CorruptStore(f"{self.path}: missing on disk: {'; '.join(missing)}; {advice}")
        try:
            arrays = self.arrays()
        except Exception as err:  # a damaged chunk surfaces as a codec/IO error of any type
            raise CorruptStore(f"{self.path}: arrays cannot be read ({type(err).__name__}: {err}); {advice}") from err
        if checksum is None:
            checksum = os.environ.get(SKIP_CHECKSUMS, "") in ("", "0")
        if checksum and array_checksum(arrays) != self.manifest["checksum"]:
            raise CorruptStore(f"{self.path}: checksum mismatch, the arrays changed after they were written; {advice}")
        return arrays


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
        every_chunk = {"write_empty_chunks": True}  # so that a chunk missing on disk means damage, not zeros
        if array.dtype.kind in "OUT":
            out = group.create_array(name, shape=array.shape, dtype=str, dimension_names=dims, config=every_chunk)
            out[:] = array.astype(object)
        else:
            chunks = (max(1, min(chunk_rows, len(array))), *array.shape[1:])
            group.create_array(name, data=array, chunks=chunks, dimension_names=dims, config=every_chunk)
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


def write_ref(root: Path, dataset: Dataset, entity: str, encoder: str, store: Path) -> None:
    """Record that ``dataset``'s build of ``encoder`` is ``store`` (atomically: a reader sees old or new ref)."""
    path = ref_path(root, dataset.key, entity, encoder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    source = str(dataset.source) if dataset.source else None
    tmp.write_text(json.dumps({"store": str(store.relative_to(root)), "dataset": dataset.name, "source": source}))
    os.replace(tmp, path)


class ModelRef(NamedTuple):
    """A saved model's claim on the stores it was trained on (``protect``)."""

    path: Path
    """The ref file, ``<root>/refs/models/<hash>.json``."""
    owner: Path
    """The model directory (resolved) that needs the stores."""
    stores: list[Path]


def protect(root: Path, stores: Iterable[Path | str], owner: Path) -> Path:
    """Keep ``stores`` from ``gc`` for as long as the model directory ``owner`` exists: saved models live anywhere, so
    gc cannot find them; each registers the stores it needs instead. One ref per owner (rewritten atomically); gc
    reports a ref whose owner is gone and removes it with ``prune_model_refs``. Returns the ref's path."""
    owner = owner.resolve()
    path = root / "refs" / "models" / f"{hashlib.sha256(str(owner).encode()).hexdigest()[:16]}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = sorted({os.path.relpath(Path(store).resolve(), root.resolve()) for store in stores})
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"owner": str(owner), "stores": kept}, indent=1))
    os.replace(tmp, path)
    return path


def iter_model_refs(root: Path) -> Iterator[ModelRef]:
    for path in sorted((root / "refs" / "models").glob("*.json")):
        data = json.loads(path.read_text())
        yield ModelRef(path, Path(data["owner"]), [root / store for store in data["stores"]])


def read_ref(root: Path, key: str, entity: str, encoder: str) -> Path | None:
    path = ref_path(root, key, entity, encoder)
    if not path.exists():
        return None
    return root / json.loads(path.read_text())["store"]


def build_command(encoder: str, dataset: str | Dataset, root: Path) -> str:
    """The command that (re)builds a dataset's store, with the real ``--dataset`` path for data from a directory."""
    if isinstance(dataset, str):
        where = dataset if dataset in BUNDLED or not Path(dataset).is_dir() else str(Path(dataset).resolve())
    else:
        where = str(dataset.source) if dataset.source and dataset.source.is_dir() else dataset.name
    return f"fused-cache build --encoder {encoder} --dataset {where} --cache-dir {root}"


def open_store(
    encoder: str,
    entity: str | None = None,
    dataset: str | Dataset = "gdsc-deepcdr",
    cache_dir: str | Path | None = None,
) -> Store:
    """The store that ``fused-cache build --encoder ENCODER --dataset DATASET`` last produced (arrays not yet read:
    ``Store.load()`` reads and checks them)."""
    root = cache_root(cache_dir)
    key = key_of(dataset) if isinstance(dataset, str) else dataset.key
    name = dataset if isinstance(dataset, str) else dataset.name
    advice = f"run: {build_command(encoder, dataset, root)}"
    for kind in (entity,) if entity else ENTITIES:
        path = read_ref(root, key, kind, encoder)
        if path is not None:
            if not path.exists():
                raise StoreNotFound(f"{path} is referenced for {name} but missing; {advice}", encoder)
            return Store(path)
    raise StoreNotFound(f"no {encoder!r} store for dataset {name!r} under {root}; {advice}", encoder)


def iter_stores(root: Path) -> Iterator[Path]:
    """Every published store under the root (temporary and partial builds are hidden behind a leading dot)."""
    for entity in ENTITIES:
        for path in sorted((root / entity).glob("*/*")):
            if not path.name.startswith(".") and path.suffix in FORMATS.values():
                yield path


def check_built_from(store: Store, dataset: Dataset, root: Path) -> None:
    """Raise StaleStore unless ``store`` was built from exactly what ``dataset`` now offers its encoder (every item,
    skipped ones included: the manifest's ``source_hash``), naming what changed and the build that updates it."""
    from fused_cache.datasets import DatasetError  # a Dataset's tables (pandas): not needed to read a store
    from fused_cache.items import dataset_items, source_hash

    m = store.manifest
    modality = (m.get("fingerprint") or {}).get("modality")
    advice = f"run: {build_command(m['encoder'], dataset, root)}"
    try:
        items = dataset_items(dataset, m["entity"], modality)
    except DatasetError as err:
        raise StaleStore(f"store {store.path} cannot belong to dataset {dataset.name!r}: {err}") from err
    if m.get("source_hash") == source_hash(items):
        return
    if "source_hash" not in m:
        raise StaleStore(f"store {store.path} was built by an older fused that did not record its inputs; {advice}")
    current = dict(zip(items.ids, items.item_hashes(), strict=True))
    stored = dict(zip(store.ids.tolist(), store.item_hashes.tolist(), strict=True))
    changes = {
        "changed": [i for i, h in stored.items() if i in current and current[i] != h],
        "no longer in the dataset": [i for i in stored if i not in current],
        "new": [i for i in current if i not in stored and i not in m["skipped"]],
    }
    detail = "; ".join(f"{len(ids)} {what} (e.g. {ids[0]!r})" for what, ids in changes.items() if ids)
    raise StaleStore(
        f"store {store.path} ({m['encoder']} v{m['version']}) was built from other {m['entity']} inputs than "
        f"dataset {dataset.name!r} now holds ({detail or 'the items it skipped changed'}); {advice}"
    )


class Ref(NamedTuple):
    """One ref: which store a dataset's build of an encoder produced."""

    key: str
    entity: str
    encoder: str
    store: Path
    dataset: str
    """The dataset's name (its key without the path hash)."""
    source: str | None
    """The resolved directory the dataset was read from, if any."""


def iter_refs(root: Path) -> Iterator[Ref]:
    for ref in sorted((root / "refs").glob("*/*/*.json")):
        data = json.loads(ref.read_text())
        key = ref.parent.parent.name
        yield Ref(key, ref.parent.name, ref.stem, root / data["store"], data.get("dataset", key), data.get("source"))


def gc(root: Path, dry_run: bool = False, prune_model_refs: bool = False) -> list[Path]:
    """Remove store versions that no ref points to (a dataset's build or a saved model's ``protect``), and leftovers
    of killed builds. Returns what it removed. With ``prune_model_refs`` the refs of model directories that no longer
    exist are removed first (and listed), so their stores go too unless something else refers to them.

    Runs under the cache's publish lock, so a store published by a running build is never taken for unreferenced;
    a leftover whose build still runs (its per-version lock is held) is left alone.
    """
    from filelock import FileLock, Timeout

    if not root.is_dir():
        return []
    with publish_lock(root):
        doomed_refs = [ref.path for ref in iter_model_refs(root) if prune_model_refs and not ref.owner.exists()]
        kept_by_models = [s for ref in iter_model_refs(root) if ref.path not in doomed_refs for s in ref.stores]
        referenced = {ref.store.resolve() for ref in iter_refs(root)} | {s.resolve() for s in kept_by_models}
        doomed = doomed_refs + [p for p in iter_stores(root) if p.resolve() not in referenced]
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
