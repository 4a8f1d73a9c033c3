"""Issue #25, items 5, 8, 9 (its file-system cases) and 10 (checksums skipped): the last stage never gives a silent
wrong result, never replaces what it was not asked to replace, and meets a file system that refuses a write with one
line naming the path (exit 3) and nothing half-written.

Read-only folders and full disks are real: as root, a tmpfs mounted read-only or filled up; otherwise a folder without
write permission (read-only) or a skip (a full disk needs a mount)."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from helpers import run_console, tiny_spec

from fused_cache import build_store, datasets
from fused_cache.cli import main as cache_main
from fused_cache.stores import SKIP_CHECKSUMS, gc, iter_model_refs, iter_refs, iter_stores, protect, ref_path
from fused_train.cli import main as train_main
from fused_train.engine import ConfigError, NonFiniteTraining, TrainConfig
from fused_train.fit import fit
from fused_train.report import WRITTEN
from fused_train.runs import CUT, finished, predictions

# Fixtures: a small dataset with its stores, a fitted model, and file systems that refuse writes.


@pytest.fixture(scope="module")
def model(tiny_built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder, cache = tiny_built
    out = tmp_path_factory.mktemp("model") / "model"
    return fit(tiny_spec(str(folder), epochs=1), out, cache_dir=cache, quiet=True, command="test")


def unreference(cache: Path, store: Path) -> None:
    """Delete every dataset ref to ``store``, as when each of its datasets changed and was built again."""
    for ref in iter_refs(cache):
        if ref.store == store:
            ref_path(cache, ref.key, ref.entity, ref.encoder).unlink()


def fused_train(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    return run_console(train_main, "fused-train", capsys, *args)


def fused_cache(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    return run_console(cache_main, "fused-cache", capsys, *args)


def run_args(folder: Path, cache: Path, out: Path, fold: str = "0", *more: str) -> list[str]:
    return ["run", "--drug-encoder", "morgan", "--omics", "methylation", "--dataset", str(folder), "--cache-dir",
            str(cache), "--epochs", "1", "--width", "16", "--heads", "2", "--proj", "8", "--hidden", "16,8",
            "--precision", "fp32", "--quiet", "--fold", fold, "--out", str(out), *more]  # fmt: skip


def one_line_error(output: str) -> str:
    """The error line of a refused command, after checking it is the only line about the error (no traceback)."""
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    return errors[0]


def _mount(*args: str) -> bool:
    return os.geteuid() == 0 and subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def read_only(folder: Path, content: Path | None = None) -> Iterator[Path]:
    """``folder`` (with a copy of ``content``) where nothing can be written: a tmpfs remounted read-only as root,
    else a folder without write permission."""
    folder.mkdir(parents=True)
    if not _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)):
        if os.geteuid() == 0:
            pytest.skip("root cannot mount a tmpfs here, and permissions do not stop root")
        if content is not None:
            shutil.copytree(content, folder, dirs_exist_ok=True)
        folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
        for path in folders:
            path.chmod(0o555)
        yield folder
        for path in folders:
            path.chmod(0o755)
        return
    try:
        if content is not None:
            shutil.copytree(content, folder, dirs_exist_ok=True)
        assert _mount("-o", "remount,ro", str(folder))
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@contextmanager
def full_disk(folder: Path) -> Iterator[Path]:
    """``folder`` on a small tmpfs that a filler file has filled up; the filler is deleted when the block ends."""
    folder.mkdir(parents=True)
    if not _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)):
        pytest.skip("a full disk needs a tmpfs mount (run as root)")
    try:
        with pytest.raises(OSError) as err, open(folder / "filler", "wb") as filler:  # noqa: PT012
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        assert err.value.errno == errno.ENOSPC
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# Item 5: a diverging fold stops with a clear error and is not written as finished; --lr is checked.


def test_a_diverging_run_stops_naming_the_fold_and_epoch_and_finishes_nothing(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    out = tmp_path / "run"
    code, output = fused_train(capsys, *run_args(folder, cache, out, "0", "--lr", "1e30"))
    line = one_line_error(output)
    assert code == 3 and "fold lodo-seed0-" in line and "diverged in epoch 0" in line and "smaller --lr" in line
    assert finished(out) == set()
    code, output = fused_train(capsys, *run_args(folder, cache, out, "0", "--lr", "1e30"))  # not skipped as finished
    assert code == 3 and "diverged in epoch 0" in one_line_error(output)


def test_a_grid_records_a_diverging_combination_and_ranks_the_others(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    args = run_args(folder, cache, tmp_path / "grid", "0", "--lr", "1e30", "--lr", "0.001")
    args[0] = "grid"
    code, output = fused_train(capsys, *args)
    assert code == 0 and "lr1e+30-width16-heads2-proj8-hidden16_8: fold lodo-seed0-" in output
    assert "diverged in epoch 0" in output
    table = pd.read_csv(tmp_path / "grid" / "grid.csv")
    assert list(table["lr"]) == [0.001, 1e30] and math.isnan(table["val_drug_pcc"][1])
    assert table["run"][1].endswith("(diverged)") and 'best by validation per-drug PCC: {"lr": 0.001' in output
    args = [a if a != "0.001" else "1e29" for a in args]
    code, output = fused_train(capsys, *args)
    assert code == 3 and "every combination of the grid diverged" in output.splitlines()[-1]


@pytest.mark.parametrize("lr", ["nan", "inf", "0", "-1e-3"])
def test_lr_must_be_a_finite_positive_number(
    lr: str, tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError, match="--lr must be a finite number > 0"):
        TrainConfig(lr=float(lr))
    folder, cache = tiny_copy
    code, output = fused_train(capsys, *run_args(folder, cache, tmp_path / "run", "0", "--lr", lr))
    assert code == 2 and "--lr must be a finite number > 0" in one_line_error(output)
    assert not (tmp_path / "run").exists()


def test_fit_stops_on_a_diverging_member_and_leaves_no_model(tiny_copy: tuple[Path, Path], tmp_path: Path) -> None:
    folder, cache = tiny_copy
    spec = tiny_spec(str(folder), epochs=2)
    spec = type(spec).from_json(spec.to_json() | {"train": spec.to_json()["train"] | {"lr": 1e30}})
    with pytest.raises(NonFiniteTraining, match="fold fit-seed0 diverged in epoch 0.*smaller --lr"):
        fit(spec, tmp_path / "model", cache_dir=cache, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "small"]  # no model, no temporary folder


def test_report_on_an_old_all_nan_run_is_one_line(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    run = tmp_path / "run"
    assert fused_train(capsys, *run_args(folder, cache, run))[0] == 0
    (fold_file,) = (run / "folds").glob("*.parquet")  # as fused wrote a diverged fold before it refused them
    pd.read_parquet(fold_file).assign(pred_fused=math.nan).to_parquet(fold_file, index=False)
    code, output = fused_train(capsys, "report", str(run), "--out", str(tmp_path / "report"))
    line = one_line_error(output)
    assert code == 3 and str(fold_file) in line and "predictions of fused that are not finite" in line
    assert not (tmp_path / "report").exists()


# Item 8: nothing replaces an existing file or a dataset's tables unasked; saved models protect their stores.


def test_export_replaces_an_existing_file_only_with_force(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    target = tmp_path / "mine.csv"
    target.write_text("precious\n")
    args = ["export", "morgan", "--to", str(target), "--dataset", str(folder), "--cache-dir", str(cache)]
    code, output = fused_cache(capsys, *args)
    assert code == 3 and f"--to {target} exists; pass --force" in one_line_error(output)
    assert target.read_text() == "precious\n"
    assert fused_cache(capsys, *args, "--force")[0] == 0
    assert pd.read_csv(target).shape == (6, 2049)


def test_embed_replaces_out_only_with_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mols.csv").write_text("drug_id,smiles\nethanol,CCO\n")
    out = tmp_path / "emb.csv"
    out.write_text("precious\n")
    args = ["embed", "--encoder", "morgan", "--smiles", str(tmp_path / "mols.csv"), "--out", str(out), "--cache-dir",
            str(tmp_path / "cache"), "--quiet"]  # fmt: skip
    code, output = fused_cache(capsys, *args)
    assert code == 3 and f"--out {out} exists; pass --force" in one_line_error(output)
    assert out.read_text() == "precious\n" and not (tmp_path / "cache").exists()  # refused before embedding
    assert fused_cache(capsys, *args, "--force")[0] == 0
    assert list(pd.read_csv(out)["drug_id"]) == ["ethanol"]


@pytest.mark.parametrize("table", ["drugs.parquet", "pairs.csv", "omics_expression.csv"])
def test_export_never_writes_a_dataset_table_even_with_force(
    table: str, tiny_copy: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, output = fused_cache(capsys, "export", "morgan", "--to", str(folder / table), "--force", "--dataset",
                               str(folder), "--cache-dir", str(cache))  # fmt: skip
    assert code == 3 and "is an input table of the dataset" in one_line_error(output)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_export_to_a_directory_is_refused(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    (tmp_path / "emb.csv").mkdir()
    code, output = fused_cache(capsys, "export", "morgan", "--to", str(tmp_path / "emb.csv"), "--dataset",
                               str(folder), "--cache-dir", str(cache))  # fmt: skip
    assert code == 3 and "emb.csv is a directory; name a file in it" in one_line_error(output)


def test_export_drevalpy_refuses_an_unrelated_cell_line_names_csv(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    out = tmp_path / "drevalpy"
    out.mkdir()
    (out / "cell_line_names.csv").write_text("name,colour\nA,red\n")
    code, output = fused_cache(capsys, "export", "expression", "--to", "drevalpy", str(out), "--dataset",
                               str(folder), "--cache-dir", str(cache))  # fmt: skip
    line = one_line_error(output)
    assert code == 3 and "cell_line_names.csv exists but is not drevalpy's id table" in line and "colour" in line
    assert sorted(p.name for p in out.iterdir()) == ["cell_line_names.csv"]  # no feature file without its ids


def test_export_drevalpy_into_a_dataset_directory_is_refused(
    tiny_copy: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    before = sorted(p.name for p in folder.iterdir())
    code, output = fused_cache(capsys, "export", "morgan", "--to", "drevalpy", str(folder), "--force", "--dataset",
                               str(folder), "--cache-dir", str(cache))  # fmt: skip
    assert code == 3 and "is a dataset directory" in one_line_error(output)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_export_drevalpy_replaces_its_feature_file_only_with_force(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    args = ["export", "expression", "--to", "drevalpy", str(tmp_path / "d"), "--dataset", str(folder), "--cache-dir",
            str(cache)]  # fmt: skip
    assert fused_cache(capsys, *args)[0] == 0
    code, output = fused_cache(capsys, *args)
    assert code == 3 and "already holds gene_expression.csv; pass --force" in one_line_error(output)
    assert fused_cache(capsys, *args, "--force")[0] == 0


def test_predict_replaces_out_only_with_force_and_never_a_dataset_table(
    model: Path, tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = tiny_copy
    out = tmp_path / "predictions.csv"
    out.write_text("precious\n")
    code, output = fused_train(capsys, "predict", "--model", str(model), "--out", str(out), "--quiet", "--top", "0")
    assert code == 3 and "exists; pass --force" in one_line_error(output) and out.read_text() == "precious\n"
    assert fused_train(capsys, "predict", "--model", str(model), "--out", str(out), "--force", "--top", "0")[0] == 0
    assert len(pd.read_csv(out)) == 6 * 12
    pairs = (folder / "pairs.parquet").read_bytes()
    out = folder / "pairs.csv"  # would be a second pairs table, which makes the dataset unreadable
    code, output = fused_train(capsys, "predict", "--model", str(model), "--out", str(out), "--force", "--top", "0")
    assert code == 3 and "is an input table of the dataset" in one_line_error(output)
    assert not out.exists() and (folder / "pairs.parquet").read_bytes() == pairs


def test_splits_export_replaces_files_only_with_force_and_never_in_a_dataset_directory(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    args = ["splits", "--drug-encoder", "morgan", "--dataset", str(folder), "--cache-dir", str(cache), "--export"]
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "pairs.csv").write_text("precious\n")
    code, output = fused_train(capsys, *args, str(tmp_path / "s"))
    assert code == 3 and "already holds pairs.csv; pass --force" in one_line_error(output)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["pairs.csv"]
    assert fused_train(capsys, *args, str(tmp_path / "s"), "--force")[0] == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, output = fused_train(capsys, *args, str(folder), "--force")
    assert code == 3 and "is a dataset directory" in one_line_error(output)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_report_refreshes_its_own_folder_but_replaces_no_other_file_unasked(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    run, report = tmp_path / "run", tmp_path / "report"
    assert fused_train(capsys, *run_args(folder, cache, run))[0] == 0
    assert fused_train(capsys, "report", str(run), "--out", str(report), "--svg")[0] == 0
    listed = json.loads((report / WRITTEN).read_text())["files"]
    assert "report.md" in listed and "predicted_vs_observed.svg" in listed
    (report / "notes.txt").write_text("mine\n")
    assert fused_train(capsys, "report", str(run), "--out", str(report))[0] == 0  # refreshed: no SVGs any more
    assert not (report / "predicted_vs_observed.svg").exists() and (report / "notes.txt").read_text() == "mine\n"

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "report.md").write_text("mine\n")
    code, output = fused_train(capsys, "report", str(run), "--out", str(theirs))
    assert code == 3 and "holds report.md, which no earlier report wrote" in one_line_error(output)
    assert sorted(p.name for p in theirs.iterdir()) == ["report.md"] and (theirs / "report.md").read_text() == "mine\n"
    assert fused_train(capsys, "report", str(run), "--out", str(theirs), "--force")[0] == 0
    assert (theirs / "report.md").read_text() != "mine\n"


def test_gc_keeps_the_stores_of_saved_models_until_their_refs_are_pruned(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, cache = tiny_copy
    morgan = next(p for p in iter_stores(cache) if p.parent.name == "morgan")
    for other in iter_model_refs(cache):  # models other tests fitted on this shared cache: not this test's subject
        other.path.unlink()
    owner = tmp_path / "my-model"
    owner.mkdir()
    protect(cache, [morgan], owner)
    unreference(cache, morgan)
    assert morgan not in gc(cache) and morgan.exists()
    assert f"model {owner.resolve()}" in fused_cache(capsys, "list", "--cache-dir", str(cache))[1]
    shutil.rmtree(owner)
    code, output = fused_cache(capsys, "gc", "--cache-dir", str(cache))
    assert code == 0 and morgan.exists() and f"kept for a model that no longer exists: {owner}" in output
    code, output = fused_cache(capsys, "gc", "--cache-dir", str(cache), "--prune-model-refs")
    assert code == 0 and f"removed {morgan}" in output and not morgan.exists()
    assert list(iter_model_refs(cache)) == []


def test_a_run_that_saves_models_protects_its_stores(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    for other in iter_model_refs(cache):  # models other tests fitted on this shared cache: not this test's subject
        other.path.unlink()
    run = tmp_path / "run"
    assert fused_train(capsys, *run_args(folder, cache, run, "0", "--save-models"))[0] == 0
    (ref,) = iter_model_refs(cache)
    assert ref.owner == (run / "models").resolve()
    recorded = json.loads((run / "provenance.json").read_text())["store_paths"]
    assert sorted(ref.stores) == sorted(Path(p) for p in recorded.values())
    for store in ref.stores:
        unreference(cache, store)
    assert gc(cache) == [] and all(store.exists() for store in ref.stores)
    shutil.rmtree(run)
    assert sorted(gc(cache, prune_model_refs=True)) == sorted([ref.path, *ref.stores])


def test_a_run_saving_models_from_a_read_only_cache_trains_and_says_they_are_unprotected(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    with read_only(tmp_path / "ro", content=cache) as ro:
        code, output = fused_train(capsys, *run_args(folder, ro, tmp_path / "run", "0", "--save-models"))
        assert code == 0, output
    assert "the saved models' stores are not registered against gc" in (tmp_path / "run" / "run.log").read_text()


# Item 9: file systems that refuse writes, damaged fold files, bad options, long fold names, foreign files.


WRITERS = ["build", "run", "fit", "predict", "export", "splits", "report"]


@pytest.mark.parametrize("command", WRITERS)
def test_an_unwritable_output_is_one_line_naming_it(
    command: str, tiny_copy: tuple[Path, Path], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    run = tmp_path / "run"
    if command == "report":
        assert fused_train(capsys, *run_args(folder, cache, run))[0] == 0
    with read_only(tmp_path / "ro") as ro:
        data = ["--dataset", str(folder), "--cache-dir", str(cache)]
        tiny = ["--drug-encoder", "morgan", "--omics", "methylation", *data, "--epochs", "1", "--width", "16",
                "--heads", "2", "--proj", "8", "--hidden", "16,8", "--quiet"]  # fmt: skip
        tool, args = {
            "build": (fused_cache, ["build", "--encoder", "morgan", "--dataset", str(folder), "--cache-dir", str(ro)]),
            "run": (fused_train, run_args(folder, cache, ro / "run")),
            "fit": (fused_train, ["fit", "--model", "fused", *tiny, "--out", str(ro / "model")]),
            "predict": (fused_train, ["predict", "--model", str(model), "--out", str(ro / "p.csv")]),
            "export": (fused_cache, ["export", "morgan", "--to", str(ro / "e.csv"), *data]),
            "splits": (fused_train, ["splits", "--drug-encoder", "morgan", *data, "--export", str(ro / "s")]),
            "report": (fused_train, ["report", str(run), "--out", str(ro / "report")]),
        }[command]
        code, output = tool(capsys, *args)
        line = one_line_error(output)
        assert code == 3 and str(ro) in line and ("Read-only file system" in line or "Permission denied" in line)
        assert list(ro.iterdir()) == []


def test_gc_on_a_read_only_cache_is_one_line(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, cache = tiny_copy
    with read_only(tmp_path / "ro", content=cache) as ro:
        before = sorted(map(str, ro.rglob("*")))
        code, output = fused_cache(capsys, "gc", "--cache-dir", str(ro))
        line = one_line_error(output)
        assert code == 3 and str(ro) in line and ("Read-only file system" in line or "Permission denied" in line)
        assert sorted(map(str, ro.rglob("*"))) == before


@pytest.mark.parametrize("command", ["build", "run", "predict"])
def test_a_full_disk_is_one_line_and_a_rerun_after_freeing_space_works(
    command: str, tiny_copy: tuple[Path, Path], model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    with full_disk(tmp_path / "full") as full:
        tool, args = {
            "build": (fused_cache, ["build", "--encoder", "morgan", "--dataset", str(folder), "--cache-dir",
                                    str(full / "cache")]),
            "run": (fused_train, run_args(folder, cache, full / "run")),
            "predict": (fused_train, ["predict", "--model", str(model), "--out", str(full / "p.parquet")]),
        }[command]  # fmt: skip
        code, output = tool(capsys, *args)
        line = one_line_error(output)
        assert code == 3 and str(full) in line and "No space left on device" in line and "free space" in line
        assert list(iter_stores(full / "cache")) == [] and finished(full / "run") == set()
        assert not (full / "p.parquet").exists()
        (full / "filler").unlink()
        code, output = tool(capsys, *args)
        assert code == 0, output


def test_a_truncated_fold_file_in_report_is_named(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    run = tmp_path / "run"
    assert fused_train(capsys, *run_args(folder, cache, run, "0-1"))[0] == 0
    damaged = sorted((run / "folds").glob("*.parquet"))[0]
    damaged.write_bytes(damaged.read_bytes()[:300])
    code, output = fused_train(capsys, "report", str(run), "--out", str(tmp_path / "report"))
    line = one_line_error(output)
    assert code == 3 and f"fold file {damaged} cannot be read" in line and "delete it" in line
    with pytest.raises(ValueError, match="cannot be read"):
        predictions(run)


def test_a_truncated_fold_file_stops_a_resuming_run(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    run = tmp_path / "run"
    assert fused_train(capsys, *run_args(folder, cache, run, "0"))[0] == 0
    (damaged,) = (run / "folds").glob("*.parquet")
    damaged.write_bytes(damaged.read_bytes()[:300])
    code, output = fused_train(capsys, *run_args(folder, cache, run, "0-1"))
    line = one_line_error(output)
    assert code == 3 and f"fold file {damaged} cannot be read" in line
    assert len(list((run / "folds").glob("*.parquet"))) == 1  # nothing trained around the damage
    damaged.unlink()
    code, output = fused_train(capsys, *run_args(folder, cache, run, "0-1"))
    assert code == 0 and "trained 2 folds now" in output


@pytest.mark.parametrize("command", ["run", "grid"])
def test_a_zero_width_is_a_usage_error(
    command: str, tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tiny_copy
    args = run_args(folder, cache, tmp_path / "run")
    args[0], args[args.index("--hidden") + 1] = command, "16,0"
    code, output = fused_train(capsys, *args)
    assert code == 2 and "expected comma-separated positive integers, got '16,0'" in output
    assert "Traceback" not in output and not (tmp_path / "run").exists()


def test_a_300_character_drug_id_in_lodo(
    tiny_built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, cache = tmp_path / "small", tmp_path / "cache"
    shutil.copytree(tiny_built[0], folder)
    drugs = pd.read_parquet(folder / "drugs.parquet")
    old, new = drugs["drug_id"][0], "D" * 300
    drugs.assign(drug_id=drugs["drug_id"].replace(old, new)).to_parquet(folder / "drugs.parquet", index=False)
    pairs = pd.read_parquet(folder / "pairs.parquet")
    pairs.assign(drug_id=pairs["drug_id"].replace(old, new)).to_parquet(folder / "pairs.parquet", index=False)
    for encoder in ("morgan", "expression", "methylation"):
        build_store(datasets.load(str(folder)), encoder, cache, quiet=True)
    run = tmp_path / "run"
    code, output = fused_train(capsys, *run_args(folder, cache, run, "all"))
    assert code == 0 and "trained 6 folds now" in output, output
    assert f"lodo-seed0-{new}" in finished(run) and len(finished(run)) == 6
    (cut,) = [p for p in (run / "folds").glob("*.parquet") if CUT in p.name]
    assert cut.name.startswith("lodo-seed0-DDDD") and len(cut.name) < 255
    assert set(pd.read_parquet(cut)["drug_id"]) == {new}
    code, output = fused_train(capsys, *run_args(folder, cache, run, "all"))
    assert code == 0 and "trained 0 folds now" in output


# Item 10: FUSED_SKIP_CHECKSUMS=1 is recorded in the run and said by run and report.


def test_skipped_checksums_are_recorded_and_reported(
    tiny_copy: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, cache = tiny_copy
    run = tmp_path / "run"
    assert fused_train(capsys, *run_args(folder, cache, run, "0"))[0] == 0
    assert json.loads((run / "provenance.json").read_text())["stores_verified"] is True
    monkeypatch.setenv(SKIP_CHECKSUMS, "1")
    code, output = fused_train(capsys, *run_args(folder, cache, run, "0-1"))  # a resume without checksums
    assert code == 0 and "the stores were not verified" in output
    assert json.loads((run / "provenance.json").read_text())["stores_verified"] is False
    monkeypatch.delenv(SKIP_CHECKSUMS)
    code, output = fused_train(capsys, "report", str(run), "--out", str(tmp_path / "report"))
    assert code == 0 and f"warning: {run}: the stores were not verified" in output
