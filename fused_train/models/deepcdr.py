"""DeepCDR (Liu et al. 2020) as its published Keras code builds it (kimmo1019/DeepCDR, ``prog/model.py``,
``prog/layers/graph.py``, ``prog/run_DeepCDR.py``), rewritten for the batched multi-fold engine.

- Drug, graph store: GraphConv layers of widths ``gcn`` (256-256-256-100), each h' = Â (h W + b) (the bias is inside
  the propagated term, Â = D^-1/2 (A + I) D^-1/2), then ReLU -> BatchNorm -> Dropout(0.1); global average pooling
  (``--pooling max``: max). Like DeepCDR's fixed-size batches, every molecule is padded to ``pad_atoms`` (100) atoms
  with zero features and only a self loop; the padded atoms enter BatchNorm and pooling as they do there (computed as
  one row per drug that counts for all its padding atoms: they hold the same state).
- Drug, dense store (the FM variant: an FM embedding replaces the GCN): the omics subnetwork below over the embedding.
- Expression, methylation and any other dense cell token (an scFM embedding): Dense(256, tanh) -> BatchNorm ->
  Dropout(0.1) -> Dense(100, relu) (``branch``).
- Mutation (the token named ``mutation``): Conv(50, width 700, stride 5, tanh) -> MaxPool 5 -> Conv(30, width 5,
  stride 2, relu) -> MaxPool 10 -> Dense(100, relu) -> Dropout(0.1), over our gene-level vector (6,163 genes in
  alphabetical order); DeepCDR's input is 34,673 binary loci.
- Head on the concatenation: Dense(300, tanh) -> Dropout(0.1) -> Conv(30, 150, relu) -> MaxPool 2 -> Conv(10, 5,
  relu) -> MaxPool 3 -> Conv(5, 5, relu) -> MaxPool 3 -> Dropout(0.1) -> Dropout(0.2) -> Dense(1).
- Keras initialisation: Glorot-uniform kernels, zero biases, BatchNorm gamma 1 and beta 0; BatchNorm epsilon 1e-3,
  running statistics debiased exponential averages of the batch mean and unbiased variance (Keras 2 on TensorFlow).

On the grid: the drug branch runs once per drug and each cell branch once per cell line of the tile. Dense(300) is
linear in the concatenation, so it splits into a per-drug and a per-cell term added on the (drug x cell) grid; tanh,
dropout and the convolution stack then run per pair: the first convolution and its max-pooling as products with
banded matrices (``_head``), the next two with ``F.conv1d``. The mutation branch's convolutions are products with the
unfolded input (6x faster in bf16 than ``F.conv1d``, whose weight gradient is slow here).
``benchmarks/deepcdr_speed.py`` measures the speed against the previous code (padding atoms computed one by one, a
float32 head, one random word per dropout element) and that both give the same predictions without dropout.

Independence of folds and of held-out data: BatchNorm statistics are per slot and, in training, computed only on the
slot's TRAIN entities (``set_train_rows``: drugs, and cell lines of the tile, that have TRAIN pairs in the fold), so a
held-out drug or cell line influences nothing; eval mode uses the slot's running statistics. Dropout masks come from
a generator per slot seeded by the fold (``reset_slot``), so a fold draws the same masks in any slot or batch.

Deliberate deviations (and the README's list of what the engine does differently):
- BatchNorm statistics are over entities (each TRAIN drug's atoms once, each TRAIN cell line of the tile once), not
  over the pairs of a 64-pair batch where a drug's atoms count once per pair.
- Running statistics keep ``bn_momentum`` = 0.9 of the old average per step, not Keras's 0.99: DeepCDR takes ~1,600
  steps per epoch, this engine ~9 (all drugs x 64 cell lines), so 0.99 would average over ten stale epochs.
- Mutation is gene-level (theirs locus-level); the convolution runs over genes in alphabetical order.
- In training, a drug's padding atoms share one dropout mask per GCN layer (in DeepCDR each atom has its own); dropout
  keeps an element with probability round(65536 (1 - rate)) / 65536 (within 1e-5 of 1 - rate) and scales by its
  inverse; the head's two dropouts in a row (0.1, 0.2) are one of rate 0.28, the same distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fused_train.data import Graphs, InputShapes
from fused_train.models.registry import ModelError, option
from fused_train.models.slots import DrugInput, SlotModel, linear, take_rows
from fused_train.seeding import stable_seed

HEAD = 300
"""Width of the head's dense layer, the length its convolutions run over."""
HEAD_CONVS = ((30, 150, 2), (10, 5, 3), (5, 5, 3))
"""The head's convolutions: (filters, width, max-pool size); stride 1, ReLU."""
MUTATION_CONVS = ((50, 700, 5, 5), (30, 5, 2, 10))
"""The mutation branch's convolutions: (filters, width, stride, max-pool size); tanh, then ReLU."""
BN_EPSILON = 1e-3


def conv_length(n: int, width: int, stride: int, pool: int) -> int:
    """Output length of a 'valid' convolution followed by a 'valid' max-pool (Keras' defaults)."""
    return ((n - width) // stride + 1) // pool


@dataclass(frozen=True)
class GraphBatch:
    """Atom graphs of all drugs, shared by every slot: atom features (N, f), the normalised adjacency Â (N, N,
    sparse), the drug of each atom (N,) and the atom count of each drug (A,)."""

    atoms: Tensor
    adjacency: Tensor
    atom_drug: Tensor
    sizes: Tensor


@dataclass(frozen=True)
class DeepCDROptions:
    gcn: tuple[int, ...] = option((256, 256, 256, 100), "GCN layer widths (graph drug input).")
    pooling: str = option("average", "Pooling of the GCN's atom states: average (DeepCDR's default) or max.")
    pad_atoms: int = option(100, "Atoms every molecule is padded to, as in DeepCDR's batches (0: no padding).")
    branch: tuple[int, ...] = option((256, 100), "Widths a,b of Dense(a, tanh)-BatchNorm-Dropout-Dense(b, relu): "
                                     "the expression, methylation (scFM) subnetworks and the MLP over a dense drug "
                                     "embedding.")  # fmt: skip
    dropout: float = option(0.1, "Rate of each of DeepCDR's Dropout(0.1) layers.")
    dropout_out: float = option(0.2, "Rate of the dropout before the output layer.")
    bn_momentum: float = option(0.9, "Share of the old BatchNorm running statistics kept per step (Keras' momentum).")

    def __post_init__(self) -> None:
        if self.pooling not in ("average", "max"):
            raise ModelError(f"pooling must be average or max, not {self.pooling!r}")
        if len(self.branch) != 2 or not self.gcn:
            raise ModelError("branch takes two widths (Dense(a)-BatchNorm-Dropout-Dense(b)); gcn at least one")
        if not (0 <= self.dropout < 1 and 0 <= self.dropout_out < 1 and 0 <= self.bn_momentum < 1):
            raise ModelError("dropout rates and bn_momentum must be in [0, 1)")
        if self.pad_atoms < 0:
            raise ModelError("pad_atoms must be >= 0")


class DeepCDRSlots(SlotModel):
    Options = DeepCDROptions
    drug_inputs = ("dense", "graph")

    def __init__(self, n_slots: int, shapes: InputShapes, options: DeepCDROptions = DeepCDROptions()) -> None:
        super().__init__(n_slots)
        self.options = options
        self.graph, self.cell_names = shapes.drug_kind == "graph", list(shapes.cell_dims)
        self._init: dict[str, float | str] = {}
        """Per parameter: its Glorot bound, "zeros" (biases, BatchNorm beta) or "ones" (BatchNorm gamma)."""
        self._generators = [torch.Generator() for _ in range(n_slots)]
        self._train_rows: tuple[Tensor, Tensor] | None = None
        if self.graph:
            widths = [shapes.drug_dim, *options.gcn]
            for i in range(len(options.gcn)):
                self._dense(f"gcn_{i}", widths[i], widths[i + 1])
                self._batch_norm(f"gcn_{i}_bn", widths[i + 1])
        else:
            self._branch("drug", shapes.drug_dim)
        drug_width = options.gcn[-1] if self.graph else options.branch[1]
        for name, dim in shapes.cell_dims.items():
            if name == "mutation":
                self._mutation_branch(dim)
            else:
                self._branch(name, dim)
        # Dense(300) over the concatenation, split into its drug rows (with the bias) and each cell token's rows
        cell_widths = {n: 100 if n == "mutation" else options.branch[1] for n in self.cell_names}
        fan_in = drug_width + sum(cell_widths.values())
        self._dense("head_drug", drug_width, HEAD, fan_in=fan_in)
        for name, width in cell_widths.items():
            self._param(f"head_{name}", width, HEAD, init=_glorot(fan_in, HEAD))
        n_in, length = 1, HEAD
        for i, (filters, width, pool) in enumerate(HEAD_CONVS):
            self._conv(f"head_conv_{i}", n_in, filters, width)
            n_in, length = filters, conv_length(length, width, 1, pool)
        self._dense("out", n_in * length, 1)

    # -- parameters, Keras' initialisation, slots -------------------------------------------------------------------

    def _param(self, name: str, *shape: int, init: float | str) -> None:
        self.register_parameter(name, torch.nn.Parameter(torch.empty(self.n_slots, *shape)))
        self._init[name] = init

    def _dense(self, name: str, n_in: int, n_out: int, fan_in: int | None = None) -> None:
        """Kernel (S, n_in, n_out) and bias (S, n_out) of a Keras Dense layer (fan_in: of the whole layer if this is
        a slice of it)."""
        self._param(name, n_in, n_out, init=_glorot(fan_in or n_in, n_out))
        self._param(f"{name}_b", n_out, init="zeros")

    def _conv(self, name: str, n_in: int, filters: int, width: int) -> None:
        """Kernel (S, filters, n_in, width) and bias (S, filters) of a 1-D convolution (Keras' Conv2D on a 1 x n
        image: Glorot fans are width x channels)."""
        self._param(name, filters, n_in, width, init=_glorot(n_in * width, filters * width))
        self._param(f"{name}_b", filters, init="zeros")

    def _batch_norm(self, name: str, width: int) -> None:
        """Gamma, beta, and per-slot running statistics: debiased averages (sums and update count, as buffers)."""
        self._param(f"{name}_g", width, init="ones")
        self._param(f"{name}_b", width, init="zeros")
        for stat in ("mean", "var"):
            self.register_buffer(f"{name}_{stat}", torch.zeros(self.n_slots, width))
        self.register_buffer(f"{name}_updates", torch.zeros(self.n_slots))

    def _branch(self, name: str, dim: int) -> None:
        a, b = self.options.branch
        self._dense(f"{name}_0", dim, a)
        self._batch_norm(f"{name}_bn", a)
        self._dense(f"{name}_1", a, b)

    def _mutation_branch(self, dim: int) -> None:
        n_in, length = 1, dim
        for i, (filters, width, stride, pool) in enumerate(MUTATION_CONVS):
            self._conv(f"mutation_conv_{i}", n_in, filters, width)
            n_in, length = filters, conv_length(length, width, stride, pool)
        if length < 1:
            raise ModelError(f"DeepCDR's mutation convolutions need more than the {dim} mutation features given")
        self._dense("mutation_dense", n_in * length, 100)

    def reset_slot(self, slot: int, seed: int) -> None:
        """Keras' initialisation drawn from ``seed``, zeroed running statistics and the slot's dropout generator."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in self.named_parameters():
                init = self._init[name]
                if isinstance(init, str):
                    values = torch.full(param.shape[1:], 1.0 if init == "ones" else 0.0)
                else:
                    values = torch.rand(param.shape[1:], generator=generator) * 2 * init - init
                param[slot].copy_(values)
            for buffer in self.buffers():
                buffer[slot] = 0
        device = next(self.parameters()).device
        self._generators[slot] = torch.Generator(device).manual_seed(stable_seed(seed, "dropout"))

    def keep_slots(self, keep: Tensor) -> None:
        super().keep_slots(keep)
        for name, buffer in list(self.named_buffers()):
            self.register_buffer(name, buffer[keep].clone())
        self._generators = [self._generators[i] for i in keep.tolist()]

    def set_train_rows(self, drugs: Tensor, cells: Tensor) -> None:
        self._train_rows = (drugs, cells)  # used by the next forward only

    # -- layers -----------------------------------------------------------------------------------------------------

    def _dropout(self, x: Tensor, rate: float) -> Tensor:
        """Inverted dropout of x (S, ...), each slot's mask drawn from that slot's generator; identity in eval.

        An element is kept where a uniform 16-bit draw is at least ``round(rate * 65536)``: with keep probability
        within 1e-5 of 1 - rate, scaled by its exact inverse (the expectation is x). Four draws come from each
        64-bit word of the generator (``bernoulli_`` draws one word per element, a large share of a step)."""
        if not self.training or rate == 0:
            return x
        dropped = round(rate * 65536)
        n = x[0].numel()
        bits = torch.empty(len(self._generators), -(-n // 4), dtype=torch.int64, device=x.device)
        for s, generator in enumerate(self._generators):
            bits[s].random_(-(2**63), None, generator=generator)  # all 64 bits uniform
        keep = bits.view(torch.int16)[:, :n].view(x.shape) >= dropped - 32768
        return (x * keep).mul_(65536 / (65536 - dropped))

    def _bn(self, name: str, x: Tensor, rows: Tensor | None) -> Tensor:
        """BatchNorm of x (S, n, w) over its n rows: in training with the statistics of the rows weighted by ``rows``
        (S, n: 0/1 marks, or how many rows a row stands for; all once if None), which also update the running
        statistics; in eval with the running statistics."""
        mean_sum, var_sum, updates = (getattr(self, f"{name}_{k}") for k in ("mean", "var", "updates"))
        debias = (1 - self.options.bn_momentum**updates).clamp(min=1e-12)[:, None]
        run_mean = torch.where(updates[:, None] > 0, mean_sum / debias, 0.0)  # (S, w); Keras starts at 0 and 1
        run_var = torch.where(updates[:, None] > 0, var_sum / debias, 1.0)
        x = x.float()
        mean, var = run_mean, run_var
        if self.training:
            weight = torch.ones(x.shape[:2], device=x.device) if rows is None else rows.float()  # (S, n)
            count = weight.sum(1)
            w = (weight / count.clamp(min=1)[:, None])[:, None]  # (S, 1, n)
            with torch.autocast(x.device.type, enabled=False):  # statistics in fp32
                batch_mean = torch.bmm(w, x)[:, 0]
                batch_var = (torch.bmm(w, x * x)[:, 0] - batch_mean**2).clamp(min=0)
            has = (count > 1)[:, None]  # a slot without TRAIN rows here keeps its running statistics
            mean, var = torch.where(has, batch_mean, run_mean), torch.where(has, batch_var, run_var)
            with torch.no_grad():
                m = self.options.bn_momentum
                unbiased = batch_var * (count / (count - 1 - BN_EPSILON).clamp(min=1e-12))[:, None]
                mean_sum.copy_(torch.where(has, m * mean_sum + (1 - m) * batch_mean, mean_sum))
                var_sum.copy_(torch.where(has, m * var_sum + (1 - m) * unbiased, var_sum))
                updates.add_(has[:, 0].float())
        scale = getattr(self, f"{name}_g") * torch.rsqrt(var + BN_EPSILON)  # (S, w)
        return torch.addcmul((getattr(self, f"{name}_b") - mean * scale)[:, None], x, scale[:, None])

    def _branch_forward(self, name: str, x: Tensor, rows: Tensor | None) -> Tensor:
        """Dense(a, tanh) -> BatchNorm -> Dropout -> Dense(b, relu): x (S, n, d) -> (S, n, b)."""
        h = torch.tanh(linear(x, getattr(self, f"{name}_0"), getattr(self, f"{name}_0_b")))
        h = self._dropout(self._bn(f"{name}_bn", h, rows), self.options.dropout)
        return torch.relu(linear(h, getattr(self, f"{name}_1"), getattr(self, f"{name}_1_b")))

    def _mutation_forward(self, x: Tensor) -> Tensor:
        """DeepCDR's convolutional branch, channels last: x (S, c, L) -> (S, c, 100)."""
        S, c = x.shape[:2]
        if torch.is_autocast_enabled(x.device.type):  # cast before the 700-wide windows are copied, not after
            x = x.to(torch.get_autocast_dtype(x.device.type))
        h = x[..., None]  # (S, c, L, 1)
        for i, (filters, width, stride, pool) in enumerate(MUTATION_CONVS):
            weight, bias = getattr(self, f"mutation_conv_{i}"), getattr(self, f"mutation_conv_{i}_b")
            windows = h.unfold(2, width, stride)  # (S, c, L', channels, width)
            n = windows.shape[2]
            h = windows.reshape(S, c * n, -1) @ weight.flatten(2).transpose(1, 2)
            h = h + bias[:, None].to(h.dtype)  # a float32 bias would promote the product to float32
            h = (torch.tanh if i == 0 else torch.relu)(h).view(S, c, n, filters)
            h = h[:, :, : n // pool * pool].reshape(S, c, n // pool, pool, filters).amax(3)  # (S, c, L'', filters)
        h = torch.relu(linear(h.reshape(S, c, -1), self.mutation_dense, self.mutation_dense_b))
        return self._dropout(h, self.options.dropout)

    def _gcn_forward(self, graphs: GraphBatch, rows: Tensor | None) -> Tensor:
        """GCN over all drugs' atoms, pooled per drug: -> (S, A, gcn[-1]).

        DeepCDR pads every molecule to ``pad_atoms`` atoms with zero features and a self loop only, and those atoms
        enter BatchNorm and the average. Without dropout they all hold the same state, so each drug's padding is one
        row here, counted ``pad_atoms - size`` times in the BatchNorm statistics and the pooling: exactly DeepCDR's
        numbers with 3x fewer rows (7,262 instead of 22,300 on the bundled data). In training, a drug's padding atoms
        share one dropout mask per layer (in DeepCDR each has its own)."""
        S, n_atoms, n_drugs = self.n_slots, len(graphs.atoms), len(graphs.sizes)
        pad = self.options.pad_atoms
        if pad and (graphs.sizes > pad).any():
            raise ModelError(f"a molecule has {int(graphs.sizes.max())} atoms, more than pad_atoms={pad}")
        nodes = torch.cat([graphs.atoms, graphs.atoms.new_zeros(n_drugs if pad else 0, graphs.atoms.shape[1])])
        weight = torch.ones(len(nodes), device=nodes.device)  # how many of DeepCDR's atoms a row stands for
        if pad:
            weight[n_atoms:] = pad - graphs.sizes
        node_drug = torch.cat([graphs.atom_drug, torch.arange(n_drugs, device=nodes.device)[: len(nodes) - n_atoms]])
        node_rows = None if rows is None else rows[:, node_drug] * weight  # (S, rows): atoms of TRAIN drugs
        if node_rows is None and pad:
            node_rows = weight.expand(S, -1)
        h = nodes.expand(S, *nodes.shape)
        for i in range(len(self.options.gcn)):
            z = linear(h, getattr(self, f"gcn_{i}"), getattr(self, f"gcn_{i}_b"))  # (S, rows, w): h W + b
            width = z.shape[-1]
            with torch.autocast(z.device.type, enabled=False):  # sparse products stay fp32 (no bf16 backward)
                real = z[:, :n_atoms].float().permute(1, 0, 2).reshape(n_atoms, S * width)
                mixed = torch.sparse.mm(graphs.adjacency, real).view(n_atoms, S, width).permute(1, 0, 2)
            h = torch.cat([mixed, z[:, n_atoms:].float()], dim=1) if pad else mixed  # padding: a self loop only
            h = self._dropout(self._bn(f"gcn_{i}_bn", torch.relu(h), node_rows), self.options.dropout)
        index = node_drug[None, :, None].expand_as(h)
        if self.options.pooling == "max":
            h = h.masked_fill((weight == 0)[None, :, None], -math.inf)  # a drug with no padding has no padding row
            return h.new_full((S, n_drugs, h.shape[-1]), -math.inf).scatter_reduce(1, index, h, "amax")
        counts = pad if pad else graphs.sizes[None, :, None]  # with padding every molecule has pad atoms
        return h.new_zeros(S, n_drugs, h.shape[-1]).scatter_add(1, index, h * weight[:, None]) / counts

    def _head(self, x: Tensor) -> Tensor:
        """The convolution stack per pair: x (S, n, 300) after tanh and dropout -> (S, n) predictions.

        The first convolution and its max-pooling are products with one banded (Toeplitz) matrix per position of the
        pooling window and their elementwise maximum: T[j, s, i, (f, t)] = kernel[s, f, i - (p t + j)] where that is
        inside the kernel, else 0, built as a product with the 0/1 placement of each kernel tap (the backward of an
        indexed copy sums in a thread-dependent order). Twice the multiply-adds of a direct convolution, but products
        over windows of 15 pooled positions (1.2x a direct convolution's) took longer here: the head is bound by its
        elementwise passes over the (pairs x 2,250) outputs, not by multiply-adds. Everything stays in the input's
        dtype (a float32 bias would promote the bf16 grid to float32)."""
        S, n = x.shape[:2]
        (f0, w0, p0), *rest = HEAD_CONVS
        pooled = (HEAD - w0 + 1) // p0
        start = p0 * torch.arange(pooled, device=x.device) + torch.arange(p0, device=x.device)[:, None]  # (p0, t)
        offset = torch.arange(HEAD, device=x.device)[:, None] - start[:, None]  # (p0, 300, t)
        placement = (offset == torch.arange(w0, device=x.device)[:, None, None, None]).float()  # (w0, p0, 300, t)
        toeplitz = (self.head_conv_0[:, :, 0] @ placement.view(w0, -1)).view(S, f0, p0, HEAD, pooled)
        toeplitz = toeplitz.permute(2, 0, 3, 1, 4).reshape(p0, S, HEAD, f0 * pooled)
        h = x @ toeplitz[0]
        for j in range(1, p0):
            h = _Maximum.apply(h, x @ toeplitz[j])  # max-pooling over the window
        # ReLU after the pooling (they commute) and the bias (one per filter) too
        h = torch.relu(h.view(S, n, f0, pooled) + self.head_conv_0_b[:, None, :, None].to(h.dtype))
        out = []
        for s, hs in enumerate(h.unbind(0)):  # per slot: each has its own kernels (unbind: no per-slot zero fill)
            for i, (_, _, pool) in enumerate(rest, start=1):
                weight, bias = getattr(self, f"head_conv_{i}")[s], getattr(self, f"head_conv_{i}_b")[s]
                hs = torch.relu(F.max_pool1d(F.conv1d(hs, weight, bias), pool))
            out.append(hs.flatten(1))
        rate = 1 - (1 - self.options.dropout) * (1 - self.options.dropout_out)  # two dropouts in a row are one
        return linear(self._dropout(torch.stack(out), rate), self.out, self.out_b).squeeze(-1)

    @classmethod
    def drug_tensor(cls, drug: np.ndarray | Graphs, device: torch.device) -> Tensor | GraphBatch:
        """Graphs as one sparse adjacency with self loops, normalised D^-1/2 (A + I) D^-1/2 as DeepCDR's
        ``NormalizeAdj``."""
        if not isinstance(drug, Graphs):
            return super().drug_tensor(drug, device)
        n = len(drug.atom_features)
        drug_of_edge = np.repeat(np.arange(len(drug.edge_offsets) - 1), np.diff(drug.edge_offsets))
        src = np.concatenate([drug.edges[:, 0] + drug.atom_offsets[drug_of_edge], np.arange(n)])
        dst = np.concatenate([drug.edges[:, 1] + drug.atom_offsets[drug_of_edge], np.arange(n)])
        degree = np.bincount(dst, minlength=n).astype(np.float32)
        values = 1.0 / np.sqrt(degree[src] * degree[dst])
        adjacency = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([dst, src])),
            torch.from_numpy(values.astype(np.float32)),
            (n, n),
            check_invariants=True,
        ).coalesce()
        sizes = np.diff(drug.atom_offsets)
        atom_drug = np.repeat(np.arange(len(sizes)), sizes)
        return GraphBatch(
            torch.from_numpy(drug.atom_features).to(device),
            adjacency.to(device),
            torch.from_numpy(atom_drug).to(device),
            torch.from_numpy(sizes).to(device),
        )

    def forward(self, drug: DrugInput, drug_rows: Tensor | None, cells: dict[str, Tensor]) -> Tensor:
        rows, self._train_rows = self._train_rows, None
        train_drugs, train_cells = rows if rows is not None and self.training else (None, None)
        if isinstance(drug, GraphBatch):
            drug_states = self._gcn_forward(drug, train_drugs)
        else:
            drug_states = self._branch_forward("drug", drug, train_drugs)
        u_drug = linear(take_rows(drug_states, drug_rows), self.head_drug, self.head_drug_b)  # (S, a, 300)
        u_cell = 0
        for name in self.cell_names:
            if name == "mutation":
                h = self._mutation_forward(cells[name])
            else:
                h = self._branch_forward(name, cells[name], train_cells)
            u_cell = u_cell + torch.bmm(h, getattr(self, f"head_{name}"))  # (S, c, 300)
        S, a, c = u_drug.shape[0], u_drug.shape[1], u_cell.shape[1]
        h = self._dropout(torch.tanh(u_drug[:, :, None] + u_cell[:, None]), self.options.dropout)  # (S, a, c, 300)
        return self._head(h.reshape(S, a * c, HEAD)).view(S, a, c)


class _Maximum(torch.autograd.Function):
    """Elementwise max(a, b) whose backward routes the gradient by a saved boolean mask (torch.maximum's backward,
    which also splits ties, took half of the head's time here)."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor) -> Tensor:
        first = a >= b
        ctx.save_for_backward(first)
        return torch.maximum(a, b)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        (first,) = ctx.saved_tensors
        return grad * first, grad * ~first


def _glorot(fan_in: int, fan_out: int) -> float:
    """Keras' glorot_uniform bound."""
    return math.sqrt(6.0 / (fan_in + fan_out))
