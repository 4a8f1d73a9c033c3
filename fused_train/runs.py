"""A training run: its specification, its directory of results, and training the folds that are not finished yet.

``runs/<id>/`` holds ``config.json`` (the resolved specification), ``provenance.json`` (the stores trained on: version,
input hashes; the pairs used, excluded and measured more than once), ``excluded_pairs.csv`` (each pair left out and
why), ``folds/<fold>.parquet`` (test pairs with the truth, the drug's target pathway where the dataset has one, and
every predictor's prediction: the model and the naive baselines), ``curves/<fold>.csv`` (per epoch: optimizer steps,
training loss, validation RMSE and PCC) or, for a fitted model (``neighbours``, ``trees``), ``choices/<fold>.json``
(what it chose on the fold's validation rows), ``run.log`` (every training session's messages), with ``save_models``
``models/<fold>/`` (the fold's best-epoch model, ``fused_train/saved.py``; ``fused_train.load_model`` reads it) and,
once summarised, ``metrics.json`` / ``metrics.csv`` and ``per_drug.csv`` / ``per_cell.csv``. A fold's Parquet file
is written last and atomically, so its presence means the fold is finished and a rerun skips it; a rerun whose stores
or pairs differ from ``provenance.json`` is refused, so folds trained on different inputs are never pooled. Fold
names become file names percent-escaped (a drug id may hold ``/``), and a name too long for a file name is cut and
given a hash of itself (``fold_file``); a fold's Parquet file also holds its name. A finished fold's file that cannot
be read (truncated after it was written) is refused with its path, never skipped or silently trained again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from fused_cache import datasets
from fused_cache.cluster import connect, run_tasks
from fused_cache.logs import log_to
from fused_cache.stores import SKIP_CHECKSUMS, cache_root, protect
from fused_train.data import Inputs, load_inputs
from fused_train.engine import Execution, TrainConfig, Trainer, resolve_precision
from fused_train.metrics import entity_table, summarise
from fused_train.models.base import Model, Outcome
from fused_train.models.naive import NAIVE, naive_predictions
from fused_train.models.registry import build, make_options, model, options_json
from fused_train.saved import save_fitted, store_records
from fused_train.splits import TEST, Fold, make_folds, select, split_of
from fused_train.stats import compare

log = logging.getLogger(__name__)


class RunError(ValueError):
    """A run cannot start as asked (bad options, or a run directory that holds a different run)."""


def selection_metric(split: str) -> str:
    """The validation metric that chooses a fold's epoch when none is given: the split's own (``selection_metric`` of
    its class in ``fused_train/splits/``, which says why; docs/results.md, "Does the engine train to convergence?")."""
    return split_of(split).selection_metric


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's results (not how fast it runs: slots, device and scheduler are not here)."""

    model: str
    drug_encoder: str
    cell_encoder: str = "expression"
    omics: tuple[str, ...] = ()
    split: str = "lodo"
    seeds: tuple[int, ...] = (0,)
    dataset: str = "gdsc-deepcdr"
    response: str = datasets.DEFAULT_RESPONSE
    """The measure learned (``--response``): a column of the dataset's pairs, ln IC50 by default."""
    train: TrainConfig = field(default_factory=TrainConfig)
    options: dict[str, Any] = field(default_factory=dict)
    """The model's options (see its ``Options``); the defaults fill in whatever is not given."""

    def __post_init__(self) -> None:
        if self.cell_encoder in self.omics:
            raise RunError(f"--omics repeats the cell encoder {self.cell_encoder!r}")
        object.__setattr__(self, "split", split_of(self.split).name)  # an alias (LTO) is recorded by its name
        if self.train.select_by == "auto":
            object.__setattr__(self, "train", replace(self.train, select_by=selection_metric(self.split)))
        object.__setattr__(self, "options", options_json(make_options(self.model, self.options)))

    @property
    def cell_tokens(self) -> list[str]:
        return [self.cell_encoder, *self.omics]

    @property
    def name(self) -> str:
        name = f"{self.model}-{self.split}-{self.drug_encoder}-{'+'.join(self.cell_tokens)}"
        return name if self.response == datasets.DEFAULT_RESPONSE else f"{name}-{self.response}"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["omics"], out["seeds"] = list(self.omics), list(self.seeds)
        return out

    @classmethod
    def from_json(cls, config: dict[str, Any]) -> RunSpec:
        """The spec a run's ``config.json`` (``to_json``) records."""
        return cls(**config | {"omics": tuple(config["omics"]), "seeds": tuple(config["seeds"]),
                               "train": TrainConfig(**config["train"])})  # fmt: skip

    def build(self) -> Model:
        """The run's model with its options, behind the model contract (``models/base.py``)."""
        return build(self.model, self.options, self.train)

    @property
    def trained_by_engine(self) -> bool:
        """Whether the engine trains this run's model (a network: ``networks.EngineModel``), so that ``train``'s
        settings (epochs, learning rate, precision, ...) apply to it; a fitted model ignores them."""
        return hasattr(model(self.model), "trainer")

    def trainer(self, inputs: Inputs, execution: Execution | None = None, keep_state: bool = False) -> Trainer:
        """The engine that trains this run's model on ``inputs``."""
        if not self.trained_by_engine:
            raise RunError(f"model {self.model!r} is not trained by the engine")
        return self.build().trainer(inputs, execution, keep_state)

    @property
    def saves_models_by_default(self) -> bool:
        """Saving costs one small model per fold: by default for trained networks on the splits that say so (not on
        LODO and pilot-K: one per drug)."""
        return model(self.model).saves_by_default and split_of(self.split).saves_models_by_default


def folds_of(spec: RunSpec, inputs: Inputs) -> list[Fold]:
    count, _ = inputs.grid()
    return [f for seed in spec.seeds for f in make_folds(spec.split, count, inputs.drug_ids, inputs.cell_groups, seed)]


def load_run_inputs(spec: RunSpec, cache_dir: str | Path | None = None) -> Inputs:
    drug_kinds = model(spec.model).drug_inputs
    dataset = datasets.load(spec.dataset, spec.response)
    return load_inputs(dataset, spec.drug_encoder, spec.cell_tokens, cache_dir, drug_kinds)


def prepare(spec: RunSpec, run_dir: Path) -> None:
    """Create the run directory with its config, or check that an existing one holds the same run."""
    config = run_dir / "config.json"
    wanted = spec.to_json()
    if config.exists():
        found = {"response": datasets.DEFAULT_RESPONSE} | json.loads(config.read_text())  # older runs: ln IC50
        if found != wanted:
            changed = sorted(k for k in wanted if found.get(k) != wanted[k])
            raise RunError(
                f"{run_dir} holds a different run (differs in {', '.join(changed)}); pass another --out, "
                "or delete the directory to start over"
            )
        for path in sorted((run_dir / "folds").glob("*.parquet")):  # a resume must not skip a damaged fold
            with _fold_file_read(path):
                pq.read_metadata(path)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_text(config, json.dumps(wanted, indent=2))


def provenance(inputs: Inputs) -> dict[str, Any]:
    """What a run's folds were trained on: each store's version and input hashes, and the pairs (a hash of those used,
    counts of those excluded by reason, and of repeated measurements)."""
    pairs = inputs.pairs[["drug_id", "cell_id", "ln_ic50"]]
    repeated = pairs[pairs.duplicated(["drug_id", "cell_id"], keep=False)]
    stores = inputs.store_versions
    return {
        "stores": {name: {k: v for k, v in record.items() if k != "path"} for name, record in stores.items()},
        "stores_verified": stores_verified(),
        "pairs": {
            "used": len(pairs),
            "hash": hashlib.sha256(pairs.to_csv(index=False).encode()).hexdigest(),  # stable across pandas versions
            "excluded": inputs.excluded,
            "repeated measurements": {
                "pairs": len(repeated),
                "drug x cell line cells": int(repeated.groupby(["drug_id", "cell_id"]).ngroups),
            },
        },
        "store_paths": {name: record["path"] for name, record in stores.items()},
    }


def stores_verified() -> bool:
    """False when $FUSED_SKIP_CHECKSUMS=1 let the stores load without their checksums being compared (as
    ``Store.load`` decides)."""
    return os.environ.get(SKIP_CHECKSUMS, "") in ("", "0")


def record_provenance(run_dir: Path, inputs: Inputs) -> None:
    """Write the run's provenance (and its excluded pairs), or refuse to go on when the folds already in the run were
    trained on other stores or pairs: pooling them with new folds would mix two experiments."""
    path = run_dir / "provenance.json"
    wanted = provenance(inputs)
    advice = f"pass another --out for a new run, or delete {run_dir} to start over"
    if path.exists():
        found = json.loads(path.read_text())
        changes = [
            f"{name}: v{found['stores'].get(name, {}).get('version')} -> v{record['version']}"
            for name, record in wanted["stores"].items()
            if found["stores"].get(name) != record
        ]
        if found["pairs"] != wanted["pairs"]:
            changes.append(f"pairs used: {found['pairs']['used']} -> {wanted['pairs']['used']} (or their labels)")
        if changes:
            raise RunError(
                f"{run_dir} was trained on other inputs than the stores and dataset give now ({'; '.join(changes)}); "
                f"its folds would be pooled with folds trained on the new ones. {advice}"
            )
        if found.get("stores_verified", True) and not wanted["stores_verified"]:
            found["stores_verified"] = False  # a resume without checksums: the run says so from now on
            _atomic_text(path, json.dumps(found, indent=2))
        return
    if finished(run_dir):
        raise RunError(f"{run_dir} has finished folds but no record of the stores they were trained on; {advice}")
    if inputs.excluded_pairs is not None:
        _atomic_text(run_dir / "excluded_pairs.csv", inputs.excluded_pairs.to_csv(index=False))
    _atomic_text(path, json.dumps(wanted, indent=2))


def unverified_note(run_dir: Path) -> str | None:
    """A warning when some of the run's folds were trained on stores whose checksums were not compared."""
    path = run_dir / "provenance.json"
    if not path.is_file() or json.loads(path.read_text()).get("stores_verified", True):
        return None
    return (f"{run_dir}: the stores were not verified ({SKIP_CHECKSUMS}=1 skipped their checksums); "
            "fused-cache verify checks them")  # fmt: skip


def describe_inputs(run_dir: Path) -> str:
    """The run's pairs in one paragraph: how many were used, excluded and why, measured more than once (and whether
    the stores were verified)."""
    pairs = json.loads((run_dir / "provenance.json").read_text())["pairs"]
    lines = [f"trained on {pairs['used']} pairs"]
    note = unverified_note(run_dir)
    if note is not None:
        lines.append(f"  {note}")
    repeated = pairs["repeated measurements"]
    if repeated["pairs"]:
        lines.append(f"  {repeated['pairs']} of them repeat a (drug, cell line) measurement "
                     f"({repeated['drug x cell line cells']} grid cells): each is kept, the grid trains on their mean "
                     "weighted by their count")  # fmt: skip
    excluded = pairs["excluded"]
    if excluded:
        lines.append(f"  excluded {sum(excluded.values())} pairs (listed in {run_dir / 'excluded_pairs.csv'}):")
        lines += [f"    {n} {reason}" for reason, n in excluded.items()]
    return "\n".join(lines)


LONGEST_FILE_NAME = 200
"""Escaped fold names longer than this are cut (file names may hold 255 bytes, with room left for suffixes and the
temporary names)."""
CUT = "%~"
"""Marks a cut fold name: ``quote`` writes every '%' as '%25', so an escaped name never holds it."""


def fold_file(name: str) -> str:
    """A fold's name as a file name: ids may hold '/' and other characters that must not become paths, and may be
    longer than a file name may be (then the escaped name is cut and ends in ``CUT`` and a hash of the whole name)."""
    escaped = quote(name, safe="")
    if len(escaped) <= LONGEST_FILE_NAME:
        return escaped
    return f"{escaped[:150]}{CUT}{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def finished(run_dir: Path) -> set[str]:
    """The names of the run's finished folds (a cut file name: the name its Parquet file holds)."""
    return {_fold_name(p) if CUT in p.stem else unquote(p.stem) for p in (run_dir / "folds").glob("*.parquet")}


def _fold_name(path: Path) -> str:
    with _fold_file_read(path):
        return (pq.read_schema(path).metadata or {})[b"fused_fold"].decode()


@contextmanager
def _fold_file_read(path: Path) -> Iterator[None]:
    """Reading a finished fold's file: one that cannot be read was damaged after it was written (it is written
    whole), so the run stops and names it rather than skip the fold or train it again unasked."""
    try:
        yield
    except (pa.ArrowException, ValueError, KeyError) as err:
        raise RunError(
            f"fold file {path} cannot be read ({type(err).__name__}: {err}); it was damaged after it was written: "
            "delete it, and the next fused-train run with this --out trains that fold again"
        ) from err


def train(
    spec: RunSpec, run_dir: Path, fold: str = "all", cache_dir: str | Path | None = None,
    execution: Execution | None = None, quiet: bool = False, save_models: bool | None = None,
) -> list[str]:  # fmt: skip
    """Train the selected folds that are not finished; returns the names of the folds trained now.

    ``save_models`` (None: ``spec.saves_models_by_default``) writes each fold's model to ``models/<fold>/``.

    With ``execution.scheduler`` the folds are split into groups of ``2 * slots`` folds, one task each, trained by
    workers that read the stores from the same cache directory and write into the same run directory; a lost
    worker's group is retried, and skips the folds it had finished.
    """
    execution = execution or Execution()
    if save_models and model(spec.model).fitted_class is None:
        raise RunError(f"model {spec.model!r} has nothing of its own to save; drop --save-models")
    save = spec.saves_models_by_default if save_models is None else save_models
    precision = resolve_precision(spec.train.precision, execution.device)
    spec = replace(spec, train=replace(spec.train, precision=precision))  # the run records what it really used
    inputs = load_run_inputs(spec, cache_dir)
    folds = folds_of(spec, inputs)  # selected before the run directory exists: a bad --fold leaves nothing
    chosen = select(folds, fold, fold_strata(folds, inputs))
    prepare(spec, run_dir)
    record_provenance(run_dir, inputs)
    with log_to(run_dir / "run.log"):
        if save:
            protect_models(run_dir / "models", inputs, cache_dir)
        log.info("%s: %d folds selected (--fold %s); inputs %s", spec.name, len(chosen), fold, inputs.describe())
        if fold.startswith("sample:"):  # the drawn folds, for anyone comparing other runs on the same ones
            log.info("--fold %s: %s", fold, ", ".join(f.name for f in chosen))
        trained = _train_chosen(spec, run_dir, inputs, chosen, cache_dir, execution, quiet, save)
        log.info("%s: trained %d folds now, %d finished in all", spec.name, len(trained), len(finished(run_dir)))
    return trained


def fold_strata(folds: list[Fold], inputs: Inputs) -> list[str]:
    """What ``--fold sample:N`` stratifies by: each fold's held-out drugs' target pathways (``;``-joined; "unknown"
    without one); one stratum for splits that hold out no drugs or a dataset without pathways."""
    pathways = inputs.drug_annotations.get("target_pathway")
    if not folds or split_of(folds[0].split).holds_out != "drug" or not pathways or not any(pathways):
        return [""] * len(folds)
    held_out = [np.flatnonzero((f.roles == TEST).any(axis=1)) for f in folds]
    return [";".join(sorted({p for d in drugs for p in pathways[d]})) or "unknown" for drugs in held_out]


def protect_models(models: Path, inputs: Inputs, cache_dir: str | Path | None) -> None:
    """Keep the stores of ``inputs`` from ``fused-cache gc`` while the saved models in ``models`` exist (a read-only
    cache, which gc cannot change either, is trained from all the same)."""
    models.mkdir(parents=True, exist_ok=True)
    try:
        protect(cache_root(cache_dir), inputs.stores.values(), models)
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        log.warning(
            "cache %s is read-only: the saved models' stores are not registered against gc", cache_root(cache_dir)
        )


def _train_chosen(
    spec: RunSpec, run_dir: Path, inputs: Inputs, chosen: list[Fold], cache_dir: str | Path | None,
    execution: Execution, quiet: bool, save: bool,
) -> list[str]:  # fmt: skip
    todo = [f.name for f in chosen if f.name not in finished(run_dir)]
    if not todo:
        return []
    _remove_leftovers(run_dir, todo)  # of an earlier, killed run
    if execution.scheduler is None:
        _train_folds(spec, inputs, todo, run_dir, execution, quiet, save)
        return todo
    with connect(execution.scheduler, execution.workers) as client:
        size = 2 * execution.slots
        groups = [todo[i : i + size] for i in range(0, len(todo), size)]
        tasks = [(spec, names, run_dir, cache_dir, execution, save) for names in groups]
        run_tasks(
            _train_group, tasks, client, desc=spec.name, quiet=quiet, sizes=[len(g) for g in groups], unit="folds"
        )
    _remove_leftovers(run_dir, todo)
    return todo


def _remove_leftovers(run_dir: Path, names: list[str]) -> None:
    """Temporary files of these unfinished folds that a killed process or worker left half-written."""
    for name in map(fold_file, names):
        for leftover in (*run_dir.glob(f"folds/.{name}.*.tmp"), *run_dir.glob(f"curves/.{name}.csv.*.tmp")):
            leftover.unlink(missing_ok=True)
        for leftover in run_dir.glob(f"models/.{name}.*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)


def _train_group(
    spec: RunSpec, names: list[str], run_dir: Path, cache_dir: Any, execution: Execution, save: bool
) -> None:
    """One task on a worker: train the group's unfinished folds (a retried task skips what its first try finished)."""
    from dask.distributed import get_worker

    torch.set_num_threads(get_worker().state.nthreads)  # not every core: the other workers share them
    inputs = load_run_inputs(spec, cache_dir)
    record_provenance(run_dir, inputs)  # the worker's stores are those the run was started on
    todo = [n for n in names if n not in finished(run_dir)]
    _train_folds(spec, inputs, todo, run_dir, execution, True, save)


def _train_folds(
    spec: RunSpec, inputs: Inputs, names: list[str], run_dir: Path, execution: Execution, quiet: bool, save: bool
) -> None:
    wanted = set(names)
    folds = [f for f in folds_of(spec, inputs) if f.name in wanted]
    count, target = inputs.grid()
    stores = store_records(inputs, spec.drug_encoder) if save else {}
    for outcome in spec.build().run(inputs, folds, execution, keep=save, quiet=quiet):
        if save:  # before the fold's Parquet file, which marks it finished
            save_fitted(run_dir / "models" / fold_file(outcome.fold.name), outcome, spec, inputs, stores)
        _write_fold(run_dir, inputs, outcome, spec.model, naive_predictions(count, target, outcome.fold.roles))


def _write_fold(run_dir: Path, inputs: Inputs, outcome: Outcome, model: str, naive: dict[str, np.ndarray]) -> None:
    """The fold's test pairs with every prediction, its choices and learning curve; the Parquet file goes last, as
    the fold's 'finished' mark."""
    fold = outcome.fold
    pairs = inputs.pairs
    d, c = pairs["drug_index"].to_numpy(), pairs["cell_index"].to_numpy()
    test = fold.roles[d, c] == TEST
    columns = ["drug_id", "cell_id", "ln_ic50"] + (["gdsc_drug_id"] if "gdsc_drug_id" in pairs else [])
    frame = pairs.loc[test, columns].reset_index(drop=True)
    frame.insert(0, "fold", fold.name)
    frame.insert(1, "seed", fold.seed)
    pathways = inputs.drug_annotations.get("target_pathway")
    if pathways and any(pathways):  # travels with the predictions: the report breaks LODO results down by it
        frame["target_pathway"] = [";".join(sorted(pathways[i])) for i in d[test]]
    grids = ({model: outcome.grid} if outcome.grid is not None else {}) | naive
    for name, grid in grids.items():
        frame[f"pred_{name}"] = grid[d[test], c[test]]
    if outcome.choices:
        (run_dir / "choices").mkdir(exist_ok=True)
        _atomic_text(run_dir / "choices" / f"{fold_file(fold.name)}.json", json.dumps(outcome.choices, indent=2))
    if outcome.curve is not None:
        (run_dir / "curves").mkdir(exist_ok=True)
        _atomic_text(run_dir / "curves" / f"{fold_file(fold.name)}.csv", outcome.curve.to_csv(index=False))
    folder = run_dir / "folds"
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{fold_file(fold.name)}.{os.getpid()}.tmp"
    table = pa.Table.from_pandas(frame, preserve_index=False)
    try:
        metadata = (table.schema.metadata or {}) | {b"fused_fold": fold.name.encode()}  # the name, if the file's is cut
        pq.write_table(table.replace_schema_metadata(metadata), tmp)
        tmp.rename(folder / f"{fold_file(fold.name)}.parquet")
    finally:
        tmp.unlink(missing_ok=True)
    epochs = (
        f"best epoch {outcome.choices['best_epoch']} of {len(outcome.curve)}, " if outcome.curve is not None else ""
    )
    log.info("fold %s finished: %s%d test pairs", fold.name, epochs, len(frame))


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        tmp.rename(path)
    finally:
        tmp.unlink(missing_ok=True)


def predictions(run_dir: Path) -> pd.DataFrame:
    """All finished folds' test predictions of a run."""
    files = sorted((run_dir / "folds").glob("*.parquet"))
    if not files:
        raise RunError(f"{run_dir} has no finished folds")
    frames = []
    for path in files:
        with _fold_file_read(path):
            frame = pd.read_parquet(path)
        diverged = [c.removeprefix("pred_") for c in frame if c.startswith("pred_") and not np.isfinite(frame[c]).all()]
        if diverged:
            raise RunError(
                f"fold file {path}: predictions of {diverged[0]} that are not finite (a diverged fold, which fused "
                f"no longer writes); delete {run_dir} and train the run again with a smaller --lr"
            )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def predictors(frame: pd.DataFrame) -> list[str]:
    """The model first, then the naive baselines."""
    names = [c.removeprefix("pred_") for c in frame.columns if c.startswith("pred_")]
    return sorted(names, key=lambda n: (n in NAIVE, NAIVE.index(n) if n in NAIVE else 0, n))


def summarise_run(run_dir: Path) -> pd.DataFrame:
    """Metrics per predictor and seed (each seed's folds pooled), written to metrics.csv and metrics.json.

    Per-entity metrics are per the split's ``entity``: per drug, or per cell line where the split holds cell lines
    out. metrics.json also holds ``statistics`` (``fused_train.stats.compare``: bootstrap intervals, model vs each
    naive predictor); per_drug.csv and per_cell.csv hold every predictor's metrics per drug and per cell line.
    """
    config = json.loads((run_dir / "config.json").read_text())
    frame = predictions(run_dir)
    by = split_of(config["split"]).entity
    rows = []
    for seed, part in frame.groupby("seed"):
        for name in predictors(frame):
            rows.append({"predictor": name, "seed": seed, "folds": part["fold"].nunique(),
                         **summarise(part, f"pred_{name}", by)})  # fmt: skip
    table = pd.DataFrame(rows)
    names = predictors(frame)
    statistics = compare(frame, by, names, baselines=[n for n in names if n in NAIVE])
    _atomic_text(run_dir / "metrics.csv", table.to_csv(index=False))
    _atomic_text(run_dir / "metrics.json", json.dumps({"config": config, "metrics": table.to_dict("records"),
                                                       "statistics": statistics}, indent=2))  # fmt: skip
    for entity, file in (("drug_id", "per_drug.csv"), ("cell_id", "per_cell.csv")):
        _atomic_text(run_dir / file, entity_table(frame, entity, names).to_csv(index=False))
    return table
