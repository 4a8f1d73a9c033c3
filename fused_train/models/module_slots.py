"""A plain ``torch.nn.Module`` that predicts one (drug, cell line) pair, trained across many folds at once.

Bring your own network without rewriting it for the engine: a class like

    class MyNet(nn.Module):
        Options = MyOptions                     # optional: a frozen dataclass of registry.option fields
        def __init__(self, shapes: InputShapes, options: MyOptions) -> None: ...
        def forward(self, drug: Tensor, cells: dict[str, Tensor]) -> Tensor:
            # drug (B, shapes.drug_dim), cells[name] (B, shapes.cell_dims[name]), all standardised -> (B,) z-scored
            # ln IC50 (the engine scales inputs and targets on each fold's TRAIN side and undoes it for predictions)

plus one line in ``registry.MODELS`` trains with ``fused-train run`` like FUSED does. ``module_slots(MyNet)`` is the
``SlotModel`` the engine trains: every parameter of the module stacked along a leading slot dimension
(``torch.func.stack_module_state`` layout), the module's forward mapped over slots with ``torch.func.vmap`` and
``functional_call``. A slot is initialised by constructing the module afresh under a generator seeded by its fold, so
a fold's result does not depend on which folds share the batch (up to float rounding), as for every engine model.

Limits, refused or stated: no buffers (BatchNorm running statistics would mix folds; use LayerNorm), dense drug
embeddings only, and dropout draws differ between a fold trained alone and in a batch (vmap's randomness
"different"). The pairs of a step are materialised per slot, (slots x drugs x cells, features): keep
``--cells-per-step`` and ``--drugs-per-step`` small for wide inputs such as the mutation token.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from fused_train.data import InputShapes
from fused_train.models.registry import ModelError
from fused_train.models.slots import DrugInput, SlotModel, take_rows


@dataclass(frozen=True)
class NoOptions:
    """A module without options."""


@functools.cache
def module_slots(module: type[nn.Module]) -> type[SlotModel]:
    """The slot network that trains ``module`` (one per class: the registry and saved models find the same one)."""

    class ModuleSlots(SlotModel):
        Options = getattr(module, "Options", NoOptions)
        drug_inputs = ("dense",)

        def __init__(self, n_slots: int, shapes: InputShapes, options: Any = None) -> None:
            super().__init__(n_slots)
            self.shapes, self.options = shapes, options if options is not None else self.Options()
            template = self._fresh()
            if any(True for _ in template.buffers()):
                raise ModelError(f"{module.__name__} has buffers (e.g. BatchNorm statistics), which would mix the "
                                 "folds trained together; use parameter-only layers (LayerNorm)")  # fmt: skip
            self._names = [name for name, _ in template.named_parameters()]
            for name, param in template.named_parameters():
                self.register_parameter(_slot_name(name), nn.Parameter(param.detach().expand(n_slots, *param.shape)
                                                                       .clone()))  # fmt: skip
            self._template = (template.to("meta"),)  # a tuple: not a submodule, its parameters are ours

        def _fresh(self) -> nn.Module:
            return module(self.shapes, self.options)

        def reset_slot(self, slot: int, seed: int) -> None:
            """The module's own initialisation, drawn from ``seed`` alone."""
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                fresh = dict(self._fresh().named_parameters())
            with torch.no_grad():
                for name in self._names:
                    getattr(self, _slot_name(name))[slot].copy_(fresh[name])

        def forward(self, drug: DrugInput, drug_rows: Tensor | None, cells: dict[str, Tensor]) -> Tensor:
            x = take_rows(drug, drug_rows)  # (S, a, d)
            n_slots, a, _ = x.shape
            c = next(iter(cells.values())).shape[1]
            pair_drug = x[:, :, None, :].expand(n_slots, a, c, x.shape[-1]).reshape(n_slots, a * c, -1)
            pair_cells = {n: t[:, None].expand(n_slots, a, c, t.shape[-1]).reshape(n_slots, a * c, -1)
                          for n, t in cells.items()}  # fmt: skip
            params = {name: getattr(self, _slot_name(name)) for name in self._names}

            def one(p: dict[str, Tensor], d: Tensor, cs: dict[str, Tensor]) -> Tensor:
                return functional_call(self._template[0], p, (d, cs))

            out = vmap(one, randomness="different")(params, pair_drug, pair_cells)  # (S, a * c)
            return out.reshape(n_slots, a, c)

    ModuleSlots.__name__ = ModuleSlots.__qualname__ = f"{module.__name__}Slots"
    return ModuleSlots


def _slot_name(name: str) -> str:
    """A module's parameter name ("layers.0.weight") as one attribute name of the slot network."""
    return name.replace(".", "__")
