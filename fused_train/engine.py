"""The multi-fold training loop: folds stream through the slots of one batched model over the drug x cell grid.

Each step takes, for every slot, all drugs x one tile of cell lines (the slot's own shuffled order), weights the
squared error by the number of measurements of each grid cell that the slot's fold marks TRAIN, and sums the
per-slot mean losses. After every epoch each slot predicts the grid cells its fold marks VAL or TEST; the validation
metric drives early stopping, and the test predictions of the best validation epoch are kept. A finished slot takes
the next fold from the queue. Everything a fold draws (initial weights, data order) comes from its own name, so a
fold gives the same result whichever slot, group or machine trains it.
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import torch

from fused_cache.progress import clock, progress
from fused_train.data import Inputs
from fused_train.metrics import mean_row_pcc, weighted_pcc
from fused_train.models.slots import SlotAdam, SlotModel, take_rows
from fused_train.scaling import standardise
from fused_train.seeding import rng, stable_seed
from fused_train.splits import TEST, TRAIN, VAL, Fold

SELECT_BY = ("rmse", "drug-pcc")
"""The validation metrics a fold's epoch can be chosen by."""

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """Training settings that cannot work (a learning rate that is not a finite positive number, an unknown metric)."""


class NonFiniteTraining(ArithmeticError):
    """A fold whose training loss or predictions stopped being finite numbers: it diverged, and nothing of it may be
    kept as a result."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every fold of a run (part of what determines its results)."""

    max_epochs: int = 100
    patience: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0
    cells_per_step: int = 64
    drugs_per_step: int = 0
    """Drugs per step (x ``cells_per_step`` cell lines): each step trains every slot on one tile of the drug x cell
    grid; 0 = all drugs. An epoch visits every tile once, in an order drawn per epoch."""
    select_by: str = "auto"
    """Early stopping and the kept epoch: lowest validation ``rmse``, or highest mean per-drug validation PCC
    (``drug-pcc``, the LODO question: does the model rank the cell lines of a drug it has not seen?); ``auto``: the
    split's (``runs.selection_metric``), which ``RunSpec`` fills in."""
    precision: str = "auto"
    """fp32, bf16 (autocast), or auto: bf16 on CUDA with bf16 and on CPUs with native bf16 (AVX512-BF16/AMX), else
    fp32. bf16 halves the memory traffic that bounds the grid's elementwise work (measured 2x per step here)."""

    def __post_init__(self) -> None:
        if self.select_by not in ("auto", *SELECT_BY):
            raise ConfigError(f"select_by {self.select_by!r}: choose auto, {' or '.join(SELECT_BY)}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a finite number > 0, not {self.lr!r}")


@dataclass(frozen=True)
class Execution:
    """How and where folds are trained, which a run's specification leaves out."""

    slots: int = 8
    """Folds trained together as one batched model."""
    device: str = "cpu"
    scheduler: str | None = None
    """None: in this process; "local" or a Dask address: fold groups on workers."""
    workers: int | None = None
    """Workers of a local Dask cluster (default: one per core)."""


def resolve_precision(precision: str, device: str) -> str:
    """The precision ``auto`` stands for on this device."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return "bf16"
    return "fp32"


@dataclass
class FoldResult:
    """A finished fold: test predictions per grid cell at the best validation epoch, and its learning curve."""

    fold: Fold
    best_epoch: int
    test_cells: np.ndarray
    """Flat grid indices of the fold's TEST cells."""
    test_pred: np.ndarray
    curve: pd.DataFrame = field(repr=False)
    scalers: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    """Mean and sd of each dense input and of ln IC50 (from the fold's TRAIN side), as the model was trained with."""
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    """The slot's parameters and buffers at the best epoch (no slot dimension, on the CPU) when the trainer keeps
    them."""


@dataclass
class _Slot:
    """One fold in training: where it is, its best epoch so far and its scalers."""

    fold: Fold
    scalers: dict[str, tuple[np.ndarray, np.ndarray]]
    epoch: int = 0
    best_loss: float = float("inf")
    best_epoch: int = -1
    best_pred: np.ndarray | None = None
    best_state: dict[str, torch.Tensor] | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    train_loss: float = 0.0
    steps: int = 0
    """Optimizer steps taken so far."""


@dataclass(frozen=True)
class _ScaledInputs:
    """An epoch's inputs: per slot, the drug features and every cell token scaled with the slot's fold's scalers."""

    y: tuple[torch.Tensor, torch.Tensor]
    """Mean and sd of ln IC50 per slot (S,)."""
    drug: Any
    """(S, drugs, d) scaled, or the model's own drug input (atom graphs) as ``SlotModel.drug_tensor`` made it."""
    cells: dict[str, torch.Tensor]
    """(S, cell lines, d) per token."""

    def tile(self, cells: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        """Every token's rows for a tile of cell lines: each slot's own (``cells`` (S, c) indices, gathered), or the
        same ones for all slots (``cells`` a slice: views, no copies)."""
        if isinstance(cells, slice):
            return {n: x[:, cells] for n, x in self.cells.items()}
        return {n: take_rows(x, cells) for n, x in self.cells.items()}


class Trainer:
    """Trains folds of one model class (with ``options``) as a batched model of up to ``execution.slots`` slots."""

    def __init__(
        self, inputs: Inputs, model: type[SlotModel], options: Any, config: TrainConfig,
        execution: Execution = Execution(), keep_state: bool = False,
    ) -> None:  # fmt: skip
        self.inputs, self.model, self.options, self.config = inputs, model, options, config
        self.keep_state = keep_state
        """Copy each slot's parameters whenever it improves, so that its best epoch can be saved."""
        if config.select_by not in SELECT_BY:
            raise ValueError(f"select_by {config.select_by!r}: the trainer needs {' or '.join(SELECT_BY)} (RunSpec "
                             "resolves auto from the split)")  # fmt: skip
        self.n_slots = execution.slots
        self.device = torch.device(execution.device)
        self.bf16 = resolve_precision(config.precision, execution.device) == "bf16"
        if self.device.type == "cpu":
            _reuse_freed_memory()
        count, mean = inputs.grid()
        self.count_np, self.target_np = count, mean
        self.count = torch.from_numpy(count).to(self.device)
        self.target = torch.from_numpy(mean).to(self.device)
        self.cells = {n: torch.from_numpy(x).to(self.device) for n, x in inputs.cells.items()}
        self.drug = model.drug_tensor(inputs.drug, self.device)
        n_drugs, n_cells = inputs.shape
        self.drug_tiles = (n_drugs, min(config.drugs_per_step or n_drugs, n_drugs))  # (entities, per tile)
        self.cell_tiles = (n_cells, min(config.cells_per_step, n_cells))

    def run(self, folds: list[Fold], quiet: bool = False) -> Iterator[FoldResult]:
        """Train ``folds``; yields each as it finishes (so a caller can save it at once)."""
        queue = list(folds)
        n = min(self.n_slots, len(queue))
        if n == 0:
            return
        net = self.model(n, self.inputs.shapes(), self.options).to(self.device)
        slots = [self._start(net, s, queue.pop(0)) for s in range(n)]
        optimizer = SlotAdam(net, lr=self.config.lr, weight_decay=self.config.weight_decay)
        bar = progress(len(folds), "training", "folds", quiet)
        start, epochs = time.monotonic(), 0
        while slots:
            scaled = self._scaled_inputs(slots)
            self._train_epoch(net, optimizer, slots, scaled, bar.tick)
            done = {}
            for i, (s, pred) in enumerate(zip(slots, self._evaluate(net, scaled, slots, bar.tick), strict=True)):
                result = self._end_epoch(s, pred, net, i)
                if result is not None:
                    done[i] = result
            epochs += 1
            bar.set_postfix_str(self._status(slots, len(queue), (time.monotonic() - start) / epochs))
            for result in done.values():
                yield result
                bar.update()
            slots = self._refill(net, optimizer, slots, list(done), queue)
        bar.close()

    def _status(self, slots: list[_Slot], queued: int, epoch_seconds: float) -> str:
        """What the progress line adds to the folds count: the slots' epochs (the epoch just ended), their best
        validation metric so far, and the time left if every fold ran to the epoch limit (an upper bound)."""
        cap = self.config.max_epochs
        best = [math.sqrt(s.best_loss) if self.config.select_by == "rmse" else -s.best_loss for s in slots]
        left = max(cap - s.epoch for s in slots) + math.ceil(queued / len(slots)) * cap
        return (f"epoch {min(s.epoch for s in slots) - 1}-{max(s.epoch for s in slots) - 1} in {len(slots)} slots, "
                f"best val {self.config.select_by} {_span(best)}, at most {clock(left * epoch_seconds)} left (cap "
                f"{cap} epochs)")  # fmt: skip

    def _start(self, net: SlotModel, slot: int, fold: Fold) -> _Slot:
        net.reset_slot(slot, stable_seed(fold.name, "init"))
        return _Slot(fold, scalers=self._scalers(fold))

    def _refill(
        self, net: SlotModel, optimizer: SlotAdam, slots: list[_Slot], finished: list[int], queue: list[Fold]
    ) -> list[_Slot]:
        """Give finished slots the next folds of the queue; drop the slots left over when it is empty."""
        keep = []
        for i in range(len(slots)):
            if i in finished:
                if not queue:
                    continue
                slots[i] = self._start(net, i, queue.pop(0))
                optimizer.reset_slot(i)
            keep.append(i)
        if len(keep) < len(slots):
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            net.keep_slots(index)
            optimizer.keep_slots(index)
        return [slots[i] for i in keep]

    def _scalers(self, fold: Fold) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Mean and sd of each dense input and of ln IC50, from the fold's TRAIN entities and pairs only."""
        count, target = self.count_np, self.target_np
        train = (fold.roles == TRAIN) & (count > 0)
        w = count * train
        mean = float((w * target).sum() / w.sum())
        sd = float(np.sqrt((w * (target - mean) ** 2).sum() / w.sum()))
        out = {"y": (np.array(mean), np.array(sd))}
        if isinstance(self.inputs.drug, np.ndarray):
            out["drug"] = standardise(self.inputs.drug[train.any(axis=1)])
        for name, x in self.inputs.cells.items():
            out[name] = standardise(x[train.any(axis=0)])
        return out

    def _scaled_inputs(self, slots: list[_Slot]) -> _ScaledInputs:
        """Each slot's inputs scaled with its fold's scalers, once per epoch rather than once per step and tile."""

        def stack(values: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(values).astype(np.float32)).to(self.device)

        scalers = {k: (stack([s.scalers[k][0] for s in slots]), stack([s.scalers[k][1] for s in slots]))
                   for k in slots[0].scalers}  # fmt: skip

        def scale(x: torch.Tensor, name: str) -> torch.Tensor:
            mu, sd = scalers[name]
            return (x[None] - mu[:, None]) / sd[:, None]  # (S, entities, d)

        drug = scale(self.drug, "drug") if "drug" in scalers else self.drug
        return _ScaledInputs(scalers["y"], drug, {n: scale(x, n) for n, x in self.cells.items()})

    def _train_epoch(
        self, net: SlotModel, optimizer: SlotAdam, slots: list[_Slot], scaled: _ScaledInputs, tick: Callable[[], None]
    ) -> None:
        """One pass over the grid in tiles of drugs x cell lines, every slot in its own order (drawn from its fold's
        name and epoch). Tiles all have the same shape: the last tile of a row or column is filled up with entities
        from the start of the order, masked out of the loss, so each grid cell is trained on once per epoch.
        When one tile holds every drug and the model's pairs are independent (``SlotModel.pairs_independent``), each
        slot's tile holds only its drugs with TRAIN pairs: the others (a LODO fold's held-out and validation drugs)
        weigh nothing in the loss, so leaving them out changes nothing but the time.
        ``tick`` is called after every step (progress lines during long epochs)."""
        (n_drugs, a), (n_cells, c) = self.drug_tiles, self.cell_tiles
        drug_orders = [rng(s.fold.name, s.epoch, "drugs").permutation(n_drugs) for s in slots]
        if a == n_drugs and net.pairs_independent:
            trained = [((s.fold.roles == TRAIN) & (self.count_np > 0)).any(axis=1) for s in slots]
            drug_orders = [order[rows[order]] for order, rows in zip(drug_orders, trained, strict=True)]
            a = max(len(order) for order in drug_orders)
        drugs, drug_ok = _padded_orders(drug_orders, a)
        cells, cell_ok = _padded_orders([rng(s.fold.name, s.epoch).permutation(n_cells) for s in slots], c)
        per_row = cells.shape[1] // c
        n_tiles = drugs.shape[1] // a * per_row
        visits = np.stack([rng(s.fold.name, s.epoch, "tiles").permutation(n_tiles) for s in slots])  # (S, tiles)
        roles = torch.from_numpy(np.stack([s.fold.roles for s in slots])).to(self.device)
        slot = np.arange(len(slots))[:, None]
        losses_sum = np.zeros(len(slots))
        net.train()
        for step in range(n_tiles):
            i, j = np.divmod(visits[:, step, None], per_row)  # (S, 1): each slot's tile position
            r, q = i * a + np.arange(a), j * c + np.arange(c)  # (S, a), (S, c) positions in the orders
            mask = torch.from_numpy(drug_ok[slot, r][:, :, None] & cell_ok[slot, q][:, None, :]).to(self.device)
            rows, cols = (torch.from_numpy(x).to(self.device) for x in (drugs[slot, r], cells[slot, q]))
            losses = self._step_losses(net, scaled, roles, rows, cols, mask)
            losses.sum().backward()
            optimizer.step()
            losses_sum += losses.detach().cpu().numpy()
            tick()
        for s, total in zip(slots, losses_sum, strict=True):
            s.train_loss = float(total / n_tiles)
            s.steps += n_tiles

    def _step_losses(
        self, net: SlotModel, scaled: _ScaledInputs, roles: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        """Per-slot mean squared error (in scaled ln IC50) over the slot's TRAIN cells of its tile rows x cols."""
        drug, cells = scaled.drug, scaled.tile(cols)
        train = (roles == TRAIN) & (self.count > 0)  # (S, A, C)
        net.set_train_rows(train.any(dim=2), torch.gather(train.any(dim=1), 1, cols) & mask.any(dim=1))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            pred = net(drug, rows, cells).float()  # (S, a, c)
        r, c = rows[:, :, None], cols[:, None, :]
        slot = torch.arange(len(rows), device=self.device)[:, None, None]
        weight = self.count[r, c] * ((roles[slot, r, c] == TRAIN) & mask)
        mu, sd = scaled.y
        z = (self.target[r, c] - mu[:, None, None]) / sd[:, None, None]
        loss = (weight * (pred - z) ** 2).sum(dim=(1, 2))
        return loss / weight.sum(dim=(1, 2)).clamp(min=1)

    @torch.no_grad()
    def _evaluate(
        self, net: SlotModel, scaled: _ScaledInputs, slots: list[_Slot], tick: Callable[[], None]
    ) -> list[np.ndarray]:
        """Predictions (ln IC50) of each slot on the drug rows and cell columns holding its VAL and TEST cells;
        ``tick`` after every tile."""
        net.eval()
        needed = [(s.fold.roles == VAL) | (s.fold.roles == TEST) for s in slots]
        rows = [np.flatnonzero(m.any(axis=1)) for m in needed]
        cols = [np.flatnonzero(m.any(axis=0)) for m in needed]
        r, c = max(len(x) for x in rows), max(len(x) for x in cols)
        row_index = torch.from_numpy(np.stack([np.resize(x, r) for x in rows])).to(self.device)
        col_index = np.stack([np.resize(x, c) for x in cols])
        step = max(1, self.config.cells_per_step * len(self.inputs.drug_ids) // r)
        every_cell = all(len(x) == self.cell_tiles[0] for x in cols)  # all slots need all (LODO): slices, not copies
        parts = []
        for k in range(0, c, step):
            tile = slice(k, k + step) if every_cell else torch.from_numpy(col_index[:, k : k + step]).to(self.device)
            cells = scaled.tile(tile)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                parts.append(net(scaled.drug, row_index, cells).float())
            tick()
        sub = torch.cat(parts, dim=2)
        mu, sd = scaled.y
        sub = (sub * sd[:, None, None] + mu[:, None, None]).float().cpu().numpy()
        out = []
        for i in range(len(slots)):
            grid = np.full(self.count.shape, np.nan, dtype=np.float32)
            grid[np.ix_(rows[i], cols[i])] = sub[i, : len(rows[i]), : len(cols[i])]
            out.append(grid)
        return out

    def _end_epoch(self, s: _Slot, pred: np.ndarray, net: SlotModel, slot: int) -> FoldResult | None:
        """Record the epoch; returns the fold's result when early stopping (or the epoch limit) ends it. Raises
        NonFiniteTraining when the epoch's training loss, a validation prediction or a kept test prediction is not
        finite: a diverged fold must stop here, before anything of it is written as a result."""
        count, target = self.count_np, self.target_np
        val = s.fold.roles == VAL
        w, y, p = count[val], target[val], pred[val]
        if not math.isfinite(s.train_loss):
            self._diverged(s, "training loss is")
        if not np.isfinite(p).all():
            self._diverged(s, "validation predictions are")
        mse = float((w * (p - y) ** 2).sum() / w.sum())
        drug_pcc = mean_row_pcc(np.where(val, count, 0), target, np.nan_to_num(pred))
        s.curve.append({"epoch": s.epoch, "steps": s.steps, "train_loss": s.train_loss, "val_rmse": mse**0.5,
                        "val_pcc": weighted_pcc(y, p, w), "val_drug_pcc": drug_pcc})  # fmt: skip
        loss = mse if self.config.select_by == "rmse" else -drug_pcc
        if loss < s.best_loss:
            s.best_loss, s.best_epoch = loss, s.epoch
            s.best_pred = pred[s.fold.roles == TEST]
            if not np.isfinite(s.best_pred).all():  # checked where they are kept: only kept ones become results
                self._diverged(s, "test predictions are")
            if self.keep_state:
                # parameters and buffers (DeepCDR's BatchNorm running statistics), all with a leading slot dimension
                s.best_state = {n: t.detach()[slot].to("cpu", copy=True) for n, t in net.state_dict().items()}
        s.epoch += 1
        if s.epoch - 1 - s.best_epoch < self.config.patience and s.epoch < self.config.max_epochs:
            return None
        if s.best_epoch == self.config.max_epochs - 1:
            log.warning("fold %s: best epoch is the last allowed (%d); raise --epochs", s.fold.name, s.best_epoch)
        return FoldResult(s.fold, s.best_epoch, np.flatnonzero(s.fold.roles == TEST), s.best_pred,
                          pd.DataFrame(s.curve), s.scalers, s.best_state)  # fmt: skip

    def _diverged(self, s: _Slot, what: str) -> NoReturn:
        raise NonFiniteTraining(
            f"fold {s.fold.name} diverged in epoch {s.epoch}: its {what} not finite (training loss {s.train_loss:g}) "
            f"with --lr {self.config.lr:g}; nothing of the fold was written: try a smaller --lr"
        )


def _reuse_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of unmapping it: every training step allocates tensors of tens of MB
    (FUSED) to several GB (DeepCDR's head), and mapping them afresh costs a page fault per 4 kB. Measured with
    ``python benchmarks/lodo_speed.py`` on the 2-core development machine: FUSED steps 1.5x slower without it; with
    only the smaller tensors kept (an mmap threshold of 1 GB, the setting before), DeepCDR spent a third of its CPU
    time in the kernel and 8 LODO folds x 2 epochs took 1.4x as long (docs/results.md). No-op outside glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_mmap_max, 0)  # no allocation is mapped on its own: all come from the heap and go back to it
    libc.mallopt(m_trim_threshold, -1)  # glibc stores it as a size_t: never give the heap's top back to the system


def _span(values: list[float]) -> str:
    """'0.412' or '0.398-0.455': the range of a metric over the slots."""
    low, high = min(values), max(values)
    return f"{low:.3f}" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f}-{high:.3f}"


def _padded_orders(orders: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Orders (S, n) filled up to a multiple of ``size`` (of the longest) with their first entries, and which
    positions are real."""
    n = -(-max(len(order) for order in orders) // size) * size
    padded = np.stack([np.resize(order, n) for order in orders])
    return padded, np.arange(n)[None, :] < np.array([len(order) for order in orders])[:, None]
