"""``fused-train fit``: train a model on all labelled pairs of a dataset, one member per seed, and save it for use.

Each seed is one "fold" of the ``fit`` split (``splits.py``): every measured pair is TRAIN except a 10% validation
share that drives early stopping; there is no test. The members train together in the batched engine. The model
directory (written under a temporary name and renamed, so it is complete or absent)::

    model.json           kind "ensemble", the command, dataset, stores, members with their validation metrics
    card.md              the same for people
    members/seed<k>/     one saved model each (fused_train/saved.py)
    responses.parquet    the training pairs (drug_id, cell_id, ln_ic50) and drugs.parquet their drugs' targets and
                         target pathways: what ``predict --pilot`` matches a new drug's pilot screen against
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from fused_cache.manifest import now
from fused_train.engine import Execution, resolve_precision
from fused_train.models.registry import model_class
from fused_train.models.slots import SlotModel
from fused_train.pilot import DRUGS, RESPONSES
from fused_train.runs import RunError, RunSpec, folds_of, load_run_inputs
from fused_train.saved import FORMAT, publish_dir, save_model, store_records


def fit(
    spec: RunSpec, out: Path, cache_dir: str | Path | None = None, execution: Execution | None = None,
    quiet: bool = False, command: str = "",
) -> Path:  # fmt: skip
    """Train ``spec`` (its split is ignored: ``fit``) on all pairs for each of its seeds; save to ``out``."""
    if not issubclass(model_class(spec.model), SlotModel):
        raise RunError(f"model {spec.model!r} has no parameters to save; choose a trained model (fused, deepcdr)")
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out} exists and is not empty; pass another --out or delete it")
    execution = execution or Execution()
    precision = resolve_precision(spec.train.precision, execution.device)
    spec = replace(spec, split="fit", train=replace(spec.train, precision=precision))
    inputs = load_run_inputs(spec, cache_dir)
    stores = store_records(inputs, spec.drug_encoder)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    members = []
    try:
        for result in spec.trainer(inputs, execution, keep_state=True).run(folds_of(spec, inputs), quiet=quiet):
            folder = save_model(tmp / "members" / f"seed{result.fold.seed}", result, spec, inputs, stores)
            info = json.loads((folder / "model.json").read_text())
            members.append({"dir": f"members/seed{result.fold.seed}", "seed": result.fold.seed,
                            "best_epoch": info["best_epoch"], "validation": info["validation"]})  # fmt: skip
        members.sort(key=lambda m: m["seed"])
        info = {
            "format": FORMAT,
            "kind": "ensemble",
            "model": spec.model,
            "options": spec.options,
            "command": command,
            "dataset": spec.dataset,
            "pairs": len(inputs.pairs),
            "drugs": len(inputs.drug_ids),
            "cells": len(inputs.cell_ids),
            "excluded_pairs": inputs.excluded,
            "stores": {"drug": _short(stores["drug"])} | {n: _short(r) for n, r in stores["cells"].items()},
            "members": members,
            "created": now(),
        }
        (tmp / "model.json").write_text(json.dumps(info, indent=1))
        inputs.pairs[["drug_id", "cell_id", "ln_ic50"]].to_parquet(tmp / RESPONSES, index=False)  # for --pilot
        annotations = {c: [";".join(sorted(s)) for s in sets] for c, sets in inputs.drug_annotations.items()}
        pd.DataFrame({"drug_id": inputs.drug_ids, **annotations}).to_parquet(tmp / DRUGS, index=False)
        (tmp / "card.md").write_text(card(info, spec))
        publish_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _short(record: dict) -> dict:
    """A store as the card names it (the members' model.json hold the full fingerprints)."""
    return {k: record[k] for k in ("encoder", "version", "fingerprint_hash", "path")}


def card(info: dict, spec: RunSpec) -> str:
    """A small model card: what data, which stores, validation metrics, the command that made it."""
    val = {k: [m["validation"][k] for m in info["members"]] for k in ("val_rmse", "val_pcc", "val_drug_pcc")}
    rows = "\n".join(f"| {m['seed']} | {m['best_epoch']} | {m['validation']['val_rmse']:.3f} | "
                     f"{m['validation']['val_pcc']:.3f} | {m['validation']['val_drug_pcc']:.3f} |"
                     for m in info["members"])  # fmt: skip
    stores = "\n".join(f"- {name}: `{r['encoder']}` v{r['version']} (encoder fingerprint "
                       f"{r['fingerprint_hash'][:16]}), {r['path']}" for name, r in info["stores"].items())  # fmt: skip
    return f"""# {spec.model} on {info["dataset"]}

Made by `{info["command"] or "fused_train.fit.fit"}` on {info["created"]}.

- model: `{spec.model}`, options `{json.dumps(spec.options)}`
- training: every measured pair of {info["dataset"]} ({info["pairs"]} pairs, {info["drugs"]} drugs,
  {info["cells"]} cell lines) except a 10% validation share per member (early stopping), no test set;
  excluded pairs: {info["excluded_pairs"] or "none"}
- train config: `{json.dumps(spec.to_json()["train"])}`
- members: {len(info["members"])} (one per seed); predictions are their mean, `pred_sd` their sd

Stores:
{stores}

Validation (the members' own 10%, at the kept epoch; not a benchmark: see `fused-train run` for held-out tests):

| seed | best epoch | RMSE | PCC | per-drug PCC |
| --- | --- | --- | --- | --- |
{rows}

Mean over members: RMSE {np.mean(val["val_rmse"]):.3f}, PCC {np.mean(val["val_pcc"]):.3f}, per-drug PCC
{np.mean(val["val_drug_pcc"]):.3f}.

Use: `fused-train predict --model DIR --drugs new.csv --out predictions.csv`, or
`fused_train.load_model(DIR).predict(drugs=...)`.
"""
