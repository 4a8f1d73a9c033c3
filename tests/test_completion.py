"""Completion (soft-impute of the per-drug residual matrix) for drug-known: it learns planted low-rank structure,
chooses on validation rows, never reads held-out labels, refuses what it cannot predict, and saves what it predicts."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import run_console, with_scrambled_test_labels

from fused_train.choices import run_summary
from fused_train.cli import main, make_cli
from fused_train.data import Inputs
from fused_train.models.base import PredictError, Query
from fused_train.models.completion import Completion, CompletionFitted, CompletionOptions, soft_impute
from fused_train.models.neighbours import Standardised, row_pcc
from fused_train.models.registry import ModelError
from fused_train.predict import load_model
from fused_train.runs import predictions
from fused_train.splits import TEST, TRAIN, VAL, make_folds


def _low_rank(n_drugs: int = 30, n_cells: int = 80, rank: int = 3, noise: float = 0.3, seed: int = 0) -> Inputs:
    """Responses = drug level + cell effect + a rank-``rank`` drug x cell interaction + noise: the interaction is
    what ranks a drug's cell lines beyond the cell-line mean, and only the other drugs' responses reveal it."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n_drugs)[:, None] * 3 + rng.normal(size=n_cells)[None, :]
    y = y + rng.normal(size=(n_drugs, rank)) @ rng.normal(size=(rank, n_cells)) + noise * rng.normal(size=y.shape)
    drug_ids = np.array([f"d{i:02d}" for i in range(n_drugs)])
    cell_ids = np.array([f"c{j:02d}" for j in range(n_cells)])
    d, c = np.indices(y.shape).reshape(2, -1)
    pairs = pd.DataFrame({"drug_id": drug_ids[d], "cell_id": cell_ids[c], "ln_ic50": y.ravel(), "drug_index": d,
                          "cell_index": c})  # fmt: skip
    cells = {"expression": rng.normal(size=(n_cells, 4)).astype(np.float32)}
    drug_x = rng.normal(size=(n_drugs, 5)).astype(np.float32)
    return Inputs("low-rank", drug_ids, cell_ids, drug_x, cells, pairs, np.full(n_cells, ""))


def _fold(inputs: Inputs, split: str = "drug-known"):  # noqa: ANN202
    count, _ = inputs.grid()
    return make_folds(split, count, inputs.drug_ids, inputs.cell_groups, seed=0, val_fraction=0.2,
                      test_fraction=0.2)[0]  # fmt: skip


def test_soft_impute_recovers_missing_cells_of_a_low_rank_matrix() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 60))
    measured = (rng.random(truth.shape) > 0.3).astype(np.float64)
    x, iterations = soft_impute(truth * measured, measured, 1.0, CompletionOptions())
    missing = measured == 0
    assert 1 < iterations < CompletionOptions().max_iterations
    assert np.abs(x - truth)[missing].mean() < 0.1 * np.abs(truth[missing]).mean()
    # a larger penalty shrinks every singular value: the completed matrix has a smaller nuclear norm
    big, _ = soft_impute(truth * measured, measured, 20.0, CompletionOptions())
    assert np.linalg.norm(big, "nuc") < np.linalg.norm(x, "nuc")


def test_completion_ranks_held_out_cells_better_than_the_mean_effects() -> None:
    inputs = _low_rank()
    count, target = inputs.grid()
    fold = _fold(inputs)
    grid, choices = Completion(CompletionOptions()).predict_fold(inputs, fold)
    test = (fold.roles == TEST) & (count > 0)
    mean_effects = Standardised.fit(count * np.isin(fold.roles, (TRAIN, VAL)), target.astype(np.float64))
    baseline = np.broadcast_to(mean_effects.base, target.shape)
    ours, naive = np.nanmean(row_pcc(grid, target, test)), np.nanmean(row_pcc(baseline, target, test))
    assert ours > naive + 0.2, (ours, naive)
    assert choices["penalty"] in CompletionOptions().penalty
    assert choices["validation drugs"] == len(inputs.drug_ids)


def test_the_penalty_is_chosen_on_validation_rows() -> None:
    """The chosen penalty is the candidate with the best validation per-drug PCC, each fitted on TRAIN rows."""
    inputs = _low_rank()
    fold = _fold(inputs)
    count, target = inputs.grid()
    options = CompletionOptions(penalty=(0.05, 0.3, 2.0))
    _, choices = Completion(options).predict_fold(inputs, fold)
    fitted = Standardised.fit(count * (fold.roles == TRAIN), target.astype(np.float64))
    top = np.linalg.svd(fitted.residual, compute_uv=False)[0]
    val = (fold.roles == VAL) & (count > 0)
    scores = {}
    for relative in options.penalty:
        x, _ = soft_impute(fitted.residual, fitted.measured, relative * top, options)
        scores[relative] = np.nanmean(row_pcc(fitted.base[None, :] + x, target, val))
    # the path is warm-started and stops at a tolerance: scores agree with these cold starts to ~1e-4
    assert scores[choices["penalty"]] == pytest.approx(max(scores.values()), abs=1e-3)
    assert choices["validation per-drug PCC"] == pytest.approx(scores[choices["penalty"]], abs=1e-3)
    assert min(scores.values()) < max(scores.values()) - 0.1  # the candidates differ: the choice says something


def test_held_out_labels_never_influence_completion() -> None:
    """Scramble the TEST pairs' ln IC50: every prediction and every choice stays the same."""
    inputs = _low_rank()
    fold = _fold(inputs)
    model = Completion(CompletionOptions())
    clean, chosen = model.predict_fold(inputs, fold)
    poisoned, chosen_poisoned = model.predict_fold(with_scrambled_test_labels(inputs, fold), fold)
    np.testing.assert_array_equal(poisoned, clean)
    assert chosen_poisoned == chosen


def test_a_fold_that_holds_out_whole_drugs_is_refused() -> None:
    inputs = _low_rank()
    count, _ = inputs.grid()
    lodo = make_folds("lodo", count, inputs.drug_ids, inputs.cell_groups, seed=0, val_fraction=0.2)[0]
    with pytest.raises(ModelError, match=r"drug\(s\) with validation or test pairs have no training pairs"):
        Completion(CompletionOptions()).predict_fold(inputs, lodo)


def test_a_fold_without_validation_rows_is_refused() -> None:
    inputs = _low_rank()
    fold = _fold(inputs)
    roles = np.where(fold.roles == VAL, TRAIN, fold.roles).astype(np.int8)
    with pytest.raises(ModelError, match="no drug has 3 or more validation cell lines"):
        Completion(CompletionOptions()).predict_fold(inputs, replace(fold, roles=roles))


@pytest.mark.parametrize(
    ("options", "message"),
    [(lambda: CompletionOptions(penalty=()), "--penalty needs finite values >= 0, got ()"),
     (lambda: CompletionOptions(tolerance=0.0), "--tolerance must be a finite number > 0"),
     (lambda: CompletionOptions(max_iterations=0), "--max-iterations must be >= 1")],
)  # fmt: skip
def test_options_that_cannot_work_are_refused(options: object, message: str) -> None:
    with pytest.raises(ModelError, match=re.escape(message)):
        options()


def test_a_saved_fold_predicts_known_pairs_and_refuses_new_entities(tmp_path: Path) -> None:
    inputs = _low_rank()
    fitted = Completion(CompletionOptions()).fit(inputs, _fold(inputs))
    names = fitted.save(tmp_path)
    assert sorted(names) == sorted([CompletionFitted.ARRAYS, CompletionFitted.META])
    loaded = CompletionFitted.load(tmp_path, {}, "cpu")
    query = Query.of(inputs)
    np.testing.assert_array_equal(loaded.predict(query), fitted.predict(query))
    assert loaded.choices == fitted.choices
    some = replace(query, drug_ids=query.drug_ids[[3, 1]], cell_ids=query.cell_ids[[5, 0, 7]])
    np.testing.assert_array_equal(loaded.predict(some), fitted.grid[np.ix_([3, 1], [5, 0, 7])])
    with pytest.raises(PredictError, match="drug 'new' is not one the model was fitted on"):
        loaded.predict(replace(query, drug_ids=np.array(["new", *query.drug_ids[1:]])))
    with pytest.raises(PredictError, match="cell line 'new' is not one the model was fitted on"):
        loaded.predict(replace(query, cell_ids=np.array(["new", *query.cell_ids[1:]])))


def test_completion_runs_from_the_command_line(
    trained_on: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A drug-known run on the small dataset: predictions of the test pairs, choices written, the saved fold
    predicting the run's test pairs as the run did; a LODO run is refused with one line."""
    dataset, cache = trained_on
    base = ["run", "--model", "completion", "--drug-encoder", "morgan", "--dataset", dataset, "--cache-dir",
            str(cache), "--omics", "methylation", "--penalty", "0.05,0.2", "--quiet"]  # fmt: skip
    out = tmp_path / "run"
    result = CliRunner().invoke(make_cli(), [*base, "--split", "drug-known", "--out", str(out)])
    assert result.exit_code == 0, result.output
    choices = json.loads(next((out / "choices").glob("*.json")).read_text())
    assert choices["penalty"] in (0.05, 0.2)
    summary = run_summary(out)  # the report's edge counts know where the penalty's candidates are
    assert summary["choice"].tolist() == ["penalty"] and summary["candidates"].tolist() == ["0.05, 0.2"]
    written = predictions(out).groupby(["drug_id", "cell_id"])["pred_completion"].first()
    assert written.notna().all()
    saved = load_model(next((out / "models").iterdir()))
    ours = saved.predict().set_index(["drug_id", "cell_id"])["pred_ln_ic50"]
    np.testing.assert_allclose(ours.loc[written.index].to_numpy(), written.to_numpy(), rtol=0, atol=1e-5)
    code, output = run_console(main, "fused-train", capsys, *base, "--split", "lodo", "--fold", "0", "--out",
                               str(tmp_path / "lodo"))  # fmt: skip
    assert code != 0
    assert "drug(s) with validation or test pairs have no training pairs" in output
    assert "Traceback" not in output
