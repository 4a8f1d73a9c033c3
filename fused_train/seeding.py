"""Every random draw of a run comes from a stable hash of what it is for (a fold's name, an epoch, "init").

So a fold's splits, initial weights and data order do not depend on which other folds run, in which slot, process or
machine.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_seed(*key: object) -> int:
    """A 64-bit seed from the sha256 of ``repr(key)``: equal keys give equal seeds on every machine and run."""
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little")


def rng(*key: object) -> np.random.Generator:
    """A NumPy generator seeded by ``stable_seed(*key)``."""
    return np.random.default_rng(stable_seed(*key))
