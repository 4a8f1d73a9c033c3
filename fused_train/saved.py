"""A fitted model on disk: one fold's (or one fit seed's) model, whatever its kind, and what it was made of.

A saved model is a directory::

    model.json       registry name and options, TrainConfig, RunSpec, fold, the choices made on validation rows,
                     input shapes, the drug and cell ids of its grid, per store: encoder, path, version and encoder
                     fingerprint (for omics stores that includes the gene list a new cell line must cover), the
                     sha256 of every file below, and ``checksum``, the sha256 of model.json's own content
    <the model's files>   what its ``Fitted.save`` writes (weights and scalers; a booster; standardised responses)

It is written under a temporary name and renamed into place, so a reader never sees half a model; loading checks the
checksum and every file's sha256 before it reads a value, so a flipped byte or an edited option is refused, not
predicted with. Only stores are read here (``fused_cache.stores``), never encoders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fused_cache.stores import Store
from fused_train.data import Inputs
from fused_train.models.base import Fitted, Outcome
from fused_train.models.registry import ModelError, model
from fused_train.splits import TRAIN

FORMAT = 2
INFO = "model.json"


class ModelDirError(ValueError):
    """A model directory that does not exist, is incomplete or damaged, or does not fit the data it is asked to
    predict."""


def store_records(inputs: Inputs, drug_encoder: str) -> dict[str, Any]:
    """What identifies each store a model was trained on: path, version and the encoder's fingerprint."""

    def record(name: str) -> dict[str, Any]:
        with Store(inputs.stores[name]) as store:
            m = store.manifest
        return {**inputs.store_versions[name], "path": str(Path(inputs.stores[name]).resolve()),
                "fingerprint_hash": m["fingerprint_hash"], "fingerprint": m["fingerprint"]}  # fmt: skip

    return {"drug": record(drug_encoder), "cells": {name: record(name) for name in inputs.cells}}


def save_fitted(folder: Path, outcome: Outcome, spec: Any, inputs: Inputs, stores: dict[str, Any]) -> Path:
    """Write ``outcome``'s fitted model to ``folder`` (replacing an older copy); returns the folder."""
    if outcome.fitted is None:
        raise ValueError("the model did not keep its fitted state (Model.run(..., keep=True))")
    shapes = inputs.shapes()
    info = {
        "format": FORMAT,
        "model": spec.model,
        "options": spec.options,
        "train": asdict(spec.train),
        "spec": spec.to_json(),
        "fold": outcome.fold.name,
        "seed": outcome.fold.seed,
        "choices": outcome.fitted.choices,
        "validation": getattr(outcome.fitted, "validation", {}),
        "shapes": {"drug_dim": shapes.drug_dim, "drug_kind": shapes.drug_kind, "cell_dims": shapes.cell_dims},
        "stores": stores,
        "drug_ids": inputs.drug_ids.tolist(),
        "cell_ids": inputs.cell_ids.tolist(),
        "trained_pairs": int((outcome.fold.roles == TRAIN).sum()),
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        files = outcome.fitted.save(tmp)
        write_info(tmp, info | {"files": {name: sha256(tmp / name) for name in files}})
        publish_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_hash(info: dict[str, Any]) -> str:
    body = {k: v for k, v in info.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_info(folder: Path, info: dict[str, Any]) -> None:
    """model.json with its ``checksum``."""
    (folder / INFO).write_text(json.dumps(info | {"checksum": _content_hash(info)}, indent=1))


def read_info(folder: Path) -> dict[str, Any]:
    """model.json once it parses, is of this format, matches its checksum and every file it lists matches its
    sha256."""
    path = folder / INFO
    if not path.is_file():
        raise ModelDirError(f"{folder} is not a saved model: no {INFO} (expected the output of fused-train fit, or a "
                            "run's models/<fold>/)")  # fmt: skip
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelDirError(f"{path} is not valid JSON ({err}); the model is damaged: refit or restore it") from err
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise ModelDirError(f"{path}: format {found!r}, expected {FORMAT} (saved by another version of fused-train; "
                            "refit the model with this one)")  # fmt: skip
    if info.get("checksum") != _content_hash(info):
        raise ModelDirError(f"{path} was changed after it was saved (its checksum does not match its content); "
                            "refit or restore the model")  # fmt: skip
    for name, expected in info.get("files", {}).items():
        file = folder / name
        if not file.is_file():
            raise ModelDirError(f"model {folder} is incomplete: {name} missing")
        if sha256(file) != expected:
            raise ModelDirError(f"{file} is damaged (its sha256 differs from the one in {INFO}); refit or restore "
                                "the model")  # fmt: skip
    return info


def load_fitted(folder: Path, device: str = "cpu") -> tuple[Fitted, dict[str, Any]]:
    """The fitted model saved in ``folder`` and its model.json, after every check of ``read_info``."""
    info = read_info(folder)
    try:
        cls = model(info["model"]).fitted_class
    except ModelError as err:
        raise ModelDirError(f"{folder / INFO}: {err}") from err
    if cls is None:
        raise ModelDirError(f"{folder / INFO}: model {info['model']!r} has nothing to load")
    try:
        return cls.load(folder, info, device), info
    except ModelDirError:
        raise
    except Exception as err:  # files that verified but do not fit the model's code
        raise ModelDirError(f"{folder} does not load as a {info['model']!r} model: {err}") from err


def publish_dir(tmp: Path, folder: Path) -> None:
    """Move a finished directory into place (an older copy of the same thing is replaced)."""
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
