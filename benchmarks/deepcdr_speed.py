"""DeepCDR training speed and equality: this tree against a reference checkout, side by side in one sitting.

    git worktree add --detach /tmp/deepcdr-ref 8a7a6e3      # the code before the GCN/head/dropout rewrite
    python benchmarks/deepcdr_speed.py --reference /tmp/deepcdr-ref [--folds 4] [--epochs 1] [--drug-encoder graph]
        [--equality-folds 2] [--equality-epochs 2]

Each measurement runs in a subprocess with ``PYTHONPATH`` set to one tree (the reference, then this one), on the same
first LODO folds of the bundled data (DeepCDR; expression, methylation, mutation; the folds as slots of one batch):

- speed: the default settings (bf16 where the CPU has it, DeepCDR's dropout), ``--epochs`` epochs; printed: wall and
  CPU seconds per fold-epoch of both (training and validation, as ``fused-train run`` spends them) and reference /
  new (CPU time is the steadier figure on a shared machine). Target: >= 2.5x.
- equality: fp32 and no dropout (the random masks are drawn differently, so only a run without them can agree), the
  same folds and seeds for ``--equality-epochs`` epochs; printed: each fold's best epoch in both, the largest
  difference of the validation RMSE curves and of the test predictions (ln IC50). Two codes that compute the same
  model but add in another order drift apart here: BatchNorm over nearly constant GCN features amplifies fp32
  rounding through training (docs/results.md, "DeepCDR in LODO").

The machine's load average is printed beside each figure: on a shared machine only the ratio is meaningful.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

HERE = Path(__file__).resolve().parents[1]


def worker(out: Path, folds: int, epochs: int, drug: str, exact: bool) -> None:
    """Train the first ``folds`` LODO folds for ``epochs`` epochs with the ``fused_train`` on the path; write the
    seconds, curves and test predictions to ``out`` (JSON)."""
    from fused_train.engine import Execution, TrainConfig
    from fused_train.runs import RunSpec, folds_of, load_run_inputs

    config = TrainConfig(max_epochs=epochs, patience=epochs, precision="fp32" if exact else "auto")
    options = {"dropout": 0.0, "dropout_out": 0.0} if exact else {}
    spec = RunSpec(model="deepcdr", drug_encoder=drug, omics=("methylation", "mutation"), split="lodo",
                   train=config, options=options)  # fmt: skip
    inputs = load_run_inputs(spec)
    chosen = folds_of(spec, inputs)[:folds]
    trainer = spec.trainer(inputs, Execution(slots=folds))
    start, cpu = time.perf_counter(), time.process_time()
    results = list(trainer.run(chosen, quiet=True))
    record = {
        "seconds": time.perf_counter() - start,
        "cpu": time.process_time() - cpu,
        "load": os.getloadavg()[0],
        "folds": {
            r.fold.name: {
                "best": int(r.best_epoch),
                "val_rmse": r.curve["val_rmse"].tolist(),
                "test": np.asarray(r.test_pred, dtype=float).tolist(),
            }  # fmt: skip
            for r in results
        },
    }
    out.write_text(json.dumps(record))


def measure(tree: Path, folds: int, epochs: int, drug: str, exact: bool) -> dict:
    """One worker run with ``tree`` first on the path."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = os.environ | {"PYTHONPATH": str(tree)}
        args = [sys.executable, __file__, "--worker", str(out), "--folds", str(folds), "--epochs", str(epochs),
                "--drug-encoder", drug] + (["--exact"] if exact else [])  # fmt: skip
        subprocess.run(args, env=env, check=True, cwd=tmp)
        return json.loads(out.read_text())


@click.command()
@click.option("--reference", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A checkout of the code to compare against (e.g. a git worktree at 8a7a6e3).")  # fmt: skip
@click.option("--folds", default=4, show_default=True, help="LODO folds of the speed run (trained as one batch).")
@click.option("--epochs", default=1, show_default=True, help="Epochs of the speed run.")
@click.option("--drug-encoder", default="graph", show_default=True, help="graph (the GCN) or a dense store.")
@click.option("--equality-folds", default=2, show_default=True, help="LODO folds of the equality run (0: skip it).")
@click.option("--equality-epochs", default=2, show_default=True, help="Epochs of the equality run.")
@click.option("--worker", type=click.Path(path_type=Path), hidden=True)
@click.option("--exact", is_flag=True, hidden=True)
def main(reference: Path | None, folds: int, epochs: int, drug_encoder: str, equality_folds: int,
         equality_epochs: int, worker: Path | None, exact: bool) -> None:  # fmt: skip
    if worker is not None:
        return globals()["worker"](worker, folds, epochs, drug_encoder, exact)
    if reference is None:
        raise click.UsageError("--reference DIR: a checkout of the code to compare against")
    trees = {"reference": reference.resolve(), "new": HERE}
    print(f"DeepCDR ({drug_encoder}), LODO, expression, methylation, mutation; reference {trees['reference']}")
    speed = {name: measure(tree, folds, epochs, drug_encoder, exact=False) for name, tree in trees.items()}
    per = {name: r["seconds"] / (folds * epochs) for name, r in speed.items()}
    cpu = {name: r["cpu"] / (folds * epochs) for name, r in speed.items()}
    for name, r in speed.items():
        print(f"speed {name}: {per[name]:.1f} s wall, {cpu[name]:.1f} s CPU per fold-epoch ({folds} folds x {epochs} "
              f"epochs in {r['seconds']:.0f} s; load average {r['load']:.1f} at the end)")  # fmt: skip
    print(f"speed-up (reference / new, per fold-epoch): {per['reference'] / per['new']:.2f}x wall, "
          f"{cpu['reference'] / cpu['new']:.2f}x CPU time (target >= 2.5x)")  # fmt: skip
    if not equality_folds:
        return None
    same = {
        name: measure(tree, equality_folds, equality_epochs, drug_encoder, exact=True) for name, tree in trees.items()
    }
    ref, new = same["reference"]["folds"], same["new"]["folds"]
    curve_diff = max(np.max(np.abs(np.subtract(ref[f]["val_rmse"], new[f]["val_rmse"]))) for f in ref)
    best = {f: (ref[f]["best"], new[f]["best"]) for f in ref}
    comparable = [f for f, (a, b) in best.items() if a == b]
    print(f"equality (fp32, no dropout, {equality_folds} folds x {equality_epochs} epochs): best epochs reference/new "
          f"{', '.join(f'{a}/{b}' for a, b in best.values())}; max |diff| of validation RMSE over the epochs "
          f"{curve_diff:.2e}")  # fmt: skip
    if comparable:
        pred_diff = max(np.max(np.abs(np.subtract(ref[f]["test"], new[f]["test"]))) for f in comparable)
        spread = np.std(np.concatenate([ref[f]["test"] for f in comparable]))
        print(f"max |diff| of test predictions (ln IC50) at the best epoch, {len(comparable)} folds: {pred_diff:.2e} "
              f"(sd of the predictions {spread:.2f})")  # fmt: skip
    return None


if __name__ == "__main__":
    main()
