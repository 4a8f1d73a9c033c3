"""How much the store pipeline costs on top of the bare encoder, and how long a no-op rebuild takes.

    python benchmarks/cache_bench.py [--encoders chemnet,morgan] [--repeats 3]

For each encoder and batch size, in one run: the bare forward (``encoder.embed`` over all drugs of gdsc-deepcdr, no
validation or I/O) and a full ``build_store`` into an empty cache (validation, hashing, partial batches, atomic
publish). Prints both, the overhead ratio (target <= 25% at the best batch size) and the no-op rebuild time, both
in-process and through the ``fused-cache`` command (target < 2 s).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import click

from fused_cache import build_store, datasets, get_encoder
from fused_cache.build import encoder_inputs


def _bare(encoder, items, size: int) -> None:
    for k in range(0, len(items), size):
        encoder.embed(items.take(range(k, min(k + size, len(items)))))


def _fresh_build(ds, encoder, root: Path, size: int) -> None:
    shutil.rmtree(root, ignore_errors=True)
    build_store(ds, encoder, root, batch_size=size, quiet=True)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@click.command()
@click.option("--encoders", default="chemnet,morgan", show_default=True)
@click.option("--batch-sizes", default="16,64,256", show_default=True)
@click.option("--repeats", default=3, show_default=True)
def main(encoders: str, batch_sizes: str, repeats: int) -> None:
    ds = datasets.load("gdsc-deepcdr")
    root = Path(tempfile.mkdtemp(prefix="fused-bench-"))
    try:
        click.echo(f"{'encoder':9} {'batch':>5} {'bare s':>8} {'build s':>8} {'overhead':>9}")
        for name in encoders.split(","):
            encoder = get_encoder(name)
            items = encoder_inputs(ds, encoder)
            results = []
            for size in map(int, batch_sizes.split(",")):
                bare = _best(partial(_bare, encoder, items, size), repeats)
                built = _best(partial(_fresh_build, ds, encoder, root / "fresh", size), repeats)
                results.append((built / bare - 1, size))
                click.echo(f"{name:9} {size:5d} {bare:8.3f} {built:8.3f} {built / bare - 1:9.1%}")
            overhead, size = min(results)
            click.echo(f"{name:9} best batch size {size}: pipeline overhead {overhead:.1%} (target <= 25%)")

            build_store(ds, name, root / "warm", quiet=True)
            noop = _best(partial(build_store, ds, name, root / "warm", quiet=True), repeats)
            cmd = [str(Path(sys.executable).with_name("fused-cache")), "build", "--encoder", name, "--quiet",
                   "--cache-dir", str(root / "warm")]  # fmt: skip
            cli = _best(partial(subprocess.run, cmd, check=True, capture_output=True), repeats)
            click.echo(f"{name:9} no-op rebuild: {noop:.3f} s in-process, {cli:.3f} s via fused-cache (target < 2 s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
