"""Issue #12 on the trainer side: a run trains only on stores built from the dataset as it is now, that verify and
hold finite features; it records what it trained on and refuses to pool folds trained on other inputs; every pair it
leaves out is printed and written; fold files are safe names whatever the drug ids."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_console, tiny_spec

from fused_cache import build_store, datasets
from fused_cache.manifest import array_checksum
from fused_cache.stores import CorruptStore, StaleStore, Store, write_store
from fused_train.cli import main
from fused_train.runs import finished, load_run_inputs, predictions, train


def edit(folder: Path, table: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = folder / f"{table}.parquet"
    pd.read_parquet(path).pipe(change).to_parquet(path, index=False)


def set_smiles(folder: Path, row: int, smiles: str) -> str:
    drug = pd.read_parquet(folder / "drugs.parquet")["drug_id"][row]
    edit(folder, "drugs", lambda d: d.assign(smiles=[smiles if i == row else s for i, s in enumerate(d["smiles"])]))
    return drug


def fused_train(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    return run_console(main, "fused-train", capsys, *args)


def run_args(folder: Path, cache: Path, out: Path, fold: str = "0") -> list[str]:
    return ["run", "--drug-encoder", "morgan", "--omics", "methylation", "--dataset", str(folder), "--cache-dir",
            str(cache), "--epochs", "1", "--width", "16", "--heads", "2", "--proj", "8", "--hidden", "16,8",
            "--precision", "fp32", "--quiet", "--fold", fold, "--out", str(out)]  # fmt: skip


# Case 1: the trainer checks that each store was built from the dataset's current items.


def test_training_refuses_stores_built_before_the_dataset_changed(tiny_copy: tuple[Path, Path]) -> None:
    folder, cache = tiny_copy
    spec = tiny_spec(str(folder))
    drug = set_smiles(folder, 2, "CCO")
    with pytest.raises(StaleStore, match=f"1 changed \\(e.g. '{drug}'\\)\\); run: fused-cache build --encoder "
                                         f"morgan --dataset {folder} "):  # fmt: skip
        load_run_inputs(spec, cache)
    build_store(datasets.load(str(folder)), "morgan", cache, quiet=True)
    cell = pd.read_parquet(folder / "omics_expression.parquet")["cell_id"][0]
    edit(folder, "omics_expression", lambda m: m.assign(**{m.columns[1]: m[m.columns[1]] + 1.0}))
    with pytest.raises(StaleStore, match=f"expression .*1\\d* changed \\(e.g. '{cell}'\\)"):
        load_run_inputs(spec, cache)


# Cases 2 and 7: the run records its inputs, refuses to mix, and lists what it left out.


def test_a_run_records_its_stores_and_refuses_to_resume_on_others(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    out = tmp_path / "run"
    assert fused_train(capsys, *run_args(folder, cache, out))[0] == 0
    recorded = json.loads((out / "provenance.json").read_text())
    morgan = Store(recorded["store_paths"]["morgan"]).manifest
    assert recorded["stores"]["morgan"]["version"] == morgan["version"]
    assert recorded["stores"]["morgan"]["input_hash"] == morgan["input_hash"]

    set_smiles(folder, 2, "CCO")
    build_store(datasets.load(str(folder)), "morgan", cache, quiet=True)
    code, output = fused_train(capsys, *run_args(folder, cache, out, fold="0-1"))
    assert code == 3 and f"morgan: v{morgan['version']} -> v" in output and "pass another --out" in output
    assert finished(out) == {"lodo-seed0-" + sorted(pd.read_parquet(folder / "drugs.parquet")["drug_id"])[0]}


def test_pairs_left_out_are_printed_and_written(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    drug = set_smiles(folder, 1, "C1CC(garbage")
    build_store(datasets.load(str(folder)), "morgan", cache, on_error="skip", quiet=True)
    edit(folder, "pairs", lambda p: pd.concat([p, p[p["drug_id"] != drug].iloc[:1].assign(ln_ic50=9.0)]))
    code, output = fused_train(capsys, *run_args(folder, cache, tmp_path / "run"))
    n = int((pd.read_parquet(folder / "pairs.parquet")["drug_id"] == drug).sum())
    assert code == 0 and f"excluded {n} pairs" in output and f"{n} drug skipped by the morgan build" in output
    assert "2 of them repeat a (drug, cell line) measurement (1 grid cells)" in output
    listed = pd.read_csv(tmp_path / "run" / "excluded_pairs.csv", dtype={"drug_id": str})
    assert len(listed) == n and set(listed["drug_id"]) == {drug}
    assert listed["detail"].str.contains("invalid SMILES 'C1CC\\(garbage'").all()

    set_smiles(folder, 1, "CCN")  # fixed: the store that skipped it is now stale
    with pytest.raises(StaleStore, match="the items it skipped changed"):
        load_run_inputs(tiny_spec(str(folder)), cache)


# Case 4: features must be finite and of dim >= 1, whoever wrote the store.


def rewrite(store: Store, change: Callable[[dict], dict]) -> None:
    """Rewrite a store in place with changed arrays and a matching checksum: what an older encoder could write."""
    arrays = change(store.load())
    manifest = store.manifest | {"checksum": array_checksum(arrays), "dim": arrays["embeddings"].shape[1]}
    shutil.rmtree(store.path)
    write_store(store.path, arrays, manifest)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a | {"embeddings": np.where(np.arange(2048) == 5, np.nan, a["embeddings"]).astype("f4")},
         "non-finite values \\(first: drug '.*', column 5: nan\\)"),
        (lambda a: a | {"embeddings": a["embeddings"][:, :0]}, "dim 0 is unusable"),
    ],
    ids=["nan", "dim-0"],
)  # fmt: skip
def test_training_refuses_unusable_features(tiny_copy: tuple[Path, Path], change: Callable, message: str) -> None:
    folder, cache = tiny_copy
    spec = tiny_spec(str(folder))
    rewrite(Store(load_run_inputs(spec, cache).stores["morgan"]), change)
    with pytest.raises(StaleStore, match=message):
        load_run_inputs(spec, cache)


# Case 3 at training time, and the errors that used to be tracebacks.


def test_damaged_or_empty_manifest_stores_are_one_line_errors(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, cache = tiny_copy
    path = Path(load_run_inputs(tiny_spec(str(folder)), cache).stores["methylation"])
    chunk = next((path / "embeddings").rglob("c/*/*"))
    data = bytearray(chunk.read_bytes())
    data[-20] ^= 0xFF
    chunk.write_bytes(bytes(data))
    code, output = fused_train(capsys, *run_args(folder, cache, tmp_path / "run"))
    assert code == 3 and str(path) in output and "Traceback" not in output

    monkeypatch.setenv("FUSED_SKIP_CHECKSUMS", "1")  # the opt-out for huge stores skips the checksum only ...
    chunk.write_bytes(b"")
    with pytest.raises(CorruptStore, match="cannot be read"):  # ... an unreadable chunk is still refused
        load_run_inputs(tiny_spec(str(folder)), cache)

    (path / "manifest.json").write_text("{}")
    code, output = fused_train(capsys, *run_args(folder, cache, tmp_path / "run"))
    assert code == 3 and "its manifest lacks" in output and "Traceback" not in output


def test_a_drug_id_with_a_slash_trains_and_resumes(tiny_copy: tuple[Path, Path], tmp_path: Path) -> None:
    folder, cache = tiny_copy
    first = sorted(pd.read_parquet(folder / "drugs.parquet")["drug_id"])[0]
    for table in ("drugs", "pairs"):
        edit(folder, table, lambda t: t.assign(drug_id=t["drug_id"].replace(first, "a/b")))
    build_store(datasets.load(str(folder)), "morgan", cache, quiet=True)
    spec = tiny_spec(str(folder), epochs=1)
    fold = "lodo-seed0-a/b"
    assert train(spec, tmp_path / "run", fold=fold, cache_dir=cache, quiet=True) == [fold]
    assert (tmp_path / "run" / "folds" / "lodo-seed0-a%2Fb.parquet").exists()
    assert set(predictions(tmp_path / "run")["drug_id"]) == {"a/b"}
    assert train(spec, tmp_path / "run", fold=fold, cache_dir=cache, quiet=True) == []  # finished, not retrained
