"""Building, reusing, resuming, verifying and reading embedding stores."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from filelock import FileLock
from helpers import subset

from fused_cache import build_store, open_store
from fused_cache.datasets import Dataset
from fused_cache.encoders.base import DrugBatch, EncoderError
from fused_cache.encoders.rdkit_fingerprints import MorganEncoder
from fused_cache.stores import CorruptStore, Store, StoreNotFound, gc, iter_stores

HERE = Path(__file__).parent


class CountingMorgan(MorganEncoder):
    """Morgan fingerprints that count what they embed and can die after ``crash_after`` batches."""

    def __init__(self, crash_after: int | None = None) -> None:
        super().__init__()
        self.embedded: list[str] = []
        self.crash_after = crash_after

    def embed(self, batch: DrugBatch) -> np.ndarray:
        if self.crash_after is not None and len(self.embedded) >= self.crash_after * 2:
            raise KeyboardInterrupt("simulated kill")
        self.embedded += batch.ids
        return super().embed(batch)


def test_build_then_rebuild_is_a_noop(small: Dataset, cache: Path) -> None:
    first = build_store(small, CountingMorgan(), quiet=True)
    assert first.created and first.embedded == 8
    again = CountingMorgan()
    second = build_store(small, again, quiet=True)
    assert not second.created and again.embedded == []
    assert second.store.path == first.store.path
    store = open_store("morgan", entity="drug", dataset="small")
    assert list(store.ids) == list(small.drugs["drug_id"])
    assert store.embeddings.shape == (8, 2048) and store.manifest["n"] == 8


def test_new_ids_are_embedded_alone_and_old_rows_reused(gdsc: Dataset, cache: Path) -> None:
    old = build_store(subset(gdsc, 8, 5), CountingMorgan(), quiet=True).store
    encoder = CountingMorgan()
    new = build_store(subset(gdsc, 12, 5), encoder, quiet=True)
    assert encoder.embedded == list(gdsc.drugs["drug_id"][8:12])
    assert new.reused == 8 and new.store.version != old.version
    np.testing.assert_array_equal(new.store.embeddings[:8], old.embeddings[:])
    assert len(list(iter_stores(cache))) == 2  # the new version sits beside the old one


def test_killed_build_leaves_nothing_visible_and_resumes(gdsc: Dataset, cache: Path) -> None:
    ds = subset(gdsc, 10, 5)
    with pytest.raises(KeyboardInterrupt):
        build_store(ds, CountingMorgan(crash_after=3), batch_size=2, quiet=True)
    assert list(iter_stores(cache)) == []
    with pytest.raises(StoreNotFound, match="fused-cache build --encoder morgan --dataset small"):
        open_store("morgan", dataset="small")
    encoder = CountingMorgan()
    report = build_store(ds, encoder, batch_size=2, quiet=True)
    assert report.resumed == 6 and encoder.embedded == list(ds.drugs["drug_id"][6:])
    assert report.store.verify() == []
    assert not list((cache / "drug" / "morgan").glob(".partial-*"))


def _run_build(cache: Path, *args: str) -> subprocess.Popen:
    # a build whose encoder sleeps per batch, so that kills and races happen mid-build
    code = "import sys; sys.path.insert(0, sys.argv[1]); from slow_build import main; main(sys.argv[2:])"
    return subprocess.Popen([sys.executable, "-c", code, str(HERE), str(cache), *args], stderr=subprocess.PIPE)


def test_process_killed_mid_build_then_resumed(cache: Path) -> None:
    proc = _run_build(cache, "0.3")
    partial = cache / "drug" / "morgan"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(partial.glob(".partial-*/batch-*.npz"))) < 2:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert list(iter_stores(cache)) == []
    finished = _run_build(cache, "0")
    assert finished.wait(timeout=120) == 0, finished.stderr.read().decode()
    (store,) = iter_stores(cache)
    assert Store(store).verify() == []


def test_concurrent_builds_of_one_version(cache: Path) -> None:
    procs = [_run_build(cache, "0.05") for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()
    (store,) = iter_stores(cache)
    assert Store(store).verify() == []


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_plain_zarr_and_h5py_read_a_store(small: Dataset, cache: Path, fmt: str) -> None:
    path = build_store(small, "methylation", fmt=fmt, quiet=True).store.path
    if fmt == "zarr":
        group = zarr.open_group(path, mode="r")
        ids, emb = group["ids"][:], group["embeddings"][:]
        manifest = json.loads((path / "manifest.json").read_text())
    else:
        with h5py.File(path, "r") as f:
            ids, emb = f["ids"][:].astype(str), f["embeddings"][:]
            manifest = json.loads(f.attrs["manifest"])
    assert list(ids) == list(small.omics["methylation"].index)
    np.testing.assert_allclose(emb, small.omics["methylation"].to_numpy(np.float32))
    assert manifest["encoder"] == "methylation" and manifest["dim"] == emb.shape[1]


def test_a_store_names_the_id_it_lacks_as_written(small: Dataset, cache: Path) -> None:
    store = build_store(small, "methylation", quiet=True).store
    ids = np.array([*small.omics["methylation"].index[:2], "ACH-none"])  # numpy strings, as the trainer passes them
    with pytest.raises(KeyError, match=r"has no cell 'ACH-none' \(1 missing\)"):
        store.index_of(ids)


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_verify_names_a_store_with_a_flipped_byte(small: Dataset, cache: Path, fmt: str) -> None:
    path = build_store(small, "morgan", fmt=fmt, quiet=True).store.path
    assert Store(path).verify() == []
    if fmt == "zarr":
        target, offset = next((path / "embeddings").rglob("c/*/*")), 40
    else:
        with h5py.File(path, "r") as f:
            target, offset = path, f["embeddings"].id.get_offset() + 100
    data = bytearray(target.read_bytes())
    data[offset] ^= 0xFF
    target.write_bytes(bytes(data))
    problems = Store(path).verify()
    assert len(problems) == 1 and str(path) in problems[0]


def test_gc_removes_unreferenced_versions_and_dead_leftovers(gdsc: Dataset, cache: Path) -> None:
    build_store(subset(gdsc, 4, 5), "morgan", quiet=True)
    current = build_store(subset(gdsc, 6, 5), "morgan", quiet=True).store.path
    with pytest.raises(KeyboardInterrupt):
        build_store(subset(gdsc, 8, 5), CountingMorgan(crash_after=0), batch_size=2, quiet=True)
    (leftover,) = (cache / "drug" / "morgan").glob(".partial-*")
    version = leftover.name.removeprefix(".partial-")
    with FileLock(leftover.parent / f".{version}.lock"):  # as if that build were still running
        assert leftover not in gc(cache, dry_run=True)
    removed = gc(cache)
    assert len(removed) == 2 and leftover in removed and list(iter_stores(cache)) == [current]


def test_float16_on_request(small: Dataset, cache: Path) -> None:
    store = build_store(small, "methylation", dtype="float16", quiet=True).store
    assert store.embeddings.dtype == np.float16


def test_graph_store_is_ragged(small: Dataset, cache: Path) -> None:
    store = build_store(small, "graph", quiet=True).store
    atoms, offsets = store.ragged("atom_features")
    edges, edge_offsets = store.ragged("edges")
    assert atoms.shape[1] == 75 and offsets[-1] == len(atoms) and len(offsets) == 9
    first = edges[edge_offsets[0] : edge_offsets[1]]
    assert first.max() < offsets[1] - offsets[0]  # edge indices are local to each drug


def _with_smiles(ds: Dataset, drug: int, smiles: str) -> Dataset:
    drugs = ds.drugs.copy()
    drugs.loc[drug, "smiles"] = smiles
    return Dataset(ds.name, drugs, ds.cells, ds.pairs, ds.omics)


def test_invalid_smiles_is_named_or_skipped(small: Dataset, cache: Path) -> None:
    bad = _with_smiles(small, 2, "C1CC(garbage")
    drug = bad.drugs["drug_id"][2]
    for encoder in ("morgan", "chemnet", "graph"):
        with pytest.raises(EncoderError, match=f"drug '{drug}': invalid SMILES"):
            build_store(bad, encoder, quiet=True)
    assert list(iter_stores(cache)) == []
    report = build_store(bad, "chemnet", on_error="skip", quiet=True)
    assert drug in report.store.manifest["skipped"] and drug not in report.store.ids
    assert report.store.manifest["n"] == 7


def test_nan_in_omics_is_named(small: Dataset, cache: Path) -> None:
    from fused_cache.encoders.omics import MethylationEncoder

    omics = dict(small.omics)
    omics["methylation"] = omics["methylation"].copy()
    omics["methylation"].iloc[3, 5] = np.nan
    ds = Dataset(small.name, small.drugs, small.cells, small.pairs, omics)
    cell = omics["methylation"].index[3]
    with pytest.raises(EncoderError, match=f"cell '{cell}': methylation value of gene"):
        build_store(ds, MethylationEncoder(missing="error"), quiet=True)
    dropped = build_store(ds, "methylation", quiet=True).store.manifest["notes"]["dropped_features"]
    assert dropped == [omics["methylation"].columns[5]]  # default: the unmeasured gene is dropped and named


def test_expression_store_drops_genes_unmeasured_in_some_cells(gdsc: Dataset, cache: Path) -> None:
    store = build_store(gdsc, "expression", quiet=True).store
    assert store.embeddings.shape == (548, 691)
    assert sorted(store.manifest["notes"]["dropped_features"]) == ["CHD2", "CRLF2", "NUTM2B", "P2RY8", "SSX2", "U2AF1"]


def test_empty_input_and_unknown_encoder(small: Dataset, cache: Path) -> None:
    strangers = small.omics["methylation"].rename(index=lambda cell: f"unknown-{cell}")
    ds = Dataset(small.name, small.drugs, small.cells, small.pairs, {"methylation": strangers})
    with pytest.raises(EncoderError, match="nothing for encoder 'methylation'"):
        build_store(ds, "methylation")
    with pytest.raises(EncoderError, match="unknown encoder 'nope'"):
        build_store(small, "nope")


def test_corrupt_store_directory_is_reported(small: Dataset, cache: Path) -> None:
    path = build_store(small, "morgan", quiet=True).store.path
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptStore, match=str(path)):
        Store(path)
