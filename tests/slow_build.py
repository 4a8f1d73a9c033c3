"""Run in a subprocess by test_stores: a Morgan build whose encoder sleeps per batch, to be killed or raced."""

from __future__ import annotations

import time

from helpers import subset

from fused_cache import build_store, datasets
from fused_cache.encoders.rdkit_fingerprints import MorganEncoder


class SlowMorgan(MorganEncoder):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def embed(self, batch):
        time.sleep(self.delay)
        return super().embed(batch)


def main(argv: list[str]) -> None:
    cache, delay = argv[0], float(argv[1])
    build_store(subset(datasets.load(), 24, 5), SlowMorgan(delay), cache_dir=cache, batch_size=2, quiet=True)
