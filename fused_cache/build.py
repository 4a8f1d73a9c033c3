"""Dataset + encoder -> published store: validation, reuse, batching with resume, progress, atomic publish.

Order of work in ``build_store``:
1. collect the encoder's inputs from the dataset and validate them (bad items raise, or are skipped and recorded);
2. compute the version; if a store of that version exists, point the dataset's ref at it and stop (no-op);
3. under a per-version file lock: reuse rows of any store with the same encoder fingerprint whose item hashes
   match (incremental build), embed the rest in batches, saving each finished batch so a killed build resumes;
4. write the store under a temporary name, rename it into place, update the ref, drop the partial batches.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from fused_cache.cluster import connect, run_tasks
from fused_cache.datasets import Dataset
from fused_cache.encoders.base import Batch, CellBatch, DrugBatch, Encoder, EncoderError, Ragged
from fused_cache.encoders.registry import get_encoder
from fused_cache.manifest import (
    FORMAT_VERSION,
    array_checksum,
    digest,
    input_hash,
    library_versions,
    now,
    store_version,
)
from fused_cache.stores import FORMATS, Store, cache_root, iter_stores, store_path, write_ref, write_store

DTYPES = ("float32", "float16")


@dataclass
class BuildReport:
    """What a build did: the store, and how many items it embedded, reused or skipped."""

    store: Store
    created: bool
    embedded: int = 0
    reused: int = 0
    resumed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        m = self.store.manifest
        what = "built" if self.created else "up to date"
        counts = f"embedded {self.embedded}, reused {self.reused}, resumed {self.resumed}, skipped {len(self.skipped)}"
        return f"{m['encoder']}: {what} v{m['version']} (n={m['n']}, dim={m['dim']}; {counts}) at {self.store.path}"


def encoder_inputs(dataset: Dataset, encoder: Encoder) -> Batch:
    """The items an encoder embeds: all drugs with their SMILES, or the cell lines that have its omics matrix."""
    if encoder.entity == "drug":
        return DrugBatch(dataset.drugs["drug_id"].astype(str).tolist(), dataset.drugs["smiles"].astype(str).tolist())
    modality = encoder.modality or "expression"
    if modality not in dataset.omics:
        raise EncoderError(f"encoder {encoder.name!r} reads {modality!r}, which dataset {dataset.name!r} does not have")
    matrix = dataset.omics[modality]
    matrix = matrix[matrix.index.isin(dataset.cells["cell_id"])]
    return CellBatch(matrix.index.astype(str).tolist(), matrix.columns.astype(str).tolist(), matrix.to_numpy("float32"))


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
    notes = enc.fit(items)
    skipped = enc.check(items)
    if skipped and on_error == "raise":
        first = next(iter(skipped))
        raise EncoderError(
            f"{enc.entity} {first!r}: {skipped[first]} ({len(skipped)} invalid {enc.entity}s in {dataset.name}). "
            "Fix the input, or pass --on-error skip to leave them out (they are listed in the manifest)."
        )
    items = items.take([i for i, item_id in enumerate(items.ids) if item_id not in skipped])
    hashes = items.item_hashes()
    fingerprint = enc.fingerprint()
    version = store_version(fingerprint, input_hash(items.ids, hashes), dtype)
    path = store_path(root, enc.entity, enc.name, version, fmt)
    if path.exists():
        write_ref(root, dataset.name, enc.entity, enc.name, path)
        return BuildReport(Store(path), created=False, skipped=skipped)

    with FileLock(path.parent / f".{version}.lock"):
        if path.exists():  # a concurrent build published it while we waited
            write_ref(root, dataset.name, enc.entity, enc.name, path)
            return BuildReport(Store(path), created=False, skipped=skipped)
        rows, reused = _reusable_rows(root, enc, fingerprint, hashes)
        partial = path.parent / f".partial-{version}"
        todo = [i for i in range(len(items)) if i not in rows]
        lengths = enc.lengths(items)
        if lengths is not None:
            todo.sort(key=lambda i: lengths[i])
        with connect(scheduler if todo else None, workers) as client:
            resumed = _embed_batches(enc, items, todo, rows, partial, batch_size, quiet, client)
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
        write_store(path, arrays, manifest)
        write_ref(root, dataset.name, enc.entity, enc.name, path)
        shutil.rmtree(partial, ignore_errors=True)
    n_new = len(todo) - resumed
    return BuildReport(Store(path), True, embedded=n_new, reused=reused, resumed=resumed, skipped=skipped)


def _check_unique(items: Batch) -> None:
    seen: set[str] = set()
    for item_id in items.ids:
        if item_id in seen:
            raise EncoderError(f"id {item_id!r} occurs more than once in the input; ids must be unique")
        seen.add(item_id)


def _reusable_rows(
    root: Path, enc: Encoder, fingerprint: dict[str, Any], hashes: list[str]
) -> tuple[dict[int, Any], int]:
    """Rows already embedded by a compatible store (same fingerprint), keyed by our item index."""
    wanted = {h: i for i, h in enumerate(hashes)}
    rows: dict[int, Any] = {}
    key = digest(fingerprint)
    for path in iter_stores(root):
        if path.parent.name != enc.name or path.parent.parent.name != enc.entity:
            continue
        with Store(path) as old:
            if old.manifest.get("fingerprint_hash") != key:
                continue
            hits = [(wanted[h], j) for j, h in enumerate(old.item_hashes) if h in wanted and wanted[h] not in rows]
            if not hits:
                continue
            arrays = old.arrays()
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
    quiet: bool, client: Any,
) -> int:  # fmt: skip
    """Embed ``todo`` in batches into ``rows``, here or on a cluster; returns how many came from a killed build.

    Every finished batch is saved under ``partial`` first, so that a killed build (or a lost worker) costs only the
    batches in flight; a restart with the same plan reuses the saved ones.
    """
    plan = {"ids": [items.ids[i] for i in todo], "batch_size": batch_size}
    plan_file = partial / "plan.json"
    if partial.exists() and (not plan_file.exists() or json.loads(plan_file.read_text()) != plan):
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(json.dumps(plan))
    batches = [
        (todo[k : k + batch_size], partial / f"batch-{k // batch_size:06d}.npz")
        for k in range(0, len(todo), batch_size)
    ]
    missing = [(enc, items.take(index), part) for index, part in batches if not part.exists()]
    resumed = len(todo) - sum(len(batch) for _, batch, _ in missing)
    unit = "drugs" if enc.entity == "drug" else "cell lines"
    run_tasks(
        _embed_part, missing, client, desc=enc.name, quiet=quiet, sizes=[len(b) for _, b, _ in missing], unit=unit
    )
    for index, part in batches:
        rows.update(zip(index, _load_part(part, len(index)), strict=True))
    return resumed


def _embed_part(enc: Encoder, batch: Batch, part: Path) -> None:
    """One batch: embed, check the output, save it atomically (a task that may run on any worker, even twice)."""
    _save_part(part, _validated(enc, enc.embed(batch), len(batch)))


def _validated(enc: Encoder, out: np.ndarray | Ragged, n: int) -> list[Any]:
    """Per-item outputs, after checking that the encoder returned one of the promised shape per item."""
    if isinstance(out, Ragged):
        lengths = {name: len(values) for name, values in out.arrays.items()}
        if set(lengths.values()) != {n}:
            raise RuntimeError(f"encoder {enc.name!r} returned {lengths} ragged items for a batch of {n}")
        return [{name: values[i] for name, values in out.arrays.items()} for i in range(n)]
    out = np.asarray(out)
    if out.shape != (n, enc.dim):
        raise RuntimeError(
            f"encoder {enc.name!r} returned shape {out.shape} for a batch of {n}, expected {(n, enc.dim)}"
        )
    return list(out.astype(np.float32))


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
            return list(data["embeddings"])
        out: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
        for key in data.files:
            name, i = key.rsplit("__", 1)
            out[int(i)][name] = data[key]
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
