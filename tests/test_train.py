"""fused-train: splits without leakage, the batched engine against straightforward training, naive baselines,
metrics, and the run directory (resume, report, errors)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from scipy import stats
from train_helpers import TINY, small_dataset, tiny_spec

from fused_cache import datasets
from fused_train import metrics
from fused_train.cli import cli, main
from fused_train.engine import Trainer
from fused_train.models.fused import FusedReference, FusedSlots
from fused_train.models.naive import naive_predictions
from fused_train.runs import folds_of, load_run_inputs, predictions, summarise_run, train
from fused_train.splits import TEST, TRAIN, UNUSED, VAL, make_folds


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("train")
    cache = root / "cache"
    return small_dataset(datasets.load("gdsc-deepcdr"), root / "small", cache), cache


def _grid(ds: datasets.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    drug_ids = np.array(sorted(ds.pairs["drug_id"].unique()))
    cell_ids = np.array(sorted(ds.pairs["cell_id"].unique()))
    count = np.zeros((len(drug_ids), len(cell_ids)))
    np.add.at(
        count, (np.searchsorted(drug_ids, ds.pairs["drug_id"]), np.searchsorted(cell_ids, ds.pairs["cell_id"])), 1
    )
    groups = ds.cells.set_index("cell_id")["tcga_type"].reindex(cell_ids).fillna("").to_numpy()
    return count, drug_ids, groups


def test_no_lodo_fold_sees_its_drug_in_training_or_validation(gdsc: datasets.Dataset) -> None:
    count, drug_ids, groups = _grid(gdsc)
    folds = make_folds("lodo", count, drug_ids, groups)
    assert len(folds) == 223
    pairs_of = gdsc.pairs.groupby("drug_id").size()
    for d, fold in enumerate(folds):
        test_rows = np.flatnonzero((fold.roles == TEST).any(axis=1))
        assert test_rows.tolist() == [d]
        assert not np.isin(fold.roles[d], (TRAIN, VAL)).any()
        assert count[fold.roles == TEST].sum() == pairs_of[drug_ids[d]]  # both GDSC ids of a CID held out together
        val_rows = np.flatnonzero((fold.roles == VAL).any(axis=1))
        assert d not in val_rows and len(val_rows) == 22
        assert ((fold.roles != UNUSED) == (count > 0)).all()


def test_drug_known_and_cell_out_splits(gdsc: datasets.Dataset) -> None:
    count, drug_ids, groups = _grid(gdsc)
    (known,) = make_folds("drug-known", count, drug_ids, groups, seed=1)
    assert abs(count[known.roles == TEST].sum() / count.sum() - 0.05) < 0.005
    assert (known.roles == TEST).any(axis=1).sum() > 200  # test pairs spread over the drugs
    cell_folds = make_folds("cell-out", count, drug_ids, groups)
    held = [np.flatnonzero((f.roles == TEST).any(axis=0)) for f in cell_folds]
    assert sorted(np.concatenate(held).tolist()) == list(range(count.shape[1]))
    for fold, cells in zip(cell_folds, held, strict=True):
        assert not np.isin(fold.roles[:, cells], (TRAIN, VAL)).any()


def test_folded_grid_model_equals_per_pair_attention() -> None:
    """FusedSlots' entity-level, folded arithmetic gives what nn.MultiheadAttention gives pair by pair."""
    dims = {"expression": 11, "methylation": 6}
    model = FusedSlots(2, 13, dims, **TINY)
    for s in range(2):
        model.reset_slot(s, seed=s)
    drug, cells = torch.randn(2, 5, 13), {k: torch.randn(2, 7, d) for k, d in dims.items()}
    grid = model(drug, None, cells)
    a, c = (x.flatten() for x in torch.meshgrid(torch.arange(5), torch.arange(7), indexing="ij"))
    for s in range(2):
        reference = FusedReference(13, dims, **TINY).load_slot(model, s)
        per_pair = reference({"drug": drug[s][a]} | {k: cells[k][s][c] for k in dims})
        torch.testing.assert_close(per_pair.view(5, 7), grid[s], atol=1e-5, rtol=1e-5)


def _trainer(dataset: str, cache: Path, slots: int, **config: object) -> tuple[Trainer, list]:
    spec = tiny_spec(dataset)
    inputs = load_run_inputs(spec, cache)
    cfg = replace(spec.train, slots=slots, **config)
    return Trainer(inputs, lambda n: spec.build(inputs, n), cfg), folds_of(spec, inputs)


def test_folds_trained_together_match_folds_trained_alone(small: tuple[str, Path]) -> None:
    together, folds = _trainer(*small, slots=4)
    batched = {r.fold.name: r for r in together.run(folds[:4], quiet=True)}
    alone, _ = _trainer(*small, slots=1)
    for fold in folds[:4]:
        (single,) = alone.run([fold], quiet=True)
        assert single.best_epoch == batched[fold.name].best_epoch
        np.testing.assert_allclose(single.test_pred, batched[fold.name].test_pred, atol=2e-4)


def test_same_seed_same_predictions_and_other_seed_differs(small: tuple[str, Path]) -> None:
    first, folds = _trainer(*small, slots=2)
    second, _ = _trainer(*small, slots=2)
    other, _ = _trainer(*small, slots=2, seed=1)
    a, b, c = ([r.test_pred for r in t.run(folds[:2], quiet=True)] for t in (first, second, other))
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    assert not np.allclose(np.concatenate(a), np.concatenate(c))


def test_held_out_labels_never_influence_training_or_selection(small: tuple[str, Path]) -> None:
    """Scramble the held-out drug's ln IC50: its predictions must not change (scalers, early stopping included)."""
    trainer, folds = _trainer(*small, slots=1)
    fold = folds[3]
    (clean,) = trainer.run([fold], quiet=True)
    poisoned, _ = _trainer(*small, slots=1)
    poisoned.target_np = poisoned.target_np.copy()
    poisoned.target_np[fold.roles == TEST] = 1e3
    poisoned.target = torch.from_numpy(poisoned.target_np)
    (result,) = poisoned.run([fold], quiet=True)
    np.testing.assert_array_equal(result.test_pred, clean.test_pred)
    assert result.curve.equals(clean.curve)


def test_scalers_are_fitted_on_training_entities_only(small: tuple[str, Path]) -> None:
    trainer, folds = _trainer(*small, slots=1)
    fold = folds[0]
    scalers = trainer._scalers(fold)
    train_drugs = (fold.roles == TRAIN).any(axis=1)
    assert not train_drugs[0] and train_drugs.sum() == len(train_drugs) - 2  # held-out and validation drug
    np.testing.assert_allclose(scalers["drug"][0], trainer.inputs.drug[train_drugs].mean(axis=0), rtol=1e-6)
    w = trainer.count_np * (fold.roles == TRAIN)
    assert float(scalers["y"][0]) == pytest.approx((w * trainer.target_np).sum() / w.sum())


def test_naive_predictors_match_hand_computed_values() -> None:
    # drugs x cells; drug 0 measured twice on cell 0 (mean 2.0); cell 2 of drug 1 is the test cell
    count = np.array([[2, 1, 1], [1, 1, 1]], dtype=np.float32)
    target = np.array([[2.0, 4.0, 0.0], [1.0, 3.0, 9.0]], dtype=np.float32)
    roles = np.array([[TRAIN, TRAIN, VAL], [TRAIN, TRAIN, TEST]], dtype=np.int8)
    pred = naive_predictions(count, target, roles)
    # fitting rows: 2,2 | 4 | 0 | 1 | 3 -> global mean 12 / 6 = 2
    assert pred["global-mean"][1, 2] == pytest.approx(2.0)
    assert pred["drug-mean"][1, 2] == pytest.approx(2.0)  # drug 1: (1 + 3) / 2
    assert pred["cell-mean"][1, 2] == pytest.approx(0.0)  # cell 2: only drug 0's 0.0
    # drug offsets: d0 = 8/4 - 2 = 0, d1 = 0; cell 2 offset after both: 0 - 2 - 0 = -2
    assert pred["mean-effects"][1, 2] == pytest.approx(0.0)
    assert pred["mean-effects"][0, 0] == pytest.approx(2 + 0 + ((2 - 2) * 2 + (1 - 2)) / 3)


def test_metrics_match_scipy() -> None:
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=200), rng.normal(size=200)
    p += y
    assert metrics.pcc(y, p) == pytest.approx(stats.pearsonr(y, p).statistic)
    assert metrics.spearman(y, p) == pytest.approx(stats.spearmanr(y, p).statistic)
    assert metrics.rmse(y, p) == pytest.approx(np.sqrt(np.mean((y - p) ** 2)))
    frame = pd.DataFrame({"drug_id": np.repeat(["a", "b"], 100), "ln_ic50": y, "pred": p})
    table = metrics.per_entity(frame, "drug_id", "pred")
    assert table["pcc"].tolist() == pytest.approx([stats.pearsonr(y[:100], p[:100]).statistic,
                                                   stats.pearsonr(y[100:], p[100:]).statistic])  # fmt: skip
    assert np.isnan(metrics.pcc(y, np.ones_like(y)))  # constant predictions have no correlation


def test_run_resumes_reports_and_explains_errors(small: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = small
    runner = CliRunner()
    args = ["run", "--model", "fused", "--drug-encoder", "morgan", "--omics", "methylation", "--dataset", dataset,
            "--cache-dir", str(cache), "--epochs", "2", "--width", "16", "--heads", "2", "--proj", "8",
            "--hidden", "16,8", "--quiet", "--out", str(tmp_path / "run")]  # fmt: skip
    first = runner.invoke(cli, [*args, "--fold", "0-1"], catch_exceptions=False)
    assert "trained 2 folds now" in first.output
    again = runner.invoke(cli, [*args, "--fold", "0-2"], catch_exceptions=False)
    assert "trained 1 folds now" in again.output
    frame = predictions(tmp_path / "run")
    assert frame["fold"].nunique() == 3 and {"pred_fused", "pred_mean-effects"} <= set(frame.columns)
    assert (tmp_path / "run" / "curves").is_dir()
    table = summarise_run(tmp_path / "run")
    assert set(table["predictor"]) == {"fused", "global-mean", "drug-mean", "cell-mean", "mean-effects"}

    out = runner.invoke(cli, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")])
    assert out.exit_code == 0, out.output
    assert "naive: mean-effects" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "learning_curves.png").stat().st_size > 0

    changed = runner.invoke(cli, [*[a if a != "2" else "3" for a in args]], standalone_mode=False)
    assert "holds a different run" in str(changed.exception)


def test_missing_store_names_the_build_command(
    small: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, cache = small
    with pytest.raises(FileNotFoundError, match="fused-cache build --encoder chemnet"):
        train(replace(tiny_spec(dataset), drug_encoder="chemnet"), tmp_path / "run", cache_dir=cache)
    args = ["run", "--dataset", dataset, "--cache-dir", str(cache), "--drug-encoder", "chemnett"]
    argv = ["fused-train", *args, "--out", str(tmp_path / "typo")]
    with pytest.raises(SystemExit) as exit_, mock.patch.object(sys, "argv", argv):
        main()
    assert exit_.value.code == 2 and "'chemnett' is not an encoder" in capsys.readouterr().err


def test_the_trainer_never_imports_encoders_or_the_build() -> None:
    """Data flows one way: fused_train reads stores and never loads encoder or build code."""
    code = (
        "import sys, fused_train, fused_train.report; "
        "print([m for m in sys.modules if m == 'fused_cache.build' or m.startswith('fused_cache.encoders')])"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_fold_selection_errors_are_clear(small: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = small
    args = ["run", "--dataset", dataset, "--cache-dir", str(cache), "--drug-encoder", "morgan", "--fold", "99"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r")], standalone_mode=False)
    assert "this split has folds 0-9" in str(result.exception)


def test_grid_ranks_settings_by_validation_only(small: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = small
    args = ["grid", "--drug-encoder", "morgan", "--dataset", dataset, "--cache-dir", str(cache), "--fold", "0-1",
            "--epochs", "2", "--lr", "0.01,0.0001", "--heads", "2", "--hidden", "16,8", "--width", "16", "--proj", "8",
            "--precision", "fp32", "--quiet", "--out", str(tmp_path / "grid")]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    table = pd.read_csv(tmp_path / "grid" / "grid.csv")
    assert len(table) == 2 and table["val_rmse"].is_monotonic_increasing
    for _, row in table.iterrows():
        curves = [pd.read_csv(f) for f in (Path(row["run"]) / "curves").glob("*.csv")]
        assert row["val_rmse"] == pytest.approx(np.mean([c["val_rmse"].min() for c in curves]))
    assert "best by validation RMSE" in result.output


def test_deepcdr_gcn_and_cell_out_train_and_report_per_cell_line(small: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = small
    spec = replace(tiny_spec(dataset, split="cell-out", epochs=2), model="deepcdr", drug_encoder="graph", options={})
    spec = replace(spec, options={"gcn": [16, 8], "branch": [16, 8], "hidden": [16, 8]})
    spec = replace(spec, train=replace(spec.train, precision="bf16"))  # autocast through the sparse GCN
    assert len(train(spec, tmp_path / "run", cache_dir=cache, quiet=True)) == 5
    frame = predictions(tmp_path / "run")
    assert np.isfinite(frame["pred_deepcdr"]).all()
    assert frame["cell_id"].nunique() == 40  # every cell line is held out once
    assert "per_cell_pcc_mean" in summarise_run(tmp_path / "run").columns


def test_every_command_explains_itself_before_anything_is_built() -> None:
    for command in ([], ["run"], ["grid"], ["report"]):
        result = CliRunner().invoke(cli, [*command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output
