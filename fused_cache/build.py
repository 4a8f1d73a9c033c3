"""Dataset + encoder -> published store: validation, reuse, batching with resume, progress, atomic publish.

Order of work in ``build_store``:
1. collect the encoder's inputs from the dataset and validate them (bad items raise, or are skipped and recorded);
2. compute the version; if a store of that version exists and verifies, point the dataset's ref at it and stop (no-op);
   a version that fails verification is discarded and rebuilt;
3. under a per-version file lock: reuse rows of any verified store with the same encoder fingerprint whose item
   hashes match (incremental build), embed the rest in batches, saving each finished batch so a killed build resumes
   (a damaged saved batch is embedded again); every output must be finite and of the promised shape;
4. under the cache's publish lock (which gc respects): write the store under a temporary name, rename it into place
   and update the ref; then drop the partial batches.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from fused_cache.cluster import connect, run_tasks
from fused_cache.datasets import Dataset
from fused_cache.encoders.base import Batch, Encoder, EncoderError, Ragged
from fused_cache.encoders.registry import get_encoder
from fused_cache.items import dataset_items, source_hash
from fused_cache.manifest import (
    FORMAT_VERSION,
    array_checksum,
    digest,
    input_hash,
    library_versions,
    now,
    store_version,
)
from fused_cache.stores import (
    FORMATS,
    CacheNotWritable,
    CorruptStore,
    Store,
    StoreNotFound,
    cache_root,
    iter_stores,
    publish_lock,
    read_ref,
    store_path,
    write_ref,
    write_store,
)

DTYPES = ("float32", "float16")


@dataclass
class BuildReport:
    """What a build did: the store, how many items it embedded, reused or skipped, and what it found damaged."""

    store: Store
    created: bool
    embedded: int = 0
    reused: int = 0
    resumed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)
    """Problems of stores or saved batches this build did not use (and rebuilt or re-embedded instead)."""

    def __str__(self) -> str:
        m = self.store.manifest
        what = "built" if self.created else "up to date"
        counts = f"embedded {self.embedded}, reused {self.reused}, resumed {self.resumed}, skipped {len(self.skipped)}"
        return f"{m['encoder']}: {what} v{m['version']} (n={m['n']}, dim={m['dim']}; {counts}) at {self.store.path}"


class InvalidItems(EncoderError):
    """Items the encoder refuses (``Encoder.check``) in a build with ``on_error="raise"``. The message does not name
    the way to leave them out: only ``fused-cache build`` and ``embed`` have ``--on-error``, and they add it."""


def encoder_inputs(dataset: Dataset, encoder: Encoder) -> Batch:
    """The items an encoder embeds: all drugs with their SMILES, or the cell lines that have its omics matrix."""
    modality = encoder.modality or "expression"
    if encoder.entity == "cell" and modality not in dataset.omics:
        raise EncoderError(f"encoder {encoder.name!r} reads {modality!r}, which dataset {dataset.name!r} does not have")
    return dataset_items(dataset, encoder.entity, modality)


def build_store(
    dataset: Dataset,
    encoder: str | Encoder,
    cache_dir: str | Path | None = None,
    fmt: str = "zarr",
    batch_size: int = 64,
    dtype: str = "float32",
    on_error: str = "raise",
    quiet: bool = False,
    encoder_options: dict[str, Any] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
) -> BuildReport:
    """Build (or reuse) the store of ``encoder`` over ``dataset`` and point the dataset's ref at it.

    ``scheduler`` ("local" or a Dask address) spreads the batches over workers, which must see the cache directory.
    """
    if fmt not in FORMATS or dtype not in DTYPES or on_error not in {"raise", "skip"} or batch_size < 1:
        raise ValueError(f"bad build options: fmt={fmt!r}, dtype={dtype!r}, on_error={on_error!r}, batch={batch_size}")
    enc = get_encoder(encoder, **(encoder_options or {})) if isinstance(encoder, str) else encoder
    root = cache_root(cache_dir)
    items = encoder_inputs(dataset, enc)
    if len(items) == 0:
        raise EncoderError(f"dataset {dataset.name!r} has nothing for encoder {enc.name!r} to embed")
    _check_unique(items)
    offered = source_hash(items)
    notes = enc.fit(items)
    skipped = enc.check(items)
    if skipped and on_error == "raise":
        first = next(iter(skipped))
        raise InvalidItems(
            f"{enc.entity} {first!r}: {skipped[first]} ({len(skipped)} invalid {enc.entity}s in {dataset.name}). "
            "Fix the input."
        )
    items = items.take([i for i, item_id in enumerate(items.ids) if item_id not in skipped])
    if len(items) == 0:
        raise EncoderError(f"encoder {enc.name!r} skipped every {enc.entity} of dataset {dataset.name!r}: {skipped}")
    if enc.dim < 1:
        dropped = notes.get("dropped_features") or []
        why = f" (it dropped all {len(dropped)} features, each unmeasured in some {enc.entity})" if dropped else ""
        raise EncoderError(
            f"encoder {enc.name!r} has nothing to store for dataset {dataset.name!r}: its output would have dim 0{why}"
        )
    hashes = items.item_hashes()
    fingerprint = enc.fingerprint()
    version = store_version(fingerprint, offered, dtype)
    path = store_path(root, enc.entity, enc.name, version, fmt)
    damaged: list[str] = []
    with _writable(root):
        done = _up_to_date(root, dataset, enc, path, [])
        if done is not None:
            return BuildReport(done, created=False, skipped=skipped)
        with FileLock(path.parent / f".{version}.lock"):
            done = _up_to_date(root, dataset, enc, path, damaged, discard=True)  # a concurrent build may have won
            if done is not None:
                return BuildReport(done, created=False, skipped=skipped, damaged=damaged)
            rows, reused = _reusable_rows(root, enc, fingerprint, hashes, damaged)
            partial = path.parent / f".partial-{version}"
            todo = [i for i in range(len(items)) if i not in rows]
            lengths = enc.lengths(items)
            if lengths is not None:
                todo.sort(key=lambda i: lengths[i])
            with connect(scheduler if todo else None, workers) as client:
                resumed = _embed_batches(enc, items, todo, rows, partial, batch_size, quiet, client, damaged)
            arrays = _assemble(items.ids, hashes, rows, enc.dim, dtype)
            manifest = {
                "format_version": FORMAT_VERSION,
                "version": version,
                "encoder": enc.name,
                "entity": enc.entity,
                "dataset": dataset.name,
                "fingerprint": fingerprint,
                "fingerprint_hash": digest(fingerprint),
                "model": enc.model_info(),
                "input_hash": input_hash(items.ids, hashes),
                "source_hash": offered,
                "n": len(items),
                "dim": enc.dim,
                "dtype": dtype,
                "skipped": skipped,
                "notes": notes,
                "libraries": library_versions(),
                "created": now(),
                "arrays": sorted(arrays),
                "checksum": array_checksum(arrays),
            }
            with publish_lock(root):
                write_store(path, arrays, manifest)
                write_ref(root, dataset, enc.entity, enc.name, path)
            shutil.rmtree(partial, ignore_errors=True)
    n_new = len(todo) - resumed
    return BuildReport(
        Store(path), True, embedded=n_new, reused=reused, resumed=resumed, skipped=skipped, damaged=damaged
    )


@contextmanager
def _writable(root: Path) -> Iterator[None]:
    """A build that must write into a read-only cache says so (a no-op build writes nothing and needs no access)."""
    try:
        yield
    except OSError as err:
        denied = isinstance(err, PermissionError) or err.errno in (errno.EROFS, errno.EACCES)
        if denied and str(err.filename or "").startswith(str(root)):
            raise CacheNotWritable(
                f"cache directory {root} is not writable ({err.strerror}: {err.filename}); pass --cache-dir (or set "
                "$FUSED_CACHE_DIR) to a writable directory"
            ) from err
        raise


def _up_to_date(
    root: Path, dataset: Dataset, enc: Encoder, path: Path, damaged: list[str], discard: bool = False
) -> Store | None:
    """The existing store of this version once it verifies and the dataset's ref points at it; None when it must be
    built. With ``discard`` (only under the version's lock) a version that fails verification is deleted."""
    if not path.exists():
        return None
    try:
        store = Store(path)
        problems = store.verify()
    except (CorruptStore, StoreNotFound) as err:
        store, problems = None, [str(err)]
    if problems:
        if store is not None:
            store.close()
        damaged.extend(problems)
        if discard:
            _discard(path)
        return None
    if read_ref(root, dataset.key, enc.entity, enc.name) != path:
        with publish_lock(root):
            if not path.exists():  # removed by gc while unreferenced
                store.close()
                return None
            write_ref(root, dataset, enc.entity, enc.name, path)
    return store


def _discard(path: Path) -> None:
    """Remove a damaged store: renamed first, so that no reader opens it half-deleted."""
    aside = path.with_name(f".tmp-{path.name}-corrupt-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if aside.is_dir():
        shutil.rmtree(aside)
    else:
        aside.unlink()


def _check_unique(items: Batch) -> None:
    seen: set[str] = set()
    for item_id in items.ids:
        if item_id in seen:
            raise EncoderError(f"id {item_id!r} occurs more than once in the input; ids must be unique")
        seen.add(item_id)


def _reusable_rows(
    root: Path, enc: Encoder, fingerprint: dict[str, Any], hashes: list[str], damaged: list[str]
) -> tuple[dict[int, Any], int]:
    """Rows already embedded by a compatible store (same fingerprint), keyed by our item index.

    Rows are copied only from a store whose arrays match its checksum (verified on the very arrays copied): a
    damaged row copied into a new store would get a valid checksum there. Damaged stores are listed in ``damaged``.
    """
    wanted = {h: i for i, h in enumerate(hashes)}
    rows: dict[int, Any] = {}
    key = digest(fingerprint)
    for path in iter_stores(root):
        if path.parent.name != enc.name or path.parent.parent.name != enc.entity:
            continue
        try:
            with Store(path) as old:
                if old.manifest.get("fingerprint_hash") != key:
                    continue
                hits = [(wanted[h], j) for j, h in enumerate(old.item_hashes) if h in wanted and wanted[h] not in rows]
                if not hits:
                    continue
                arrays = old.load(checksum=True)
        except (CorruptStore, StoreNotFound) as err:  # StoreNotFound: removed by gc meanwhile
            damaged.append(f"not reused: {err}")
            continue
        except Exception as err:  # a damaged chunk of ids or item_hashes surfaces as any codec/IO error
            damaged.append(f"not reused: {path} cannot be read ({type(err).__name__}: {err})")
            continue
        for i, j in hits:
            rows[i] = _row_of(arrays, j)
    return rows, len(rows)


def _row_of(arrays: dict[str, np.ndarray], j: int) -> Any:
    """One item's output from loaded store arrays: an embedding row, or its slices of every ragged array."""
    ragged = [name.removesuffix("_offsets") for name in arrays if name.endswith("_offsets")]
    if not ragged:
        return arrays["embeddings"][j].astype(np.float32)
    return {name: arrays[name][arrays[f"{name}_offsets"][j] : arrays[f"{name}_offsets"][j + 1]] for name in ragged}


def _embed_batches(
    enc: Encoder, items: Batch, todo: list[int], rows: dict[int, Any], partial: Path, batch_size: int,
    quiet: bool, client: Any, damaged: list[str],
) -> int:  # fmt: skip
    """Embed ``todo`` in batches into ``rows``, here or on a cluster; returns how many came from a killed build.

    Every finished batch is saved under ``partial`` first, so that a killed build (or a lost worker) costs only the
    batches in flight; a restart with the same plan reuses the saved ones that load (a damaged one is embedded again).
    """
    plan = {"ids": [items.ids[i] for i in todo], "batch_size": batch_size}
    plan_file = partial / "plan.json"
    if partial.exists() and (not plan_file.exists() or plan_file.read_text() != json.dumps(plan)):
        shutil.rmtree(partial)  # another plan, or none that was written whole (a full disk)
    partial.mkdir(parents=True, exist_ok=True)
    tmp = plan_file.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(plan))
        os.replace(tmp, plan_file)
    finally:
        tmp.unlink(missing_ok=True)
    batches = [
        (todo[k : k + batch_size], partial / f"batch-{k // batch_size:06d}.npz")
        for k in range(0, len(todo), batch_size)
    ]
    saved = {}
    for index, part in batches:
        if part.exists():
            try:
                saved[part] = _load_part(part, len(index))
            except Exception as err:  # a truncated or damaged file fails in zipfile, numpy or our count check
                damaged.append(f"saved batch {part} cannot be read ({type(err).__name__}: {err}); embedding it again")
                part.unlink()
    missing = [(enc, items.take(index), part) for index, part in batches if part not in saved]
    resumed = sum(len(index) for index, part in batches if part in saved)
    unit = "drugs" if enc.entity == "drug" else "cell lines"
    run_tasks(
        _embed_part, missing, client, desc=enc.name, quiet=quiet, sizes=[len(b) for _, b, _ in missing], unit=unit
    )
    for index, part in batches:
        outputs = saved[part] if part in saved else _load_part(part, len(index))
        rows.update(zip(index, outputs, strict=True))
    return resumed


def _embed_part(enc: Encoder, batch: Batch, part: Path) -> None:
    """One batch: embed, check the output, save it atomically (a task that may run on any worker, even twice)."""
    _save_part(part, _validated(enc, enc.embed(batch), batch.ids))


def _validated(enc: Encoder, out: np.ndarray | Ragged, ids: list[str]) -> list[Any]:
    """Per-item outputs, after checking that the encoder returned one finite output of the promised shape per item:
    a NaN written into a store would become NaN predictions far downstream."""
    n = len(ids)
    if isinstance(out, Ragged):
        lengths = {name: len(values) for name, values in out.arrays.items()}
        if set(lengths.values()) != {n}:
            raise RuntimeError(f"encoder {enc.name!r} returned {lengths} ragged items for a batch of {n}")
        per_item = [{name: values[i] for name, values in out.arrays.items()} for i in range(n)]
        for item_id, item in zip(ids, per_item, strict=True):
            for name, values in item.items():
                _require_finite(enc, item_id, name, values)
        return per_item
    out = np.asarray(out)
    if out.shape != (n, enc.dim):
        raise RuntimeError(
            f"encoder {enc.name!r} returned shape {out.shape} for a batch of {n}, expected {(n, enc.dim)}"
        )
    out = out.astype(np.float32)
    for item_id, row in zip(ids, out, strict=True):
        _require_finite(enc, item_id, "embedding", row)
    return list(out)


def _require_finite(enc: Encoder, item_id: str, name: str, values: np.ndarray) -> None:
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        where = np.argwhere(~np.isfinite(values))[0].tolist()
        raise EncoderError(
            f"encoder {enc.name!r} produced a non-finite {name} value at {where} for {enc.entity} {item_id!r}; it "
            "should have rejected this input in check() or handled it by its documented rule: please report it"
        )


def _save_part(part: Path, outputs: list[Any]) -> None:
    tmp = part.with_name(f"{part.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
    if isinstance(outputs[0], dict):
        flat = {f"{name}__{i}": v for i, out in enumerate(outputs) for name, v in out.items()}
    else:
        flat = {"embeddings": np.stack(outputs)}
    np.savez(tmp, **flat)
    tmp.rename(part)


def _load_part(part: Path, n: int) -> list[Any]:
    with np.load(part) as data:
        if "embeddings" in data:
            out: list[Any] = list(data["embeddings"])
        else:
            out = [{} for _ in range(n)]
            for key in data.files:
                name, i = key.rsplit("__", 1)
                out[int(i)][name] = data[key]
    if len(out) != n or any(isinstance(item, dict) and not item for item in out):
        raise ValueError(f"holds {len(out)} items, expected {n}")
    return out


def _assemble(ids: list[str], hashes: list[str], rows: dict[int, Any], dim: int, dtype: str) -> dict[str, np.ndarray]:
    """Store arrays in input order: dense embeddings, or concatenated ragged arrays with offsets."""
    arrays = {"ids": np.array(ids, dtype=object), "item_hashes": np.array(hashes, dtype=object)}
    ordered = [rows[i] for i in range(len(ids))]
    if not isinstance(ordered[0], dict):
        arrays["embeddings"] = np.stack(ordered).astype(dtype).reshape(len(ids), dim)
        return arrays
    for name in ordered[0]:
        parts = [item[name] for item in ordered]
        arrays[name] = np.concatenate(parts)
        arrays[f"{name}_offsets"] = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return arrays
