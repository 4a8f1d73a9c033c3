"""The multi-fold training loop: folds stream through the slots of one batched model over the drug x cell grid.

Each step takes, for every slot, all drugs x one tile of cell lines (the slot's own shuffled order), weights the
squared error by the number of measurements of each grid cell that the slot's fold marks TRAIN, and sums the
per-slot mean losses. After every epoch each slot predicts the grid cells its fold marks VAL or TEST; validation MSE
drives early stopping, and the test predictions of the best validation epoch are kept. A finished slot takes the
next fold from the queue. Everything a fold draws (initial weights, data order) comes from its own name and seed,
so a fold gives the same result whichever slot, group or machine trains it.
"""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from fused_train.data import Graphs, Inputs
from fused_train.models.slots import GraphBatch, SlotAdam, SlotModel
from fused_train.splits import TEST, TRAIN, VAL, Fold


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every fold of a run."""

    max_epochs: int = 100
    patience: int = 5
    lr: float = 1e-3
    weight_decay: float = 0.0
    cells_per_step: int = 64
    slots: int = 8
    seed: int = 0
    device: str = "cpu"
    select_by: str = "rmse"
    """Early stopping and the kept epoch: lowest validation ``rmse``, or highest mean per-drug validation PCC
    (``drug-pcc``, the LODO question: does the model rank the cell lines of a drug it has not seen?)."""
    precision: str = "auto"
    """fp32, bf16 (autocast), or auto: bf16 on CUDA with bf16 and on CPUs with native bf16 (AVX512-BF16/AMX), else
    fp32. bf16 halves the memory traffic that bounds the grid's elementwise work (measured 2x per step here)."""


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


def fold_seed(*key: object) -> int:
    """A 63-bit seed from a stable hash of ``key`` (e.g. the run seed and the fold name)."""
    return int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little") >> 1


@dataclass
class _Slot:
    fold: Fold
    epoch: int = 0
    order: np.ndarray | None = None
    best_loss: float = float("inf")
    best_epoch: int = -1
    best_pred: np.ndarray | None = None
    curve: list[dict[str, float]] = field(default_factory=list)
    train_loss: float = 0.0
    scalers: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class Trainer:
    """Trains folds with one batched model of up to ``config.slots`` slots; ``build(n_slots)`` makes the model."""

    def __init__(self, inputs: Inputs, build: Callable[[int], SlotModel], config: TrainConfig) -> None:
        self.inputs, self.build, self.config = inputs, build, config
        self.device = torch.device(config.device)
        self.bf16 = resolve_precision(config.precision, config.device) == "bf16"
        if self.device.type == "cpu":
            _reuse_freed_memory()
        count, mean = inputs.grid()
        self.count_np, self.target_np = count, mean
        self.count = torch.from_numpy(count).to(self.device)
        self.target = torch.from_numpy(mean).to(self.device)
        self.cells = {n: torch.from_numpy(x).to(self.device) for n, x in inputs.cells.items()}
        self.drug = (
            _graph_batch(inputs.drug, self.device)
            if isinstance(inputs.drug, Graphs)
            else torch.from_numpy(inputs.drug).to(self.device)
        )
        n_cells = len(inputs.cell_ids)
        step = config.cells_per_step
        self.tiles = [(k, min(k + step, n_cells)) for k in range(0, n_cells, step)]

    def run(self, folds: list[Fold], quiet: bool = False) -> Iterator[FoldResult]:
        """Train ``folds``; yields each as it finishes (so a caller can save it at once)."""
        queue = list(folds)
        n = min(self.config.slots, len(queue))
        if n == 0:
            return
        model = self.build(n).to(self.device)
        slots: list[_Slot] = []
        for s in range(n):
            slots.append(self._start(model, s, queue.pop(0)))
        optimizer = SlotAdam(model, lr=self.config.lr, weight_decay=self.config.weight_decay)
        scalers = self._stack_scalers(slots)
        bar = tqdm(total=len(folds), desc="folds", unit="fold", disable=quiet)
        while slots:
            for s in slots:
                s.order = np.random.default_rng(fold_seed(self.config.seed, s.fold.name, s.epoch)).permutation(
                    len(self.inputs.cell_ids)
                )
                s.train_loss = 0.0
            roles = torch.from_numpy(np.stack([s.fold.roles for s in slots])).to(self.device)
            model.train()
            for start, stop in self.tiles:
                index = torch.from_numpy(np.stack([s.order[start:stop] for s in slots])).to(self.device)
                losses = self._step_losses(model, scalers, roles, index)
                losses.sum().backward()
                optimizer.step()
                for s, loss in zip(slots, losses.detach().cpu().tolist(), strict=True):
                    s.train_loss += loss / len(self.tiles)
            epochs = [s.epoch for s in slots]
            bar.set_postfix_str(f"epoch {min(epochs)}-{max(epochs)} in {len(slots)} slots")
            keep: list[int] = []
            for i, (s, pred) in enumerate(zip(slots, self._evaluate(model, scalers, slots), strict=True)):
                done = self._end_epoch(s, pred)
                if done is None:
                    keep.append(i)
                    continue
                yield done
                bar.update()
                if queue:
                    slots[i] = self._start(model, i, queue.pop(0))
                    optimizer.reset_slot(i)
                    keep.append(i)
            if len(keep) < len(slots):
                index = torch.tensor(keep, dtype=torch.long, device=self.device)
                model.keep_slots(index)
                optimizer.keep_slots(index)
                slots = [slots[i] for i in keep]
            if slots:
                scalers = self._stack_scalers(slots)
        bar.close()

    def _start(self, model: SlotModel, slot: int, fold: Fold) -> _Slot:
        model.reset_slot(slot, fold_seed(self.config.seed, fold.name, "init"))
        return _Slot(fold, scalers=self._scalers(fold))

    def _scalers(self, fold: Fold) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Mean and sd of each input and of ln IC50, from the fold's TRAIN entities and pairs only."""
        count, target = self.count_np, self.target_np
        train = (fold.roles == TRAIN) & (count > 0)
        w = count * train
        mean = float((w * target).sum() / w.sum())
        sd = float(np.sqrt((w * (target - mean) ** 2).sum() / w.sum()))
        out = {"y": (np.array(mean), np.array(sd))}
        if isinstance(self.inputs.drug, np.ndarray):
            out["drug"] = _standardise(self.inputs.drug[train.any(axis=1)])
        for name, x in self.inputs.cells.items():
            out[name] = _standardise(x[train.any(axis=0)])
        return out

    def _stack_scalers(self, slots: list[_Slot]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        def stack(values: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(values).astype(np.float32)).to(self.device)

        return {
            k: (stack([s.scalers[k][0] for s in slots]), stack([s.scalers[k][1] for s in slots]))
            for k in slots[0].scalers
        }

    def _inputs(self, scalers: dict, index: torch.Tensor) -> tuple:
        """Scaled drug features (or graphs) and the cell tile ``index`` (S, c) of every token, per slot."""
        cells = {n: (x[index] - scalers[n][0][:, None]) / scalers[n][1][:, None] for n, x in self.cells.items()}
        if isinstance(self.drug, GraphBatch):
            return self.drug, cells
        mu, sd = scalers["drug"]
        return (self.drug[None] - mu[:, None]) / sd[:, None], cells

    def _step_losses(self, model: SlotModel, scalers: dict, roles: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        drug, cells = self._inputs(scalers, index)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            pred = model(drug, None, cells).float()  # (S, A, c)
        target = self.target[:, index].permute(1, 0, 2)
        weight = self.count[:, index].permute(1, 0, 2) * (torch.gather(roles, 2, _expand(index, roles)) == TRAIN)
        mu, sd = scalers["y"]
        z = (target - mu[:, None, None]) / sd[:, None, None]
        loss = (weight * (pred - z) ** 2).sum(dim=(1, 2))
        return loss / weight.sum(dim=(1, 2)).clamp(min=1)

    @torch.no_grad()
    def _evaluate(self, model: SlotModel, scalers: dict, slots: list[_Slot]) -> list[np.ndarray]:
        """Predictions (ln IC50) of each slot on the drug rows and cell columns holding its VAL and TEST cells."""
        model.eval()
        needed = [(s.fold.roles == VAL) | (s.fold.roles == TEST) for s in slots]
        rows = [np.flatnonzero(m.any(axis=1)) for m in needed]
        cols = [np.flatnonzero(m.any(axis=0)) for m in needed]
        r, c = max(len(x) for x in rows), max(len(x) for x in cols)
        row_index = torch.from_numpy(np.stack([np.resize(x, r) for x in rows])).to(self.device)
        col_index = np.stack([np.resize(x, c) for x in cols])
        step = max(1, self.config.cells_per_step * len(self.inputs.drug_ids) // r)
        parts = []
        for k in range(0, c, step):
            index = torch.from_numpy(col_index[:, k : k + step]).to(self.device)
            drug, cells = self._inputs(scalers, index)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                parts.append(model(drug, row_index, cells).float())
        sub = torch.cat(parts, dim=2)
        mu, sd = scalers["y"]
        sub = (sub * sd[:, None, None] + mu[:, None, None]).float().cpu().numpy()
        out = []
        for i in range(len(slots)):
            grid = np.full(self.count.shape, np.nan, dtype=np.float32)
            grid[np.ix_(rows[i], cols[i])] = sub[i, : len(rows[i]), : len(cols[i])]
            out.append(grid)
        return out

    def _end_epoch(self, s: _Slot, pred: np.ndarray) -> FoldResult | None:
        """Record the epoch; returns the fold's result when early stopping (or the epoch limit) ends it."""
        count, target = self.count_np, self.target_np
        val = s.fold.roles == VAL
        w, y, p = count[val], target[val], pred[val]
        mse = float((w * (p - y) ** 2).sum() / w.sum())
        drug_pcc = _mean_row_pcc(np.where(val, count, 0), target, np.nan_to_num(pred))
        s.curve.append({"epoch": s.epoch, "train_loss": s.train_loss, "val_rmse": mse**0.5, "val_pcc": _wpcc(y, p, w),
                        "val_drug_pcc": drug_pcc})  # fmt: skip
        loss = mse if self.config.select_by == "rmse" else -drug_pcc
        if loss < s.best_loss:
            s.best_loss, s.best_epoch = loss, s.epoch
            s.best_pred = pred[s.fold.roles == TEST]
        s.epoch += 1
        if s.epoch - 1 - s.best_epoch < self.config.patience and s.epoch < self.config.max_epochs:
            return None
        return FoldResult(
            s.fold, s.best_epoch, np.flatnonzero(s.fold.roles == TEST), s.best_pred, pd.DataFrame(s.curve)
        )


def _reuse_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of unmapping it: every training step allocates tensors of tens of MB,
    and mapping them afresh costs a page fault per 4 kB (measured: steps 1.5x slower). No-op outside glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, (1 << 31) - 1)


def _expand(index: torch.Tensor, roles: torch.Tensor) -> torch.Tensor:
    return index[:, None, :].expand(roles.shape[0], roles.shape[1], index.shape[1])


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and sd (1 where a column is constant, so it maps to zero rather than NaN)."""
    mean = x.mean(axis=0)
    sd = x.std(axis=0)
    return mean, np.where(sd > 0, sd, 1.0)


def _wpcc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    """Pearson correlation of grid cells weighted by their number of measurements."""
    my, mp = np.average(y, weights=w), np.average(p, weights=w)
    cov = np.average((y - my) * (p - mp), weights=w)
    var = np.average((y - my) ** 2, weights=w) * np.average((p - mp) ** 2, weights=w)
    return float(cov / np.sqrt(var)) if var > 0 else float("nan")


def _mean_row_pcc(w: np.ndarray, y: np.ndarray, p: np.ndarray) -> float:
    """Mean over drugs (rows with at least 3 weighted cells and non-constant values) of their weighted PCC."""
    n = w.sum(axis=1, keepdims=True)
    ok = (n[:, 0] >= 3) & ((w > 0).sum(axis=1) >= 3)
    n = np.where(n > 0, n, 1)
    my, mp = (w * y).sum(axis=1, keepdims=True) / n, (w * p).sum(axis=1, keepdims=True) / n
    cov = (w * (y - my) * (p - mp)).sum(axis=1)
    var = (w * (y - my) ** 2).sum(axis=1) * (w * (p - mp) ** 2).sum(axis=1)
    ok &= var > 0
    return float(np.mean(cov[ok] / np.sqrt(var[ok]))) if ok.any() else float("nan")


def _graph_batch(graphs: Graphs, device: torch.device) -> GraphBatch:
    """Graphs as one sparse, symmetrically normalised adjacency with self loops (Kipf and Welling's GCN)."""
    n = len(graphs.atom_features)
    drug_of_edge = np.repeat(np.arange(len(graphs.edge_offsets) - 1), np.diff(graphs.edge_offsets))
    src = graphs.edges[:, 0] + graphs.atom_offsets[drug_of_edge]
    dst = graphs.edges[:, 1] + graphs.atom_offsets[drug_of_edge]
    src = np.concatenate([src, np.arange(n)])
    dst = np.concatenate([dst, np.arange(n)])
    degree = np.bincount(dst, minlength=n).astype(np.float32)
    values = 1.0 / np.sqrt(degree[src] * degree[dst])
    adjacency = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([dst, src])),
        torch.from_numpy(values.astype(np.float32)),
        (n, n),
        check_invariants=True,
    ).coalesce()
    sizes = np.diff(graphs.atom_offsets)
    members = np.full((len(sizes), int(sizes.max())), n, dtype=np.int64)
    for d, (start, size) in enumerate(zip(graphs.atom_offsets[:-1], sizes, strict=True)):
        members[d, :size] = np.arange(start, start + size)
    return GraphBatch(
        torch.from_numpy(graphs.atom_features).to(device), adjacency.to(device), torch.from_numpy(members).to(device)
    )
