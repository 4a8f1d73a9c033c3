"""One contract for every model: any registered model fits, saves and predicts new drugs; a plain torch module trains
across folds in the batched engine like FUSED; a saved model that was changed on disk is refused."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

from fused_cache.stores import iter_model_refs
from fused_train.cli import main, make_cli
from fused_train.data import InputShapes
from fused_train.engine import Execution
from fused_train.models import registry
from fused_train.models.module_slots import module_slots
from fused_train.models.registry import BEST_FOR_NEW_DRUGS, option
from fused_train.predict import load_model
from fused_train.runs import RunSpec, folds_of, load_run_inputs
from fused_train.saved import ModelDirError

NEW = pd.DataFrame({"drug_id": ["osimertinib-like", "caffeine"],
                    "smiles": ["COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc1nccc(-c2cn(C)c3ccccc23)n1",
                               "Cn1cnc2c1c(=O)n(C)c(=O)n2C"]})  # fmt: skip
SMALL = {"fused": ["--width", "16", "--heads", "2", "--proj", "8", "--hidden", "16,8", "--epochs", "2"],
         "trees": ["--leaves", "4", "--max-rounds", "20", "--drug-components", "3", "--cell-components", "4"],
         "neighbours": ["--k", "2,3"],
         "stacked": ["--ks", "2,3", "--leaves", "4", "--max-rounds", "20", "--cell-components", "3",
                     "--min-leaf", "5"]}  # fmt: skip


def fit_args(model: str, trained_on: tuple[str, Path], out: Path, *more: str) -> list[str]:
    dataset, cache = trained_on
    return ["fit", "--model", model, "--drug-encoder", "morgan", "--omics", "methylation", "--dataset", dataset,
            "--cache-dir", str(cache), "--precision", "fp32", "--quiet", "--out", str(out), *SMALL.get(model, []),
            *more]  # fmt: skip


@pytest.mark.parametrize("model", ["stacked", "neighbours", "trees", "fused"])
def test_fit_then_predict_new_drugs_with_any_model(model: str, trained_on: tuple[str, Path], tmp_path: Path) -> None:
    runner, cli = CliRunner(), make_cli()
    result = runner.invoke(cli, fit_args(model, trained_on, tmp_path / "m", "--seeds", "0,1"), catch_exceptions=False)
    assert result.exit_code == 0 and "saved" in result.output
    assert any(ref.owner == (tmp_path / "m").resolve() for ref in iter_model_refs(trained_on[1]))  # kept from gc
    card = (tmp_path / "m" / "card.md").read_text()
    engine = model == "fused"  # the card lists the engine's settings only for a model the engine trained
    assert ("train config:" in card) == engine and ("the engine's settings" in card) != engine
    NEW.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "p.csv"
    args = [
        "predict",
        "--model",
        str(tmp_path / "m"),
        "--drugs",
        str(tmp_path / "new.csv"),
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]  # new drugs embedded here: the shared training cache stays as is
    result = runner.invoke(cli, [*args, "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"of model {model!r} (2 members)" in result.output
    assert ("note:" in result.output) == (model != BEST_FOR_NEW_DRUGS)  # the benchmark's best for new drugs is named
    unannotated = "warning: 2 new drug(s) have no" in result.output  # NEW gives no targets or target_pathway
    assert unannotated == (model != "fused")  # the models that read them say they predict from the embedding alone
    frame = pd.read_csv(out, dtype={"drug_id": str, "cell_id": str})
    cells = json.loads((tmp_path / "m" / "members" / "seed0" / "model.json").read_text())["cell_ids"]
    assert len(frame) == 2 * len(cells) and set(frame["cell_id"]) == set(cells)
    assert np.isfinite(frame["pred_ln_ic50"]).all() and set(frame["model"]) == {model}
    assert frame["cell_name"].notna().all() and frame["tcga_type"].notna().any()  # names beside the DepMap ids
    assert frame["pred_sd"].notna().all()  # two members: their sd


def test_the_best_model_for_new_drugs_is_the_default_for_fit_and_refuses_new_cell_lines(
    trained_on: tuple[str, Path], tmp_path: Path
) -> None:
    from fused_cache import datasets

    assert BEST_FOR_NEW_DRUGS == "stacked"  # docs/science.md section 6: it beats neighbours on three split seeds
    args = fit_args(BEST_FOR_NEW_DRUGS, trained_on, tmp_path / "m")
    args.remove("--model"), args.remove(BEST_FOR_NEW_DRUGS)
    CliRunner().invoke(make_cli(), args, catch_exceptions=False)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["model"] == "stacked"
    assert "is the model the leave-one-drug-out benchmark shows best" in (tmp_path / "m" / "card.md").read_text()
    model = load_model(tmp_path / "m")
    model.predict(drugs=NEW, cache_dir=tmp_path / "cache")
    assert "have no targets or target_pathway (first: 'caffeine')" in model.report["unannotated"]
    model.predict(drugs=NEW.assign(targets=["EGFR", ""], target_pathway=["", "Other"]), cache_dir=tmp_path / "cache")
    assert "unannotated" not in model.report  # one annotation of those it reads is enough
    ds = datasets.load(trained_on[0])
    both = ds.omics["expression"].index.intersection(ds.omics["methylation"].index)[:2]
    cells = {name: ds.omics[name].loc[both].rename(index=lambda c: f"new-{c}").reset_index()
             for name in ("expression", "methylation")}  # fmt: skip
    with pytest.raises(ValueError, match="new-.* is not one the model was fitted on: stacked predicts"):
        load_model(tmp_path / "m").predict(drugs=NEW, cells=cells, cache_dir=tmp_path / "cache")


def test_matching_fits_and_predicts_from_a_pilot_only(trained_on: tuple[str, Path], tmp_path: Path) -> None:
    CliRunner().invoke(make_cli(), fit_args("matching", trained_on, tmp_path / "m"), catch_exceptions=False)
    model = load_model(tmp_path / "m")
    with pytest.raises(ValueError, match="has 0 pilot line"):
        model.predict(drugs=NEW, cache_dir=tmp_path / "cache")
    responses = pd.read_parquet(tmp_path / "m" / "responses.parquet")
    twin = responses[responses["drug_id"] == responses["drug_id"].iloc[0]].drop_duplicates("cell_id").head(6)
    pilot = pd.concat([twin.assign(drug_id=d) for d in NEW["drug_id"]])
    frame = model.predict(drugs=NEW, pilot=pilot, cache_dir=tmp_path / "cache")
    assert frame.groupby("drug_id")["in_pilot"].sum().tolist() == [6, 6]
    assert np.isfinite(frame["pred_ln_ic50"]).all() and frame.loc[frame["in_pilot"], "rank_within_drug"].isna().all()


@pytest.fixture(scope="module")
def fused_model(trained_on: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fit") / "m"
    CliRunner().invoke(make_cli(), fit_args("fused", trained_on, out), catch_exceptions=False)
    return out


def damaged_copy(model: Path, tmp_path: Path, file: str, change: object) -> Path:
    copy = tmp_path / "copy"
    for f in model.rglob("*"):
        if f.is_file():
            (copy / f.relative_to(model)).parent.mkdir(parents=True, exist_ok=True)
            (copy / f.relative_to(model)).write_bytes(f.read_bytes())
    target = copy / file
    target.write_bytes(change(target.read_bytes()))
    return copy


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def edit_heads(data: bytes) -> bytes:
    info = json.loads(data)
    info["options"]["heads"] = 4  # same shapes: only the checksum can tell
    return json.dumps(info).encode()


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [("members/seed0/model.safetensors", flip_last_byte, "model.safetensors is damaged"),
     ("members/seed0/scalers.safetensors", flip_last_byte, "scalers.safetensors is damaged"),
     ("members/seed0/model.json", edit_heads, "was changed after it was saved"),
     ("members/seed0/model.json", lambda d: d[: len(d) // 2], "is not valid JSON"),
     ("model.json", lambda d: b"", "is not valid JSON"),
     ("responses.parquet", flip_last_byte, "responses.parquet is damaged")],
    ids=["weights byte", "scalers byte", "edited option", "truncated member json", "empty json", "responses byte"],
)  # fmt: skip
def test_a_saved_model_changed_on_disk_is_refused(
    fused_model: Path, tmp_path: Path, file: str, change: object, message: str, capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    copy = damaged_copy(fused_model, tmp_path, file, change)
    with pytest.raises(ModelDirError, match=message):
        load_model(copy)
    monkeypatch.setattr("sys.argv", ["fused-train", "predict", "--model", str(copy), "--out", str(tmp_path / "p.csv")])
    with pytest.raises(SystemExit) as exit_code:
        main()
    assert exit_code.value.code == 3 and message.split()[-1] in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


# A user's own network: a plain torch module, one pair in, one value out.


@dataclass(frozen=True)
class TinyMLPOptions:
    mlp_width: int = option(8, "Hidden width of the tiny MLP.")


class TinyMLP(nn.Module):
    """Drug vector and cell-line tokens side by side, one hidden layer: the smallest plain module."""

    Options = TinyMLPOptions

    def __init__(self, shapes: InputShapes, options: TinyMLPOptions) -> None:
        super().__init__()
        width = shapes.drug_dim + sum(shapes.cell_dims.values())
        self.net = nn.Sequential(nn.Linear(width, options.mlp_width), nn.ReLU(), nn.Linear(options.mlp_width, 1))

    def forward(self, drug: Tensor, cells: dict[str, Tensor]) -> Tensor:
        return self.net(torch.cat([drug, *cells.values()], dim=-1)).squeeze(-1)  # (B,)


def test_a_plain_module_trains_across_folds_and_reports(
    trained_on: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.MODELS, "tiny-mlp", f"{__name__}:TinyMLP")  # the one registry line
    dataset, cache = trained_on
    cli, runner = make_cli(), CliRunner()
    assert "Hidden width of the tiny MLP" in runner.invoke(cli, ["run", "--help"]).output
    args = ["run", "--model", "tiny-mlp", "--split", "lodo", "--drug-encoder", "morgan", "--dataset", dataset,
            "--cache-dir", str(cache), "--epochs", "3", "--fold", "0-3", "--slots", "4", "--precision", "fp32",
            "--quiet", "--out", str(tmp_path / "run")]  # fmt: skip
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert "trained 4 folds now" in result.output
    result = runner.invoke(cli, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert any("| tiny-mlp " in row for row in (tmp_path / "report" / "report.md").read_text().splitlines())


def test_a_plain_module_gives_the_same_folds_batched_as_alone(trained_on: tuple[str, Path]) -> None:
    """Four LODO folds in one batched model equal each fold trained alone (float rounding apart)."""
    registry.MODELS["tiny-mlp"] = f"{__name__}:TinyMLP"
    try:
        spec = RunSpec(model="tiny-mlp", drug_encoder="morgan", dataset=trained_on[0], split="lodo")
        spec = RunSpec(**{**spec.__dict__, "train": spec.train.__class__(max_epochs=3, precision="fp32",
                                                                         select_by="rmse")})  # fmt: skip
        inputs = load_run_inputs(spec, trained_on[1])
        folds = folds_of(spec, inputs)[:4]
        batched = {r.fold.name: r for r in spec.trainer(inputs, Execution(slots=4)).run(folds, quiet=True)}
        for fold in folds:
            (alone,) = spec.trainer(inputs, Execution(slots=1)).run([fold], quiet=True)
            assert alone.best_epoch == batched[fold.name].best_epoch
            np.testing.assert_allclose(alone.test_pred, batched[fold.name].test_pred, rtol=1e-4, atol=1e-5)
    finally:
        del registry.MODELS["tiny-mlp"]


def test_the_adapter_computes_the_modules_own_forward() -> None:
    shapes = InputShapes(drug_dim=5, drug_kind="dense", cell_dims={"expression": 3})
    slots = module_slots(TinyMLP)(2, shapes, TinyMLPOptions())
    for slot, seed in enumerate((11, 12)):
        slots.reset_slot(slot, seed)
    drug, cells = torch.randn(2, 4, 5), {"expression": torch.randn(2, 6, 3)}
    out = slots(drug, None, cells)  # (slots, drugs, cells)
    for slot, seed in enumerate((11, 12)):
        torch.manual_seed(seed)
        plain = TinyMLP(shapes, TinyMLPOptions())  # the same initialisation, drawn from the same seed
        d = drug[slot][:, None].expand(4, 6, 5).reshape(-1, 5)
        c = {"expression": cells["expression"][slot][None].expand(4, 6, 3).reshape(-1, 3)}
        torch.testing.assert_close(out[slot], plain(d, c).reshape(4, 6))


def test_a_module_with_buffers_is_refused() -> None:
    class WithNorm(TinyMLP):
        def __init__(self, shapes: InputShapes, options: TinyMLPOptions) -> None:
            super().__init__(shapes, options)
            self.norm = nn.BatchNorm1d(4)

    with pytest.raises(ValueError, match="has buffers"):
        module_slots(WithNorm)(1, InputShapes(4, "dense", {}), TinyMLPOptions())
