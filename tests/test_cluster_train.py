"""fused-train on a real Dask LocalCluster (2 workers on loopback): same results as in-process, and a worker lost
mid-run costs only a retry of its group."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_spec

from fused_train.engine import Execution, TrainConfig
from fused_train.runs import predictions, train

distributed = pytest.importorskip("dask.distributed")


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["fold", "drug_id", "cell_id", "gdsc_drug_id"]).reset_index(drop=True)


def test_local_cluster_run_equals_in_process(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    spec = tiny_spec(dataset)
    here = train(spec, tmp_path / "here", cache_dir=cache, execution=Execution(slots=2), quiet=True)
    cluster = Execution(slots=2, scheduler="local", workers=2)
    there = train(spec, tmp_path / "there", cache_dir=cache, execution=cluster, quiet=True)
    assert sorted(here) == sorted(there) and len(here) == 10
    a, b = _sorted(predictions(tmp_path / "here")), _sorted(predictions(tmp_path / "there"))
    pd.testing.assert_frame_equal(a.drop(columns="pred_fused"), b.drop(columns="pred_fused"))
    np.testing.assert_allclose(a["pred_fused"], b["pred_fused"], atol=2e-4)


def test_losing_a_worker_mid_run_loses_and_duplicates_nothing(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    spec = replace(tiny_spec(dataset), train=TrainConfig(max_epochs=40, patience=40, cells_per_step=8))
    run_dir = tmp_path / "run"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        done_at_kill: list[int] = []

        def kill_a_worker_once_folds_finish() -> None:
            deadline = time.time() + 120
            while time.time() < deadline and not list(run_dir.glob("folds/*.parquet")):
                time.sleep(0.02)
            done_at_kill.append(len(list(run_dir.glob("folds/*.parquet"))))
            nanny = next(iter(cluster.workers.values()))
            os.kill(nanny.process.process.pid, signal.SIGKILL)  # the nanny restarts it; the group's task is retried

        killer = threading.Thread(target=kill_a_worker_once_folds_finish)
        killer.start()
        execution = Execution(slots=2, scheduler=cluster.scheduler_address)
        trained = train(spec, run_dir, cache_dir=cache, execution=execution, quiet=True)
        killer.join()
    assert 1 <= done_at_kill[0] < 10  # killed with folds still to do
    frame = predictions(run_dir)
    assert sorted(frame["fold"].unique()) == sorted(trained) and len(trained) == 10
    assert not frame.duplicated(["fold", "drug_id", "cell_id", "gdsc_drug_id"]).any()
    assert not list(run_dir.glob("folds/.*"))  # no temporary files left
