"""Issue #12 on the store side: stores are identified by their dataset's path and content, damaged stores are never
used or copied, encoders write only finite values of bounded inputs, ChemNet's bytes do not depend on the batch size,
gc never removes a store whose ref is about to be written, and every failure is one line with its exit code."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_console, subset, write_dataset
from test_stores import CountingMorgan

import fused_cache.build as build_module
from fused_cache import build_store, datasets, open_store
from fused_cache.cli import main
from fused_cache.datasets import Dataset
from fused_cache.encoders.base import DrugBatch, EncoderError
from fused_cache.encoders.rdkit_fingerprints import MorganEncoder
from fused_cache.stores import CacheNotWritable, CorruptStore, Store, gc, iter_stores

CISPLATIN = "84691"  # RDKit's BCUT2D descriptors are undefined for it


def fused_cache(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    return run_console(main, "fused-cache", capsys, *args)


def flip_byte(path: Path) -> None:
    """Damage the first chunk of a Zarr store's embeddings, as a failing disk would."""
    chunk = next((path / "embeddings").rglob("c/*/*"))
    data = bytearray(chunk.read_bytes())
    data[40] ^= 0xFF
    chunk.write_bytes(bytes(data))


# Case 1: a store belongs to a dataset directory, not to a folder name.


def test_two_folders_with_one_name_keep_their_own_stores(gdsc: Dataset, tmp_path: Path, cache: Path) -> None:
    a = datasets.load(str(write_dataset(subset(gdsc, 4, 5), tmp_path / "a" / "mydata")))
    b = datasets.load(str(write_dataset(subset(gdsc, 6, 5), tmp_path / "b" / "mydata")))
    store_a = build_store(a, "morgan", quiet=True).store
    store_b = build_store(b, "morgan", quiet=True).store
    assert store_a.version != store_b.version
    assert open_store("morgan", dataset=str(tmp_path / "a" / "mydata")).path == store_a.path
    assert gc(cache, dry_run=True) == []  # neither is taken for unreferenced


def test_dataset_dot_is_the_directory_it_names(
    gdsc: Dataset, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_dataset(subset(gdsc, 4, 5), tmp_path / "mydata")
    monkeypatch.chdir(folder)
    assert fused_cache(capsys, "build", "--encoder", "morgan", "--dataset", ".", "--quiet")[0] == 0
    monkeypatch.chdir(tmp_path)
    assert open_store("morgan", dataset=str(folder)).manifest["dataset"] == "mydata"


def test_export_refuses_a_store_built_before_the_dataset_changed(
    gdsc: Dataset, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_dataset(subset(gdsc, 4, 5), tmp_path / "mydata")
    build_store(datasets.load(str(folder)), "morgan", quiet=True)
    drugs = pd.read_parquet(folder / "drugs.parquet")
    drugs.assign(smiles=["CCO", *drugs["smiles"][1:]]).to_parquet(folder / "drugs.parquet")
    code, output = fused_cache(capsys, "export", "morgan", "--dataset", str(folder), "--to", str(tmp_path / "m.npy"))
    assert code == 3 and f"run: fused-cache build --encoder morgan --dataset {folder}" in output
    assert not (tmp_path / "m.npy").exists()


# Case 3: damaged stores are rebuilt, never used, never copied.


def test_build_rebuilds_a_damaged_version_instead_of_calling_it_up_to_date(
    small: Dataset, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSED_SKIP_CHECKSUMS", "1")  # the training opt-out does not weaken builds or verify
    path = build_store(small, "morgan", quiet=True).store.path
    flip_byte(path)
    report = build_store(small, "morgan", quiet=True)
    assert report.created and report.store.path == path and report.store.verify() == []
    assert str(path) in report.damaged[0]


def test_a_deleted_chunk_is_refused_not_read_as_zeros(
    gdsc: Dataset, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_dataset(subset(gdsc, 4, 5), tmp_path / "d")
    path = build_store(datasets.load(str(folder)), "mutation", quiet=True).store.path
    next((path / "embeddings").rglob("c/*/*")).unlink()
    with pytest.raises(CorruptStore, match="missing on disk: 1 of 1 chunks of 'embeddings'"):
        Store(path).load(checksum=False)  # even without the checksum
    code, output = fused_cache(capsys, "export", "mutation", "--dataset", str(folder), "--to", str(tmp_path / "m.npy"))
    assert code == 3 and "missing on disk" in output and not (tmp_path / "m.npy").exists()


def test_rows_of_a_damaged_store_are_not_copied_into_a_new_one(gdsc: Dataset, cache: Path) -> None:
    old = build_store(subset(gdsc, 8, 5), "morgan", quiet=True).store
    flip_byte(old.path)
    encoder = CountingMorgan()
    new = build_store(subset(gdsc, 12, 5), encoder, quiet=True)
    assert new.reused == 0 and len(encoder.embedded) == 12  # embedded afresh, not laundered
    assert any(str(old.path) in problem for problem in new.damaged)
    fresh = MorganEncoder().embed(DrugBatch(list(gdsc.drugs["drug_id"][:12]), list(gdsc.drugs["smiles"][:12])))
    np.testing.assert_array_equal(new.store.embeddings[:], fresh)


def test_a_damaged_saved_batch_is_embedded_again(gdsc: Dataset, cache: Path) -> None:
    ds = subset(gdsc, 10, 5)
    with pytest.raises(KeyboardInterrupt):
        build_store(ds, CountingMorgan(crash_after=3), batch_size=2, quiet=True)
    first = sorted(cache.glob("drug/morgan/.partial-*/batch-*.npz"))[0]
    first.write_bytes(first.read_bytes()[:100])  # truncated, as by a full disk
    encoder = CountingMorgan()
    report = build_store(ds, encoder, batch_size=2, quiet=True)
    assert report.resumed == 4 and len(encoder.embedded) == 6 and report.store.verify() == []
    assert "cannot be read" in report.damaged[0] and first.name in report.damaged[0]


# Case 4: encoders never write a non-finite value, and nothing of dim 0.


def test_rdkit2d_drops_descriptors_that_are_undefined_for_a_drug(gdsc: Dataset, cache: Path) -> None:
    drugs = gdsc.drugs[gdsc.drugs["drug_id"].isin([CISPLATIN, *gdsc.drugs["drug_id"][:3]])].reset_index(drop=True)
    pairs = gdsc.pairs[gdsc.pairs["drug_id"].isin(drugs["drug_id"])].reset_index(drop=True)
    ds = Dataset("with-cisplatin", drugs, gdsc.cells, pairs, {})
    store = build_store(ds, "rdkit2d", quiet=True).store
    assert np.isfinite(store.embeddings[:]).all()
    dropped = store.manifest["notes"]["dropped_features"]
    assert sorted(dropped) == [f"BCUT2D_{k}" for k in ("CHGHI", "CHGLO", "LOGPHI", "LOGPLOW", "MRHI", "MRLOW",
                                                        "MWHI", "MWLOW")]  # fmt: skip
    assert set(map(tuple, dropped.values())) == {(CISPLATIN,)} and store.manifest["dim"] == 217 - 8


def test_an_encoder_output_that_is_not_finite_is_refused(small: Dataset, cache: Path) -> None:
    class Broken(MorganEncoder):
        def embed(self, batch: DrugBatch) -> np.ndarray:
            out = super().embed(batch)
            out[-1, 3] = np.nan
            return out

    with pytest.raises(EncoderError, match="non-finite embedding value at \\[3\\] for drug"):
        build_store(small, Broken(), quiet=True)
    assert list(iter_stores(cache)) == []


def test_omics_with_every_gene_unmeasured_somewhere_is_dim_0_and_refused(small: Dataset, cache: Path) -> None:
    matrix = pd.DataFrame({"A": [np.nan, 1.0], "B": [2.0, np.nan]}, index=list(small.cells["cell_id"][:2]))
    ds = Dataset(small.name, small.drugs, small.cells, small.pairs, {"expression": matrix})
    with pytest.raises(EncoderError, match="would have dim 0 \\(it dropped all 2 features"):
        build_store(ds, "expression", quiet=True)


def test_every_drug_encoder_bounds_its_input(small: Dataset, cache: Path) -> None:
    huge = Dataset(small.name, small.drugs.assign(smiles=["C" * 5000, *small.drugs["smiles"][1:]]), small.cells,
                   small.pairs, small.omics)  # fmt: skip
    for encoder in ("morgan", "rdkit2d", "graph", "chemnet"):
        start = time.time()
        with pytest.raises(EncoderError, match="SMILES is 5000 characters; drug encoders take at most 1000"):
            build_store(huge, encoder, quiet=True)
        assert time.time() - start < 30
    big = Dataset(small.name, small.drugs.assign(smiles=["C" * 300, *small.drugs["smiles"][1:]]), small.cells,
                  small.pairs, small.omics)  # fmt: skip
    with pytest.raises(EncoderError, match="molecule has 300 heavy atoms; this encoder takes at most 250"):
        build_store(big, "rdkit2d", quiet=True)


# Case 8: ChemNet's bytes do not depend on --batch-size.


def test_chemnet_store_is_the_same_for_every_batch_size(small: Dataset, tmp_path: Path) -> None:
    stores = [build_store(small, "chemnet", tmp_path / str(b), batch_size=b, quiet=True).store for b in (1, 3, 64)]
    assert len({s.version for s in stores}) == 1
    assert len({s.manifest["checksum"] for s in stores}) == 1


# Case 9: gc and a build publishing at the same time.


def test_gc_waits_until_a_published_store_has_its_ref(
    small: Dataset, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = threading.Event()
    write_ref = build_module.write_ref

    def slow_write_ref(*args: object) -> None:
        published.set()  # the store is in place, its ref not yet: the window gc used to fall into
        time.sleep(0.5)
        write_ref(*args)

    monkeypatch.setattr(build_module, "write_ref", slow_write_ref)
    builder = threading.Thread(target=build_store, args=(small, "morgan"), kwargs={"quiet": True})
    builder.start()
    assert published.wait(timeout=60)
    removed = gc(cache)
    builder.join()
    assert removed == []
    assert open_store("morgan", dataset=small).verify() == []


# Crashes and checks that passed on nothing.


def test_a_noop_build_writes_nothing_and_a_real_one_names_an_unwritable_cache(
    small: Dataset, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_store(small, "morgan", quiet=True)

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(cache))

    for name in ("write_ref", "write_store", "publish_lock", "FileLock"):  # what a read-only cache would refuse
        monkeypatch.setattr(build_module, name, read_only)
    assert not build_store(small, "morgan", quiet=True).created
    with pytest.raises(CacheNotWritable, match=f"cache directory {cache} is not writable"):
        build_store(small, "graph", quiet=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_noop_build_on_a_read_only_cache_directory(small: Dataset, cache: Path) -> None:
    build_store(small, "morgan", quiet=True)
    for path in [cache, *cache.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        assert not build_store(small, "morgan", quiet=True).created
    finally:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_export_of_a_ragged_store_is_a_clear_usage_error(
    gdsc: Dataset, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(write_dataset(subset(gdsc, 4, 5), tmp_path / "d"))
    fused_cache(capsys, "build", "--encoder", "graph", "--dataset", folder, "--quiet")
    code, output = fused_cache(capsys, "export", "graph", "--dataset", folder, "--to", str(tmp_path / "g.parquet"))
    assert code == 2 and "'graph' stores ragged arrays (atom_features" in output and "Traceback" not in output


def test_checks_with_nothing_to_check_fail(tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = fused_cache(capsys, "verify", "--cache-dir", str(tmp_path / "typo"))
    assert code == 3 and "no stores to verify" in output and "(no such directory)" in output
    code, output = fused_cache(capsys, "summary", "--check", "--out", str(tmp_path / "manifests"))
    assert code == 3 and "no stores of dataset 'gdsc-deepcdr'" in output
    fused_cache(capsys, "build", "--encoder", "methylation", "--quiet")
    code, output = fused_cache(capsys, "summary", "--check", "--out", str(tmp_path / "manifests"))
    assert code == 3 and "nothing compared" in output


def test_a_store_with_an_empty_manifest_is_corrupt(
    gdsc: Dataset, tmp_path: Path, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(write_dataset(subset(gdsc, 4, 5), tmp_path / "d"))
    path = build_store(datasets.load(folder), "morgan", quiet=True).store.path
    (path / "manifest.json").write_text("{}")
    with pytest.raises(CorruptStore, match="its manifest lacks version, encoder"):
        Store(path)
    code, output = fused_cache(capsys, "export", "morgan", "--dataset", folder, "--to", str(tmp_path / "m.npy"))
    assert code == 3 and "its manifest lacks" in output and "Traceback" not in output


def test_summaries_record_the_dataset_and_the_source_hash(small: Dataset, cache: Path) -> None:
    manifest = build_store(small, "morgan", quiet=True).store.manifest
    assert manifest["source_hash"] and manifest["format_version"] == 2
    assert json.loads((cache / "refs" / "small" / "drug" / "morgan.json").read_text())["dataset"] == "small"
