"""DeepCDR-style baseline (Liu et al. 2020): a drug branch and one subnetwork per omics, concatenated, regressed.

Drug branch: a GCN over the ``graph`` store's atom graphs (DeepCDR's 75 atom features; layers of widths
``gcn`` with ReLU, Kipf-Welling normalisation, global max pooling), or, for the paper's FM variants, an MLP over a
dense drug embedding (an FM replacing the GCN). Each cell token (expression, methylation, mutation, or an scFM
embedding in front of the expression subnetwork) goes through Dense(256)-ReLU-Dense(100). The regressor is an MLP
(300-100-1, tanh then ReLU); DeepCDR's 1-D convolutions over the concatenated vector are not reproduced. Its first
layer is linear in the concatenation, so it splits into a per-drug and a per-cell part that the grid adds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fused_train.data import Graphs, InputShapes
from fused_train.models.registry import option
from fused_train.models.slots import DrugInput, SlotModel, linear, take_rows


@dataclass(frozen=True)
class GraphBatch:
    """Atom graphs of all drugs, shared by every slot: features (N, f), normalised adjacency (N, N, sparse) and the
    atom rows of each drug padded with index N (a row of -inf for max pooling), shape (A, max_atoms)."""

    atoms: Tensor
    adjacency: Tensor
    members: Tensor


@dataclass(frozen=True)
class DeepCDROptions:
    gcn: tuple[int, ...] = option((256, 256, 256, 100), "GCN layer widths (graph drug input).")
    branch: tuple[int, ...] = option((256, 100), "Widths of each cell token's subnetwork (and of the drug MLP for a "
                                                 "dense drug embedding).")  # fmt: skip
    hidden: tuple[int, ...] = option((300, 100), "Hidden widths of the regressor after the concatenation.")


class DeepCDRSlots(SlotModel):
    Options = DeepCDROptions
    drug_inputs = ("dense", "graph")

    def __init__(self, n_slots: int, shapes: InputShapes, options: DeepCDROptions = DeepCDROptions()) -> None:
        super().__init__(n_slots)
        gcn, branch, hidden, cell_dims = options.gcn, options.branch, options.hidden, shapes.cell_dims
        self.graph, self.cell_names = shapes.drug_kind == "graph", list(cell_dims)
        self.n_gcn, self.n_branch, self.hidden = len(gcn), len(branch), hidden
        widths = [shapes.drug_dim, *(gcn if self.graph else branch)]
        for i in range(len(widths) - 1):
            self.add_linear(f"drug_{i}", widths[i], widths[i + 1])
        for name, dim in cell_dims.items():
            widths_c = [dim, *branch]
            for i in range(len(branch)):
                self.add_linear(f"{name}_{i}", widths_c[i], widths_c[i + 1])
        self.add_linear("head_drug", widths[-1], hidden[0])
        for name in cell_dims:
            self.add("head_" + name, branch[-1], hidden[0], fan_in=widths[-1] + branch[-1] * len(cell_dims))
        for i in range(1, len(hidden)):
            self.add_linear(f"head_{i}", hidden[i - 1], hidden[i])
        self.add_linear("out", hidden[-1], 1)

    @classmethod
    def drug_tensor(cls, drug: np.ndarray | Graphs, device: torch.device) -> Tensor | GraphBatch:
        """Graphs as one sparse, symmetrically normalised adjacency with self loops (Kipf and Welling's GCN)."""
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
        members = np.full((len(sizes), int(sizes.max())), n, dtype=np.int64)
        for d, (start, size) in enumerate(zip(drug.atom_offsets[:-1], sizes, strict=True)):
            members[d, :size] = np.arange(start, start + size)
        return GraphBatch(
            torch.from_numpy(drug.atom_features).to(device), adjacency.to(device), torch.from_numpy(members).to(device)
        )

    def _drug_states(self, drug: DrugInput) -> Tensor:
        if isinstance(drug, GraphBatch):
            h = drug.atoms.expand(self.n_slots, *drug.atoms.shape)
            n_atoms = drug.atoms.shape[0]
            for i in range(self.n_gcn):
                h = linear(h, getattr(self, f"drug_{i}"), torch.zeros_like(getattr(self, f"drug_{i}_b")))
                width = h.shape[-1]
                with torch.autocast(h.device.type, enabled=False):  # sparse products stay fp32 (no bf16 backward)
                    mixed = torch.sparse.mm(drug.adjacency, h.float().permute(1, 0, 2).reshape(n_atoms, -1))
                h = torch.relu(
                    mixed.view(n_atoms, self.n_slots, width).permute(1, 0, 2) + getattr(self, f"drug_{i}_b")[:, None]
                )
            padded = torch.cat([h, h.new_full((self.n_slots, 1, h.shape[-1]), float("-inf"))], dim=1)
            return padded[:, drug.members].amax(dim=2)  # (S, A, width)
        h = drug
        for i in range(self.n_branch):
            h = torch.relu(linear(h, getattr(self, f"drug_{i}"), getattr(self, f"drug_{i}_b")))
        return h

    def forward(self, drug: DrugInput, drug_rows: Tensor | None, cells: dict[str, Tensor]) -> Tensor:
        states = take_rows(self._drug_states(drug), drug_rows)
        u_drug = linear(states, self.head_drug, self.head_drug_b)  # (S, a, h0)
        u_cell = 0
        for name in self.cell_names:
            h = cells[name]
            for i in range(self.n_branch):
                h = torch.relu(linear(h, getattr(self, f"{name}_{i}"), getattr(self, f"{name}_{i}_b")))
            u_cell = u_cell + torch.bmm(h, getattr(self, "head_" + name))  # (S, c, h0)
        h = torch.tanh(u_drug[:, :, None] + u_cell[:, None])
        for i in range(1, len(self.hidden)):
            h = torch.relu(linear(h, getattr(self, f"head_{i}"), getattr(self, f"head_{i}_b")))
        return linear(h, self.out, self.out_b).squeeze(-1)
