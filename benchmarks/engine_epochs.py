"""Time FUSED's engine on LODO folds with whichever ``fused_train`` is importable: the worker of
``lodo_speed.py --against``, which runs it with PYTHONPATH set to this tree and to another checkout in turn.

    PYTHONPATH=<checkout> python benchmarks/engine_epochs.py --folds 8 --epochs 2 [--flops]

Uses only the API that older checkouts share (RunSpec, load_run_inputs, folds_of, Execution, RunSpec.trainer). Trains
the first ``--folds`` LODO folds of ``fused-train run --model fused --drug-encoder minimol --omics
methylation,mutation`` in one batch for a fixed number of epochs (training and evaluation, as a run does), after an
untimed warm-up epoch, and prints one JSON line: wall and CPU seconds, fold-epochs, and with ``--flops`` the FLOPs of
one fold-epoch counted by torch's FlopCounterMode on an untimed epoch.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import click
import torch
from torch.utils.flop_counter import FlopCounterMode

from fused_train.engine import Execution
from fused_train.runs import RunSpec, folds_of, load_run_inputs

SPEC = RunSpec(model="fused", drug_encoder="minimol", omics=("methylation", "mutation"), split="lodo")


def fixed_epochs(spec: RunSpec, epochs: int) -> RunSpec:
    return replace(spec, train=replace(spec.train, max_epochs=epochs, patience=epochs))


@click.command()
@click.option("--folds", "n_folds", default=8, show_default=True)
@click.option("--epochs", default=2, show_default=True)
@click.option("--flops", is_flag=True, help="Also count the FLOPs of one fold-epoch (an extra, untimed epoch).")
def main(n_folds: int, epochs: int, flops: bool) -> None:
    inputs = load_run_inputs(SPEC)
    folds = folds_of(SPEC, inputs)[:n_folds]
    list(fixed_epochs(SPEC, 1).trainer(inputs, Execution(slots=n_folds)).run(folds, quiet=True))  # warm-up
    trainer = fixed_epochs(SPEC, epochs).trainer(inputs, Execution(slots=n_folds))
    wall, cpu = time.perf_counter(), time.process_time()
    list(trainer.run(folds, quiet=True))
    out = {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
           "fold_epochs": n_folds * epochs, "threads": torch.get_num_threads()}  # fmt: skip
    if flops:
        with FlopCounterMode(display=False) as counter:
            list(fixed_epochs(SPEC, 1).trainer(inputs, Execution(slots=n_folds)).run(folds, quiet=True))
        out["flops_per_fold_epoch"] = counter.get_total_flops() / n_folds
    click.echo(json.dumps(out))


if __name__ == "__main__":
    main()
