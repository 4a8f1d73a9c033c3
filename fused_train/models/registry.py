"""The explicit list of models: name -> "module:Class". Adding a model = one module + one line here.

A registered class is one of three things, and ``model(name)`` puts each behind the one contract of
``models/base.py`` (``Model``), which is all the rest of the code sees:

- a ``Model`` subclass (``FittedModel``: neighbours, trees, matching; ``NaiveOnly``), used as it is;
- a ``SlotModel`` network (FUSED, DeepCDR: every parameter with a leading slot dimension), trained by the batched
  engine (``networks.EngineModel``);
- a plain ``torch.nn.Module`` that predicts one pair (``module_slots.py`` says what it takes), trained by the batched
  engine through the generic adapter.

Each says what it needs and which options it takes, so that the CLI, the run specification and the report are all
derived from this list:

- ``Options``: a frozen dataclass; each field is an option with its default and ``help`` (in the field's metadata).
  ``fused-train run --model NAME`` exposes every field as ``--field-name``.
- ``drug_inputs``: the drug store kinds it accepts, ``"dense"`` (an (n, d) embedding) and/or ``"graph"`` (ragged atom
  graphs, the ``graph`` store).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
import typing
from typing import Any

BEST_FOR_NEW_DRUGS = "stacked"
"""The model the leave-one-drug-out benchmark shows best for drugs never seen in training (docs/science.md section 6:
per-drug PCC 0.576 over all 223 LODO folds against 0.568 for ``neighbours``, paired p = 0.0075, and again on two more
split seeds, p = 0.044 and 0.00045; the cell-line mean 0.512): ``fused-train fit``'s default model, and what ``predict``
recommends for new drugs."""

MODELS: dict[str, str] = {
    "fused": "fused_train.models.fused:FusedSlots",
    "deepcdr": "fused_train.models.deepcdr:DeepCDRSlots",
    "naive": "fused_train.models.naive:NaiveOnly",
    "neighbours": "fused_train.models.neighbours:Neighbours",
    "trees": "fused_train.models.trees:Trees",
    "matching": "fused_train.models.matching:Matching",
    "completion": "fused_train.models.completion:Completion",
    "stacked": "fused_train.models.stacked:Stacked",
}


class ModelError(ValueError):
    """An unknown model, or options it does not take."""


def option(default: Any, help: str) -> Any:
    """A model option: a dataclass field with a default and the help text the CLI shows."""
    return dataclasses.field(default=default, metadata={"help": help})


def check_candidates(name: str, values: tuple[float, ...], minimum: float) -> None:
    """Candidate values of an option that is searched on validation rows: at least one, each finite and >= minimum."""
    if not values or not all(math.isfinite(v) and v >= minimum for v in values):
        raise ModelError(f"--{name.replace('_', '-')} needs finite values >= {minimum:g}, got {values}")


def model_class(name: str) -> type:
    """The class registered under ``name``, as registered (a network, a plain module or a ``Model``)."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def model(name: str) -> type:
    """The registered model behind the contract of ``models/base.py``: a ``Model`` subclass."""
    return _as_model(model_class(name))


@functools.cache
def _as_model(cls: type) -> type:
    from torch import nn

    from fused_train.models.base import Model
    from fused_train.models.module_slots import module_slots
    from fused_train.models.networks import EngineModel
    from fused_train.models.slots import SlotModel

    if issubclass(cls, Model):
        return cls
    if issubclass(cls, nn.Module):
        network = cls if issubclass(cls, SlotModel) else module_slots(cls)
        attributes = {
            "network": network,
            "Options": network.Options,
            "drug_inputs": network.drug_inputs,
            "__module__": cls.__module__,
        }
        return type(f"{cls.__name__}Model", (EngineModel,), attributes)
    raise ModelError(f"{cls.__qualname__} is neither a Model, a SlotModel nor a torch.nn.Module")


def build(name: str, options: dict[str, Any], train: Any) -> Any:
    """The model ``name`` with ``options`` (over its defaults) and the run's ``TrainConfig``."""
    return model(name)(make_options(name, options), train)


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a model, as the CLI shows it."""

    name: str
    type: type
    default: Any
    help: str


def options_of(name: str) -> list[Option]:
    """The options of a model: name, type (int, float, str, bool, or a tuple of ints or floats), default."""
    cls = model(name).Options
    hints = typing.get_type_hints(cls)
    return [Option(f.name, hints[f.name], f.default, f.metadata.get("help", "")) for f in dataclasses.fields(cls)]


def make_options(name: str, given: dict[str, Any]) -> Any:
    """The model's ``Options`` from ``given`` over the defaults (JSON lists become tuples); unknown names fail."""
    fields = {o.name: o for o in options_of(name)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        takes = ", ".join(fields) or "no options"
        raise ModelError(f"model {name!r} has no option {unknown[0]!r} (it takes: {takes})")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return model(name).Options(**values)


def options_json(options: Any) -> dict[str, Any]:
    """Options as JSON values (tuples become lists), as a run's config.json records them."""
    return json.loads(json.dumps(dataclasses.asdict(options)))
