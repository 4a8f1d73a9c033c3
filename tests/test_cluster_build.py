"""Encoder builds spread over a real Dask LocalCluster (2 workers on loopback) equal the in-process build."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import slow_build
from helpers import subset

from fused_cache import build_store
from fused_cache.datasets import Dataset

distributed = pytest.importorskip("dask.distributed")
cloudpickle.register_pickle_by_value(slow_build)  # workers cannot import test modules: ship the class itself


def test_local_cluster_build_equals_in_process(gdsc: Dataset, tmp_path: Path) -> None:
    ds = subset(gdsc, 40, 5)
    here = build_store(ds, "morgan", tmp_path / "here", batch_size=8, quiet=True).store
    there = build_store(ds, "morgan", tmp_path / "there", batch_size=8, quiet=True, scheduler="local", workers=2).store
    assert there.version == here.version and there.manifest["checksum"] == here.manifest["checksum"]
    np.testing.assert_array_equal(there.embeddings[:], here.embeddings[:])


def test_losing_a_worker_mid_build_loses_nothing(gdsc: Dataset, tmp_path: Path) -> None:
    ds = subset(gdsc, 48, 5)
    expected = build_store(ds, "morgan", tmp_path / "reference", batch_size=2, quiet=True).store
    cache = tmp_path / "cache"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        done_at_kill: list[int] = []

        def kill_one_worker_once_work_has_started() -> None:
            deadline = time.time() + 60
            while time.time() < deadline and len(list(cache.glob("drug/morgan/.partial-*/batch-*.npz"))) < 3:
                time.sleep(0.02)
            done_at_kill.append(len(list(cache.glob("drug/morgan/.partial-*/batch-*.npz"))))
            nanny = next(iter(cluster.workers.values()))
            os.kill(nanny.process.process.pid, signal.SIGKILL)  # the nanny restarts it; its tasks are retried

        killer = threading.Thread(target=kill_one_worker_once_work_has_started)
        killer.start()
        report = build_store(
            ds, slow_build.SlowMorgan(0.1), cache, batch_size=2, quiet=True, scheduler=cluster.scheduler_address
        )
        killer.join()
    assert 3 <= done_at_kill[0] < 24  # the worker died with batches still to do
    assert report.store.version == expected.version and report.store.verify() == []
    np.testing.assert_array_equal(report.store.embeddings[:], expected.embeddings[:])
    assert list(report.store.ids) == list(ds.drugs["drug_id"])
