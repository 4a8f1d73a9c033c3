"""``fused-train``: train models across folds on cached embeddings, search hyperparameters, and report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import click

from fused_cache.datasets import DatasetError
from fused_cache.stores import CorruptStore, StaleStore, StoreNotFound
from fused_train.engine import TrainConfig
from fused_train.splits import SETTINGS, FoldSelectionError

_DEFAULTS = TrainConfig()


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x)
    except ValueError as err:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from err


def _names(text: str) -> tuple[str, ...]:
    return tuple(x for x in text.split(",") if x)


def _spec_options(fn: Any) -> Any:
    options = [
        click.option("--model", type=click.Choice(["fused", "deepcdr", "naive"]), default="fused", show_default=True),
        click.option("--drug-encoder", default="chemnet", show_default=True,
                     help="Drug store: chemnet, morgan, chemberta, molformer, ... or graph (deepcdr's GCN)."),
        click.option("--cell-encoder", default="expression", show_default=True,
                     help="Store of the expression token: expression, or an scFM (scgpt, scfoundation)."),
        click.option("--omics", default="", help="More cell tokens, comma-separated: methylation,mutation."),
        click.option("--split", type=click.Choice(SETTINGS), default="lodo", show_default=True),
        click.option("--seeds", default="0", show_default=True, help="Split and initialisation seeds, e.g. 0,1,2."),
        click.option("--dataset", default="gdsc-deepcdr", show_default=True),
        click.option("--epochs", type=click.IntRange(min=1), default=_DEFAULTS.max_epochs, show_default=True),
        click.option("--patience", type=click.IntRange(min=1), default=_DEFAULTS.patience, show_default=True,
                     help="Epochs without a better validation RMSE before a fold stops."),
        click.option("--cells-per-step", type=click.IntRange(min=1), default=_DEFAULTS.cells_per_step,
                     show_default=True, help="Cell lines per step (x all drugs)."),
        click.option("--weight-decay", type=float, default=_DEFAULTS.weight_decay, show_default=True),
        click.option("--select-by", type=click.Choice(["rmse", "drug-pcc"]), default=_DEFAULTS.select_by,
                     show_default=True, help="Validation metric for early stopping and the kept epoch."),
        click.option("--cache-dir", type=click.Path(path_type=Path), default=None),
        click.option("--slots", type=click.IntRange(min=1), default=_DEFAULTS.slots, show_default=True,
                     help="Folds trained together as one batched model."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
                     help="auto = bf16 autocast where the hardware has native bf16, else fp32."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def _model_options(model: str, width: int, heads: int, proj: int, hidden: str) -> dict[str, Any]:
    if model == "fused":
        return {"width": width, "heads": heads, "proj": proj, "hidden": list(_ints(hidden))}
    return {}


def _device(name: str) -> str:
    from fused_cache.devices import select_device

    return str(select_device(name))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Train the FUSED head, DeepCDR baselines and naive predictors on cached embeddings across folds."""


@cli.command()
@_spec_options
@click.option("--fold", default="all", show_default=True, help="all, N, N-M, or fold names.")
@click.option("--lr", type=float, default=_DEFAULTS.lr, show_default=True)
@click.option("--width", type=int, default=128, show_default=True, help="fused: token width.")
@click.option("--heads", type=int, default=4, show_default=True, help="fused: attention heads.")
@click.option("--proj", type=int, default=128, show_default=True, help="fused: common width after attention.")
@click.option("--hidden", default="256,64", show_default=True, help="fused: MLP hidden widths.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/<name>).")
@click.option("--scheduler", default=None, help="Train fold groups on Dask: 'local' or tcp://HOST:8786.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Workers of --scheduler local.")
def run(fold: str, lr: float, width: int, heads: int, proj: int, hidden: str, out: Path | None,
        scheduler: str | None, workers: int | None, **kw: Any) -> None:  # fmt: skip
    """Train the selected folds (finished folds of the same run are skipped), then write metrics."""
    from fused_train.runs import describe_inputs, summarise_run, train

    spec = _spec(kw, lr, _model_options(kw["model"], width, heads, proj, hidden))
    run_dir = out or Path("runs") / spec.name
    trained = train(spec, run_dir, fold, kw["cache_dir"], _device(kw["device"]), kw["slots"], scheduler, workers,
                    kw["quiet"])  # fmt: skip
    click.echo(f"{run_dir}: trained {len(trained)} folds now")
    click.echo(describe_inputs(run_dir))
    table = summarise_run(run_dir)
    click.echo(table[["predictor", "seed", "folds", "pcc", "rmse", *_entity_columns(table)]].round(3).to_string())


def _entity_columns(table: Any) -> list[str]:
    return [c for c in table.columns if c.endswith("_pcc_mean")]


def _spec(kw: dict[str, Any], lr: float, options: dict[str, Any]) -> Any:
    from fused_train.runs import RunSpec

    train_config = TrainConfig(max_epochs=kw["epochs"], patience=kw["patience"], lr=lr,
                               weight_decay=kw["weight_decay"], cells_per_step=kw["cells_per_step"],
                               select_by=kw["select_by"], precision=kw["precision"])  # fmt: skip
    return RunSpec(model=kw["model"], drug_encoder=kw["drug_encoder"], cell_encoder=kw["cell_encoder"],
                   omics=_names(kw["omics"]), split=kw["split"], seeds=_ints(kw["seeds"]), dataset=kw["dataset"],
                   train=train_config, options=options)  # fmt: skip


@cli.command()
@_spec_options
@click.option("--fold", default="all", show_default=True, help="Folds to search on (e.g. 0-15 for 16 LODO folds).")
@click.option("--lr", default="0.001", show_default=True, help="Learning rates, comma-separated.")
@click.option("--heads", default="4", show_default=True, help="fused: head counts, comma-separated.")
@click.option(
    "--hidden", default="256,64", show_default=True, help="fused: MLP shapes, ':'-separated (256,64:512,256,64)."
)
@click.option("--width", type=int, default=128, show_default=True)
@click.option("--proj", type=int, default=128, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/grid"), show_default=True)
def grid(fold: str, lr: str, heads: str, hidden: str, width: int, proj: int, out: Path, **kw: Any) -> None:
    """Train every combination and rank them by validation RMSE only (test predictions are never looked at)."""
    import numpy as np
    import pandas as pd

    from fused_train.runs import train

    rows = []
    for rate, n_heads, shape in itertools.product(_floats(lr), _ints(heads), hidden.split(":")):
        options = _model_options(kw["model"], width, n_heads, proj, shape)
        spec = _spec(kw, rate, options)
        run_dir = out / f"lr{rate}-h{n_heads}-mlp{shape.replace(',', '_')}"
        train(spec, run_dir, fold, kw["cache_dir"], _device(kw["device"]), kw["slots"], quiet=kw["quiet"])
        best = [pd.read_csv(f)["val_rmse"].min() for f in (run_dir / "curves").glob("*.csv")]
        rows.append(
            {"lr": rate, "heads": n_heads, "hidden": shape, "val_rmse": float(np.mean(best)), "run": str(run_dir)}
        )
    table = pd.DataFrame(rows).sort_values("val_rmse").reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "grid.csv", index=False)
    click.echo(table.to_string())
    click.echo(f"best by validation RMSE: {json.dumps(table.iloc[0][['lr', 'heads', 'hidden']].to_dict())}")


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x]
    except ValueError as err:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from err


@cli.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/report"), show_default=True)
def report(runs: tuple[Path, ...], out: Path) -> None:
    """Tables (Markdown, CSV) and plots (learning curves, per-drug PCC) from finished runs."""
    from fused_train.report import write_report

    paths = write_report(list(runs), out)
    click.echo(paths["markdown"].read_text())
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


def main() -> None:
    from fused_cache.console import run_cli
    from fused_train.runs import RunError

    run_cli(cli, (RunError, DatasetError, StoreNotFound, CorruptStore, StaleStore), usage=(FoldSelectionError,))
