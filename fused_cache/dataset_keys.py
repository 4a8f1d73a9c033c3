"""A dataset's identity without its tables: the names of the bundled datasets and the key its stores' refs are filed
under. Kept apart from ``fused_cache.datasets`` (pandas) so that opening a store needs numpy, zarr and h5py only."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

BUNDLED = ("gdsc-deepcdr", "gdsc-deepcdr-approx")
DREVALPY_PREFIX = "drevalpy:"
"""``--dataset drevalpy:DIR/NAME`` names a drevalpy dataset folder."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def dataset_key(name: str, source: Path | None = None) -> str:
    """A dataset's identity as a safe folder name: ``name`` alone when it is a plain name and the data has no source
    on disk, else the name (made safe) and 12 hex digits of a hash of the source path (or of the odd name)."""
    if source is None and _SAFE_NAME.fullmatch(name):
        return name
    label = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-") or "dataset"
    return f"{label}-{hashlib.sha256(str(source or name).encode()).hexdigest()[:12]}"


def key_of(name: str) -> str:
    """The ``Dataset.key`` of what ``datasets.load(name)`` would load, without loading it (for refs of a
    ``--dataset``)."""
    folder = Path(name.removeprefix(DREVALPY_PREFIX))
    if name in BUNDLED or not folder.is_dir():
        return dataset_key(name)
    path = folder.resolve()
    return dataset_key(path.name, path)
