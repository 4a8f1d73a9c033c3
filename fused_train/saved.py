"""A trained model on disk: one fold's (or one fit seed's) best-epoch parameters, its scalers and what it was made of.

A saved model is a directory::

    model.safetensors     the slot's parameters under their plain names (no slot dimension)
    scalers.safetensors   <input>.mean / <input>.sd of every dense input and of ln IC50 ("y"), float32
    model.json            registry name and options, TrainConfig, RunSpec, fold, best epoch, validation metrics,
                          input shapes, the drug and cell ids of its grid, and per store: encoder, path, version and
                          encoder fingerprint (for omics stores that includes the gene list a new cell line must cover)

It is written under a temporary name and renamed into place, so a reader never sees half a model. Only stores are
read here (``fused_cache.stores``), never encoders.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fused_cache.stores import Store
from fused_train.data import Inputs, InputShapes
from fused_train.engine import FoldResult
from fused_train.models.registry import make_options, model_class
from fused_train.models.slots import SlotModel
from fused_train.splits import TRAIN

FORMAT = 1
FILES = ("model.json", "model.safetensors", "scalers.safetensors")


class ModelDirError(ValueError):
    """A model directory that does not exist, is incomplete, or does not fit the data it is asked to predict."""


def store_records(inputs: Inputs, drug_encoder: str) -> dict[str, Any]:
    """What identifies each store a model was trained on: path, version and the encoder's fingerprint."""

    def record(name: str) -> dict[str, Any]:
        with Store(inputs.stores[name]) as store:
            m = store.manifest
        return {**inputs.store_versions[name], "path": str(Path(inputs.stores[name]).resolve()),
                "fingerprint_hash": m["fingerprint_hash"], "fingerprint": m["fingerprint"]}  # fmt: skip

    return {"drug": record(drug_encoder), "cells": {name: record(name) for name in inputs.cells}}


def save_model(
    folder: Path, result: FoldResult, spec: Any, inputs: Inputs, stores: dict[str, Any], extra: dict | None = None
) -> Path:  # fmt: skip
    """Write ``result``'s best-epoch model to ``folder`` (replacing an older copy); returns the folder."""
    if result.state is None:
        raise ValueError("the trainer did not keep the model's parameters (Trainer(..., keep_state=True))")
    best = result.curve[result.curve["epoch"] == result.best_epoch].iloc[0]
    roles = result.fold.roles
    shapes = inputs.shapes()
    info = {
        "format": FORMAT,
        "model": spec.model,
        "options": spec.options,
        "train": asdict(spec.train),
        "spec": spec.to_json(),
        "fold": result.fold.name,
        "seed": result.fold.seed,
        "best_epoch": int(result.best_epoch),
        "validation": {k: float(best[k]) for k in ("val_rmse", "val_pcc", "val_drug_pcc")},
        "shapes": {"drug_dim": shapes.drug_dim, "drug_kind": shapes.drug_kind, "cell_dims": shapes.cell_dims},
        "stores": stores,
        "drug_ids": inputs.drug_ids.tolist(),
        "cell_ids": inputs.cell_ids.tolist(),
        "trained_pairs": int((roles == TRAIN).sum()),
        **(extra or {}),
    }
    scalers = {
        f"{name}.{part}": torch.from_numpy(np.atleast_1d(values).astype(np.float32))
        for name, (mean, sd) in result.scalers.items()
        for part, values in (("mean", mean), ("sd", sd))
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({n: t.contiguous() for n, t in result.state.items()}, str(tmp / "model.safetensors"))
    save_file(scalers, str(tmp / "scalers.safetensors"))
    (tmp / "model.json").write_text(json.dumps(info, indent=1))
    publish_dir(tmp, folder)
    return folder


def publish_dir(tmp: Path, folder: Path) -> None:
    """Move a finished directory into place (an older copy of the same thing is replaced)."""
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


class Member:
    """One saved model, loaded: a 1-slot network, its scalers and its model.json."""

    def __init__(self, folder: Path, device: torch.device | None = None) -> None:
        device = device or torch.device("cpu")
        missing = [f for f in FILES if not (folder / f).is_file()]
        if missing:
            raise ModelDirError(f"model {folder} is incomplete: {', '.join(missing)} missing")
        self.folder = folder
        self.info: dict[str, Any] = json.loads((folder / "model.json").read_text())
        if self.info.get("format") != FORMAT:
            raise ModelDirError(f"{folder / 'model.json'}: format {self.info.get('format')!r}, expected {FORMAT}")
        shapes = InputShapes(**self.info["shapes"])
        cls = model_class(self.info["model"])
        self.net: SlotModel = cls(1, shapes, make_options(self.info["model"], self.info["options"]))
        state = {n: t.unsqueeze(0) for n, t in load_file(str(folder / "model.safetensors")).items()}
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            name = self.info["model"]
            raise ModelDirError(f"{folder / 'model.safetensors'} does not fit model {name!r}: {err}") from err
        self.net.to(device).eval()
        raw = load_file(str(folder / "scalers.safetensors"))
        names = {key.rsplit(".", 1)[0] for key in raw}
        self.scalers = {n: (raw[f"{n}.mean"].to(device), raw[f"{n}.sd"].to(device)) for n in names}
