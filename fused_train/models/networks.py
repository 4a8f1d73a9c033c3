"""Networks trained by the batched engine (``engine.Trainer``): FUSED, DeepCDR, and plain ``torch.nn.Module``s.

``EngineModel`` puts a slot network (``slots.SlotModel``: one fold per slot) behind the model contract; the registry
makes one for every registered network (``registry.model``). A fold's fitted model is ``NetworkFitted``: the slot's
best-epoch parameters as a 1-slot network, with the scalers it was trained with.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fused_train.data import Inputs, InputShapes
from fused_train.engine import Execution, FoldResult, Trainer
from fused_train.models.base import Fitted, Model, Outcome, Query
from fused_train.models.registry import make_options, model
from fused_train.models.slots import SlotModel
from fused_train.saved import ModelDirError
from fused_train.splits import Fold

WEIGHTS, SCALERS = "model.safetensors", "scalers.safetensors"


class NetworkFitted(Fitted):
    """A 1-slot network at its best epoch, and the scalers of its inputs and of ln IC50 (from its fold's TRAIN side)."""

    def __init__(
        self, net: SlotModel, scalers: dict[str, tuple[torch.Tensor, torch.Tensor]], choices: dict[str, Any],
        validation: dict[str, float],
    ) -> None:  # fmt: skip
        self.net, self.scalers, self.choices, self.validation = net, scalers, choices, validation

    @classmethod
    def of(cls, result: FoldResult, network: type[SlotModel], shapes: InputShapes, options: Any) -> NetworkFitted:
        if result.state is None:
            raise ValueError("the trainer did not keep the model's parameters (Trainer(..., keep_state=True))")
        net = network(1, shapes, options)
        net.load_state_dict({n: t.unsqueeze(0) for n, t in result.state.items()}, strict=True)
        scalers = {n: tuple(torch.from_numpy(np.atleast_1d(v).astype(np.float32)) for v in pair)
                   for n, pair in result.scalers.items()}  # fmt: skip
        best = result.curve[result.curve["epoch"] == result.best_epoch].iloc[0]
        validation = {k: float(best[k]) for k in ("val_rmse", "val_pcc", "val_drug_pcc")}
        return cls(net.eval(), scalers, {"best_epoch": int(result.best_epoch)}, validation)

    def save(self, folder: Path) -> list[str]:
        state = {n: t.detach()[0].contiguous().cpu() for n, t in self.net.state_dict().items()}
        save_file(state, str(folder / WEIGHTS))
        save_file({f"{n}.{part}": t.contiguous().cpu() for n, pair in self.scalers.items()
                   for part, t in zip(("mean", "sd"), pair, strict=True)}, str(folder / SCALERS))  # fmt: skip
        return [WEIGHTS, SCALERS]

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any], device: str) -> NetworkFitted:
        network = model(info["model"]).network
        net = network(1, InputShapes(**info["shapes"]), make_options(info["model"], info["options"]))
        state = {n: t.unsqueeze(0) for n, t in load_file(str(folder / WEIGHTS)).items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ModelDirError(f"{folder / WEIGHTS} does not fit model {info['model']!r}: {err}") from err
        raw = load_file(str(folder / SCALERS))
        names = {key.rsplit(".", 1)[0] for key in raw}
        if any(f"{n}.{p}" not in raw for n in names for p in ("mean", "sd")) or "y" not in names:
            raise ModelDirError(f"{folder / SCALERS} lacks a mean or sd (it has {', '.join(sorted(raw))})")
        scalers = {n: (raw[f"{n}.mean"], raw[f"{n}.sd"]) for n in names}
        for name, (_, sd) in scalers.items():
            if not (torch.isfinite(sd).all() and (sd > 0).all()):
                raise ModelDirError(f"{folder / SCALERS}: the sd of {name!r} is not a finite positive number")
        fitted = cls(net.to(device).eval(), {n: (m.to(device), s.to(device)) for n, (m, s) in scalers.items()},
                     info.get("choices", {}), info.get("validation", {}))  # fmt: skip
        return fitted

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def predict(self, query: Query) -> np.ndarray:
        """In chunks of cell lines (the hidden grid grows with drugs x cells)."""
        device, scalers = self.device, self.scalers
        if isinstance(query.drug, np.ndarray):  # a dense embedding, scaled as in training
            drug = ((torch.from_numpy(query.drug).to(device) - scalers["drug"][0]) / scalers["drug"][1])[None]
        else:  # atom graphs go in as they are
            drug = self.net.drug_tensor(query.drug, device)
        step = max(1, 2**14 // max(1, len(query.drug_ids)))
        parts = []
        for k in range(0, len(query.cell_ids), step):
            tile = {n: ((torch.from_numpy(x[k : k + step]).to(device) - scalers[n][0]) / scalers[n][1])[None]
                    for n, x in query.cells.items()}  # fmt: skip
            parts.append(self.net(drug, None, tile).float())
        mu, sd = scalers["y"]
        return (torch.cat(parts, dim=2)[0] * sd + mu).cpu().numpy().astype(np.float32)


class EngineModel(Model):
    """A slot network behind the model contract; ``network`` is set per registered network."""

    network: ClassVar[type[SlotModel]]
    fitted_class = NetworkFitted
    saves_by_default = True

    def trainer(self, inputs: Inputs, execution: Execution | None = None, keep_state: bool = False) -> Trainer:
        """The engine that trains this model's folds on ``inputs``."""
        return Trainer(inputs, self.network, self.options, self.train, execution or Execution(), keep_state)

    def run(
        self, inputs: Inputs, folds: list[Fold], execution: Execution, keep: bool, quiet: bool
    ) -> Iterator[Outcome]:
        shapes = inputs.shapes()
        for result in self.trainer(inputs, execution, keep_state=keep).run(folds, quiet=quiet):
            grid = np.full(inputs.shape, np.nan, dtype=np.float32)
            grid.flat[result.test_cells] = result.test_pred
            choices = {"best_epoch": int(result.best_epoch), "epochs": len(result.curve)}
            fitted = NetworkFitted.of(result, self.network, shapes, self.options) if keep else None
            yield Outcome(result.fold, grid, choices, result.curve.assign(best_epoch=result.best_epoch), fitted)
