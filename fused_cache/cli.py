"""``fused-cache``: build, inspect, verify, export and clean embedding stores."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from fused_cache import datasets
from fused_cache.console import DATA_ERROR, cache_dir_option, dataset_option, fail, run_cli, writing
from fused_cache.datasets import DatasetError
from fused_cache.encoders.base import EncoderError
from fused_cache.encoders.registry import DEFAULT_ENCODERS, ENCODERS, encoder_class
from fused_cache.extras import DISTRIBUTION
from fused_cache.logs import add_verbose
from fused_cache.stores import (
    CacheNotWritable,
    CorruptStore,
    StaleStore,
    Store,
    StoreNotFound,
    cache_root,
    check_built_from,
    gc,
    iter_model_refs,
    iter_refs,
    iter_stores,
    open_store,
)

_cache_dir, _dataset = cache_dir_option, dataset_option


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name=DISTRIBUTION, prog_name="fused-cache")
def cli() -> None:
    """Compute frozen encoder embeddings once into versioned Zarr/HDF5 stores."""


@cli.command()
@click.option(
    "--encoder",
    "names",
    multiple=True,
    required=True,
    help=f"Comma-separated (or repeated): {', '.join(ENCODERS)}, or 'all'.",
)
@_dataset
@_cache_dir
@click.option(
    "--checkpoint", type=click.Path(path_type=Path), default=None, help="Local model directory (FM encoders)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Items per batch.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["zarr", "hdf5"]),
    default="zarr",
    show_default=True,
    help="Store format: a Zarr directory or one HDF5 file.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Stored precision of the embeddings.",
)
@click.option(
    "--on-error",
    type=click.Choice(["raise", "skip"]),
    default="raise",
    show_default=True,
    help="An invalid item stops the build (raise) or is left out and recorded in the manifest (skip).",
)
@click.option("--trust-checkpoint", is_flag=True, help="Allow pickle-based checkpoints (only for files you trust).")
@click.option(
    "--scheduler", default=None, help="Spread batches over Dask: 'local' or tcp://HOST:8786 (shared cache dir)."
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Workers of --scheduler local (default: cores)."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def build(
    names: tuple[str, ...], dataset: str, cache_dir: Path | None, checkpoint: Path | None, device: str,
    batch_size: int, fmt: str, dtype: str, on_error: str, trust_checkpoint: bool, scheduler: str | None,
    workers: int | None, quiet: bool,
) -> None:  # fmt: skip
    """Embed a dataset's drugs or cell lines with ENCODER and publish the store (a no-op when up to date)."""
    from fused_cache.build import build_store

    names = tuple(n for given in names for n in given.split(",") if n)  # lists are comma-separated everywhere
    chosen = list(DEFAULT_ENCODERS) if "all" in names else list(names)
    unknown = [n for n in chosen if n not in ENCODERS]
    if unknown:
        raise click.BadParameter(
            f"unknown encoder {unknown[0]!r}; known: {', '.join(ENCODERS)}", param_hint="--encoder"
        )
    ds = datasets.load(dataset)
    given = {"checkpoint": checkpoint, "device": device if device != "auto" else None,
             "trust_checkpoint": trust_checkpoint or None}  # fmt: skip
    for name in chosen:
        accepted = inspect.signature(encoder_class(name).__init__).parameters
        options = {k: v for k, v in given.items() if v is not None and k in accepted}
        ignored = [k for k, v in given.items() if v is not None and k not in accepted]
        if ignored and len(chosen) == 1:
            raise click.UsageError(f"encoder {name!r} takes no --{ignored[0].replace('_', '-')}")
        with _skip_advice(), writing(cache_root(cache_dir)):
            report = build_store(ds, name, cache_dir, fmt=fmt, batch_size=batch_size, dtype=dtype,
                                 on_error=on_error, quiet=quiet, encoder_options=options, scheduler=scheduler,
                                 workers=workers)  # fmt: skip
        click.echo(str(report))
        if report.skipped:
            click.echo(f"  skipped (recorded in the manifest): {report.skipped}")
        for problem in report.damaged:
            click.echo(f"  damaged, not used (rebuilt or embedded again): {problem}", err=True)


@cli.command()
@click.option("--encoder", required=True, help=f"One of {', '.join(ENCODERS)}.")
@click.option(
    "--smiles",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV/TSV/Parquet of molecules: a 'smiles' column, ids from 'drug_id' or 'id' (else mol0, mol1, ...).",
)
@click.option(
    "--adata",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="AnnData .h5ad of expression profiles: cells x genes in X, gene symbols as var_names.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output file: .csv, .parquet, .npy, .h5ad.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--name", default=None, help="Name the store's ref is kept under [default: embed-<input file stem>].")
@_cache_dir
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Local model directory (FMs).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1), help="Items per batch.")
@click.option(
    "--on-error",
    type=click.Choice(["raise", "skip"]),
    default="raise",
    show_default=True,
    help="An invalid item stops the run (raise) or is left out and recorded in the manifest (skip).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def embed(
    encoder: str, smiles: Path | None, adata: Path | None, out: Path, force: bool, name: str | None,
    cache_dir: Path | None,
    checkpoint: Path | None, device: str, batch_size: int, on_error: str, quiet: bool,
) -> None:  # fmt: skip
    """Embed molecules (--smiles) or expression profiles (--adata) without a response table, through the cache."""
    from fused_cache.build import build_store
    from fused_cache.embed import read_adata, read_smiles
    from fused_cache.export import export as write
    from fused_cache.outputs import check_new_file

    if (smiles is None) == (adata is None):
        raise click.UsageError("give exactly one of --smiles FILE or --adata FILE")
    fmt = out.suffix.lstrip(".")
    if fmt not in ("csv", "parquet", "npy", "h5ad"):
        raise click.UsageError("--out must end in .csv, .parquet, .npy or .h5ad")
    cls = encoder_class(encoder)
    if (cls.entity == "drug") != (smiles is not None):
        raise click.UsageError(
            f"encoder {encoder!r} embeds {cls.entity}s: use --{'smiles' if cls.entity == 'drug' else 'adata'}"
        )
    check_new_file(out, force)  # before embedding anything
    items = read_smiles(smiles, name) if smiles is not None else read_adata(adata, cls.modality or "expression", name)
    accepted = inspect.signature(cls.__init__).parameters
    given = {"checkpoint": checkpoint, "device": device if device != "auto" else None}
    options = {k: v for k, v in given.items() if v is not None and k in accepted}
    with _skip_advice(), writing(cache_root(cache_dir)):
        report = build_store(items, encoder, cache_dir, batch_size=batch_size, on_error=on_error, quiet=quiet,
                             encoder_options=options)  # fmt: skip
    click.echo(str(report))
    with report.store as store, writing(out):
        paths = write(store, fmt, out, items, force, "--out")
    click.echo(f"wrote {report.store.manifest['n']} x {report.store.manifest['dim']} to {', '.join(map(str, paths))}")


@cli.command(name="list")
@_cache_dir
def list_(cache_dir: Path | None) -> None:
    """Every store under the cache root, and which dataset builds point at it."""
    root = cache_root(cache_dir)
    refs: dict[Path, list[str]] = {}
    for ref in iter_refs(root):
        refs.setdefault(ref.store.resolve(), []).append(ref.source or ref.dataset)
    for model in iter_model_refs(root):
        for store in model.stores:
            refs.setdefault(store.resolve(), []).append(f"model {model.owner}")
    paths = list(iter_stores(root))
    if not paths:
        click.echo(f"no stores under {root}")
        return
    click.echo(f"{'ENTITY':6} {'ENCODER':13} {'VERSION':17} {'ITEMS':>6} {'DIM':>6}  {'DTYPE':8} {'FORMAT':6} "
               "KEPT BY (dataset builds, source, saved models)")  # fmt: skip
    for path in paths:
        try:
            store = Store(path)
        except CorruptStore as err:
            click.echo(f"CORRUPT {err}")
            continue
        with store:
            m = store.manifest
            used = ",".join(refs.get(path.resolve(), [])) or "unreferenced"
            click.echo(f"{m['entity']:6} {m['encoder']:13} v{m['version']:16} {m['n']:>6} {m['dim']:>6}  "
                       f"{m['dtype']:8} {store.format:6} {used}")  # fmt: skip


@cli.command()
@click.argument("encoder")
@_dataset
@_cache_dir
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON instead of a summary.")
def info(encoder: str, dataset: str, cache_dir: Path | None, as_json: bool) -> None:
    """Summarise ENCODER's store for a dataset (or a store path): items, dim, model, when and how it was built."""
    store = Store(encoder) if Path(encoder).exists() else open_store(encoder, dataset=dataset, cache_dir=cache_dir)
    with store:
        click.echo(json.dumps(store.manifest, indent=2) if as_json else _overview(store, encoder))


def _our_version(libraries: dict[str, str]) -> str:
    """This project's version in a manifest (recorded as ``fused`` before the distribution was renamed)."""
    return libraries.get(DISTRIBUTION) or libraries.get("fused", "?")


def _overview(store: Store, name: str) -> str:
    """The manifest's few lines a user asks for first; ``--json`` has the rest (checksums, hashes, libraries)."""
    m = store.manifest
    settings = ", ".join(f"{k}={'(see --json)' if isinstance(v, dict | list) else v}"
                         for k, v in m["fingerprint"].get("settings", {}).items()) or "none"  # fmt: skip
    weights = m["fingerprint"].get("weights_sha256")
    model = ", ".join(f"{k}: {v}" for k, v in m.get("model", {}).items()) or "none recorded"
    rows = {
        "store": f"{m['entity']} / {m['encoder']} v{m['version']} ({store.format}, {m['dtype']})",
        "path": str(store.path),
        "items": f"{m['n']}" + (f" ({len(m['skipped'])} skipped: see --json)" if m.get("skipped") else ""),
        "dim": str(m["dim"]),
        "model": model + (f"; weights sha256 {weights[:16]}..." if weights else ""),
        "settings": settings,
        "created": f"{m['created']} with {DISTRIBUTION} {_our_version(m.get('libraries', {}))}",
        "dataset": str(m.get("dataset", "")),
    }
    lines = [f"{key:9} {value}" for key, value in rows.items()]
    return "\n".join([*lines, f"(the whole manifest: fused-cache info {name} --json)"])


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@_cache_dir
def verify(paths: tuple[Path, ...], cache_dir: Path | None) -> None:
    """Recompute checksums of the given stores (default: all) and name every corrupt one; verifying nothing fails."""
    root = cache_root(cache_dir)
    targets = list(paths) or list(iter_stores(root))
    if not targets:
        fail(f"no stores to verify under {root}" + ("" if root.is_dir() else " (no such directory)"))
    problems = []
    for path in targets:
        try:
            with Store(path) as store:
                problems += store.verify()
        except CorruptStore as err:
            problems.append(str(err))
    for problem in problems:
        click.echo(f"CORRUPT {problem}", err=True)
    click.echo(f"verified {len(targets)} store(s): {len(problems)} problem(s)")
    if problems:
        sys.exit(DATA_ERROR)


@cli.command()
@click.argument("encoder")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--to",
    "target",
    required=True,
    help="Output file (.csv, .parquet, .npy, .h5ad), or 'drevalpy' with a FOLDER argument.",
)
@click.option("--force", is_flag=True, help="Replace the output file (drevalpy: the feature file) if it exists.")
@_dataset
@_cache_dir
def export(encoder: str, folder: Path | None, target: str, force: bool, dataset: str, cache_dir: Path | None) -> None:
    """Export ENCODER's store: CSV, Parquet, .npy (+ .ids.txt), AnnData .h5ad, or drevalpy's feature files in FOLDER
    (a drevalpy <data_path>/<dataset_name> directory), once it verifies and was built from the dataset's current
    items. A complete drevalpy dataset (responses, gene lists, fingerprints, our folds): fused-train drevalpy."""
    from fused_cache.export import export as write

    if target == "drevalpy":
        if folder is None:
            raise click.UsageError(
                "--to drevalpy needs the output folder: fused-cache export ENCODER --to drevalpy DIR"
            )
        fmt, out = "drevalpy", folder
    else:
        fmt, out = Path(target).suffix.lstrip("."), Path(target)
        if folder is not None or fmt not in ("csv", "parquet", "npy", "h5ad"):
            raise click.UsageError("--to must end in .csv, .parquet, .npy or .h5ad, or be 'drevalpy' followed by DIR")
    ds = datasets.load(dataset)
    with open_store(encoder, dataset=ds, cache_dir=cache_dir) as store:
        if not store.dense:
            raise click.UsageError(
                f"{encoder!r} stores ragged arrays ({', '.join(store.manifest['arrays'])}), not one embedding per "
                "item: read them with fused_cache.open_store(...).ragged(name), or export a dense encoder"
            )
        check_built_from(store, ds, cache_root(cache_dir))
        with writing(out):
            paths = write(store, fmt, out, ds, force)
        click.echo(f"wrote {store.manifest['n']} x {store.manifest['dim']} to {', '.join(map(str, paths))}")


@cli.command()
@click.argument("encoder")
@_dataset
@_cache_dir
def path(encoder: str, dataset: str, cache_dir: Path | None) -> None:
    """Print where ENCODER's store for a dataset lives (for reading it from other tools)."""
    with open_store(encoder, dataset=dataset, cache_dir=cache_dir) as store:
        click.echo(str(store.path))


@cli.command(name="gc")
@_cache_dir
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--prune-model-refs", is_flag=True, help="Also drop the refs of saved models whose directory no longer exists."
)
def gc_(cache_dir: Path | None, dry_run: bool, prune_model_refs: bool) -> None:
    """Remove store versions that no dataset build and no saved model points to, and leftovers of killed builds."""
    root = cache_root(cache_dir)
    with writing(root):
        removed = gc(root, dry_run=dry_run, prune_model_refs=prune_model_refs)
    for path in removed:
        click.echo(f"{'would remove' if dry_run else 'removed'} {path}")
    click.echo(f"{len(removed)} path(s)")
    gone = [ref for ref in iter_model_refs(root) if not ref.owner.exists()] if root.is_dir() else []
    for ref in gone:
        click.echo(f"kept for a model that no longer exists: {ref.owner} ({len(ref.stores)} stores; ref {ref.path}); "
                   "--prune-model-refs lets gc remove them")  # fmt: skip


@cli.command()
@_dataset
@_cache_dir
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("cache_manifests"),
    show_default=True,
    help="Folder of the summaries (one JSON per store, under the dataset's name).",
)
@click.option("--check", is_flag=True, help="Compare local stores with the summaries in --out instead of writing.")
def summary(dataset: str, cache_dir: Path | None, out: Path, check: bool) -> None:
    """Write (or --check) JSON summaries of the dataset's stores: version, input hash, shape, checksum.

    --check fails when a store differs from its summary, or when nothing could be compared."""
    root = cache_root(cache_dir)
    key = datasets.key_of(dataset)
    refs = [ref for ref in iter_refs(root) if ref.key == key]
    if not refs:
        fail(f"no stores of dataset {dataset!r} under {root}: build them first (fused-cache build --encoder all)")
    mismatches = compared = 0
    for ref in refs:
        with Store(ref.store) as store:
            summary = _summary(store.manifest)
        target = out / ref.dataset / f"{ref.entity}-{ref.encoder}.json"
        if check:
            if not target.exists():
                click.echo(f"{ref.encoder}: no summary at {target}, not compared")
                continue
            expected = json.loads(target.read_text())
            differ = sorted(k for k in expected if expected[k] != summary.get(k))
            mismatches += bool(differ)
            compared += 1
            click.echo(f"{ref.encoder}: {'matches' if not differ else 'differs in ' + ', '.join(differ)}")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
            click.echo(f"wrote {target}")
    if check:
        built = {(ref.entity, ref.encoder) for ref in refs}
        for target in sorted((out / refs[0].dataset).glob("*.json")):
            if tuple(target.stem.split("-", 1)) not in built:
                click.echo(f"{target.stem.split('-', 1)[1]}: summary {target} has no local store, not compared")
        if not compared:
            fail(f"nothing compared: no summary under {out / refs[0].dataset} matches a local store of {dataset!r}")
    if mismatches:
        sys.exit(DATA_ERROR)


@contextmanager
def _skip_advice() -> Iterator[None]:
    """Items an encoder refuses: the build's message, plus the option that leaves them out (only build and embed
    have it)."""
    from fused_cache.build import InvalidItems

    try:
        yield
    except InvalidItems as err:
        advice = "Or pass --on-error skip to leave them out (they are listed in the manifest)."
        raise EncoderError(f"{err} {advice}") from err


def _summary(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "encoder",
        "entity",
        "dataset",
        "version",
        "input_hash",
        "fingerprint_hash",
        "n",
        "dim",
        "dtype",
        "checksum",
    )
    return {k: manifest[k] for k in keys} | {"skipped": sorted(manifest["skipped"])}


add_verbose(cli)


def main() -> None:
    from fused_cache.export import ExportError
    from fused_cache.outputs import OutputError

    run_cli(cli, (EncoderError, DatasetError, StoreNotFound, CorruptStore, StaleStore, CacheNotWritable, ExportError,
                  OutputError))  # fmt: skip
