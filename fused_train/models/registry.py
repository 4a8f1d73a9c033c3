"""The explicit list of models: name -> "module:Class". Adding a model = one module + one line here.

A model class says what it needs and which options it takes, so that the CLI, the run specification and the report
are all derived from this list:

- ``Options``: a frozen dataclass; each field is an option with its default and ``help`` (in the field's metadata).
  ``fused-train run --model NAME`` exposes every field as ``--field-name``.
- ``drug_inputs``: the drug store kinds it accepts, ``"dense"`` (an (n, d) embedding) and/or ``"graph"`` (ragged atom
  graphs, the ``graph`` store).
- A ``SlotModel`` subclass is trained by the batched engine; a ``FittedModel`` subclass (``models/fitted.py``) is
  fitted per fold by its own ``predict``; ``NaiveOnly`` runs the naive predictors alone.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import typing
from typing import Any

MODELS: dict[str, str] = {
    "fused": "fused_train.models.fused:FusedSlots",
    "deepcdr": "fused_train.models.deepcdr:DeepCDRSlots",
    "naive": "fused_train.models.naive:NaiveOnly",
    "neighbours": "fused_train.models.neighbours:Neighbours",
    "trees": "fused_train.models.trees:Trees",
    "matching": "fused_train.models.matching:Matching",
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
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a model, as the CLI shows it."""

    name: str
    type: type
    default: Any
    help: str


def options_of(name: str) -> list[Option]:
    """The options of a model: name, type (int, float, str, bool, or a tuple of ints or floats), default."""
    cls = model_class(name).Options
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
    return model_class(name).Options(**values)


def options_json(options: Any) -> dict[str, Any]:
    """Options as JSON values (tuples become lists), as a run's config.json records them."""
    return json.loads(json.dumps(dataclasses.asdict(options)))
