"""Speed-up of a 2-worker Dask LocalCluster over in-process work on this machine, measured side by side.

    python benchmarks/cluster_bench.py [--encoder chemnet] [--workers 2] [--folds 32]

Builds the same store from an empty cache in-process and with ``scheduler="local"``, then trains the same LODO folds
of FUSED (fixed epochs) both ways; cluster times include starting the cluster. On 2 cores expect at most 2x: this
measures the cost of distribution, not a promise of speed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import click

from fused_cache import build_store, datasets
from fused_train.engine import Execution, TrainConfig
from fused_train.runs import RunSpec, train


@click.command()
@click.option("--encoder", default="chemnet", show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--folds", default=32, show_default=True, help="LODO folds trained (3 epochs each); 0 skips training.")
def main(encoder: str, workers: int, batch_size: int, folds: int) -> None:
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
        if folds:
            spec = RunSpec(model="fused", drug_encoder="chemnet", omics=("methylation", "mutation"),
                           train=TrainConfig(max_epochs=3, patience=3))  # fmt: skip
            times = {}
            for label, scheduler in (("in-process", None), (f"LocalCluster x{workers}", "local")):
                start = time.perf_counter()
                execution = Execution(scheduler=scheduler, workers=workers)
                train(spec, root / f"run-{label}", f"0-{folds - 1}", execution=execution, quiet=True)
                times[label] = time.perf_counter() - start
                click.echo(f"{folds} LODO folds x 3 epochs, {label:16}: {times[label]:.1f} s")
            local, cluster = times.values()
            click.echo(f"speed-up of the cluster over in-process: {local / cluster:.2f}x (<= {workers}x expected)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
