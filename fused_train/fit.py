"""``fused-train fit``: fit any model on all labelled pairs of a dataset, one member per seed, and save it for use.

Each seed is one "fold" of the ``fit`` split (``splits.py``): every measured pair is TRAIN except a 10% validation
share for the model's choices (early stopping, hyperparameters); there is no test. The members are fitted through the
model contract (``models/base.py``: networks train together in the batched engine). The model directory (written
under a temporary name and renamed, so it is complete or absent)::

    model.json           kind "ensemble", the command, dataset, stores, members with their choices, the sha256 of
                         the files beside it and its own checksum (``saved.py``)
    card.md              the same for people
    members/seed<k>/     one saved model each (fused_train/saved.py)
    responses.parquet    the training pairs (drug_id, cell_id, ln_ic50) and drugs.parquet their drugs' SMILES, targets
                         and target pathways: what ``predict --pilot`` matches a new drug's pilot screen against
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd

from fused_cache import datasets
from fused_cache.manifest import now
from fused_train.engine import Execution, resolve_precision
from fused_train.models.registry import BEST_FOR_NEW_DRUGS, MODELS, model
from fused_train.pilot import DRUGS, RESPONSES
from fused_train.runs import RunError, RunSpec, folds_of, load_run_inputs, protect_models, stores_verified
from fused_train.saved import FORMAT, publish_dir, save_fitted, sha256, store_records, write_info

VALIDATION = ("val_rmse", "val_pcc", "val_drug_pcc")
"""A trained network's validation metrics at its kept epoch, as the card shows them."""


def fit(
    spec: RunSpec, out: Path, cache_dir: str | Path | None = None, execution: Execution | None = None,
    quiet: bool = False, command: str = "",
) -> Path:  # fmt: skip
    """Fit ``spec``'s model (its split is ignored: ``fit``) on all pairs for each of its seeds; save to ``out``."""
    if model(spec.model).fitted_class is None:
        savable = ", ".join(name for name in MODELS if model(name).fitted_class is not None)
        raise RunError(f"model {spec.model!r} has nothing of its own to save; choose one of {savable}")
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
        for outcome in spec.build().run(inputs, folds_of(spec, inputs), execution, keep=True, quiet=quiet):
            seed = outcome.fold.seed
            save_fitted(tmp / "members" / f"seed{seed}", outcome, spec, inputs, stores)
            members.append({"dir": f"members/seed{seed}", "seed": seed, "choices": outcome.fitted.choices,
                            "validation": getattr(outcome.fitted, "validation", {})})  # fmt: skip
        members.sort(key=lambda m: m["seed"])
        inputs.pairs[["drug_id", "cell_id", "ln_ic50"]].to_parquet(tmp / RESPONSES, index=False)  # for --pilot
        annotations = {c: [";".join(sorted(s)) for s in sets] for c, sets in inputs.drug_annotations.items()}
        dataset = datasets.load(spec.dataset, spec.response)
        smiles = dataset.drugs.set_index("drug_id")["smiles"].reindex(inputs.drug_ids)
        drugs = pd.DataFrame({"drug_id": inputs.drug_ids, "smiles": smiles.to_numpy(), **annotations})
        drugs.to_parquet(tmp / DRUGS, index=False)  # the SMILES: predict tells a training drug under a new id
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
            "stores_verified": stores_verified(),
            "files": {name: sha256(tmp / name) for name in (RESPONSES, DRUGS)},
        }
        write_info(tmp, info)
        (tmp / "card.md").write_text(card(info, spec))
        publish_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    protect_models(out, inputs, cache_dir)  # the stores it was fitted on stay while it exists (fused-cache gc)
    return out


def _short(record: dict) -> dict:
    """A store as the card names it (the members' model.json hold the full fingerprints)."""
    return {k: record[k] for k in ("encoder", "version", "fingerprint_hash", "path")}


def _rounded(choices: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in choices.items()}


def card(info: dict, spec: RunSpec) -> str:
    """A small model card: what data, which stores, the choices made on validation rows, the command that made it."""
    rows = "\n".join(f"| {m['seed']} | `{json.dumps(_rounded(m['choices']))}` | "
                     + (" | ".join(f"{m['validation'][k]:.3f}" for k in VALIDATION) if m["validation"] else
                        " | ".join("" for _ in VALIDATION)) + " |" for m in info["members"])  # fmt: skip
    stores = "\n".join(f"- {name}: `{r['encoder']}` v{r['version']} (encoder fingerprint "
                       f"{r['fingerprint_hash'][:16]}), {r['path']}" for name, r in info["stores"].items())  # fmt: skip
    if spec.model == BEST_FOR_NEW_DRUGS:
        use = (f"`{spec.model}` is the model the leave-one-drug-out benchmark shows best for drugs not seen in "
               "training; it predicts the cell lines it was fitted on.")  # fmt: skip
    else:
        use = (
            f"For drugs not seen in training the leave-one-drug-out benchmark's best model is "
            f"`{BEST_FOR_NEW_DRUGS}` (`fused-train fit --model {BEST_FOR_NEW_DRUGS}`), not `{spec.model}`."
        )
    training = (f"train config: `{json.dumps(spec.to_json()['train'])}`" if spec.trained_by_engine else
                f"fitted by `{spec.model}`'s own code: the engine's settings (epochs, learning rate, precision) do not "
                "apply")  # fmt: skip
    return f"""# {spec.model} on {info["dataset"]}

Made by `{info["command"] or "fused_train.fit.fit"}` on {info["created"]}.

- model: `{spec.model}`, options `{json.dumps(spec.options)}`
- training: every measured pair of {info["dataset"]} ({info["pairs"]} pairs, {info["drugs"]} drugs,
  {info["cells"]} cell lines) except a 10% validation share per member (for its choices), no test set;
  excluded pairs: {info["excluded_pairs"] or "none"}
- {training}
- members: {len(info["members"])} (one per seed); predictions are their mean, `pred_sd` their sd: how much the
  members' validation shares (and a network's initialisation) move a prediction, not a calibrated uncertainty; 0 where
  members that refit on every pair after their choices chose alike
- new drugs: {use}

Stores:
{stores}

Choices on each member's own 10% validation share (not a benchmark: see `fused-train run` for held-out tests):

| seed | choices | RMSE | PCC | per-drug PCC |
| --- | --- | --- | --- | --- |
{rows}

Use: `fused-train predict --model DIR --drugs new.csv --out predictions.csv`, or
`fused_train.load_model(DIR).predict(drugs=...)`.
"""
