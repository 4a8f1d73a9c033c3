"""What a command may write where: files are written whole, and never replace what the user did not ask to replace.

Every file a command is told to write (``fused-cache export --to``, ``fused-train predict --out``, ``splits
--export``, ``report --out``) goes through here: an existing file is replaced only with ``--force``, a directory is
never taken for a file, and the input tables of a dataset directory are never written, not even with ``--force``
(the dataset would change under every store and run built from it). Files are written under a temporary name in
their folder and renamed into place, so a failed write (a full disk) leaves the old file or none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fused_cache.tables import SUFFIXES, omics_modality, table_stem


class OutputError(ValueError):
    """An output path that would replace what must not be replaced; the message names it and what to do."""


def dataset_table(path: Path) -> bool:
    """Whether ``path`` is (or would be read as) an input table of a dataset directory: ``pairs``, ``drugs``,
    ``cells`` or ``omics_<modality>`` with a table ending, in a dataset directory."""
    stem = table_stem(path.name)
    if stem is None or not (stem in ("pairs", "drugs", "cells") or omics_modality(stem)):
        return False
    return is_dataset_dir(path.parent)


def is_dataset_dir(folder: Path) -> bool:
    """A folder holding a pairs and a drugs table, what ``fused_cache.datasets.load`` reads as a dataset directory
    (``fused-train splits --export`` writes a pairs table alone)."""
    return all(any((folder / f"{table}{suffix}").is_file() for suffix in SUFFIXES) for table in ("pairs", "drugs"))


def check_new_file(path: Path, force: bool, option: str = "--out") -> None:
    """Refuse a file path that names a directory or a dataset's input table, or an existing file without ``force``."""
    if path.is_dir():
        raise OutputError(f"{option} {path} is a directory; name a file in it")
    if dataset_table(path):
        raise OutputError(f"{option} {path} is an input table of the dataset in {path.parent}; it is never replaced "
                          "(not even with --force): choose another path")  # fmt: skip
    if path.exists() and not force:
        raise OutputError(f"{option} {path} exists; pass --force to replace it, or choose another path")


def check_folder(folder: Path, names: list[str], force: bool, option: str) -> None:
    """Refuse a folder that is a dataset directory or a file, or that holds one of ``names`` (unless ``force``)."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option} {folder} is a file, not a folder")
    if is_dataset_dir(folder):
        raise OutputError(f"{option} {folder} is a dataset directory; its files are never replaced (not even with "
                          "--force): choose another folder")  # fmt: skip
    existing = [name for name in names if (folder / name).exists()]
    if existing and not force:
        raise OutputError(f"{option} {folder} already holds {', '.join(existing)}; pass --force to replace "
                          f"{'it' if len(existing) == 1 else 'them'}, or choose another folder")  # fmt: skip


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; renamed to ``path`` when the block succeeds, removed when it
    fails, so ``path`` is the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
