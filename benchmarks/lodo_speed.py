"""LODO training speed: the batched multi-fold engine against a straightforward per-fold loop, side by side.

    python benchmarks/lodo_speed.py [--folds 8] [--epochs 2] [--full]
    python benchmarks/lodo_speed.py --adapter [--folds 8]
    python benchmarks/lodo_speed.py --against CHECKOUT [--folds 8] [--epochs 2] [--rounds 3]

Both train FUSED (drug + expression + methylation + mutation tokens, width 128, 4 heads, MLP 512-256-64-1) on the
same LODO folds of the bundled data for a fixed number of epochs, with the same scalers and validation. The reference
is one ``FusedReference`` (per pair, ``nn.MultiheadAttention``) per fold with a DataLoader over training pairs; the
engine trains all folds at once on the drug x cell grid. Printed: fold-epochs per second of both and their ratio
(target >= 20x), the engine's matmul GFLOP/s (counted by torch's FlopCounterMode on an identical run) against a
plain fp32 matmul measured here (target >= 40%), and with ``--full`` the wall time and peak memory of all 223 folds
with early stopping (targets: <= 20 min, < 4 GB).

``--adapter``: a plain ``torch.nn.Module`` (``PlainMLP``: MiniMol embedding and expression side by side, MLP
256-64-1) trained by the engine through the generic adapter (``fused_train/models/module_slots.py``, all folds in one
batch) against the same module in a per-fold DataLoader loop (Adam, shuffled batches of ``--batch-size`` pairs),
both stopping on validation RMSE with the same patience. Printed: each one's best validation RMSE, and the time each
needs to reach, on every fold, the worse of the two bests (the same validation accuracy; the loop trains the folds
one after another, the engine together), and their ratio (target: the adapter wins, ratio > 1).

``--against CHECKOUT``: this tree's engine against another checkout's (e.g. ``git worktree add /tmp/ref 8a7a6e3``) on
the same LODO folds and epochs (``engine_epochs.py``, run in a subprocess with PYTHONPATH set to each tree in turn,
alternating for ``--rounds`` rounds, so that both see the same load on a shared machine), with the bf16 and fp32
matmul rates measured in the same rounds. Printed: seconds per fold-epoch of both (median over rounds, wall and CPU),
their ratio (target >= 1.96x: 13 min 45 s -> 7 min for all 223 folds), and each one's FLOP rate (FLOPs per
fold-epoch counted by FlopCounterMode) as a fraction of the bf16 matmul rate (target >= 40%), and this tree's time at
the reference's FLOP count (it leaves out the validation drugs' pairs, which the reference computes).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
import torch
from convergence import TimedTrainer, fold_pairs
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from fused_train.data import InputShapes
from fused_train.engine import Execution, TrainConfig, Trainer
from fused_train.models import registry
from fused_train.models.fused import FusedReference
from fused_train.models.registry import option
from fused_train.runs import RunSpec, folds_of, load_run_inputs, train
from fused_train.seeding import stable_seed
from fused_train.splits import TRAIN, VAL

SPEC = RunSpec(model="fused", drug_encoder="chemnet", cell_encoder="expression", omics=("methylation", "mutation"))


def reference_loop(trainer: Trainer, folds: list, epochs: int, batch_size: int) -> float:
    """Seconds for ``epochs`` epochs of every fold, one model per fold, a DataLoader over its training pairs."""
    inputs = trainer.inputs
    pairs = inputs.pairs
    d, c = pairs["drug_index"].to_numpy(), pairs["cell_index"].to_numpy()
    y = pairs["ln_ic50"].to_numpy(np.float32)
    dims = {n: x.shape[1] for n, x in inputs.cells.items()}
    start = time.perf_counter()
    for fold in folds:
        scalers = trainer._scalers(fold)
        feats = {"drug": inputs.drug, **inputs.cells}
        scaled = {
            n: torch.from_numpy(((x - scalers[n][0]) / scalers[n][1]).astype(np.float32)) for n, x in feats.items()
        }
        mu, sd = (float(v) for v in scalers["y"])
        role = fold.roles[d, c]
        train_rows, val_rows = np.flatnonzero(role == TRAIN), np.flatnonzero(role == VAL)
        data = TensorDataset(torch.from_numpy(d[train_rows]), torch.from_numpy(c[train_rows]),
                             torch.from_numpy((y[train_rows] - mu) / sd))  # fmt: skip
        loader = DataLoader(data, batch_size=batch_size, shuffle=True)
        model = FusedReference(inputs.shapes())
        optimizer = torch.optim.Adam(model.parameters(), lr=trainer.config.lr)
        for _ in range(epochs):
            model.train()
            for drug_i, cell_i, target in loader:
                features = {"drug": scaled["drug"][drug_i]} | {n: scaled[n][cell_i] for n in dims}
                loss = torch.mean((model(features) - target) ** 2)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                vd, vc = torch.from_numpy(d[val_rows]), torch.from_numpy(c[val_rows])
                model({"drug": scaled["drug"][vd]} | {n: scaled[n][vc] for n in dims})
    return time.perf_counter() - start


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


@dataclass(frozen=True)
class PlainMLPOptions:
    hidden: tuple[int, ...] = option((256, 64), "Hidden widths of the plain MLP.")


class PlainMLP(nn.Module):
    """A network written the usual way, for one (drug, cell line) pair: inputs side by side, an MLP."""

    Options = PlainMLPOptions

    def __init__(self, shapes: InputShapes, options: PlainMLPOptions = PlainMLPOptions()) -> None:
        super().__init__()
        widths = [shapes.drug_dim + sum(shapes.cell_dims.values()), *options.hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(widths, widths[1:], strict=False):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], 1))

    def forward(self, drug: Tensor, cells: dict[str, Tensor]) -> Tensor:
        return self.net(torch.cat([drug, *cells.values()], dim=-1)).squeeze(-1)


def loop_fold(trainer: Trainer, fold: Any, batch_size: int, patience: int, max_epochs: int) -> pd.DataFrame:
    """One fold of ``PlainMLP`` the plain way (seeded as the engine seeds it); per epoch: seconds, validation RMSE."""
    inputs = trainer.inputs
    p = fold_pairs(trainer, fold)
    scaled, d, c, y, mu, sd = p.scaled, p.d, p.c, p.y, p.mu, p.sd
    train_rows, val_rows = p.rows[TRAIN], p.rows[VAL]
    names = list(inputs.cells)
    torch.manual_seed(stable_seed(fold.name, "init"))
    model = PlainMLP(inputs.shapes())
    optimizer = torch.optim.Adam(model.parameters(), lr=trainer.config.lr)
    loader = DataLoader(TensorDataset(torch.from_numpy(d[train_rows]), torch.from_numpy(c[train_rows]),
                                      torch.from_numpy((y[train_rows] - mu) / sd)), batch_size=batch_size,
                        shuffle=True)  # fmt: skip
    vd, vc = torch.from_numpy(d[val_rows]), torch.from_numpy(c[val_rows])
    start, curve = time.perf_counter(), []
    for _ in range(max_epochs):
        model.train()
        for drug_i, cell_i, target in loader:
            loss = torch.mean((model(scaled["drug"][drug_i], {n: scaled[n][cell_i] for n in names}) - target) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            pred = model(scaled["drug"][vd], {n: scaled[n][vc] for n in names}).numpy() * sd + mu
        val_rmse = float(np.sqrt(np.mean((pred - y[val_rows]) ** 2)))
        curve.append({"seconds": time.perf_counter() - start, "val_rmse": val_rmse})
        if len(curve) - 1 - int(np.argmin([e["val_rmse"] for e in curve])) >= patience:
            break
    return pd.DataFrame(curve)


def adapter_row(n_folds: int, batch_size: int) -> None:
    """The plain module through the adapter against the same module in a per-fold loop: time to the same accuracy."""
    registry.MODELS["plain-mlp"] = f"{__name__}:PlainMLP"
    config = TrainConfig(select_by="rmse", patience=5, precision="fp32", drugs_per_step=16)  # 16 x 64 pairs a step
    spec = RunSpec(model="plain-mlp", drug_encoder="minimol", split="lodo", train=config)
    inputs = load_run_inputs(spec)
    folds = folds_of(spec, inputs)[:n_folds]
    engine = spec.build()
    trainer = TimedTrainer(inputs, engine.network, engine.options, config, Execution(slots=n_folds))
    results = {r.fold.name: r.curve.assign(seconds=trainer.times[r.fold.name]) for r in trainer.run(folds, True)}
    loops = {f.name: loop_fold(trainer, f, batch_size, config.patience, config.max_epochs) for f in folds}
    target = {n: max(results[n]["val_rmse"].min(), loops[n]["val_rmse"].min()) for n in results}

    def seconds_to(curve: pd.DataFrame, rmse: float) -> float:
        return float(curve.loc[curve["val_rmse"] <= rmse + 1e-9, "seconds"].iloc[0])

    engine_s = max(seconds_to(results[n], target[n]) for n in results)  # the folds train together
    loop_s = sum(seconds_to(loops[n], target[n]) for n in loops)  # one after another
    best_adapter, best_loop = (np.mean([c["val_rmse"].min() for c in x.values()]) for x in (results, loops))
    click.echo(
        f"plain MLP, {n_folds} LODO folds (MiniMol + expression), fp32, patience {config.patience} on RMSE; "
        f"adapter steps of {config.drugs_per_step} drugs x {config.cells_per_step} cell lines per fold"
    )
    click.echo(f"  best validation RMSE per fold, mean: adapter {best_adapter:.3f}, loop (batch {batch_size}) "
               f"{best_loop:.3f}")  # fmt: skip
    click.echo(f"  seconds to the worse of the two bests on every fold: adapter {engine_s:.1f}, loop {loop_s:.1f}; "
               f"adapter {loop_s / engine_s:.1f}x faster (target > 1)")  # fmt: skip


def run_engine(checkout: Path, n_folds: int, epochs: int, flops: bool = False) -> dict[str, float]:
    """``engine_epochs.py`` in a fresh process importing ``fused_train`` from ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    command = [sys.executable, str(Path(__file__).with_name("engine_epochs.py")), "--folds", str(n_folds),
               "--epochs", str(epochs), *(["--flops"] if flops else [])]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=checkout, capture_output=True, text=True, check=False)
    if done.returncode:
        raise click.ClickException(f"engine_epochs.py with {checkout} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def against_row(reference: Path, n_folds: int, epochs: int, rounds: int) -> None:
    """This tree's engine against ``reference``'s, alternating, with the matmul rates measured in the same rounds."""
    trees = {"reference": reference.resolve(), "this tree": Path(__file__).resolve().parents[1]}
    times: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    rates: dict[torch.dtype, list[float]] = {torch.bfloat16: [], torch.float32: []}
    flops = {name: run_engine(tree, n_folds, 1, flops=True)["flops_per_fold_epoch"] for name, tree in trees.items()}
    click.echo(f"{n_folds} LODO folds x {epochs} epochs per round, {rounds} rounds; load average before: "
               f"{load_average()}")  # fmt: skip
    for k in range(rounds):
        for name, tree in trees.items():
            times[name].append(run_engine(tree, n_folds, epochs))
            one = times[name][-1]
            click.echo(f"  round {k + 1} {name:9s}: {one['seconds'] / one['fold_epochs']:.3f} s per fold-epoch wall, "
                       f"{one['cpu_seconds'] / one['fold_epochs']:.3f} s CPU (load {load_average()})")  # fmt: skip
        for dtype in rates:
            rates[dtype].append(matmul_gflops(dtype))
    bf16 = statistics.median(rates[torch.bfloat16])
    click.echo(
        f"matmul rate here (median of rounds, {torch.get_num_threads()} threads): bf16 {bf16:.0f} GFLOP/s, "
        f"fp32 {statistics.median(rates[torch.float32]):.0f} GFLOP/s; load average after: {load_average()}"
    )
    per = {}
    for name in trees:
        wall = statistics.median(t["seconds"] / t["fold_epochs"] for t in times[name])
        cpu = statistics.median(t["cpu_seconds"] / t["fold_epochs"] for t in times[name])
        per[name] = wall, cpu
        rate = flops[name] / wall / 1e9
        click.echo(
            f"{name:9s}: {wall:.3f} s per fold-epoch wall ({cpu:.3f} s CPU), {flops[name] / 1e9:.1f} GFLOP per "
            f"fold-epoch, {rate:.0f} GFLOP/s = {rate / bf16:.0%} of the bf16 matmul rate (target >= 40%)"
        )
    effective = flops["reference"] / per["this tree"][0] / 1e9
    click.echo(f"this tree at the reference's FLOPs per fold-epoch (the work it leaves out counted as done): "
               f"{effective:.0f} GFLOP/s = {effective / bf16:.0%} of the bf16 matmul rate")  # fmt: skip
    click.echo(
        f"speed-up of this tree: {per['reference'][0] / per['this tree'][0]:.2f}x wall, "
        f"{per['reference'][1] / per['this tree'][1]:.2f}x CPU (target >= 1.96x)"
    )


@click.command()
@click.option("--folds", "n_folds", default=8, show_default=True, help="LODO folds trained by both.")
@click.option("--epochs", default=2, show_default=True, help="Fixed epochs per fold (no early stopping).")
@click.option("--batch-size", default=512, show_default=True, help="Reference loop's pairs per batch.")
@click.option("--full", is_flag=True, help="Also time all 223 folds with early stopping (fused-train run defaults).")
@click.option("--adapter", is_flag=True, help="Only the plain-module row: adapter against a per-fold loop.")
@click.option(
    "--against",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Only this tree's engine against the one of another checkout (a directory), alternating.",
)
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds of --against.")
def main(n_folds: int, epochs: int, batch_size: int, full: bool, adapter: bool, against: Path | None,
         rounds: int) -> None:  # fmt: skip
    if against is not None:
        against_row(against, n_folds, epochs, rounds)
        return
    if adapter:
        adapter_row(n_folds, batch_size)
        return
    inputs = load_run_inputs(SPEC)
    folds = folds_of(SPEC, inputs)[:n_folds]
    spec = replace(SPEC, train=replace(SPEC.train, max_epochs=epochs, patience=epochs))
    engine = spec.trainer(inputs, Execution(slots=n_folds))
    click.echo(
        f"{n_folds} LODO folds x {epochs} epochs, {len(inputs.pairs)} pairs, torch threads {torch.get_num_threads()}"
    )

    start = time.perf_counter()
    list(engine.run(folds, quiet=True))
    engine_s = time.perf_counter() - start
    reference_s = reference_loop(engine, folds, epochs, batch_size)
    work = n_folds * epochs
    click.echo(f"reference loop: {work / reference_s:7.3f} fold-epochs/s ({reference_s:.1f} s)")
    click.echo(f"engine:         {work / engine_s:7.3f} fold-epochs/s ({engine_s:.1f} s)")
    click.echo(f"speed-up: {reference_s / engine_s:.1f}x (target >= 20x)")

    with FlopCounterMode(display=False) as counter:
        list(spec.trainer(inputs, Execution(slots=n_folds)).run(folds, quiet=True))
    achieved = counter.get_total_flops() / engine_s / 1e9
    click.echo(f"engine ({engine.bf16 and 'bf16 autocast' or 'fp32'}) matmul rate: {achieved:.1f} GFLOP/s")
    for dtype in (torch.float32, torch.bfloat16):
        peak = matmul_gflops(dtype)
        click.echo(f"  {dtype} matmul here: {peak:.1f} GFLOP/s; engine at {achieved / peak:.0%} of it (target >= 40%)")

    if full:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            train(SPEC, Path(tmp) / "run", fold="all", quiet=True)
            wall = time.perf_counter() - start
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        click.echo(
            f"full LODO, 223 folds, early stopping: {wall / 60:.1f} min (target <= 20); peak RSS {peak_gb:.2f} GB"
        )


if __name__ == "__main__":
    main()
