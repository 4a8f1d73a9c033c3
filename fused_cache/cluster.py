"""Run independent tasks in-process (default) or on a Dask cluster, with the same results either way.

``scheduler=None`` runs tasks one after another here. ``"local"`` starts a ``LocalCluster`` on loopback for the
duration of the call; ``"tcp://HOST:8786"`` uses a running cluster (on SLURM, start one with dask-jobqueue). Tasks
must write their results to a path every worker and this process share, and be safe to run twice: a task whose worker
dies is retried elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fused_cache.progress import progress


@contextmanager
def connect(scheduler: str | None, workers: int | None = None) -> Iterator[Any]:
    """A dask ``Client`` for ``scheduler`` (None -> yields None, nothing is started)."""
    if scheduler is None:
        yield None
        return
    from dask.distributed import Client, LocalCluster

    if scheduler == "local":
        n = workers or os.cpu_count() or 1
        with (
            LocalCluster(n_workers=n, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            yield client
    elif scheduler.startswith(("tcp://", "tls://", "inproc://")):
        with Client(scheduler) as client:
            yield client
    else:
        raise ValueError(f"--scheduler must be 'local' or an address like tcp://HOST:8786, not {scheduler!r}")


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    client: Any = None,
    desc: str = "tasks",
    quiet: bool = False,
    retries: int = 2,
    sizes: Sequence[int] | None = None,
    unit: str = "tasks",
) -> list[Any]:
    """``[fn(*task) for task in tasks]``, here or on the cluster; results in task order, progress as they finish.

    Progress counts ``unit``: with ``sizes`` (items per task, e.g. drugs per batch) it counts items, not tasks.
    """
    sizes = list(sizes) if sizes is not None else [1] * len(tasks)
    bar = progress(sum(sizes), desc, unit, quiet=quiet or not tasks)
    if client is None:
        results = []
        for task, size in zip(tasks, sizes, strict=True):
            results.append(fn(*task))
            bar.update(size)
        bar.close()
        return results
    from dask.distributed import as_completed

    futures = [client.submit(fn, *task, pure=False, retries=retries) for task in tasks]
    size_of = {future.key: size for future, size in zip(futures, sizes, strict=True)}
    for future in as_completed(futures):
        bar.update(size_of[future.key])
    bar.close()
    return [future.result() for future in futures]
