"""Does the engine train as well as a plain per-pair loop, and how much faster does it get there?

    python benchmarks/convergence.py [--seeds 0,1,2] [--lodo-folds 16] [--lodo-seeds 0]
        [--reference-cache runs/bench/reference.json]

Both train FUSED (drug = ChemNet; expression, methylation, mutation tokens; the default options) on the same folds,
with the same scalers (fitted on training rows) and the same validation rows, until early stopping:

- the reference: one ``FusedReference`` per fold (``nn.MultiheadAttention`` per pair), Adam (lr 1e-3), shuffled
  minibatches of 64 pairs, patience 10 on validation RMSE, at most 200 epochs -- DeepCDR's regime;
- the engine: ``fused-train run``'s defaults (``TrainConfig()``, ``Execution()``; the validation metric follows the
  split: RMSE in drug-known, per-drug PCC in LODO), or the settings given with ``--engine``.

Printed per split (drug-known with each of ``--seeds``; the first ``--lodo-folds`` LODO folds of each of
``--lodo-seeds``): test pooled PCC, mean per-drug PCC, RMSE, optimizer steps and wall time of both (mean ± sd over
seeds), and the engine's wall time to reach the reference's converged validation RMSE and validation per-drug PCC
(per fold: the first epoch at least as good as the reference's best; the time is when the last fold of a group gets
there). The speed-up to the same accuracy is the reference's time to its best epoch (the folds one after another,
as a per-fold loop trains them) over the engine's time to reach that validation RMSE. Last, per split, the per-drug
test PCC of engine and reference paired over drugs (Wilcoxon signed-rank, two-sided; in drug-known each drug's PCC is
the mean over the seeds). Both are scored on every test measurement. The reference takes long (about 4-10 minutes
per fold on 2 cores: ~1,400 steps per epoch, 13-32 epochs), so its results are cached in ``--reference-cache`` by a
key of what determines them; delete the file to recompute.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
import torch

from fused_train.data import Inputs
from fused_train.engine import Execution, FoldResult, TrainConfig, Trainer
from fused_train.metrics import mean_row_pcc, rmse, summarise
from fused_train.models.fused import FusedOptions, FusedReference
from fused_train.models.registry import make_options, model_class
from fused_train.runs import RunSpec, folds_of, load_run_inputs
from fused_train.seeding import stable_seed
from fused_train.splits import TEST, TRAIN, VAL, Fold
from fused_train.stats import entity_pcc, paired_test


@dataclass(frozen=True)
class Reference:
    batch_size: int = 64
    lr: float = 1e-3
    patience: int = 10
    max_epochs: int = 200


def test_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Pooled PCC and RMSE over test pairs, mean per-drug PCC over the drugs where it is defined, and the number of
    drugs where it is not (the prediction is the same for all the drug's cell lines: it ranks none of them)."""
    summary = summarise(frame, pred="p", by="drug", truth="y")
    return {"pcc": summary["pcc"], "drug_pcc": summary["drug_pcc_mean"],
            "undefined": summary["drug_pcc_undefined"], "rmse": summary["rmse"]}  # fmt: skip


def paired_over_drugs(tests: dict[str, list[pd.DataFrame]]) -> str:
    """Engine vs reference per-drug test PCC, paired over drugs (mean over seeds where a drug is tested in several)."""
    a, b = (entity_pcc(pd.concat(tests[name]), "drug", "p", "y") for name in ("engine", "reference"))
    t = paired_test(a, b)
    return (
        f"per-drug PCC engine {t.mean_a:.3f} vs reference {t.mean_b:.3f} over {t.n} drugs: engine higher on "
        f"{t.wins}, lower on {t.losses} (undefined for either on {t.undefined}); "
        f"mean difference {t.difference.estimate:+.3f} "
        f"[{t.difference.low:+.3f}, {t.difference.high:+.3f}]; Wilcoxon two-sided p = {t.p_two_sided:.2g}"
    )


@dataclass(frozen=True)
class FoldPairs:
    """A fold's pairs as a per-pair loop reads them: entity features scaled as the engine scales them (TRAIN side),
    each pair's drug and cell index and ln IC50, the label scaler, and the pair rows of each role."""

    scaled: dict[str, torch.Tensor]
    d: np.ndarray
    c: np.ndarray
    y: np.ndarray
    mu: float
    sd: float
    rows: dict[int, np.ndarray]


def fold_pairs(trainer: Trainer, fold: Fold) -> FoldPairs:
    inputs = trainer.inputs
    scalers = trainer._scalers(fold)
    scaled = {n: torch.from_numpy(((x - scalers[n][0]) / scalers[n][1]).astype(np.float32))
              for n, x in {"drug": inputs.drug, **inputs.cells}.items()}  # fmt: skip
    mu, sd = (float(v) for v in scalers["y"])
    d, c = inputs.pairs["drug_index"].to_numpy(), inputs.pairs["cell_index"].to_numpy()
    role = fold.roles[d, c]
    rows = {r: np.flatnonzero(role == r) for r in (TRAIN, VAL, TEST)}
    return FoldPairs(scaled, d, c, inputs.pairs["ln_ic50"].to_numpy(np.float32), mu, sd, rows)


def reference_fold(trainer: Trainer, fold: Fold, ref: Reference) -> dict:
    """Train one fold the plain way; returns test predictions, its best validation metrics, steps and seconds."""
    inputs = trainer.inputs
    torch.manual_seed(stable_seed(fold.name, "reference"))
    p = fold_pairs(trainer, fold)
    scaled, d, c, y, mu, sd, rows = p.scaled, p.d, p.c, p.y, p.mu, p.sd, p.rows
    model = FusedReference(inputs.shapes(), FusedOptions())
    optimizer = torch.optim.Adam(model.parameters(), lr=ref.lr)
    names = list(inputs.cells)
    z = torch.from_numpy((y - mu) / sd)

    def features(index: np.ndarray) -> dict[str, torch.Tensor]:
        di, ci = torch.from_numpy(d[index]), torch.from_numpy(c[index])
        return {"drug": scaled["drug"][di]} | {n: scaled[n][ci] for n in names}

    @torch.no_grad()
    def predict(index: np.ndarray) -> np.ndarray:
        model.eval()
        out = torch.cat([model(features(index[k : k + 8192])) for k in range(0, len(index), 8192)])
        return out.numpy() * sd + mu

    start, steps, best, stale = time.perf_counter(), 0, (np.inf, None), 0
    curve = []
    for epoch in range(ref.max_epochs):
        model.train()
        order = np.random.default_rng(stable_seed(fold.name, "reference", epoch)).permutation(rows[TRAIN])
        for k in range(0, len(order), ref.batch_size):
            batch = order[k : k + ref.batch_size]
            loss = torch.mean((model(features(batch)) - z[batch]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        val = predict(rows[VAL])
        val_rmse = rmse(y[rows[VAL]], val)
        w = np.zeros(fold.roles.shape)
        grid_y, grid_p = np.zeros(fold.roles.shape), np.zeros(fold.roles.shape)
        np.add.at(w, (d[rows[VAL]], c[rows[VAL]]), 1)
        np.add.at(grid_y, (d[rows[VAL]], c[rows[VAL]]), y[rows[VAL]])
        np.add.at(grid_p, (d[rows[VAL]], c[rows[VAL]]), val)
        safe = np.where(w > 0, w, 1)
        val_drug_pcc = mean_row_pcc(w, grid_y / safe, grid_p / safe)
        curve.append({"epoch": epoch, "val_rmse": val_rmse, "val_drug_pcc": val_drug_pcc})
        if val_rmse < best[0]:
            best, stale = (val_rmse, predict(rows[TEST])), 0
        else:
            stale += 1
            if stale >= ref.patience:
                break
    test = pd.DataFrame({"drug": d[rows[TEST]], "y": y[rows[TEST]], "p": best[1]})
    curve = pd.DataFrame(curve)
    return {"fold": fold.name, "steps": steps, "seconds": time.perf_counter() - start, "epochs": len(curve),
            "best_val_rmse": float(curve["val_rmse"].min()), "best_val_drug_pcc": float(curve["val_drug_pcc"].max()),
            "test": test.to_dict("list")}  # fmt: skip


class TimedTrainer(Trainer):
    """The engine, recording the wall time and optimizer steps at the end of every epoch of every fold."""

    def run(self, folds: list[Fold], quiet: bool = False) -> Iterator[FoldResult]:
        self.start, self.times = time.perf_counter(), {}
        yield from super().run(folds, quiet)

    def _end_epoch(self, s: Any, pred: np.ndarray, net: Any, slot: int) -> FoldResult | None:
        self.times.setdefault(s.fold.name, []).append(time.perf_counter() - self.start)
        return super()._end_epoch(s, pred, net, slot)


def engine_folds(spec: RunSpec, inputs: Inputs, folds: list[Fold]) -> list[dict]:
    options = make_options(spec.model, spec.options)
    trainer = TimedTrainer(inputs, model_class(spec.model), options, spec.train, Execution())
    return [_engine_record(result, inputs, trainer) for result in trainer.run(folds, quiet=True)]


def _engine_record(result: FoldResult, inputs: Inputs, trainer: TimedTrainer) -> dict:
    """The fold's test pairs, each measurement with its own ln IC50 (as the reference scores them), and the engine's
    prediction of its grid cell."""
    pairs = inputs.pairs
    flat = np.ravel_multi_index((pairs["drug_index"].to_numpy(), pairs["cell_index"].to_numpy()), inputs.shape)
    test = np.isin(flat, result.test_cells)
    pred = pd.Series(result.test_pred, index=result.test_cells).loc[flat[test]]
    test = pd.DataFrame({"drug": pairs["drug_index"].to_numpy()[test], "y": pairs["ln_ic50"].to_numpy()[test],
                         "p": pred.to_numpy()})  # fmt: skip
    curve = result.curve.assign(seconds=trainer.times[result.fold.name])
    return {"fold": result.fold.name, "steps": int(curve["steps"].iloc[-1]), "epochs": len(curve),
            "seconds": float(curve["seconds"].iloc[-1]), "curve": curve, "test": test}  # fmt: skip


def time_to(engine: list[dict], reference: dict[str, dict], column: str, better: str) -> float:
    """Engine seconds until every fold's validation ``column`` is at least as good as the reference's best."""
    times = []
    for record in engine:
        curve, target = record["curve"], reference[record["fold"]][f"best_{column}"]
        ok = curve[column] <= target if better == "lower" else curve[column] >= target
        times.append(float(curve.loc[ok, "seconds"].iloc[0]) if ok.any() else float("inf"))
    return max(times)


def seconds_to_best(record: dict, ref: Reference) -> float:
    """The reference's seconds until its best epoch: it stops ``patience`` epochs later (epochs take equal time)."""
    if record["epochs"] >= ref.max_epochs:
        return record["seconds"]
    return record["seconds"] * (record["epochs"] - ref.patience) / record["epochs"]


@click.command()
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds of the drug-known split.")
@click.option("--lodo-folds", default=16, show_default=True)
@click.option("--lodo-seeds", default="0", show_default=True, help="Seeds of the LODO folds.")
@click.option("--reference-cache", type=click.Path(path_type=Path), default=Path("runs/bench/reference.json"),
              show_default=True)  # fmt: skip
@click.option("--reference-epochs", default=Reference.max_epochs, show_default=True, help="At most this many epochs of "
              "the reference (a small number only to try the benchmark out).")  # fmt: skip
@click.option("--engine", "overrides", multiple=True, help="Engine setting to try instead of the default, e.g. "
              "lr=0.003 (a TrainConfig field; repeat for several).")  # fmt: skip
def main(
    seeds: str, lodo_folds: int, lodo_seeds: str, reference_cache: Path, reference_epochs: int,
    overrides: tuple[str, ...],
) -> None:  # fmt: skip
    ref = Reference(max_epochs=reference_epochs)
    config = TrainConfig()
    for item in overrides:
        key, value = item.split("=", 1)
        config = replace(config, **{key: type(getattr(config, key))(value)})
    cache = json.loads(reference_cache.read_text()) if reference_cache.exists() else {}
    rows, tests = [], {}
    for split, split_seeds in (("drug-known", seeds), ("lodo", lodo_seeds)):
        for seed in (int(s) for s in split_seeds.split(",")):
            spec = RunSpec(model="fused", drug_encoder="chemnet", omics=("methylation", "mutation"), split=split,
                           seeds=(seed,), train=config)  # fmt: skip
            inputs = load_run_inputs(spec)
            folds = folds_of(spec, inputs)[: 1 if split == "drug-known" else lodo_folds]
            trainer = spec.trainer(inputs)
            reference = {}
            for fold in folds:
                key = json.dumps([fold.name, asdict(ref), spec.drug_encoder, spec.cell_tokens])
                if key not in cache:
                    cache[key] = reference_fold(trainer, fold, ref)
                    reference_cache.parent.mkdir(parents=True, exist_ok=True)
                    reference_cache.write_text(json.dumps(cache))
                reference[fold.name] = cache[key]
            engine = engine_folds(spec, inputs, folds)
            ref_test = pd.concat([pd.DataFrame(r["test"]) for r in reference.values()])
            eng_test = pd.concat([r["test"] for r in engine])
            for name, test in (("reference", ref_test), ("engine", eng_test)):
                tests.setdefault(split, {}).setdefault(name, []).append(test.assign(seed=seed))
            for name, test, steps, seconds in (
                ("reference", ref_test, sum(r["steps"] for r in reference.values()),
                 sum(r["seconds"] for r in reference.values())),
                ("engine", eng_test, sum(r["steps"] for r in engine), max(r["seconds"] for r in engine)),
            ):  # fmt: skip
                rows.append({"split": split, "seed": seed, "trainer": name, **test_metrics(test), "steps": steps,
                             "seconds": seconds})  # fmt: skip
            rows[-2]["s_to_best_val_rmse"] = sum(seconds_to_best(r, ref) for r in reference.values())
            rows[-1]["s_to_ref_val_rmse"] = time_to(engine, reference, "val_rmse", "lower")
            rows[-1]["s_to_ref_val_drug_pcc"] = time_to(engine, reference, "val_drug_pcc", "higher")
            rows[-1]["speedup_to_ref_val_rmse"] = rows[-2]["s_to_best_val_rmse"] / rows[-1]["s_to_ref_val_rmse"]
            click.echo(pd.DataFrame(rows[-2:]).round(3).to_string(index=False))
    table = pd.DataFrame(rows)
    summary = table.groupby(["split", "trainer"]).agg(["mean", "std"]).drop(columns="seed").round(3)
    click.echo(f"\nengine {asdict(config)}; reference {asdict(ref)}\n{summary.to_string()}")
    for split, by_trainer in tests.items():
        click.echo(f"{split}: {paired_over_drugs(by_trainer)}")


if __name__ == "__main__":
    main()
