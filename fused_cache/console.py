"""What both command-line tools share: turning known errors into one clear line and an exit code.

Exit codes (listed in docs/guarantees.md): 0 success; 1 an internal error (a bug: the traceback is kept); 2 a usage
error (click's, and a misspelt encoder name); 3 a data or store error (bad input files, a missing, damaged or outdated
store, a check that failed) or a file system that refuses a write (read-only, permission denied, full disk, a file name
too long); 130 interrupted. Kept apart from ``fused_cache/cli.py`` so that ``fused-train`` can use
it without importing the other tool's commands.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import click

from fused_cache.datasets import DEFAULT_RESPONSE
from fused_cache.encoders.registry import ENCODERS
from fused_cache.stores import StoreNotFound

USAGE_ERROR = 2
DATA_ERROR = 3


def fail(message: str) -> NoReturn:
    """End a command on a data or store problem: one line on stderr, exit code 3."""
    click.echo(f"error: {message}", err=True)
    sys.exit(DATA_ERROR)


dataset_option = click.option(
    "--dataset",
    default="gdsc-deepcdr",
    show_default=True,
    help="gdsc-deepcdr, gdsc-deepcdr-approx, a data directory, or drevalpy:DIR/NAME (a drevalpy dataset folder).",
)
"""``--dataset``, as every command of both tools takes it."""

response_option = click.option(
    "--response",
    default=DEFAULT_RESPONSE,
    show_default=True,
    help="The measure to learn: a column of the pairs (drevalpy: of <NAME>.csv, e.g. AUC, pEC50; ln_ic50 = LN_IC50).",
)
"""``--response``, beside ``--dataset`` where a command learns from the dataset's labels."""

cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Store root (default: $FUSED_CACHE_DIR or the user cache).",
)
"""``--cache-dir``, as every command of both tools takes it."""


_UNWRITABLE = "choose a writable location (another --out or --cache-dir) or make it writable"
FILE_SYSTEM_ERRORS = {
    errno.EROFS: _UNWRITABLE,
    errno.EACCES: _UNWRITABLE,
    errno.EPERM: _UNWRITABLE,
    errno.ENOSPC: "free space and run the command again (what was finished is kept: build and run resume)",
    errno.EDQUOT: "free space and run the command again (what was finished is kept: build and run resume)",
    errno.ENAMETOOLONG: "choose a shorter path",
}
"""Errors of the file system rather than of this program, and what to do about each; any other OSError is a bug
and keeps its traceback."""


@contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Name ``path`` in a file-system error that names no file (a full disk, as pyarrow, zarr and h5py report it)."""
    try:
        yield
    except OSError as err:
        if err.errno in FILE_SYSTEM_ERRORS and err.filename is None:
            err.filename = str(path)
        raise


def file_system_error(err: OSError) -> str | None:
    """The one line for a file-system error (path, what happened, what to do), or None for any other OSError."""
    advice = FILE_SYSTEM_ERRORS.get(err.errno) if err.errno is not None else None
    if advice is None:
        return None
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{os.strerror(err.errno)}; {advice}"


def explain(err: Exception) -> str:
    """The message of a known error, with advice that needs the encoder registry (which the stores do not import)."""
    if isinstance(err, StoreNotFound) and err.encoder is not None and err.encoder not in ENCODERS:
        return f"{err.encoder!r} is not an encoder (known: {', '.join(ENCODERS)})"
    return str(err)


def run_cli(group: click.Group, known: tuple[type[Exception], ...], usage: tuple[type[Exception], ...] = ()) -> None:
    """Run a console command: ``known`` errors (bad input, missing or damaged stores) become one clear line and exit
    code 3 (2 for ``usage`` errors and a misspelt encoder), without a traceback; anything else is a bug and keeps its
    traceback."""
    try:
        group(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except known + usage as err:
        click.echo(f"error: {explain(err)}", err=True)
        misspelt = isinstance(err, StoreNotFound) and err.encoder is not None and err.encoder not in ENCODERS
        sys.exit(USAGE_ERROR if misspelt or isinstance(err, usage) else DATA_ERROR)
    except OSError as err:
        message = file_system_error(err)
        if message is None:
            raise
        fail(message)
