"""``fused-train``: train models across folds on cached embeddings, search hyperparameters, and report.

The commands are built from the model registry (``fused_train/models/registry.py``): ``--model`` offers every
registered model and each model option becomes a ``--option``, so a new model needs no change here.
"""

from __future__ import annotations

import functools
import itertools
import json
import shlex
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fused_cache.console import cache_dir_option, dataset_option, response_option, run_cli, writing
from fused_cache.datasets import DatasetError
from fused_cache.extras import DISTRIBUTION
from fused_cache.logs import add_verbose
from fused_cache.stores import CorruptStore, StaleStore, StoreNotFound
from fused_train.data import InputError
from fused_train.engine import SELECT_BY, ConfigError, Execution, NonFiniteTraining, TrainConfig
from fused_train.models.registry import BEST_FOR_NEW_DRUGS, MODELS, ModelError, Option, options_of
from fused_train.splits import FoldSelectionError, benchmark_splits, split_of

_TRAIN, _EXECUTION = TrainConfig(), Execution()


class _Numbers(click.ParamType):
    """Comma-separated numbers of one type, e.g. seeds 0,1,2, layer widths 256,64 or candidate weights 0,0.5;
    ``positive``: each at least 1."""

    def __init__(self, kind: type = int, positive: bool = False) -> None:
        self.kind, self.positive = kind, positive
        self.name = ("positive " if positive else "") + ("integers" if kind is int else "numbers")

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[Any, ...]:
        if isinstance(value, tuple):
            return value
        try:
            numbers = tuple(self.kind(x) for x in str(value).split(",") if x)
        except ValueError:
            numbers = None
        if numbers is None or (self.positive and any(x < 1 for x in numbers)):
            self.fail(f"expected comma-separated {self.name}, got {value!r}", param, ctx)
        return numbers


class _Split(click.Choice):
    """A benchmark split of the registry (``fused_train/splits/registry.py``) by its name or an alias such as
    drevalpy's LPO, LDO, LCO, LTO (any case); converted to its name."""

    def __init__(self) -> None:
        splits = benchmark_splits()
        super().__init__([s.name for s in splits] + [a for s in splits for a in s.aliases], case_sensitive=False)

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        return split_of(super().convert(value, param, ctx)).name


FOLD_HELP = "all, N, N-M, fold names, or sample:N[:SEED] (N folds drawn with SEED; LODO: stratified by target pathway)."


def _ints(text: str) -> tuple[int, ...]:
    return _Numbers().convert(text, None, None)


def _names(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.split(",") if x)


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _model_options(multiple: bool) -> tuple[list[Callable], list[str]]:
    """One click option per model option name, shared by the models that take it; default None = the model's own."""
    uses: dict[str, list[tuple[str, Option]]] = {}
    for model in MODELS:
        for opt in options_of(model):
            uses.setdefault(opt.name, []).append((model, opt))
    decorators = []
    for name, pairs in uses.items():
        types = {opt.type for _, opt in pairs}
        if len(types) > 1:
            raise TypeError(f"model option {name!r} has different types in {[m for m, _ in pairs]}")
        kind = types.pop()
        # tuples of integers are layer widths and candidate counts (neighbours, leaves): a 0 would divide by zero
        element = typing.get_args(kind)[0] if kind not in (int, float, str, bool) else None
        click_type = _Numbers(element, positive=element is int) if element is not None else kind
        text = "; ".join(f"{model}: {opt.help} [default: {_show(opt.default)}]" for model, opt in pairs)
        if multiple:
            text += " Repeat to search over several values."
        decorators.append(click.option(f"--{name.replace('_', '-')}", name, type=click_type, default=None,
                                       multiple=multiple, help=text))  # fmt: skip
    return decorators, list(uses)


def _split_help() -> str:
    aliases = ", ".join(f"{a} = {s.name}" for s in benchmark_splits() for a in s.aliases)
    return f"How folds hold data out (fused_train/splits/): {aliases} (drevalpy's names, any case)."


def _split_option(fn: Any) -> Any:
    return click.option("--split", type=_Split(), default="lodo", show_default=True, help=_split_help())(fn)


def _spec_options(fn: Any, model: str = "fused", model_help: str = "") -> Any:
    """The options of a run's specification but --split (fit has none)."""
    options = [
        click.option("--model", type=click.Choice(list(MODELS)), default=model, show_default=True,
                     help=model_help or "A registered model (fused_train/models/registry.py)."),
        click.option("--drug-encoder", default="chemnet", show_default=True,
                     help="Drug store: chemnet, morgan, chemberta, molformer, ... or graph (deepcdr's GCN)."),
        click.option("--cell-encoder", default="expression", show_default=True,
                     help="Store of the expression token: expression, or an scFM (scgpt, scfoundation)."),
        click.option("--omics", default="", help="More cell tokens, comma-separated: methylation,mutation."),
        click.option("--seeds", default="0", show_default=True, help="Split and initialisation seeds, e.g. 0,1,2."),
        dataset_option,
        response_option,
        click.option("--epochs", type=click.IntRange(min=1), default=_TRAIN.max_epochs, show_default=True,
                     help="At most this many epochs per fold."),
        click.option("--patience", type=click.IntRange(min=1), default=_TRAIN.patience, show_default=True,
                     help="Epochs without a better validation metric (--select-by) before a fold stops."),
        click.option("--cells-per-step", type=click.IntRange(min=1), default=_TRAIN.cells_per_step,
                     show_default=True, help="Cell lines per optimizer step (x --drugs-per-step drugs)."),
        click.option("--drugs-per-step", type=click.IntRange(min=0), default=_TRAIN.drugs_per_step,
                     show_default=True, help="Drugs per optimizer step; 0 = all drugs."),
        click.option("--weight-decay", type=float, default=_TRAIN.weight_decay, show_default=True,
                     help="Decoupled weight decay (AdamW)."),
        click.option("--select-by", type=click.Choice(["auto", *SELECT_BY]), default=_TRAIN.select_by,
                     show_default=True, help="Validation metric for early stopping and the kept epoch; auto = "
                     "drug-pcc where whole drugs are held out (lodo, pilot-K), rmse otherwise."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=_TRAIN.precision,
                     show_default=True, help="auto = bf16 autocast where the hardware has native bf16, else fp32."),
        cache_dir_option,
        click.option("--slots", type=click.IntRange(min=1), default=_EXECUTION.slots, show_default=True,
                     help="Folds trained together as one batched model."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def _store_options(fn: Any) -> Any:
    """The split seeds and the stores whose pairs make the folds (``splits --export``, ``drevalpy``)."""
    options = [
        click.option("--seeds", default="0", show_default=True, help="Split seeds, comma-separated, e.g. 0,1,2."),
        click.option("--drug-encoder", default="chemnet", show_default=True,
                     help="Drug store (decides which pairs exist)."),
        click.option("--cell-encoder", default="expression", show_default=True,
                     help="Store of the expression token."),
        click.option("--omics", default="", help="More cell stores, comma-separated: methylation,mutation."),
        dataset_option,
        cache_dir_option,
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def _device(name: str) -> str:
    from fused_cache.devices import select_device

    return str(select_device(name))


def _spec(kw: dict[str, Any], lr: float, options: dict[str, Any]) -> Any:
    from fused_train.runs import RunSpec

    train_config = TrainConfig(max_epochs=kw["epochs"], patience=kw["patience"], lr=lr,
                               weight_decay=kw["weight_decay"], cells_per_step=kw["cells_per_step"],
                               drugs_per_step=kw["drugs_per_step"], select_by=kw["select_by"],
                               precision=kw["precision"])  # fmt: skip
    return RunSpec(model=kw["model"], drug_encoder=kw["drug_encoder"], cell_encoder=kw["cell_encoder"],
                   omics=_names(kw["omics"]), split=kw["split"], seeds=_ints(kw["seeds"]), dataset=kw["dataset"],
                   response=kw["response"], train=train_config, options=options)  # fmt: skip


def _command_line(ctx: click.Context) -> str:
    """The command with every option spelled out (defaults too), so that a model card says exactly what ran."""
    words = ["fused-train", ctx.info_name or ""]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value is False or not isinstance(param, click.Option):
            continue
        flag = param.opts[0]
        words += [flag] if value is True and param.is_flag else [flag, _show(value)]
    return shlex.join(words)


def make_cli() -> click.Group:
    """The ``fused-train`` command group, with the model options of every model registered now."""
    run_options, option_names = _model_options(multiple=False)
    grid_options, _ = _model_options(multiple=True)

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name=DISTRIBUTION, prog_name="fused-train")
    def cli() -> None:
        """Train the FUSED head, DeepCDR baselines and naive predictors on cached embeddings across folds."""

    def with_options(decorators: list[Callable]) -> Callable:
        def apply(fn: Callable) -> Callable:
            for decorator in reversed(decorators):
                fn = decorator(fn)
            return fn

        return apply

    @cli.command()
    @_spec_options
    @_split_option
    @click.option("--fold", default="all", show_default=True, help=FOLD_HELP)
    @click.option("--lr", type=float, default=_TRAIN.lr, show_default=True, help="Adam learning rate.")
    @with_options(run_options)
    @click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/<name>).")
    @click.option("--scheduler", default=None, help="Train fold groups on Dask: 'local' or tcp://HOST:8786.")
    @click.option("--workers", type=click.IntRange(min=1), default=None, help="Workers of --scheduler local.")
    @click.option(
        "--save-models/--no-save-models",
        default=None,
        help="Save each fold's fitted model in models/<fold>/ (any model but naive) [default: on for trained networks, "
        "but not on lodo and pilot splits].",
    )
    def run(fold: str, lr: float, out: Path | None, scheduler: str | None, workers: int | None,
            save_models: bool | None, **kw: Any) -> None:  # fmt: skip
        """Train the selected folds (finished folds of the same run are skipped), then write metrics."""
        from fused_train.runs import describe_inputs, summarise_run, train

        given = {name: kw.pop(name) for name in option_names}
        spec = _spec(kw, lr, {k: v for k, v in given.items() if v is not None})
        run_dir = out or Path("runs") / spec.name
        execution = Execution(slots=kw["slots"], device=_device(kw["device"]), scheduler=scheduler, workers=workers)
        with writing(run_dir):
            trained = train(spec, run_dir, fold, kw["cache_dir"], execution, kw["quiet"], save_models)
            click.echo(f"{run_dir}: trained {len(trained)} folds now")
            click.echo(describe_inputs(run_dir))
            table = summarise_run(run_dir)
        entity_columns = [c for c in table.columns if c.endswith("_pcc_mean")]
        click.echo(table[["predictor", "seed", "folds", "pcc", "rmse", *entity_columns]].round(3).to_string())

    @cli.command()
    @_spec_options
    @_split_option
    @click.option("--fold", default="all", show_default=True, help="Folds to search on (e.g. 0-15: 16 LODO folds).")
    @click.option("--lr", type=float, multiple=True, help=f"Learning rate; repeat to search [default: {_TRAIN.lr}].")
    @with_options(grid_options)
    @click.option(
        "--out",
        type=click.Path(path_type=Path),
        default=Path("runs/grid"),
        show_default=True,
        help="Folder of the grid's runs (one per combination) and grid.csv.",
    )
    def grid(fold: str, lr: tuple[float, ...], out: Path, **kw: Any) -> None:
        """Train every combination of the given values; rank by the validation metric only (test never looked at)."""
        import numpy as np
        import pandas as pd

        from fused_train.models.networks import EngineModel
        from fused_train.models.registry import model
        from fused_train.runs import train

        if not issubclass(model(kw["model"]), EngineModel):  # the grid ranks by the learning curves' best epochs
            raise ModelError(f"grid searches the training options of networks (fused, deepcdr, plain modules); "
                             f"{kw['model']} chooses its own options on validation drugs in every fold: use "
                             f"fused-train run --model {kw['model']} and give its candidate lists there")  # fmt: skip
        searched = {name: kw.pop(name) for name in option_names}
        searched = {name: values for name, values in searched.items() if values}
        names = list(searched)
        execution = Execution(slots=kw["slots"], device=_device(kw["device"]))
        rows = []
        for rate, *values in itertools.product(lr or (_TRAIN.lr,), *searched.values()):
            options = dict(zip(names, values, strict=True))
            spec = _spec(kw, rate, options)
            by_pcc = spec.train.select_by == "drug-pcc"  # resolved from the split where --select-by is auto
            label = "-".join([f"lr{rate}"] + [f"{k}{_show(v).replace(',', '_')}" for k, v in options.items()])
            run_dir = out / label
            metric = "val_drug_pcc" if by_pcc else "val_rmse"
            try:
                with writing(run_dir):
                    train(spec, run_dir, fold, kw["cache_dir"], execution, quiet=kw["quiet"])
            except NonFiniteTraining as err:  # a combination that diverges is a result of the search, not its end
                click.echo(f"{label}: {err}", err=True)
                rows.append({"lr": rate, **{k: _show(v) for k, v in options.items()}, metric: np.nan,
                             "run": f"{run_dir} (diverged)"})  # fmt: skip
                continue
            curves = [pd.read_csv(f) for f in (run_dir / "curves").glob("*.csv")]
            best = [c["val_drug_pcc"].max() if by_pcc else c["val_rmse"].min() for c in curves]
            rows.append({"lr": rate, **{k: _show(v) for k, v in options.items()}, metric: float(np.mean(best)),
                         "run": str(run_dir)})  # fmt: skip
        table = pd.DataFrame(rows).sort_values(metric, ascending=not by_pcc).reset_index(drop=True)
        if table[metric].isna().all():
            raise NonFiniteTraining("every combination of the grid diverged; try smaller --lr values")
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "grid.csv", index=False)
        click.echo(table.to_string())
        click.echo(f"best by validation {'per-drug PCC' if by_pcc else 'RMSE'}: "
                   f"{json.dumps(table.iloc[0].drop([metric, 'run']).to_dict())}")  # fmt: skip

    @cli.command()
    @functools.partial(_spec_options, model=BEST_FOR_NEW_DRUGS,
                       model_help=f"A registered model; the default, {BEST_FOR_NEW_DRUGS}, is the one the "
                       "leave-one-drug-out benchmark shows best for new drugs (fused or trees also predict new cell "
                       "lines; matching predicts new drugs from a pilot screen).")  # fmt: skip
    @click.option("--lr", type=float, default=_TRAIN.lr, show_default=True, help="Adam learning rate.")
    @with_options(run_options)
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                  help="Model directory to create (members/<seed>/, model.json, card.md).")  # fmt: skip
    def fit(lr: float, out: Path, **kw: Any) -> None:
        """Fit a model on all labelled pairs (10% validation for its choices; one member per seed) and save it."""
        from fused_train.fit import fit as fit_model

        command = _command_line(click.get_current_context())
        given = {name: kw.pop(name) for name in option_names}
        spec = _spec({**kw, "split": "fit"}, lr, {k: v for k, v in given.items() if v is not None})
        execution = Execution(slots=kw["slots"], device=_device(kw["device"]))
        with writing(out):
            fit_model(spec, out, kw["cache_dir"], execution, kw["quiet"], command)
        click.echo((out / "card.md").read_text())
        click.echo(f"saved {out}")

    @cli.command(name="cross-study")
    @_spec_options
    @click.option(
        "--test-dataset",
        required=True,
        help="The dataset to predict (--dataset is the one trained on): "
        "its drugs and cell lines shared with the training data, by PubChem CID and DepMap id.",
    )
    @click.option("--lr", type=float, default=_TRAIN.lr, show_default=True, help="Adam learning rate.")
    @with_options(run_options)
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                  help="Folder for the fitted model, predictions, metrics and unmatched.csv.")  # fmt: skip
    def cross_study(test_dataset: str, lr: float, out: Path, **kw: Any) -> None:
        """Fit on --dataset, predict --test-dataset where they share drugs and cell lines, score beside the naive
        predictors fitted on --dataset (per drug and per cell line)."""
        from fused_train.cross_study import cross_study as evaluate

        given = {name: kw.pop(name) for name in option_names}
        spec = _spec({**kw, "split": "fit"}, lr, {k: v for k, v in given.items() if v is not None})
        execution = Execution(slots=kw["slots"], device=_device(kw["device"]))
        metrics = evaluate(spec, test_dataset, out, kw["cache_dir"], execution, kw["quiet"])
        summary = json.loads((out / "cross_study.json").read_text())
        click.echo(f"{summary['matched pairs']} of {summary['test pairs']} test pairs matched "
                   f"({summary['matched drugs']} drugs, {summary['matched cell lines']} cell lines); unmatched: "
                   f"{summary['unmatched']['drug']} drugs, {summary['unmatched']['cell']} cell lines "
                   f"(listed in {out / 'unmatched.csv'})")  # fmt: skip
        columns = ["predictor", "n_pairs", "pcc", "rmse", "per_drug_pcc_mean", "per_cell_pcc_mean"]
        click.echo(metrics[columns].round(3).to_string(index=False))

    @cli.command()
    @click.option(
        "--model",
        "model_dir",
        type=click.Path(path_type=Path),
        required=True,
        help="A model directory: fused-train fit's --out, or a run's models/<fold>/.",
    )
    @click.option("--drugs", default=None, help="CSV/TSV/Parquet with drug_id,smiles [default: the training drugs].")
    @click.option(
        "--cells",
        default=None,
        help="New cell lines: a directory of omics_<modality>.csv, or such files "
        "comma-separated (first column cell_id, one column per gene) [default: the training cell lines].",
    )
    @click.option("--out", type=click.Path(path_type=Path), required=True, help="predictions.parquet or .csv.")
    @click.option("--force", is_flag=True, help="Replace --out if it exists.")
    @click.option(
        "--top",
        type=click.IntRange(min=0),
        default=5,
        show_default=True,
        help="Print this many most sensitive cell lines per drug.",
    )
    @click.option(
        "--cache-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Where new drugs are embedded [default: the cache the model's stores are in].",
    )
    @click.option(
        "--pilot",
        default=None,
        help="CSV/TSV/Parquet drug_id,cell_id,ln_ic50: new drugs measured on a few cell lines; the others are "
        "predicted from the pilot (fused_train/pilot.py) and ranked, the order to test them in.",
    )
    @click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
    @click.option("--quiet", is_flag=True, help="No progress bars.")  # fmt: skip
    def predict(model_dir: Path, drugs: str | None, cells: str | None, out: Path, force: bool, top: int,
                cache_dir: Path | None, pilot: str | None, device: str, quiet: bool) -> None:  # fmt: skip
        """Predict ln IC50 of drugs x cell lines with a saved model; write one row per pair with a per-drug rank."""
        from fused_cache.outputs import check_new_file
        from fused_train.predict import OUT_FORMATS, PredictError, load_model, write_predictions

        if out.suffix not in OUT_FORMATS:
            raise PredictError(f"--out must end in {' or '.join(OUT_FORMATS)}, not {out.name!r}")
        model = load_model(model_dir, _device(device))
        check_new_file(out, force)  # before predicting, which may embed new drugs
        frame = model.predict(drugs=drugs, cells=cells, cache_dir=cache_dir, quiet=quiet, pilot=pilot)
        if "unannotated" in model.report:
            click.echo(f"warning: {model.report['unannotated']}", err=True)
        if "no_cell_names" in model.report:
            click.echo(f"warning: no cell-line names in the predictions: {model.report['no_cell_names']}", err=True)
        with writing(out):
            write_predictions(frame, out)
        if drugs is not None:
            _warn_known_molecules(model.folder, drugs)
        if "embedded" in model.report:
            click.echo(f"drugs: embedded {model.report['embedded']}, reused {model.report['reused']} from the cache")
        for name, n in model.report.get("extra_columns_ignored", {}).items():
            if n:
                click.echo(f"cells ({name}): {n} columns not in the model's gene list ignored")
        best = frame[frame["rank_within_drug"] <= top].sort_values(["drug_id", "rank_within_drug"])
        if top:
            click.echo(best.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        if "note" in model.report:
            click.echo(f"note: {model.report['note']}")
        click.echo(f"wrote {len(frame)} predictions ({frame['drug_id'].nunique()} drugs x "
                   f"{frame['cell_id'].nunique()} cell lines) of model {model.model!r} "
                   f"({len(model.members)} members) to {out}")  # fmt: skip

    @cli.command()
    @_split_option
    @_store_options
    @click.option(
        "--export",
        "folder",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="Folder for folds.csv (role of each drug, cell line or pair per fold) and pairs.csv.",
    )
    @click.option("--force", is_flag=True, help="Replace folds.csv and pairs.csv if the folder holds them.")
    def splits(split: str, seeds: str, drug_encoder: str, cell_encoder: str, omics: str, dataset: str,
               cache_dir: Path | None, folder: Path, force: bool) -> None:  # fmt: skip
        """Write the exact folds of `fused-train run` on these stores as CSV, to train other models on them."""
        from fused_train.pairs import EmbeddingPairs, export_splits

        pairs = EmbeddingPairs.from_stores(dataset, drug_encoder, [cell_encoder, *_names(omics)], cache_dir)
        folds = [f for seed in _ints(seeds) for f in pairs.folds(split, seed)]
        with writing(folder):
            paths = export_splits(pairs.inputs, folds, folder, force)
        click.echo(f"{len(folds)} {split} folds over {len(pairs)} pairs: wrote {', '.join(map(str, paths))}")

    @cli.command()
    @click.option("--split", type=_Split(), default="lodo", show_default=True, help="drug-known/LPO, lodo/LDO, "
                  "cell-out/LCO, tissue-out/LTO: the folds drevalpy will use (its --test_mode).")  # fmt: skip
    @click.option("--fold", default="all", show_default=True, help=FOLD_HELP)
    @_store_options
    @click.option(
        "--out",
        "data_path",
        type=click.Path(file_okay=False, path_type=Path),
        required=True,
        help="drevalpy's --path_data: the dataset goes to OUT/NAME/, gene lists to OUT/meta/gene_lists/.",
    )
    @click.option("--name", default="fused", show_default=True, help="drevalpy's --dataset_name.")  # fmt: skip
    def drevalpy(split: str, seeds: str, fold: str, drug_encoder: str, cell_encoder: str, omics: str, dataset: str,
                 cache_dir: Path | None, data_path: Path, name: str) -> None:  # fmt: skip
        """Write a complete drevalpy dataset (responses, features, gene lists, fingerprints, our exact folds as its
        custom splitter) and print the one drevalpy command that runs on it."""
        from fused_train.drevalpy_dataset import write_drevalpy_dataset

        result = write_drevalpy_dataset(data_path, name, dataset, drug_encoder, [cell_encoder, *_names(omics)],
                                        split, _ints(seeds), fold, cache_dir)  # fmt: skip
        click.echo(f"wrote {result.folder}: {result.pairs} pairs, {result.folds} {split} folds, "
                   f"{len(result.written)} files")  # fmt: skip
        for what, why in result.left_out.items():
            click.echo(f"  left out {what}: {why}")
        click.echo(f"run drevalpy on it (any of its models; ElasticNet as an example):\n  {result.command}")

    @cli.command()
    @click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
    @click.option(
        "--out",
        type=click.Path(path_type=Path),
        default=Path("runs/report"),
        show_default=True,
        help="Report directory.",
    )
    @click.option("--svg", is_flag=True, help="Write every figure as SVG too.")
    @click.option("--force", is_flag=True, help="Write into --out even if it holds files an earlier report did not "
                  "write (they are replaced where the report writes files of the same name).")  # fmt: skip
    @click.option(
        "--compare-models",
        is_flag=True,
        help="Also pair model runs of the same split, dataset and seeds with each other.",
    )
    def report(runs: tuple[Path, ...], out: Path, svg: bool, force: bool, compare_models: bool) -> None:
        """Tables (Markdown, CSV), paired statistics, figures and report.html from finished runs (other paths, e.g. a
        pattern that matched nothing, are skipped with the reason)."""
        from fused_train.report import find_runs, write_report
        from fused_train.runs import unverified_note

        found, skipped = find_runs(list(runs))
        for path, why in skipped.items():
            click.echo(f"skipping {path}: {why}", err=True)
        for note in filter(None, map(unverified_note, found)):
            click.echo(f"warning: {note}", err=True)
        with writing(out):
            paths = write_report(found, out, ("png", "svg") if svg else ("png",), compare_models, force)
        click.echo(paths["markdown"].read_text())
        click.echo("wrote " + ", ".join(str(p) for p in paths.values()))

    return add_verbose(cli)


cli = make_cli()


def _warn_known_molecules(folder: Path, drugs: str) -> None:
    """A 'new' drug that is a training drug under another id is predicted, with a warning line on stderr: its
    predictions are not those of an unseen drug."""
    from fused_train.molecules import same_molecules
    from fused_train.pilot import training_smiles
    from fused_train.predict import _drug_table

    try:
        known = training_smiles(folder)
    except DatasetError as err:
        click.echo(f"warning: could not compare the drugs with the training drugs' SMILES: {err}", err=True)
        return
    for new, old in same_molecules(_drug_table(drugs), known):
        click.echo(f"warning: drug {new!r} is training drug {old!r} under another id (the same canonical SMILES): "
                   "the model has learned from its measurements", err=True)  # fmt: skip


def main() -> None:
    from fused_cache.outputs import OutputError
    from fused_train.pilot import PilotError
    from fused_train.predict import PredictError
    from fused_train.runs import RunError
    from fused_train.saved import ModelDirError

    data_errors = (RunError, InputError, DatasetError, StoreNotFound, CorruptStore, StaleStore, PredictError,
                   PilotError, ModelDirError, NonFiniteTraining, OutputError)  # fmt: skip
    run_cli(make_cli(), data_errors, usage=(ModelError, FoldSelectionError, ConfigError))
