"""Predict ln IC50 with saved models: new drugs embedded through fused-cache, new cell lines from omics tables.

``load_model(DIR)`` reads ``fused-train fit``'s output (``members/<seed>/``, an ensemble) or one saved fold model
(a run's ``models/<fold>/``). Every input is checked against what the model was trained on:

- drugs (``drug_id``, ``smiles``) are validated and embedded by the model's drug encoder through the cache
  (``fused_cache.build.build_store``: rows of any store with the same fingerprint, id and SMILES are reused, only
  unseen drugs are embedded); an encoder whose fingerprint differs from the model's is refused;
- cell lines default to the model's own, read from the stores it was trained on (checked by version); new ones come
  as omics tables that must cover the model's gene list per token. Missing genes are an error that lists them: no
  imputation happens, because a zero or a mean is not a measurement. Extra columns are ignored (and counted).

The embedding code is imported inside ``predict``, so ``import fused_train`` never loads an encoder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fused_cache.datasets import DRUG_ANNOTATIONS, DatasetError, annotation_sets
from fused_cache.stores import Store
from fused_cache.tables import (
    check_file,
    check_ids,
    find_tables,
    ids_as_text,
    no_repeated_columns,
    omics_modality,
    read_table,
    table_stem,
)
from fused_train.annotate import annotate_cells
from fused_train.data import _dense, _drug_features
from fused_train.models.base import Fitted, PredictError, Query
from fused_train.models.registry import BEST_FOR_NEW_DRUGS
from fused_train.pilot import DRUGS, check_pilot, pilot_predictions
from fused_train.saved import ModelDirError, load_fitted, read_info

TableLike = pd.DataFrame | str | Path
OUT_FORMATS = (".csv", ".parquet")


def load_model(folder: str | Path, device: str = "cpu") -> TrainedModel:
    """The saved model (ensemble or single fold model) in ``folder``, every file checked (``saved.read_info``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelDirError(f"no model directory at {folder}")
    info = read_info(folder)
    if info.get("kind") == "ensemble":
        members = [load_fitted(folder / m["dir"], device) for m in info["members"]]
    else:
        members = [load_fitted(folder, device)]
    return TrainedModel(folder, info, members, device)


class TrainedModel:
    """Saved models of one configuration (all trained on the same stores); predictions are their mean and sd."""

    def __init__(
        self, folder: Path, info: dict[str, Any], members: list[tuple[Fitted, dict[str, Any]]], device: str
    ) -> None:
        self.folder, self.info, self.device = folder, info, device
        self.members = [fitted for fitted, _ in members]
        first = members[0][1]
        self.member_info: list[dict[str, Any]] = [i for _, i in members]
        self.stores: dict[str, Any] = first["stores"]
        self.model: str = first["model"]
        self.report: dict[str, Any] = {}
        """What the last ``predict`` did: drugs embedded and reused, extra omics columns ignored, new drugs."""

    def __repr__(self) -> str:
        return f"TrainedModel({self.model}, {len(self.members)} members, {self.folder})"

    def predict(
        self, drugs: TableLike | None = None, cells: Mapping[str, TableLike] | str | Path | None = None,
        cache_dir: str | Path | None = None, quiet: bool = True, pilot: TableLike | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """ln IC50 of every (drug, cell line): ``drug_id, cell_id, cell_name, tcga_type, pred_ln_ic50, pred_sd,
        n_members, model, rank_within_drug`` (1 = most sensitive, the lowest predicted ln IC50).

        ``drugs``: a table or file with ``drug_id`` and ``smiles`` (+ optional ``targets``, ``target_pathway``;
        default: the model's training drugs); ``cells``: {modality: omics table or file}, or a directory of
        ``omics_<modality>.csv`` files (default: the model's training cell lines); ``cache_dir``: where drugs are
        embedded (default: the cache the model's drug store is in). ``pilot``: rows ``drug_id, cell_id, ln_ic50``
        of new drugs screened on a few of the model's cell lines; those drugs are predicted by ``matching`` from
        the pilot (``predictor`` says which predicted a row; ``model_ln_ic50`` keeps the model's own prediction where
        it has one, ``in_pilot`` flags the pilot lines, which the rank leaves out: it is the order in which to test
        the others).
        """
        self.report = {}
        drug_ids, drug, annotations = self._drugs(drugs, cache_dir, quiet)
        cell_ids, cell_x = self._cells(cells)
        checked = None
        if pilot is not None:
            if drugs is None:
                raise PredictError("--pilot needs --drugs: the new drugs (drug_id, smiles) its rows belong to")
            checked = check_pilot(_read_table(pilot, "pilot"), drug_ids, cell_ids)
            known = set(self.member_info[0]["drug_ids"]) & set(checked["drug_id"])
            if known:
                raise PredictError(f"pilot: drug {sorted(known)[0]!r} is one the model was trained on; a pilot is "
                                   "for new drugs")  # fmt: skip
        new = sorted(set(drug_ids) - set(self.member_info[0]["drug_ids"]))
        self.report["new_drugs"] = len(new)
        self._check_annotations(new, drug_ids, annotations)
        reads_pilot = self.members[0].reads_pilot
        if new and self.model != BEST_FOR_NEW_DRUGS and not reads_pilot:
            self.report["note"] = (f"{len(new)} drug(s) are new to this {self.model!r} model; for new drugs the "
                                   f"leave-one-drug-out benchmark's best model is {BEST_FOR_NEW_DRUGS!r} "
                                   f"(fused-train fit --model {BEST_FOR_NEW_DRUGS})")  # fmt: skip
        query = Query(drug_ids, drug, cell_ids, cell_x, annotations, None)
        if reads_pilot:  # the model predicts from the pilot alone
            frame = self._frame(self._predict(replace(query, pilot=checked)), drug_ids, cell_ids)
            frame = frame if checked is None else self._mark_pilot(frame, checked, cell_ids, self.model)
        else:
            frame = self._frame(self._predict(query), drug_ids, cell_ids)
            frame = frame if checked is None else self._with_pilot(frame, drugs, checked, cell_ids)
        return self._with_cell_names(frame)

    def _check_annotations(
        self, new: list[str], drug_ids: np.ndarray, annotations: dict[str, list[frozenset[str]]]
    ) -> None:
        """Warn (``report["unannotated"]``) when new drugs lack every annotation the model reads: it then predicts
        them from their embedding alone, a weaker prediction than the benchmark's for annotated drugs."""
        read = self.members[0].annotations
        row = {d: i for i, d in enumerate(drug_ids)}
        given = [annotations.get(c, []) for c in read]
        bare = [d for d in new if not any(sets and sets[row[d]] for sets in given)]
        if read and bare:
            self.report["unannotated"] = (
                f"{len(bare)} new drug(s) have no {' or '.join(read)} (first: {str(bare[0])!r}): {self.model!r} reads "
                f"them besides the drug's embedding and predicts these from the embedding alone; give the column(s) "
                f"{', '.join(read)} in --drugs where they are known"
            )

    def _with_cell_names(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The training dataset's ``cell_name`` and ``tcga_type`` beside the DepMap ids (blank for a new cell line);
        without them, and ``report["no_cell_names"]`` saying why, when that dataset cannot be read here any more."""
        try:
            return annotate_cells(frame, self.member_info[0]["spec"]["dataset"])
        except DatasetError as err:
            self.report["no_cell_names"] = str(err)
            return frame

    def _predict(self, query: Query) -> np.ndarray:
        """(members, drugs, cells)."""
        return np.stack([member.predict(query) for member in self.members])

    def _frame(self, preds: np.ndarray, drug_ids: np.ndarray, cell_ids: np.ndarray) -> pd.DataFrame:
        if not np.isfinite(preds).all():
            raise PredictError(f"the {self.model!r} model predicted a non-finite value; its files verified, so the "
                               "inputs are outside what it can use (report this with the command)")  # fmt: skip
        mean = preds.mean(axis=0)
        sd = preds.std(axis=0, ddof=1) if len(preds) > 1 else np.full_like(mean, np.nan)
        frame = pd.DataFrame({
            "drug_id": np.repeat(drug_ids, len(cell_ids)),
            "cell_id": np.tile(cell_ids, len(drug_ids)),
            "pred_ln_ic50": mean.ravel(),
            "pred_sd": sd.ravel(),
            "n_members": len(preds),
            "model": self.model,
        })  # fmt: skip
        frame["rank_within_drug"] = frame.groupby("drug_id")["pred_ln_ic50"].rank(method="first").astype(int)
        return frame

    def _with_pilot(self, frame: pd.DataFrame, drugs: TableLike, pilot: pd.DataFrame, cells: np.ndarray) -> Any:
        """The pilot drugs' rows predicted by matching over the training responses that fit saved."""
        seeds = [m["seed"] for m in self.info.get("members", [])] or [0]
        matched = pilot_predictions(self.folder, pilot, _drug_table(drugs), cells, seeds).set_index(
            ["drug_id", "cell_id"]
        )
        frame = frame.set_index(["drug_id", "cell_id"]).assign(predictor=self.model, in_pilot=False)
        frame["rank_within_drug"] = frame["rank_within_drug"].astype("Int64")
        frame["model_ln_ic50"] = frame["pred_ln_ic50"]
        frame = frame.join(matched[["pilot_ln_ic50", "rank_to_test"]])
        rows = matched.index
        for column in ("pred_ln_ic50", "pred_sd", "n_members", "in_pilot"):
            frame.loc[rows, column] = matched[column]
        frame.loc[rows, "predictor"] = "matching (pilot)"
        frame.loc[rows, "rank_within_drug"] = matched["rank_to_test"]
        return frame.reset_index().astype({"in_pilot": bool})

    @staticmethod
    def _mark_pilot(frame: pd.DataFrame, pilot: pd.DataFrame, cells: np.ndarray, model: str) -> pd.DataFrame:
        """A matching model's own predictions, with the pilot lines flagged and left out of the rank."""
        measured = pilot.set_index(["drug_id", "cell_id"])["ln_ic50"]
        index = pd.MultiIndex.from_frame(frame[["drug_id", "cell_id"]])
        frame["pilot_ln_ic50"] = measured.reindex(index).to_numpy()
        frame["in_pilot"] = frame["pilot_ln_ic50"].notna()
        frame["predictor"] = f"{model} (pilot)"
        frame["rank_within_drug"] = (frame["pred_ln_ic50"].where(~frame["in_pilot"]).groupby(frame["drug_id"])
                                     .rank(method="first").astype("Int64"))  # fmt: skip
        return frame

    # drugs

    def _drugs(
        self, drugs: TableLike | None, cache_dir: str | Path | None, quiet: bool
    ) -> tuple[np.ndarray, Any, dict[str, list[frozenset[str]]]]:
        record = self.stores["drug"]
        if drugs is None:
            ids = np.array(self.member_info[0]["drug_ids"], dtype=str)
            store, arrays = _recorded_store(record)
            return ids, _drug_features(store, arrays, ids), self._training_annotations(ids)
        table = _drug_table(drugs)
        from fused_cache.build import build_store  # the encoders load only here
        from fused_cache.embed import Items
        from fused_cache.encoders.base import EncoderError
        from fused_cache.encoders.registry import get_encoder
        from fused_cache.manifest import digest

        encoder = get_encoder(record["encoder"])
        fingerprint = encoder.fingerprint()
        if digest(fingerprint) != record["fingerprint_hash"]:
            changed = sorted(k for k in {**fingerprint, **record["fingerprint"]}
                             if fingerprint.get(k) != record["fingerprint"].get(k))  # fmt: skip
            raise PredictError(
                f"the {record['encoder']!r} encoder here has fingerprint {digest(fingerprint)[:16]}, but the model "
                f"was trained on fingerprint {record['fingerprint_hash'][:16]} (differs in {', '.join(changed)}); "
                "its embeddings would not be the ones the model learned from. Use the encoder version it was "
                "trained with, or refit the model."
            )
        root = Path(cache_dir) if cache_dir is not None else Path(record["path"]).parents[2]
        name = f"predict-{Path(drugs).stem}" if isinstance(drugs, (str, Path)) else "predict"
        try:
            report = build_store(Items(name, drugs=table), encoder, root, quiet=quiet)
        except EncoderError as err:
            raise PredictError(f"drugs: {err}") from err
        self.report.update(embedded=report.embedded, reused=report.reused, drug_store=str(report.store.path))
        ids = table["drug_id"].to_numpy(str)
        with report.store as store:
            return ids, _drug_features(store, store.load(), ids), annotation_sets(table, ids)

    def _training_annotations(self, ids: np.ndarray) -> dict[str, list[frozenset[str]]]:
        """The training drugs' targets and pathways, as fit saved them (none for a run's fold model)."""
        path = self.folder / DRUGS
        if not path.is_file():
            return {c: [frozenset()] * len(ids) for c in DRUG_ANNOTATIONS}
        return annotation_sets(pd.read_parquet(path).astype({"drug_id": str}), ids)

    # cells

    def _cells(self, cells: Mapping[str, TableLike] | str | Path | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        records = self.stores["cells"]
        if cells is None:
            ids = np.array(self.member_info[0]["cell_ids"], dtype=str)
            features = {}
            for name, record in records.items():
                features[name] = _dense(_recorded_store(record)[1], ids)
            return ids, features
        tables = _omics_tables(cells)
        lacking = [name for name in records if name not in tables]
        if lacking:
            raise PredictError(f"the new cell lines lack modality {lacking[0]!r} (the model uses "
                               f"{', '.join(records)}; give omics_{lacking[0]}.csv)")  # fmt: skip
        ids = tables[next(iter(records))].index.to_numpy(str)
        features, extra = {}, {}
        for name, record in records.items():
            features[name], extra[name] = _features(name, record, tables[name], ids)
        self.report["extra_columns_ignored"] = extra
        return ids, features


def _recorded_store(record: dict[str, Any]) -> tuple[Store, dict[str, np.ndarray]]:
    """A store the model was trained on and its arrays: refused if it is gone, is not the version recorded, or does
    not verify (CorruptStore)."""
    path = Path(record["path"])
    if not path.exists():
        raise ModelDirError(f"the model's {record['encoder']!r} store {path} is gone; rebuild it (fused-cache build "
                            f"--encoder {record['encoder']}, same dataset) or pass the inputs explicitly")  # fmt: skip
    store = Store(path)
    if store.version != record["version"] or store.manifest["fingerprint_hash"] != record["fingerprint_hash"]:
        store.close()
        raise ModelDirError(f"{path} is version {store.version}, but the model was trained on {record['version']}")
    with store:
        return store, store.load()


def _read_table(source: TableLike, what: str) -> pd.DataFrame:
    """A table given in Python as it is; a file read by ``fused_cache.tables`` with every column as text exactly as
    written (the callers parse what must be numbers)."""
    if isinstance(source, pd.DataFrame):
        return source
    return read_table(source, what, numeric=False)


def _drug_table(source: TableLike) -> pd.DataFrame:
    """``drug_id`` and ``smiles`` (any case), ids unique text as written, SMILES non-empty; RDKit checks the SMILES
    when embedding."""
    table = _read_table(source, "drugs")
    columns = {str(c).lower(): c for c in table.columns}
    lacking = [c for c in ("drug_id", "smiles") if c not in columns]
    if lacking:
        raise PredictError(f"drugs: no {lacking[0]!r} column (columns: {', '.join(map(str, table.columns))})")
    ids = ids_as_text(table[columns["drug_id"]], "drugs").rename("drug_id")
    check_ids(_name(source), "drugs", ids)
    out = pd.DataFrame({"drug_id": ids.to_numpy(),
                        "smiles": table[columns["smiles"]].fillna("").astype(str).str.strip()})  # fmt: skip
    for column in DRUG_ANNOTATIONS:  # optional: targets, target_pathway (used with --pilot)
        if column in columns:
            out[column] = table[columns[column]].where(table[columns[column]].notna(), "").astype(str)
    if out.empty:
        raise PredictError("drugs: the table is empty")
    empty = out["smiles"] == ""
    if empty.any():
        raise PredictError(f"drugs: row {int(np.flatnonzero(empty)[0])} has an empty smiles")
    duplicated = out["drug_id"].duplicated()
    if duplicated.any():
        raise PredictError(f"drugs: drug_id {out['drug_id'][duplicated].iloc[0]!r} appears twice")
    return out


def _omics_tables(cells: Mapping[str, TableLike] | str | Path) -> dict[str, pd.DataFrame]:
    """{modality: table indexed by cell_id} from a mapping, a directory of omics_<modality>.* files (exact names:
    ``omics_expression.old.csv`` is not one), or a comma-separated list of such files."""
    sources = dict(cells) if isinstance(cells, Mapping) else _omics_files(str(cells))
    tables = {}
    for modality, source in sources.items():
        what = f"cells ({modality})"
        if isinstance(source, pd.DataFrame):
            no_repeated_columns(list(source.columns), f"{what} table")
            first = source.columns[0]
            table = source.set_index(first) if first == "cell_id" else source
        else:
            table = read_table(source, what, ids=(0,), matrix=True)
            table = table.set_index(table.columns[0])
        ids = ids_as_text(table.index.to_series().rename("cell_id"), what)
        check_ids(_name(source), what, ids)
        table.index = pd.Index(ids.to_numpy(), name="cell_id")
        if table.index.duplicated().any():
            raise PredictError(f"cells ({modality}): cell {table.index[table.index.duplicated()][0]!r} appears twice")
        tables[modality] = table
    ids = set(next(iter(tables.values())).index)
    for modality, table in tables.items():
        other = ids.symmetric_difference(table.index)
        if other:
            raise PredictError(f"cells: cell {sorted(other)[0]!r} is not in every omics table (e.g. not in "
                               f"{modality!r}); every new cell line needs every modality the model uses")  # fmt: skip
    return tables


def _omics_files(text: str) -> dict[str, Path]:
    """{modality: file} of ``--cells``: a directory's ``omics_<modality>`` tables, or such files comma-separated."""
    folder = Path(text)
    if folder.is_dir():
        found = find_tables(folder, "cells directory", lambda stem: omics_modality(stem) is not None)
        if not found:
            raise PredictError(f"cells: {text} holds no omics_<modality>.csv (or .tsv, .parquet) files")
        return {modality: path for stem, path in found.items() if (modality := omics_modality(stem))}
    files: dict[str, Path] = {}
    for path in map(Path, text.split(",")):
        check_file(path, "cells")
        modality = omics_modality(table_stem(path.name) or "")
        if modality is None:
            raise PredictError(f"cells: {path.name} is not named omics_<modality>.csv (or .tsv, .parquet): name it "
                               "for the modality it holds, e.g. omics_expression.csv")  # fmt: skip
        if modality in files:
            raise PredictError(f"cells: {files[modality]} and {path} are both {modality!r} tables; give one")
        files[modality] = path
    return files


def _name(source: object) -> str:
    """How messages name a table: its file, or 'the table given'."""
    return str(source) if isinstance(source, (str, Path)) else "the table given"


def _features(name: str, record: dict[str, Any], table: pd.DataFrame, ids: np.ndarray) -> tuple[np.ndarray, int]:
    """The token's matrix in the model's gene order; returns it and the number of extra columns ignored."""
    genes = record["fingerprint"].get("settings", {}).get("genes")
    if genes is None:
        raise PredictError(f"cell token {name!r} is an encoder embedding, not an omics table: new cell lines for it "
                           "must be embedded first (fused-cache embed), which predict does not do yet")  # fmt: skip
    columns = set(map(str, table.columns))
    missing = [g for g in genes if g not in columns]
    if missing:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise PredictError(f"cells ({name}): {len(missing)} of the model's {len(genes)} genes are missing: {shown}. "
                           "Missing values are not imputed; give every gene")  # fmt: skip
    table = table.rename(columns=str)
    values = table.loc[ids, genes].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise PredictError(f"cells ({name}): cell {str(ids[r])!r} has no finite value for gene {str(genes[c])!r}")
    return values, len(columns) - len(genes)


def write_predictions(frame: pd.DataFrame, out: Path) -> None:
    """Write to a temporary file, then rename: an interrupted write leaves nothing under ``out``."""
    if out.suffix not in OUT_FORMATS:
        raise PredictError(f"--out must end in {' or '.join(OUT_FORMATS)}, not {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        frame.to_parquet(tmp, index=False) if out.suffix == ".parquet" else frame.to_csv(tmp, index=False)
        tmp.rename(out)
    finally:
        tmp.unlink(missing_ok=True)
