"""Issue #25, items 1, 2, 3, 6, 7, 10 and the table cases of 9: every table a user gives predict and embed is read as
written (the dataset loader's reader, ``fused_cache/tables.py``) or refused in one line with exit code 3; a pilot
drug that is a training drug under another id is refused; messages give only advice that applies."""

from __future__ import annotations

import json
import pickle
import re
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import TINY, run_console, tiny_spec
from test_unseen_drugs import _planted

from fused_cache import datasets
from fused_cache.cli import cli as cache_cli
from fused_cache.cli import main as cache_main
from fused_cache.datasets import DatasetError
from fused_cache.encoders.base import CheckpointError
from fused_cache.encoders.registry import get_encoder
from fused_cache.encoders.scfoundation import TRUST_ADVICE
from fused_cache.encoders.torch_checkpoints import load_checkpoint_file
from fused_cache.items import DrugBatch
from fused_train import load_model
from fused_train.cli import main
from fused_train.engine import Execution, TrainConfig, Trainer
from fused_train.fit import fit
from fused_train.models.fused import FusedSlots
from fused_train.saved import write_info
from fused_train.splits import TRAIN, make_folds

ASPIRIN, CAFFEINE = "CC(=O)Oc1ccccc1C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"


@pytest.fixture(scope="module")
def fitted(trained_on: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-member FUSED model fitted on the small dataset (1 epoch): what predict reads."""
    dataset, cache = trained_on
    out = tmp_path_factory.mktemp("fit") / "model"
    return fit(tiny_spec(dataset, epochs=1), out, cache_dir=cache, quiet=True, command="test")


def predict(capsys: pytest.CaptureFixture[str], model: Path, out: Path, *args: str) -> tuple[int, str]:
    """``fused-train predict`` as a user runs it: exit code and output. New drugs are embedded into a cache of the
    test's own, so that the shared training cache stays as other tests expect it."""
    return run_console(main, "fused-train", capsys, "predict", "--model", str(model), "--out", str(out), "--quiet",
                       "--top", "0", "--cache-dir", str(out.parent / "cache"), *args)  # fmt: skip


def refused_in_one_line(code: int, output: str, message: str) -> None:
    assert code == 3, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert message in lines[0], output


def cell_tables(folder: Path, gdsc: datasets.Dataset, cells: list[str], ids: list[str] | None = None) -> Path:
    """A --cells directory with expression and methylation of ``cells`` (bundled lines), renamed to ``ids``."""
    folder.mkdir(parents=True, exist_ok=True)
    for modality in ("expression", "methylation"):
        matrix = gdsc.omics[modality].loc[cells]
        matrix.index = ids or cells
        matrix.rename_axis("cell_id").reset_index().to_csv(folder / f"omics_{modality}.csv", index=False)
    return folder


def test_predict_keeps_drug_ids_exactly_as_written(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 1: 007 stays 007 (and is not 7), 1e3, TRUE and NA stay as written."""
    ids = ["007", "7", "1e3", "TRUE", "NA"]
    smiles = [ASPIRIN, CAFFEINE, "CCO", "CCN", "CCC"]
    rows = "".join(f"{i},{s}\n" for i, s in zip(ids, smiles, strict=True))
    (tmp_path / "drugs.csv").write_text("drug_id,smiles\n" + rows)
    code, output = predict(capsys, fitted, tmp_path / "p.csv", "--drugs", str(tmp_path / "drugs.csv"))
    assert code == 0, output
    written = pd.read_csv(tmp_path / "p.csv", dtype=str, keep_default_na=False)
    assert list(pd.unique(written["drug_id"])) == ids


def test_predict_keeps_new_cell_ids_exactly_as_written(
    fitted: Path, gdsc: datasets.Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 1: new cell lines 007 and NA are themselves, not 7.0 and nan."""
    lines = list(gdsc.omics["methylation"].index.intersection(gdsc.omics["expression"].index)[:2])
    cells = cell_tables(tmp_path / "cells", gdsc, lines, ids=["007", "NA"])
    code, output = predict(capsys, fitted, tmp_path / "p.csv", "--cells", str(cells))
    assert code == 0, output
    written = pd.read_csv(tmp_path / "p.csv", dtype=str, keep_default_na=False)
    assert list(pd.unique(written["cell_id"])) == ["007", "NA"]


def test_embed_keeps_the_id_na(tmp_path: Path) -> None:
    """Item 1: fused-cache embed wrote the molecule NA as nan."""
    (tmp_path / "mols.csv").write_text(f"id,smiles\nNA,{ASPIRIN}\n007,{CAFFEINE}\n")
    result = CliRunner().invoke(cache_cli, ["embed", "--encoder", "morgan", "--smiles", str(tmp_path / "mols.csv"),
                                            "--out", str(tmp_path / "m.parquet"), "--cache-dir",
                                            str(tmp_path / "cache"), "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(pd.read_parquet(tmp_path / "m.parquet").index) == ["NA", "007"]


def test_predict_cells_directory_reads_exact_names_only(
    fitted: Path, gdsc: datasets.Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 2: omics_expression.old.csv is not a table; two tables of one modality are refused, naming both."""
    lines = list(gdsc.omics["methylation"].index.intersection(gdsc.omics["expression"].index)[:3])
    cells = cell_tables(tmp_path / "cells", gdsc, lines)
    old = pd.read_csv(cells / "omics_expression.csv").assign(cell_id=["x1", "x2", "x3"])
    old.to_csv(cells / "omics_expression.old.csv", index=False)
    code, output = predict(capsys, fitted, tmp_path / "p.csv", "--cells", str(cells))
    assert code == 0, output
    assert set(pd.read_csv(tmp_path / "p.csv")["cell_id"]) == set(lines)  # the .old file was not read

    pd.read_csv(cells / "omics_expression.csv").to_parquet(cells / "omics_expression.parquet")
    code, output = predict(capsys, fitted, tmp_path / "q.csv", "--cells", str(cells))
    refused_in_one_line(code, output, "has 2 omics_expression tables: omics_expression.csv, omics_expression.parquet")

    only_old = tmp_path / "only-old"
    only_old.mkdir()
    (cells / "omics_expression.old.csv").rename(only_old / "omics_expression.old.csv")
    code, output = predict(capsys, fitted, tmp_path / "q.csv", "--cells", str(only_old))
    refused_in_one_line(code, output, "holds no omics_<modality>.csv")
    assert not (tmp_path / "q.csv").exists()


def test_predict_refuses_a_gene_column_given_twice(
    fitted: Path, gdsc: datasets.Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 3: pandas renamed the copy GENE.1 and predictions changed."""
    lines = list(gdsc.omics["methylation"].index.intersection(gdsc.omics["expression"].index)[:3])
    cells = cell_tables(tmp_path / "cells", gdsc, lines)
    text = (cells / "omics_methylation.csv").read_text().splitlines()
    gene = text[0].split(",")[1]
    (cells / "omics_methylation.csv").write_text(
        "\n".join([text[0] + f",{gene}", *(row + ",0.5" for row in text[1:])]) + "\n"
    )
    code, output = predict(capsys, fitted, tmp_path / "p.csv", "--cells", str(cells))
    refused_in_one_line(code, output, f"has column {gene!r} more than once; keep one")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("option", ["--drugs", "--cells", "--pilot"])
def test_predict_refuses_an_empty_file(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    """Item 9: a 0-byte --drugs, --cells or --pilot file was a pandas traceback."""
    pd.DataFrame({"drug_id": ["aspirin"], "smiles": [ASPIRIN]}).to_csv(tmp_path / "new.csv", index=False)
    empty = tmp_path / ("omics_expression.csv" if option == "--cells" else "empty.csv")
    empty.write_text("")
    drugs = [] if option == "--drugs" else ["--drugs", str(tmp_path / "new.csv")]
    code, output = predict(capsys, fitted, tmp_path / "p.csv", *drugs, option, str(empty))
    refused_in_one_line(code, output, f"file {empty} is empty (0 bytes)")


def test_embed_refuses_an_empty_smiles_file_and_a_text_file_as_adata(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 9: EmptyDataError and an h5py traceback before."""
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "cells.h5ad").write_text("cell_id,TP53\nc1,1.0\n")
    out = ["--out", str(tmp_path / "o.parquet"), "--cache-dir", str(tmp_path / "c")]
    code, output = run_console(cache_main, "fused-cache", capsys, "embed", "--encoder", "morgan", "--smiles",
                               str(tmp_path / "empty.csv"), *out)  # fmt: skip
    refused_in_one_line(code, output, f"smiles file {tmp_path / 'empty.csv'} is empty (0 bytes)")
    code, output = run_console(cache_main, "fused-cache", capsys, "embed", "--encoder", "expression", "--adata",
                               str(tmp_path / "cells.h5ad"), *out)  # fmt: skip
    refused_in_one_line(code, output, f"adata file {tmp_path / 'cells.h5ad'} cannot be read as AnnData .h5ad")


def test_embed_reads_a_one_column_smiles_file(tmp_path: Path) -> None:
    """Item 10: the delimiter sniffer took the 's' of 'smiles' for the separator."""
    (tmp_path / "mols.csv").write_text(f"smiles\n{ASPIRIN}\n{CAFFEINE}\n")
    result = CliRunner().invoke(cache_cli, ["embed", "--encoder", "morgan", "--smiles", str(tmp_path / "mols.csv"),
                                            "--out", str(tmp_path / "m.parquet"), "--cache-dir",
                                            str(tmp_path / "cache"), "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list(pd.read_parquet(tmp_path / "m.parquet").index) == ["mol0", "mol1"]


def test_predict_does_not_advise_an_option_it_lacks(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 10: an invalid SMILES in predict advised '--on-error skip'; build and embed, which have it, still do."""
    pd.DataFrame({"drug_id": ["ok", "bad"], "smiles": ["CCO", "C1CC(("]}).to_csv(tmp_path / "bad.csv", index=False)
    code, output = predict(capsys, fitted, tmp_path / "p.csv", "--drugs", str(tmp_path / "bad.csv"))
    refused_in_one_line(code, output, "drug 'bad': invalid SMILES 'C1CC(('")
    assert "--on-error" not in output
    code, output = run_console(cache_main, "fused-cache", capsys, "embed", "--encoder", "morgan", "--smiles",
                               str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o.csv"), "--cache-dir",
                               str(tmp_path / "c"))  # fmt: skip
    refused_in_one_line(code, output, "Or pass --on-error skip to leave them out")


def test_an_untrusted_pickle_shows_only_our_advice(tmp_path: Path) -> None:
    """Item 10: torch's text recommended weights_only=False (and warned about the pickle protocol)."""
    import datetime

    path = tmp_path / "models.ckpt"
    path.write_bytes(pickle.dumps({"saved": datetime.date(2023, 5, 1)}, protocol=4))
    with warnings.catch_warnings(record=True) as caught, pytest.raises(CheckpointError) as refused:
        warnings.simplefilter("always")
        load_checkpoint_file(path, trust=False, refused=TRUST_ADVICE)
    message = str(refused.value)
    assert "--trust-checkpoint" in message and "holds pickled Python objects" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert not [w for w in caught if "pickle protocol" in str(w.message)]


def test_a_pilot_of_a_training_drug_under_a_new_id_is_refused(
    fitted: Path, trained_on: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items 2 and 6: the same molecule (written in another atom order) under a new id was accepted as a pilot."""
    from rdkit import Chem

    dataset, _ = trained_on
    drug = datasets.load(dataset).drugs.iloc[0]
    other_order = Chem.MolToSmiles(Chem.MolFromSmiles(drug["smiles"]), doRandom=True, canonical=False)
    pd.DataFrame({"drug_id": ["renamed"], "smiles": [other_order]}).to_csv(tmp_path / "d.csv", index=False)
    responses = pd.read_parquet(fitted / "responses.parquet")
    mine = responses[responses["drug_id"] == drug["drug_id"]].drop_duplicates("cell_id").head(5)
    mine.assign(drug_id="renamed").to_csv(tmp_path / "pilot.csv", index=False)
    code, output = predict(capsys, fitted, tmp_path / "p.csv", "--drugs", str(tmp_path / "d.csv"), "--pilot",
                           str(tmp_path / "pilot.csv"))  # fmt: skip
    refused_in_one_line(code, output, f"drug 'renamed' is training drug {drug['drug_id']!r} under another id")
    assert not (tmp_path / "p.csv").exists()

    code, output = predict(capsys, fitted, tmp_path / "p.csv", "--drugs", str(tmp_path / "d.csv"))
    assert code == 0, output  # plain predict predicts it, and says what it is
    assert f"warning: drug 'renamed' is training drug {drug['drug_id']!r} under another id" in output


def test_rdkit2d_ipc_is_scaled_not_zeroed(gdsc: datasets.Dataset) -> None:
    """Item 7: bleomycin's Ipc (4.9e23) made the float32 sd inf, so the feature was scaled to zero for every drug."""
    drugs = pd.concat([gdsc.drugs[gdsc.drugs["drug_id"] == "5460769"], gdsc.drugs.head(23)])
    batch = DrugBatch(list(drugs["drug_id"]), list(drugs["smiles"]))
    encoder = get_encoder("rdkit2d")
    encoder.fit(batch)
    x = encoder.embed(batch)
    ipc = encoder.settings()["descriptors"].index("Ipc")
    assert x[0, ipc] > 1e23  # bleomycin, the first drug
    inputs = replace(_planted(), drug=x)
    count, _ = inputs.grid()
    fold = make_folds("lodo", count, inputs.drug_ids, inputs.cell_groups, seed=0, val_fraction=0.25)[5]
    assert (fold.roles[0] == TRAIN).any()
    config = TrainConfig(max_epochs=1, patience=1, cells_per_step=16, select_by="rmse", precision="fp32")
    trainer = Trainer(inputs, FusedSlots, TINY, config, Execution())
    mean, sd = trainer._scalers(fold)["drug"]
    train = (fold.roles == TRAIN).any(axis=1)
    assert np.isfinite(sd).all() and sd[ipc] == pytest.approx(x[train, ipc].astype(np.float64).std(), rel=1e-6)
    scaled = (x[:, ipc] - mean[ipc]) / sd[ipc]
    assert np.isfinite(scaled).all() and scaled[0] > 3 and scaled.std() > 0.5
    (result,) = trainer.run([fold], quiet=True)
    assert np.isfinite(result.test_pred).all()


def test_the_training_smiles_travel_with_the_model(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items 2 and 6: fit saves the training SMILES, so a training drug under a new id is found even when the
    dataset the model was trained on has moved."""
    model = tmp_path / "model"
    shutil.copytree(fitted, model)
    info = json.loads((model / "model.json").read_text())
    write_info(model, info | {"dataset": str(tmp_path / "moved")})  # saved so: its checksum holds
    assert "smiles" in pd.read_parquet(model / "drugs.parquet").columns
    training = datasets.load(info["dataset"]).drugs.iloc[0]
    pd.DataFrame({"drug_id": ["twin"], "smiles": [training["smiles"]]}).to_csv(tmp_path / "d.csv", index=False)
    responses = pd.read_parquet(fitted / "responses.parquet")
    pilot = responses[responses["drug_id"] == responses["drug_id"].iloc[0]].drop_duplicates("cell_id").head(5)
    pilot.assign(drug_id="twin").to_csv(tmp_path / "pilot.csv", index=False)
    drugs = ["--drugs", str(tmp_path / "d.csv")]
    code, output = predict(capsys, model, tmp_path / "p.csv", *drugs, "--pilot", str(tmp_path / "pilot.csv"))
    refused_in_one_line(code, output, f"pilot: drug 'twin' is training drug {training['drug_id']!r} under another id")
    code, output = predict(capsys, model, tmp_path / "p.csv", *drugs)
    assert code == 0 and f"warning: drug 'twin' is training drug {training['drug_id']!r}" in output


def test_predict_from_python_refuses_a_gene_column_given_twice(fitted: Path, gdsc: datasets.Dataset) -> None:
    """Item 3, from Python: a DataFrame may hold a column name twice; predict would pick one copy silently."""
    lines = gdsc.omics["methylation"].index.intersection(gdsc.omics["expression"].index)[:2]
    expression = gdsc.omics["expression"].loc[lines].rename_axis("cell_id").reset_index()
    methylation = gdsc.omics["methylation"].loc[lines]
    twice = pd.concat([methylation, methylation.iloc[:, :1] + 0.5], axis=1).rename_axis("cell_id").reset_index()
    with pytest.raises(
        DatasetError, match=re.escape(f"cells (methylation) table has column {methylation.columns[0]!r}")
    ):
        load_model(fitted).predict(cells={"expression": expression, "methylation": twice})
