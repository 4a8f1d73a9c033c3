"""Models with a leading slot dimension: slot s of every parameter is an independent model, one fold's.

Training F folds as one batched model shares each pass over the data between them while keeping them independent:
the loss is a sum of per-slot losses, every parameter belongs to one slot, and ``SlotAdam`` is elementwise with
per-slot step counts, so each slot follows exactly the trajectory it would follow alone. A finished slot is
re-initialised for the next fold (``reset_slot``) or dropped (``keep_slots``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

DrugInput = Any
"""What the engine passes as ``drug``: per-slot scaled features (S, A, d) for dense stores, else what the model's
``drug_tensor`` made of the raw input (e.g. a batch of atom graphs)."""


class SlotModel(nn.Module):
    """Base class: registers batched linear layers and knows how to (re)initialise or drop slots.

    A subclass sets ``Options`` (a dataclass of its hyperparameters, see ``registry.option``) and ``drug_inputs``,
    takes ``(n_slots, shapes, options)`` and implements ``forward``.
    """

    Options: ClassVar[type]
    drug_inputs: ClassVar[tuple[str, ...]] = ("dense",)
    """Drug store kinds the model accepts: "dense" and/or "graph"."""
    pairs_independent: ClassVar[bool] = False
    """A pair's prediction depends on its own drug and cell line only (no batch statistics, no random draws per row):
    the engine may then leave drugs without TRAIN pairs out of a training step."""

    @classmethod
    def drug_tensor(cls, drug: np.ndarray | Any, device: torch.device) -> Any:
        """The run's drug input on ``device``, made once: a dense matrix as a tensor (the engine scales it per slot);
        models that take other inputs (atom graphs) override this."""
        return torch.from_numpy(drug).to(device)

    def __init__(self, n_slots: int) -> None:
        super().__init__()
        self.n_slots = n_slots
        self._fan_in: dict[str, int] = {}

    def add(self, name: str, *shape: int, fan_in: int) -> None:
        """A parameter of shape (slots, *shape), initialised like ``nn.Linear``: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        self.register_parameter(name, nn.Parameter(torch.empty(self.n_slots, *shape)))
        self._fan_in[name] = fan_in

    def add_linear(self, name: str, n_in: int, n_out: int, groups: tuple[int, ...] = ()) -> None:
        """Weight ``name`` (slots, *groups, n_in, n_out) and bias ``name_b`` (slots, *groups, n_out)."""
        self.add(name, *groups, n_in, n_out, fan_in=n_in)
        self.add(f"{name}_b", *groups, n_out, fan_in=n_in)

    def reset_slot(self, slot: int, seed: int) -> None:
        """Fresh parameters for ``slot``, drawn from ``seed`` alone (not from the slot or the other folds)."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in self.named_parameters():
                bound = 1.0 / math.sqrt(self._fan_in[name])
                values = torch.rand(param.shape[1:], generator=generator, dtype=torch.float32) * 2 * bound - bound
                param[slot].copy_(values.to(param.device))

    def keep_slots(self, keep: Tensor) -> None:
        """Drop every slot not in ``keep`` (indices), e.g. when no folds are left to fill them."""
        for name, param in list(self.named_parameters()):
            setattr(self, name, nn.Parameter(param.detach()[keep].clone()))
        self.n_slots = len(keep)

    def set_train_rows(self, drugs: Tensor, cells: Tensor) -> None:
        """Called by the engine before each training forward: per slot, which drugs (S, A; all drugs of the run) and
        which cell lines of the coming tile (S, c) have TRAIN pairs in the slot's fold. A model with batch statistics
        (BatchNorm) computes them on these rows only, so held-out entities influence nothing; others ignore it."""

    def forward(self, drug: DrugInput, drug_rows: Tensor | None, cells: dict[str, Tensor]) -> Tensor:
        """Predictions (S, rows, cells) for drug rows ``drug_rows`` (S, r) (all drugs if None) x the cell tile."""
        raise NotImplementedError


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Per-slot ``x @ W + b`` for x (S, ..., n_in), W (S, n_in, n_out), b (S, n_out)."""
    shape = x.shape
    out = torch.baddbmm(bias.unsqueeze(1), x.reshape(shape[0], -1, shape[-1]), weight)
    return out.reshape(*shape[:-1], weight.shape[-1])


def take_rows(states: Tensor, rows: Tensor | None) -> Tensor:
    """Per-slot rows of an entity-level tensor (S, A, ...) -> (S, r, ...)."""
    if rows is None:
        return states
    index = rows.reshape(*rows.shape, *([1] * (states.dim() - 2))).expand(*rows.shape, *states.shape[2:])
    return torch.gather(states, 1, index)


class SlotAdam:
    """Adam (optionally with decoupled weight decay, as AdamW) with a step count per slot.

    ``torch.optim.Adam`` keeps one step count per tensor, which would tie the bias correction of a refilled slot to
    the others; here each slot has its own, so a fold trained in any slot matches the same fold trained alone. The
    update is torch's fused Adam kernel (one pass over parameter, gradient and moments) on every parameter's slot
    slices, each slice with its slot's step count: the arithmetic of ``torch.optim.Adam(fused=True)``.
    """

    def __init__(
        self, model: SlotModel, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:  # fmt: skip
        self.model, self.lr, self.betas, self.eps, self.weight_decay = model, lr, betas, eps, weight_decay
        device = next(model.parameters()).device
        self.steps = torch.zeros(model.n_slots, device=device)
        self.m = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        self.v = {n: torch.zeros_like(p) for n, p in model.named_parameters()}

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        named = [(n, p) for n, p in self.model.named_parameters() if p.grad is not None]
        slots = range(len(self.steps))

        def slices(tensors: list[Tensor]) -> list[Tensor]:
            return [t[s] for t in tensors for s in slots]

        update = torch._fused_adamw_ if self.weight_decay else torch._fused_adam_
        update(
            slices([p for _, p in named]), slices([p.grad for _, p in named]), slices([self.m[n] for n, _ in named]),
            slices([self.v[n] for n, _ in named]), [], [self.steps[s] for _ in named for s in slots], lr=self.lr,
            beta1=self.betas[0], beta2=self.betas[1], weight_decay=self.weight_decay, eps=self.eps, amsgrad=False,
            maximize=False,
        )  # fmt: skip
        for _, p in named:
            p.grad = None

    def reset_slot(self, slot: int) -> None:
        self.steps[slot] = 0
        for state in (*self.m.values(), *self.v.values()):
            state[slot].zero_()

    def keep_slots(self, keep: Tensor) -> None:
        self.steps = self.steps[keep]
        self.m = {n: s[keep].clone() for n, s in self.m.items()}
        self.v = {n: s[keep].clone() for n, s in self.v.items()}
