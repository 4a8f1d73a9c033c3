"""Speed-up of a 2-worker Dask LocalCluster over in-process work on this machine, measured side by side.

    python benchmarks/cluster_bench.py [--encoder chemnet] [--workers 2]

Builds the same store from an empty cache in-process and with ``scheduler="local"``; the cluster time includes
starting it. On 2 cores expect at most 2x: this measures the cost of distribution, not a promise of speed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import click

from fused_cache import build_store, datasets


@click.command()
@click.option("--encoder", default="chemnet", show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
def main(encoder: str, workers: int, batch_size: int) -> None:
    ds = datasets.load("gdsc-deepcdr")
    root = Path(tempfile.mkdtemp(prefix="fused-cluster-bench-"))
    try:
        build_store(ds, encoder, root / "warmup", batch_size=batch_size, quiet=True)  # imports, weights, caches
        times = {}
        for label, scheduler in (("in-process", None), (f"LocalCluster x{workers}", "local")):
            start = time.perf_counter()
            build_store(
                ds, encoder, root / label, batch_size=batch_size, quiet=True, scheduler=scheduler, workers=workers
            )
            times[label] = time.perf_counter() - start
            click.echo(f"{encoder} build, {label:16}: {times[label]:.2f} s")
        local, cluster = times.values()
        click.echo(f"speed-up of the cluster over in-process: {local / cluster:.2f}x (<= {workers}x expected)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
