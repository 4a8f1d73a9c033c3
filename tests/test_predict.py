"""Saved models: a fold model reproduces its run, fit -> predict round-trips through a fresh process, and every bad
input is refused with the item named and no output left behind."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import tiny_spec

from fused_cache import datasets, open_store
from fused_train import load_model
from fused_train.cli import cli
from fused_train.fit import fit
from fused_train.runs import predictions, train
from fused_train.saved import ModelDirError, write_info

NEW = pd.DataFrame({"drug_id": ["aspirin", "caffeine"],
                    "smiles": ["CC(=O)Oc1ccccc1C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"]})  # fmt: skip


@pytest.fixture(scope="module")
def fitted(trained_on: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-member FUSED ensemble fitted on all pairs of the small dataset (2 epochs)."""
    dataset, cache = trained_on
    out = tmp_path_factory.mktemp("fit") / "model"
    return fit(tiny_spec(dataset, epochs=2, seeds=(0, 1)), out, cache_dir=cache, quiet=True, command="test")


def test_a_saved_fold_model_reproduces_its_runs_test_predictions(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    """Tolerance: 1e-4 absolute on ln IC50 (fp32; the engine evaluates other drug/cell tiles, so sums round apart)."""
    dataset, cache = trained_on
    run = tmp_path / "run"
    train(tiny_spec(dataset, split="drug-known"), run, cache_dir=cache, quiet=True)  # saves by default
    assert not list((run / "models").glob(".*"))  # no temporary leftovers
    model = load_model(run / "models" / "drug-known-seed0")
    ours = model.predict().set_index(["drug_id", "cell_id"])["pred_ln_ic50"]
    written = predictions(run).groupby(["drug_id", "cell_id"])["pred_fused"].first()
    assert len(written) >= 20
    np.testing.assert_allclose(ours.loc[written.index].to_numpy(), written.to_numpy(), atol=1e-4, rtol=0)
    info = json.loads((run / "models" / "drug-known-seed0" / "model.json").read_text())
    assert info["stores"]["drug"]["version"] == open_store("morgan", dataset=dataset, cache_dir=cache).version
    assert len(info["stores"]["cells"]["methylation"]["fingerprint"]["settings"]["genes"]) == 808

    lodo = tmp_path / "lodo"
    train(tiny_spec(dataset, epochs=1), lodo, fold="0", cache_dir=cache, quiet=True)
    assert not (lodo / "models").exists()  # LODO saves only on request


def test_fit_then_predict_a_training_drug_in_a_fresh_process(
    fitted: Path, trained_on: tuple[str, Path], tmp_path: Path
) -> None:
    dataset, cache = trained_on
    info = json.loads((fitted / "model.json").read_text())
    assert [m["seed"] for m in info["members"]] == [0, 1] and "validation" in info["members"][0]
    assert "RMSE" in (fitted / "card.md").read_text()
    drug = datasets.load(dataset).drugs.head(1)[["drug_id", "smiles"]]
    drug.to_csv(tmp_path / "known.csv", index=False)
    model = load_model(fitted)
    here = model.predict(drugs=tmp_path / "known.csv")
    assert model.report["embedded"] == 0 and model.report["reused"] == 1  # the training store's row
    out = tmp_path / "p.parquet"
    args = ["predict", "--model", str(fitted), "--drugs", str(tmp_path / "known.csv"), "--out", str(out), "--quiet"]
    code = f"import sys; from fused_train.cli import main; sys.argv = ['fused-train', *{args!r}]; main()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    there = pd.read_parquet(out)
    assert list(there.columns) == [
        "drug_id",
        "cell_id",
        "cell_name",  # beside the DepMap id, from the command line as from Python
        "tcga_type",
        "pred_ln_ic50",
        "pred_sd",
        "n_members",
        "model",
        "rank_within_drug",
    ]
    assert len(there) == 40 and (there["n_members"] == 2).all() and there["pred_sd"].gt(0).all()
    np.testing.assert_allclose(there["pred_ln_ic50"], here["pred_ln_ic50"], atol=1e-6)
    assert list(here.columns) == list(there.columns) and here["cell_name"].equals(there["cell_name"])
    # the same drug by the default (training drugs, read from the store) gives the same numbers
    default = model.predict().query("drug_id == @drug.drug_id.iloc[0]")
    np.testing.assert_allclose(default["pred_ln_ic50"], here["pred_ln_ic50"], atol=1e-6)
    code = code.replace(str(fitted), str(tmp_path / "nowhere"))
    refused = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert refused.returncode == 3 and f"no model directory at {tmp_path / 'nowhere'}" in refused.stderr
    best = there.sort_values("rank_within_drug").iloc[0]
    assert best["pred_ln_ic50"] == there["pred_ln_ic50"].min()


def test_two_new_smiles_embed_exactly_two_items(fitted: Path, tmp_path: Path) -> None:
    NEW.to_csv(tmp_path / "new.csv", index=False)
    model = load_model(fitted)
    frame = model.predict(drugs=tmp_path / "new.csv")
    assert model.report["embedded"] == 2 and model.report["reused"] == 0
    assert sorted(frame["drug_id"].unique()) == ["aspirin", "caffeine"]
    model.predict(drugs=tmp_path / "new.csv")
    assert model.report.get("embedded", 0) == 0  # the second time, nothing is embedded


def test_a_drug_encoder_with_another_fingerprint_is_refused(fitted: Path, tmp_path: Path) -> None:
    member = fitted / "members" / "seed0" / "model.json"
    info = json.loads(member.read_text())
    info["stores"]["drug"]["fingerprint"]["settings"] = {"radius": 3}
    info["stores"]["drug"]["fingerprint_hash"] = "0" * 64
    copy = tmp_path / "model"
    (copy / "members" / "seed0").mkdir(parents=True)
    for f in (fitted / "members" / "seed0").iterdir():
        (copy / "members" / "seed0" / f.name).write_bytes(f.read_bytes())
    write_info(copy / "members" / "seed0", info)  # saved as such: its checksum matches (tampering is another test)
    for name in ("responses.parquet", "drugs.parquet"):
        (copy / name).write_bytes((fitted / name).read_bytes())
    ensemble = json.loads((fitted / "model.json").read_text())
    ensemble["members"] = ensemble["members"][:1]
    write_info(copy, ensemble)
    NEW.to_csv(tmp_path / "new.csv", index=False)
    result = invoke(["--model", str(copy), "--drugs", str(tmp_path / "new.csv"), "--out", str(tmp_path / "p.csv")])
    assert "fingerprint" in result and "0000000000000000" in result and "differs in settings" in result
    assert not (tmp_path / "p.csv").exists()


def invoke(args: list[str]) -> str:
    """The error of a refused ``fused-train predict``."""
    result = CliRunner().invoke(cli, ["predict", "--quiet", *args], standalone_mode=False)
    assert result.exception is not None, result.output
    return str(result.exception)


def test_bad_inputs_name_the_item_and_leave_no_output(
    fitted: Path, trained_on: tuple[str, Path], tmp_path: Path
) -> None:
    dataset, _ = trained_on
    out = tmp_path / "p.csv"
    NEW.to_csv(tmp_path / "new.csv", index=False)
    drugs = ["--drugs", str(tmp_path / "new.csv"), "--out", str(out)]
    assert "no model directory at" in invoke(["--model", str(tmp_path / "nowhere"), *drugs])
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in (fitted / "members" / "seed0").iterdir():
        if f.name != "scalers.safetensors":
            (broken / f.name).write_bytes(f.read_bytes())
    assert "scalers.safetensors missing" in invoke(["--model", str(broken), *drugs])
    assert "no file" in invoke(["--model", str(fitted), "--drugs", str(tmp_path / "none.csv"), "--out", str(out)])

    pd.DataFrame({"drug_id": ["ok", "bad"], "smiles": ["CCO", "C1CC(("]}).to_csv(tmp_path / "bad.csv", index=False)
    assert "'bad'" in invoke(["--model", str(fitted), "--drugs", str(tmp_path / "bad.csv"), "--out", str(out)])

    ds = datasets.load(dataset)
    cells = tmp_path / "cells"
    cells.mkdir()
    expression = ds.omics["expression"].head(3)
    expression.reset_index().to_csv(cells / "omics_expression.csv", index=False)
    message = invoke(["--model", str(fitted), *drugs, "--cells", str(cells)])
    assert "lack modality 'methylation'" in message
    methylation = ds.omics["methylation"].loc[expression.index]
    methylation.iloc[1:].reset_index().to_csv(cells / "omics_methylation.csv", index=False)
    assert f"cell {expression.index[0]!r} is not in every omics table" in invoke(["--model", str(fitted), *drugs,
                                                                                 "--cells", str(cells)])  # fmt: skip
    methylation.drop(columns=methylation.columns[:2]).reset_index().to_csv(cells / "omics_methylation.csv", index=False)
    message = invoke(["--model", str(fitted), *drugs, "--cells", str(cells)])
    assert "2 of the model's 808 genes are missing" in message and str(methylation.columns[0]) in message
    assert not out.exists() and not list(tmp_path.glob(".p.csv*"))

    methylation.reset_index().to_csv(cells / "omics_methylation.csv", index=False)  # all genes: accepted
    result = CliRunner().invoke(cli, ["predict", "--model", str(fitted), *drugs, "--cells", str(cells), "--quiet"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out).shape == (2 * 3, 9)  # with the cell-line name and TCGA type columns (blank: new lines)


def test_load_model_names_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="not a saved model"):
        load_model(tmp_path)


def test_fit_on_the_command_line_records_its_command_and_refuses_to_overwrite(
    trained_on: tuple[str, Path], tmp_path: Path
) -> None:
    dataset, cache = trained_on
    args = ["fit", "--model", "fused", "--drug-encoder", "morgan", "--omics", "methylation", "--dataset", dataset,
            "--cache-dir", str(cache), "--epochs", "1", "--width", "16", "--heads", "2", "--proj", "8", "--hidden",
            "16,8", "--precision", "fp32", "--quiet", "--out", str(tmp_path / "m")]  # fmt: skip
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert "saved" in result.output and (tmp_path / "m" / "members" / "seed0" / "model.safetensors").is_file()
    assert "fused-train fit --model fused --drug-encoder morgan" in (tmp_path / "m" / "card.md").read_text()
    assert not list(tmp_path.glob(".m.*"))
    again = CliRunner().invoke(cli, args, standalone_mode=False)
    assert "exists and is not empty" in str(again.exception)


def test_a_pilot_screen_predicts_and_ranks_the_other_lines(fitted: Path, tmp_path: Path) -> None:
    """aspirin's pilot copies a training drug's responses on 6 lines: matching predicts its other lines from it."""
    model = load_model(fitted)
    responses = pd.read_parquet(fitted / "responses.parquet")
    twin = responses[responses["drug_id"] == responses["drug_id"].iloc[0]].drop_duplicates("cell_id").head(6)
    pilot = twin.assign(drug_id="aspirin")
    frame = model.predict(drugs=NEW, pilot=pilot)
    aspirin, caffeine = (frame[frame["drug_id"] == d] for d in ("aspirin", "caffeine"))
    assert set(aspirin["predictor"]) == {"matching (pilot)"} and set(caffeine["predictor"]) == {"fused"}
    assert aspirin["in_pilot"].sum() == 6 and aspirin.loc[aspirin["in_pilot"], "rank_within_drug"].isna().all()
    others = aspirin.loc[~aspirin["in_pilot"], "rank_within_drug"]
    assert sorted(others) == list(range(1, len(aspirin) - 5))
    assert aspirin["pred_sd"].notna().all() and np.isfinite(aspirin["model_ln_ic50"]).all()
    assert np.allclose(aspirin.loc[aspirin["in_pilot"], "pilot_ln_ic50"], twin.set_index("cell_id").loc[
        aspirin.loc[aspirin["in_pilot"], "cell_id"], "ln_ic50"])  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.assign(drug_id="ibuprofen"), "names drug 'ibuprofen', which is not in --drugs"),
        (lambda p: p.assign(cell_id=["nowhere", *p["cell_id"][1:]]), "names cell line 'nowhere', which the model"),
        (lambda p: p.assign(ln_ic50=[np.nan, *p["ln_ic50"][1:]]), "has ln_ic50 nan, not a finite number"),
        (lambda p: pd.concat([p, p.head(1)]), "repeats ('aspirin', "),
        (lambda p: p.head(2), "drug 'aspirin' has 2 line(s); matching needs at least 3"),
    ],
    ids=["unknown drug", "unknown cell", "not finite", "repeated", "too few lines"],
)
def test_bad_pilot_rows_are_refused_with_the_row_named(fitted: Path, change: object, message: str) -> None:
    model = load_model(fitted)
    cells = pd.read_parquet(fitted / "responses.parquet")["cell_id"].unique()[:4]
    pilot = pd.DataFrame({"drug_id": "aspirin", "cell_id": cells, "ln_ic50": [1.0, 2.0, 0.5, 3.0]})
    with pytest.raises(ValueError, match=re.escape(message)):
        model.predict(drugs=NEW, pilot=change(pilot))


def test_a_pilot_on_the_command_line_needs_new_drugs(fitted: Path, tmp_path: Path) -> None:
    responses = pd.read_parquet(fitted / "responses.parquet")
    known = responses.drop_duplicates("cell_id").head(4).assign(drug_id=responses["drug_id"].iloc[0])
    known.to_csv(tmp_path / "pilot.csv", index=False)
    out = ["--out", str(tmp_path / "p.csv"), "--pilot", str(tmp_path / "pilot.csv")]
    assert "--pilot needs --drugs" in invoke(["--model", str(fitted), *out])
    pd.DataFrame({"drug_id": [known["drug_id"].iloc[0]], "smiles": ["CCO"]}).to_csv(tmp_path / "d.csv", index=False)
    drugs = ["--drugs", str(tmp_path / "d.csv")]
    assert "is one the model was trained on" in invoke(["--model", str(fitted), *drugs, *out])
    assert not (tmp_path / "p.csv").exists()
