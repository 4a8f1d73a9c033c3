"""A plain install reads stores with numpy, zarr and h5py only; a command whose extra is missing says which one."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from fused_cache import build_store, open_store
from fused_cache.datasets import Dataset
from fused_cache.extras import CORE, DISTRIBUTION, NESTED, PROVIDES, missing_extra, run

ROOT = Path(__file__).parent.parent
EXTRA_MODULES = sorted(m for modules in PROVIDES.values() for m in modules)

BLOCK = """
import sys
BLOCKED = set({blocked!r})
class Block:
    '''Import nothing of BLOCKED, as if it were not installed.'''
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Block())
"""


def without(modules: list[str], code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter in which ``modules`` cannot be imported."""
    prelude = BLOCK.format(blocked=modules) + f"sys.argv = {list(argv)!r}\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_reading_a_store_needs_no_extra(small: Dataset, tmp_path: Path, fmt: str) -> None:
    """open_store, Store.load, verify and the lazy arrays work with every module of every extra blocked, and leave
    none of them imported."""
    build_store(small, "expression", tmp_path, fmt=fmt, quiet=True)
    code = f"""
import json, numpy as np
from fused_cache import open_store
from fused_cache.stores import iter_stores
store = open_store("expression", dataset={small.name!r}, cache_dir={str(tmp_path)!r})
arrays = store.load()
print(json.dumps({{"ids": store.ids.tolist(), "rows": np.asarray(store.embeddings[:2]).tolist(),
                  "problems": store.verify(), "stores": len(list(iter_stores(store.path.parents[2]))),
                  "loaded": sorted(m for m in sys.modules if m.partition('.')[0] in BLOCKED)}}))
"""
    result = without(EXTRA_MODULES, code)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["loaded"] == [] and seen["problems"] == [] and seen["stores"] == 1
    here = open_store("expression", dataset=small, cache_dir=tmp_path)  # read with everything installed
    assert seen["ids"] == here.ids.tolist() and len(seen["ids"]) == len(small.cells)
    np.testing.assert_array_equal(np.array(seen["rows"], dtype=np.float32), np.asarray(here.embeddings[:2]))


ONE_LINE = "error: {tool} needs the '{extra}' extra \\(no module '\\w+'\\): pip install '{dist}\\[{extra}\\]'\n"


@pytest.mark.parametrize(
    ("tool", "argv", "blocked", "extra"),
    [
        ("fused_cache_main", ["fused-cache", "list"], EXTRA_MODULES, "encoders"),  # a core install
        ("fused_train_main", ["fused-train", "run", "--help"], EXTRA_MODULES, "train"),  # a core install
        ("fused_train_main", ["fused-train", "run", "--help"], ["torch"], "train"),  # torch comes with encoders
        ("fused_train_main", ["fused-train", "run", "--help"], list(PROVIDES["train"]), "train"),
        ("fused_train_main", ["fused-train", "report", "runs/none", "--out", "runs/none"], list(PROVIDES["reports"]),
         "reports"),
    ],
)  # fmt: skip
def test_a_command_without_its_extra_says_which(tool: str, argv: list[str], blocked: list[str], extra: str) -> None:
    result = without(blocked, f"from fused_cache.extras import {tool}\n{tool}()", *argv)
    name = argv[0]
    assert result.returncode == 2, result.stderr
    assert re.fullmatch(ONE_LINE.format(tool=name, extra=extra, dist=DISTRIBUTION), result.stderr), result.stderr


@pytest.mark.parametrize(
    ("tool", "argv", "blocked"),
    [
        ("fused_cache_main", ["fused-cache", "--help"], [*PROVIDES["train"], *PROVIDES["reports"]]),
        ("fused_train_main", ["fused-train", "run", "--help"], list(PROVIDES["reports"])),
    ],
)
def test_an_extra_is_enough_for_its_commands(tool: str, argv: list[str], blocked: list[str]) -> None:
    """``encoders`` runs fused-cache without the training or report modules; ``train`` runs fused-train without the
    report's (matplotlib is imported by ``fused-train report`` only)."""
    result = without(blocked, f"from fused_cache.extras import {tool}\n{tool}()", *argv)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage:")


def test_a_missing_module_of_no_extra_keeps_its_traceback() -> None:
    """Only modules of an extra are explained; any other missing module is a bug."""
    assert missing_extra(ModuleNotFoundError("No module named 'nowhere'", name="nowhere"), "fused-x", "train") is None
    with pytest.raises(ModuleNotFoundError, match="fused_cache.no_such_cli"):
        run("fused-x", "fused_cache.no_such_cli", "train")


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~;\s]", r, maxsplit=1)[0].lower().replace("-", "_") for r in requirements}


def test_extras_agree_with_pyproject() -> None:
    """fused_cache/extras.py (what the messages name) and pyproject.toml (what pip installs) list the same things."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION
    assert requirement_names(project["dependencies"]) == set(CORE)
    extras = project["optional-dependencies"]
    ours = DISTRIBUTION.replace("-", "_")
    for extra, modules in PROVIDES.items():
        names = requirement_names(extras[extra]) - {ours}
        assert names <= set(modules), f"{extra}: {names - set(modules)} not in PROVIDES"
        for module in set(modules) - names:  # installed by one of the extra's requirements (onnxruntime)
            try:
                brought = set().union(*(requirement_names(metadata.requires(n) or []) for n in names))
            except metadata.PackageNotFoundError:
                pytest.skip(f"the {extra} extra is not installed here")
            assert module in brought, f"{extra}: nothing it requires installs {module}"
    includes = {e: {r.split("[")[1].rstrip("]") for r in reqs if r.startswith(f"{DISTRIBUTION}[")} for e, reqs in
                extras.items()}  # fmt: skip
    assert [includes[e] for e in NESTED] == [set(), {"encoders"}, {"train"}]
    assert includes["minimol"] == includes["export"] == {"encoders"}
    assert includes["all"] == {"reports,minimol,export"} and set(PROVIDES) == {*NESTED, "minimol", "export"}
    assert set(project["scripts"].values()) == {"fused_cache.extras:fused_cache_main",
                                                 "fused_cache.extras:fused_train_main"}  # fmt: skip


def test_every_import_is_core_or_of_an_extra() -> None:
    """A module imported anywhere in the two packages is in CORE or in PROVIDES, so its absence gets the message."""
    imported = set()
    for path in [*ROOT.glob("fused_cache/**/*.py"), *ROOT.glob("fused_train/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.partition(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"fused_cache", "fused_train"}
    assert third_party - set(CORE) - set(EXTRA_MODULES) == set()
    assert "numpy" in third_party and "torch" in third_party  # the scan sees imports


@pytest.mark.slow
def test_a_core_install_reads_a_store(small: Dataset, tmp_path: Path) -> None:
    """``pip install fused-drp`` (this tree) into a fresh venv: only the core is installed, a store reads, and the
    commands name the extra they need. Needs the package index (about 25 s)."""
    build_store(small, "expression", tmp_path / "cache", quiet=True)
    source = tmp_path / "source"
    for name in ("fused_cache", "fused_train"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", str(source)], capture_output=True, text=True)
    if install.returncode != 0 and "No matching distribution" in install.stderr:
        pytest.skip(f"no package index here: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stderr
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    installed = {p["name"].lower().replace("-", "_") for p in json.loads(listed.stdout)}
    assert installed.isdisjoint(EXTRA_MODULES) and set(CORE) <= installed
    code = (
        "from fused_cache import open_store; "
        f"s = open_store('expression', dataset={small.name!r}, cache_dir={str(tmp_path / 'cache')!r}); "
        "print(len(s.load()['ids']), s.verify())"
    )
    read = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert read.returncode == 0 and read.stdout == f"{len(small.cells)} []\n", read.stderr
    command = subprocess.run([venv / "bin" / "fused-train", "run"], capture_output=True, text=True)
    assert command.returncode == 2
    assert re.fullmatch(ONE_LINE.format(tool="fused-train", extra="train", dist=DISTRIBUTION), command.stderr)
