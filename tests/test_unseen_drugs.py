"""Predictors for drugs never seen in training (LODO): drug annotations as inputs, the neighbours model and the tuned
tree baseline. Each keeps the rules: choices on validation drugs, the held-out drug's labels never read."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import with_scrambled_test_labels
from scipy.stats import pearsonr

from fused_cache import datasets
from fused_cache.datasets import Dataset, DatasetError
from fused_train.cli import make_cli
from fused_train.data import Inputs
from fused_train.models.base import PredictError, Query
from fused_train.models.neighbours import Neighbours, NeighboursOptions, Standardised, row_pcc, similarity
from fused_train.models.stacked import Drugs, Stacked, StackedOptions, features
from fused_train.models.trees import Components, Trees, TreesOptions, mean_drug_pcc
from fused_train.predict import load_model
from fused_train.runs import RunError, RunSpec, folds_of, load_run_inputs, predictions, train
from fused_train.scaling import standardise
from fused_train.splits import TEST, make_folds

FAST_TREES = TreesOptions(leaves=(4, 8), max_rounds=30, stop_rounds=5, drug_components=3, cell_components=4)
FAST_STACKED = StackedOptions(ks=(2, 4), leaves=(4, 8), max_rounds=30, stop_rounds=5, cell_components=3, min_leaf=20)


def test_bundled_drugs_carry_their_targets_and_pathway(gdsc: Dataset) -> None:
    pathways = datasets.drug_annotations(gdsc.drugs, "target_pathway")
    assert len(pathways) == 223 and all(pathways.values())
    assert len(set().union(*pathways.values())) == 24
    assert pathways["5291"] == {"RTK signaling"}  # imatinib, as GDSC files it
    assert datasets.drug_annotations(gdsc.drugs, "targets")["5291"] == {"ABL", "KIT", "PDGFR"}
    assert any(len(p) == 2 for p in pathways.values())  # a CID with two GDSC ids keeps both annotations


def test_user_drugs_may_bring_annotations_as_text(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("drug_id,cell_id,ln_ic50\nd1,c1,1.0\nd2,c1,2.0\n")
    drugs = tmp_path / "drugs.csv"
    drugs.write_text("drug_id,smiles,targets,target_pathway\nd1,CCO,EGFR;ERBB2,EGFR signaling\nd2,CCN,,\n")
    ds = Dataset.from_files(pairs, drugs)
    assert datasets.drug_annotations(ds.drugs, "targets") == {"d1": {"EGFR", "ERBB2"}, "d2": frozenset()}
    drugs.write_text("drug_id,smiles,targets\nd1,CCO,EGFR\nd2,CCN,7\n")  # CSV is read as text: '7' names a target
    assert datasets.drug_annotations(Dataset.from_files(pairs, drugs).drugs, "targets")["d2"] == {"7"}
    numbers = tmp_path / "drugs.parquet"
    pd.DataFrame({"drug_id": ["d1", "d2"], "smiles": ["CCO", "CCN"], "target_pathway": [np.nan, 7.0]}).to_parquet(
        numbers
    )
    with pytest.raises(DatasetError, match="drug 'd2' has target_pathway 7.0; expected ';'-separated names"):
        Dataset.from_files(pairs, numbers)


def test_row_pcc_is_pearson_over_the_masked_columns() -> None:
    rng = np.random.default_rng(0)
    pred, truth = rng.normal(size=(3, 12)), rng.normal(size=(3, 12))
    mask = rng.random((3, 12)) > 0.3
    mask[2] = False
    mask[2, :2] = True  # too few columns: undefined
    out = row_pcc(pred, truth, mask)
    for i in range(2):
        assert out[i] == pytest.approx(pearsonr(pred[i, mask[i]], truth[i, mask[i]])[0])
    assert np.isnan(out[2])


def _planted(n_pathways: int = 4, per_pathway: int = 6, n_cells: int = 60, seed: int = 0) -> Inputs:
    """Drugs whose cell-line profiles are a shared cell effect plus a profile of their target pathway plus noise:
    the pathway profile predicts an unseen drug, the plain cell-line mean only partly."""
    rng = np.random.default_rng(seed)
    n = n_pathways * per_pathway
    pathway = np.repeat(np.arange(n_pathways), per_pathway)
    y = rng.normal(size=n_cells)[None, :] + 2 * rng.normal(size=(n_pathways, n_cells))[pathway]
    y = y + 0.3 * rng.normal(size=(n, n_cells)) + rng.normal(size=n)[:, None]
    drug_ids, cell_ids = np.array([f"d{i:02d}" for i in range(n)]), np.array([f"c{j:02d}" for j in range(n_cells)])
    d, c = np.indices(y.shape).reshape(2, -1)
    pairs = pd.DataFrame({"drug_id": drug_ids[d], "cell_id": cell_ids[c], "ln_ic50": y.ravel(), "drug_index": d,
                          "cell_index": c})  # fmt: skip
    names = [frozenset({f"pathway {p}"}) for p in pathway]
    cells = {"expression": rng.normal(size=(n_cells, 8)).astype(np.float32)}
    annotations = {"target_pathway": names, "targets": [frozenset()] * n}
    drug_x = rng.normal(size=(n, 5)).astype(np.float32)
    groups = np.full(n_cells, "")
    return Inputs("planted", drug_ids, cell_ids, drug_x, cells, pairs, groups, drug_annotations=annotations)


def _lodo_folds(inputs: Inputs) -> list:
    count, _ = inputs.grid()
    return make_folds("lodo", count, inputs.drug_ids, inputs.cell_groups, seed=0, val_fraction=0.25)


def test_neighbours_learns_a_planted_pathway_profile_and_beats_the_cell_line_mean() -> None:
    inputs = _planted()
    count, target = inputs.grid()
    model, won = Neighbours(NeighboursOptions()), 0
    folds = _lodo_folds(inputs)
    for fold in folds:
        grid, choices = model.predict_fold(inputs, fold)
        held = int(np.flatnonzero((fold.roles == TEST).any(axis=1))[0])
        assert choices["pathway"] > 0
        train = count * (fold.roles != TEST)
        cell_mean = (train * target).sum(axis=0) / train.sum(axis=0)
        won += pearsonr(grid[held], target[held])[0] > pearsonr(cell_mean, target[held])[0] + 0.2
    assert won == len(folds)


@pytest.mark.parametrize(
    "model",
    [Neighbours(NeighboursOptions()), Trees(FAST_TREES), Trees(replace(FAST_TREES, tune_by="drug-pcc")),
     Stacked(FAST_STACKED)],
    ids=["neighbours", "trees", "trees tuned by drug-pcc", "stacked"],
)  # fmt: skip
def test_held_out_labels_never_influence_a_fitted_model(model: Neighbours | Trees | Stacked) -> None:
    """Scramble the held-out drug's ln IC50: every prediction and every choice stays the same."""
    inputs = _planted()
    fold = _lodo_folds(inputs)[5]
    clean, chosen = model.predict_fold(inputs, fold)
    poisoned, chosen_poisoned = model.predict_fold(with_scrambled_test_labels(inputs, fold), fold)
    np.testing.assert_array_equal(poisoned, clean)
    assert chosen_poisoned == chosen


def test_neighbours_and_trees_run_from_the_command_line(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    dataset, cache = trained_on
    cli, runner = make_cli(), CliRunner()
    base = ["run", "--drug-encoder", "morgan", "--dataset", dataset, "--cache-dir", str(cache), "--omics",
            "methylation", "--fold", "0-2", "--quiet"]  # fmt: skip
    for model, extra in (("neighbours", ["--k", "2,3", "--weights", "0,0.5"]), ("trees", ["--max-rounds", "20"])):
        out = tmp_path / model
        result = runner.invoke(cli, [*base, "--model", model, *extra, "--out", str(out)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        choices = json.loads(next((out / "choices").glob("*.json")).read_text())
        assert ("k" in choices) if model == "neighbours" else ("leaves" in choices)
        frame = pd.concat(pd.read_parquet(p) for p in (out / "folds").glob("*.parquet"))
        assert frame[f"pred_{model}"].notna().all() and "pred_cell-mean" in frame


def test_a_fold_without_validation_drugs_is_refused() -> None:
    inputs = _planted()
    fold = _lodo_folds(inputs)[0]
    roles = np.where(fold.roles == 2, 1, fold.roles).astype(np.int8)
    with pytest.raises(ValueError, match="no drug has 3 or more validation cell lines"):
        Neighbours(NeighboursOptions()).predict_fold(inputs, replace(fold, roles=roles))
    with pytest.raises(ValueError, match="no validation rows"):
        Trees(FAST_TREES).predict_fold(inputs, replace(fold, roles=roles))
    with pytest.raises(ValueError, match="no drug has 3 or more validation cell lines"):
        Stacked(FAST_STACKED).predict_fold(inputs, replace(fold, roles=roles))


@pytest.mark.parametrize(
    "model", [Neighbours(NeighboursOptions()), Stacked(FAST_STACKED)], ids=["neighbours", "stacked"]
)
def test_models_of_other_drugs_responses_refuse_what_they_cannot_answer(
    model: Neighbours | Stacked, tmp_path: Path
) -> None:
    """Predicting from the fitted drugs' responses: a new cell line, a known drug id with another embedding and a
    saved model whose arrays do not match its ids are refused by name, never answered."""
    inputs = _planted()
    fitted = model.fit(inputs, _lodo_folds(inputs)[0])
    query = Query.of(inputs)
    assert np.isfinite(fitted.predict(query)).all()
    with pytest.raises(PredictError, match="cell line 'new' is not one the model was fitted on"):
        fitted.predict(replace(query, cell_ids=np.array(["new", *inputs.cell_ids[1:]])))
    with pytest.raises(PredictError, match="drug 'd03' has the id of a drug the model was fitted on but another"):
        fitted.predict(replace(query, drug=np.where(np.arange(len(inputs.drug_ids))[:, None] == 3, 9.0, inputs.drug)))
    names = fitted.save(tmp_path)
    meta = next(tmp_path / n for n in names if n.endswith(".json"))
    saved = json.loads(meta.read_text())
    meta.write_text(json.dumps({**saved, "drug_ids": saved["drug_ids"][1:]}))
    with pytest.raises(ValueError, match="does not match the ids in"):
        type(fitted).load(tmp_path, {}, "cpu")


def test_stacked_sees_a_training_drug_as_if_it_were_unseen() -> None:
    """The inner leave-one-drug-out: a reference drug's features are those it gets when its rows are dropped from
    the fit (base(c) and every profile without it), i.e. what a held-out drug gets."""
    inputs = _planted()
    count, target = inputs.grid()
    drugs = Drugs(inputs.drug, inputs.drug_annotations, sorted(set().union(*inputs.drug_annotations["target_pathway"])))
    weight = count.astype(np.float64).copy()
    weight[5, :7] = 0  # one drug measured on fewer lines: base(c) differs by line in how many drugs it averages
    with_all = Standardised.fit(weight, target)
    for d in (0, 5, 13):
        without = weight.copy()
        without[d] = 0
        cell_x = inputs.cells["expression"]
        alone = features(drugs, Standardised.fit(without, target), np.array([d]), (2, 4), cell_x)
        np.testing.assert_allclose(features(drugs, with_all, np.array([d]), (2, 4), cell_x), alone, atol=1e-10)
    assert not np.allclose(with_all.base, Standardised.fit(without, target).base)  # the check has teeth


def test_no_model_option_shadows_a_run_option() -> None:
    """A model option named like a run option (--patience, --lr) would silently replace it."""
    names = [p.name for p in make_cli().commands["run"].params]
    assert len(names) == len(set(names))


def test_runs_on_the_bundled_split_keep_the_held_out_drug_out(trained_on: tuple[str, Path]) -> None:
    spec = RunSpec(model="neighbours", drug_encoder="morgan", omics=("methylation",), dataset=trained_on[0])
    inputs = load_run_inputs(spec, trained_on[1])
    fold = folds_of(spec, inputs)[0]
    grid, _ = Neighbours(NeighboursOptions(k=(2,))).predict_fold(inputs, fold)
    assert np.isfinite(grid).all()


@pytest.mark.parametrize("model", ["neighbours", "trees", "stacked"])
def test_a_saved_fold_reproduces_its_runs_held_out_drug(
    model: str, trained_on: tuple[str, Path], tmp_path: Path
) -> None:
    """The one model contract: a fitted model saves what it needs, and the saved fold predicts its held-out drug as
    the run did (the drug is new to it: neighbours from similar drugs, trees from its features)."""
    options = {"neighbours": {"k": [2]},
               "trees": {"leaves": [4], "max_rounds": 20, "drug_components": 3, "cell_components": 4},
               "stacked": {"ks": [2, 3], "leaves": [4], "max_rounds": 20, "cell_components": 3,
                           "min_leaf": 5}}[model]  # fmt: skip
    spec = RunSpec(model=model, drug_encoder="morgan", omics=("methylation",), dataset=trained_on[0], options=options)
    run = tmp_path / "run"
    train(spec, run, fold="0", cache_dir=trained_on[1], quiet=True, save_models=True)
    written = predictions(run).groupby(["drug_id", "cell_id"])[f"pred_{model}"].first()
    saved = load_model(next((run / "models").iterdir()))
    ours = saved.predict().set_index(["drug_id", "cell_id"])["pred_ln_ic50"]
    np.testing.assert_allclose(ours.loc[written.index].to_numpy(), written.to_numpy(), rtol=0, atol=1e-5)


def test_the_naive_predictors_have_nothing_to_save(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    spec = RunSpec(model="naive", drug_encoder="morgan", omics=("methylation",), dataset=trained_on[0])
    with pytest.raises(RunError, match="model 'naive' has nothing of its own to save"):
        train(spec, tmp_path / "run", fold="0", cache_dir=trained_on[1], quiet=True, save_models=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [(lambda: NeighboursOptions(k=()), "--k needs finite values >= 1, got ()"),
     (lambda: NeighboursOptions(weights=(0.5, -1.0)), "--weights needs finite values >= 0"),
     (lambda: TreesOptions(leaves=(1,)), "--leaves needs finite values >= 2")],
)  # fmt: skip
def test_searched_options_refuse_values_that_cannot_be_searched(options: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        options()


def test_mean_drug_pcc_is_the_mean_of_each_drugs_pearson() -> None:
    rng = np.random.default_rng(2)
    drug = np.repeat([0, 1, 2, 3], [10, 7, 2, 5])  # drug 2: too few rows
    pred, truth = rng.normal(size=len(drug)), rng.normal(size=len(drug))
    pred[drug == 3] = 1.0  # no spread: undefined
    expected = np.mean([pearsonr(pred[drug == d], truth[drug == d])[0] for d in (0, 1)])
    assert mean_drug_pcc(pred, truth, drug) == pytest.approx(expected)


def test_a_feature_as_large_as_rdkits_ipc_is_scaled_not_zeroed() -> None:
    """rdkit2d's Ipc reaches 4.9e23 (bleomycin): its float32 sd overflows; trees and neighbours scale in float64."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4)).astype(np.float32)
    x[:, 0] = rng.uniform(0, 1e23, 20).astype(np.float32)
    np.testing.assert_allclose(Components.fit(x, 3)(x), Components.fit(x.astype(np.float64), 3)(x), atol=1e-5)
    references = np.ones(20, dtype=bool)
    np.testing.assert_allclose(similarity(x, references), similarity(x.astype(np.float64), references), atol=1e-6)
    assert np.abs(Components.fit(x, 3)(x)).max() > 0 and np.isfinite(similarity(x, references)).all()
    mean, sd = standardise(x)  # the other columns keep their float32 statistics: earlier results reproduce bit for bit
    assert mean.dtype == np.float32 and np.isfinite(sd).all() and sd[0] > 1e21
    assert np.array_equal(mean[1:], x[:, 1:].mean(axis=0)) and np.array_equal(sd[1:], x[:, 1:].std(axis=0))
