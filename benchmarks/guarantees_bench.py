"""What the checks of docs/guarantees.md cost on the bundled data.

    python benchmarks/guarantees_bench.py [--repeats 3]

Builds the default stores (``fused-cache build --encoder all``) into a temporary cache, then prints the best of
``--repeats`` timings of: loading and validating the dataset; verifying each store (no chunk missing, checksum: what
a no-op build does, and a build for every store it reuses rows from); checking that a store was built from the
dataset's current items; opening the stores of the default multi-omics run for training with and without the
checksum; and the no-op ``fused-cache build --encoder all`` through the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from fused_cache import build_store, datasets
from fused_cache.encoders.registry import DEFAULT_ENCODERS
from fused_cache.stores import Store, check_built_from
from fused_train.data import load_inputs


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@click.command()
@click.option("--repeats", default=3, show_default=True)
def main(repeats: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="guarantees-"))
    ds = datasets.load("gdsc-deepcdr")
    stores = {name: build_store(ds, name, root, quiet=True).store for name in DEFAULT_ENCODERS}
    print(f"dataset load + validation: {_best(lambda: datasets.load('gdsc-deepcdr'), repeats):.3f} s")
    total = 0.0
    for name, store in stores.items():
        seconds = _best(lambda s=store: Store(s.path).verify(), repeats)
        total += seconds
        print(f"verify {name:12} ({store.manifest['n']} x {store.manifest['dim']}): {seconds:.3f} s")
    print(f"verify all default stores: {total:.3f} s")
    check = _best(lambda: [check_built_from(s, ds, root) for s in stores.values()], repeats)
    print(f"built-from-current-items check, all default stores: {check:.3f} s")
    tokens = ("chemnet", ["expression", "methylation", "mutation"])
    for checksum in (True, False):
        seconds = _best(lambda c=checksum: load_inputs(ds, *tokens, cache_dir=root, checksum=c), repeats)
        print(f"load_inputs chemnet + 3 omics, checksum={checksum}: {seconds:.3f} s")
    exe = Path(sys.executable).with_name("fused-cache")
    env = os.environ | {"FUSED_CACHE_DIR": str(root)}
    noop = _best(lambda: subprocess.run([exe, "build", "--encoder", "all", "--quiet"], env=env, check=True,
                                        capture_output=True), repeats)  # fmt: skip
    print(f"fused-cache build --encoder all, up to date (verifies all): {noop:.2f} s")


if __name__ == "__main__":
    main()
