"""The fused-cache command line: build, list, info, export, verify, gc, summary, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
from click.testing import CliRunner

from fused_cache.cli import cli
from fused_cache.encoders.registry import ENCODERS


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_build_list_info_export(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    code, out = run("build", "--encoder", "methylation", "--cache-dir", cache, "--quiet")
    assert code == 0 and "methylation: built" in out and "n=561, dim=808" in out
    code, out = run("build", "--encoder", "methylation", "--cache-dir", cache, "--quiet")
    assert "up to date" in out
    assert "methylation" in run("list", "--cache-dir", cache)[1]
    assert json.loads(run("info", "methylation", "--json", "--cache-dir", cache)[1])["n"] == 561

    run("export", "methylation", "--to", str(tmp_path / "m.parquet"), "--cache-dir", cache)
    frame = pd.read_parquet(tmp_path / "m.parquet")
    assert frame.shape == (561, 808) and frame.index.name == "cell_id"
    run("export", "methylation", "--to", str(tmp_path / "m.npy"), "--cache-dir", cache)
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), frame.to_numpy())
    assert (tmp_path / "m.ids.txt").read_text().split() == list(frame.index)
    run("export", "methylation", "--to", str(tmp_path / "m.h5ad"), "--cache-dir", cache)
    adata = anndata.read_h5ad(tmp_path / "m.h5ad")
    np.testing.assert_array_equal(adata.obsm["X_methylation"], frame.to_numpy())
    assert list(adata.obs_names) == list(frame.index)


def test_info_summarises_a_store_and_list_has_a_header(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    run("build", "--encoder", "methylation", "--cache-dir", cache, "--quiet")
    lines = run("info", "methylation", "--cache-dir", cache)[1].splitlines()
    assert lines[0].startswith("store     cell / methylation v")
    assert "items     561" in lines and "dim       808" in lines
    assert lines[-1] == "(the whole manifest: fused-cache info methylation --json)"
    header, row = run("list", "--cache-dir", cache)[1].splitlines()
    assert header.split()[:5] == ["ENTITY", "ENCODER", "VERSION", "ITEMS", "DIM"] and row.split()[3:5] == ["561", "808"]
    assert run("list", "--cache-dir", str(tmp_path / "empty"))[1] == f"no stores under {tmp_path / 'empty'}\n"


def test_verify_exit_code_names_corrupt_store(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    run("build", "--encoder", "methylation", "--format", "hdf5", "--cache-dir", cache, "--quiet")
    assert run("verify", "--cache-dir", cache)[0] == 0
    (store,) = (tmp_path / "cache" / "cell" / "methylation").glob("*.h5")
    data = bytearray(store.read_bytes())
    data[len(data) // 2] ^= 0xFF
    store.write_bytes(bytes(data))
    result = CliRunner().invoke(cli, ["verify", "--cache-dir", cache])
    assert result.exit_code == 3 and f"CORRUPT {store}" in result.output


def test_summary_writes_and_checks(tmp_path: Path) -> None:
    cache, out = str(tmp_path / "cache"), str(tmp_path / "manifests")
    run("build", "--encoder", "methylation", "--cache-dir", cache, "--quiet")
    run("summary", "--cache-dir", cache, "--out", out)
    written = json.loads((tmp_path / "manifests" / "gdsc-deepcdr" / "cell-methylation.json").read_text())
    assert written["n"] == 561 and "checksum" in written
    assert run("summary", "--check", "--cache-dir", cache, "--out", out) == (0, "methylation: matches\n")


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("fused-cache")
    result = subprocess.run(
        [exe, "build", "--encoder", "nope", "--cache-dir", tmp_path], capture_output=True, text=True
    )
    assert result.returncode == 2 and "unknown encoder 'nope'" in result.stderr and "Traceback" not in result.stderr
    missing = subprocess.run([exe, "info", "morgan", "--cache-dir", tmp_path], capture_output=True, text=True)
    assert missing.returncode == 3 and "run: fused-cache build --encoder morgan" in missing.stderr


def test_build_help_lists_every_registered_encoder() -> None:
    """A user finds the encoders in ``build --help``, even before any store exists."""
    usage = run("build", "--help")[1]
    assert all(name in usage for name in ENCODERS)
