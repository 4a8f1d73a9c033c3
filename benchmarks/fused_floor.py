"""How far FUSED's LODO training is from the cost of its pair-level core on this machine, measured in one run.

    python benchmarks/fused_floor.py [--folds 8] [--epochs 3] [--run RUN_DIR]

FUSED computes everything it can once per drug or cell line (``fused_train/models/fused.py``); what is left per
(drug, cell line) pair is the core: the pair's attention weights mixing the per-entity value vectors into the first
hidden layer, its ReLU, and the next linear layer. Those are matmuls with inner dimensions 16, 48 and 256 over every
pair of a step, forward and backward, and no rearrangement of the rest of the model removes them.

Measured side by side, in this process:
- the engine: the first ``--folds`` LODO folds of ``fused-train run --model fused --drug-encoder minimol --omics
  methylation,mutation`` in one batch for ``--epochs`` epochs (training and evaluation) after a warm-up epoch;
- the core alone, forward and backward, at the shapes of the same training steps (slots x the folds' training drugs
  x ``--cells-per-step`` cell lines), as many steps as an epoch has;
- a 2048 x 2048 bf16 matmul.

Printed: seconds per fold-epoch of the engine and of the core, the core's share, the FLOP rate of each (FLOPs counted
by torch's FlopCounterMode) as a fraction of the bf16 matmul rate, and, with ``--run`` (a finished ``fused-train run``
directory, whose curves give the number of fold-epochs), that run's time at the engine's rate and the time it would
take if everything but the core were free.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import click
import pandas as pd
import torch
from engine_epochs import SPEC, fixed_epochs
from lodo_speed import matmul_gflops
from torch.utils.flop_counter import FlopCounterMode

from fused_train.engine import Execution, _reuse_freed_memory
from fused_train.models.fused import FusedOptions, MixRelu
from fused_train.models.slots import linear
from fused_train.runs import folds_of, load_run_inputs
from fused_train.splits import TRAIN


def core_step(
    slots: int, drugs: int, cells: int, tokens: int, options: FusedOptions
) -> tuple[Callable[[], None], float]:
    """One training step's pair-level core (forward and backward) as a function, and its FLOPs."""
    generator = torch.Generator().manual_seed(0)
    heads, h0, h1 = options.heads, options.hidden[0], options.hidden[1] if len(options.hidden) > 1 else 1
    j = tokens * heads
    weights = torch.softmax(torch.randn(slots, cells, drugs, tokens, j, generator=generator), dim=3)
    u_drug = torch.randn(slots, drugs, j, h0, generator=generator).bfloat16() * 0.1
    u_cell = torch.randn(slots, cells, (tokens - 1) * j, h0, generator=generator).bfloat16() * 0.1
    w, b = torch.randn(slots, h0, h1, generator=generator) * 0.06, torch.zeros(slots, h1)
    leaves = [t.requires_grad_() for t in (weights, u_drug, u_cell, w, b)]
    grad = torch.randn(slots, cells, drugs, h1, generator=generator).bfloat16()

    def step() -> None:
        for t in leaves:
            t.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = MixRelu.apply(weights, u_drug, u_cell, torch.bfloat16)
            out = torch.relu(linear(h, w, b))
        out.backward(grad)

    step()
    with FlopCounterMode(display=False) as counter:
        step()
    return step, float(counter.get_total_flops())


def run_fold_epochs(run_dir: Path) -> int:
    curves = list((run_dir / "curves").glob("*.csv"))
    if not curves:
        raise click.UsageError(f"{run_dir} has no curves/*.csv: pass a finished fused-train run directory")
    return sum(len(pd.read_csv(p)) for p in curves)


@click.command()
@click.option("--folds", "n_folds", default=8, show_default=True, help="LODO folds, trained as one batch.")
@click.option("--epochs", default=3, show_default=True)
@click.option("--rounds", default=3, show_default=True, help="Engine and core timed alternately; medians printed.")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None)
def main(n_folds: int, epochs: int, rounds: int, run_dir: Path | None) -> None:
    _reuse_freed_memory()  # as the engine does: the core's tensors come from the same kept heap
    inputs = load_run_inputs(SPEC)
    folds = folds_of(SPEC, inputs)[:n_folds]
    options, config = FusedOptions(), SPEC.train
    count = inputs.grid()[0]
    drugs = max(int(((f.roles == TRAIN) & (count > 0)).any(axis=1).sum()) for f in folds)
    n_cells = inputs.shape[1]
    cells = min(config.cells_per_step, n_cells)
    steps = math.ceil(n_cells / cells)
    step, flops = core_step(n_folds, drugs, cells, 1 + len(inputs.cells), options)

    with FlopCounterMode(display=False) as counter:  # also the warm-up
        list(fixed_epochs(SPEC, 1).trainer(inputs, Execution(slots=n_folds)).run(folds, quiet=True))
    engine_flops = counter.get_total_flops() / n_folds  # per fold-epoch
    engine, core, rate = [], [], []
    for _ in range(rounds):
        trainer = fixed_epochs(SPEC, epochs).trainer(inputs, Execution(slots=n_folds))
        start = time.perf_counter()
        list(trainer.run(folds, quiet=True))
        engine.append((time.perf_counter() - start) / (n_folds * epochs))
        start = time.perf_counter()
        for _ in range(steps * epochs):
            step()
        core.append((time.perf_counter() - start) / (n_folds * epochs))
        rate.append(matmul_gflops(torch.bfloat16) * 1e9)
    e, c, r = statistics.median(engine), statistics.median(core), statistics.median(rate)
    core_rate = flops * steps / n_folds / c
    out = {
        "shapes": {"slots": n_folds, "training_drugs": drugs, "cells_per_step": cells, "steps_per_epoch": steps},
        "engine_s_per_fold_epoch": round(e, 4),
        "core_s_per_fold_epoch": round(c, 4),
        "core_share": round(c / e, 3),
        "engine_gflops": round(engine_flops / e / 1e9, 1),
        "core_gflops": round(core_rate / 1e9, 1),
        "bf16_matmul_gflops": round(r / 1e9, 1),
        "core_fraction_of_bf16_rate": round(core_rate / r, 3),
        "engine_fraction_of_bf16_rate": round(engine_flops / e / r, 3),
        "threads": torch.get_num_threads(),
    }
    if run_dir is not None:
        n = run_fold_epochs(run_dir)
        out.update({"run_fold_epochs": n, "run_minutes_at_engine_rate": round(n * e / 60, 1),
                    "run_minutes_if_only_the_core_cost": round(n * c / 60, 1)})  # fmt: skip
    click.echo(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
