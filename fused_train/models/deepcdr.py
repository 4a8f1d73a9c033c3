"""DeepCDR-style baseline (Liu et al. 2020): a drug branch and one subnetwork per omics, concatenated, regressed.

Drug branch: a GCN over the ``graph`` store's atom graphs (DeepCDR's 75 atom features; layers of widths
``gcn`` with ReLU, Kipf-Welling normalisation, global max pooling), or, for the paper's FM variants, an MLP over a
dense drug embedding (an FM replacing the GCN). Each cell token (expression, methylation, mutation, or an scFM
embedding in front of the expression subnetwork) goes through Dense(256)-ReLU-Dense(100). The regressor is an MLP
(300-100-1, tanh then ReLU); DeepCDR's 1-D convolutions over the concatenated vector are not reproduced. Its first
layer is linear in the concatenation, so it splits into a per-drug and a per-cell part that the grid adds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from fused_train.models.slots import DrugInput, GraphBatch, SlotModel, linear, take_rows


class DeepCDRSlots(SlotModel):
    def __init__(
        self, n_slots: int, drug_dim: int, cell_dims: dict[str, int], graph: bool,
        gcn: Sequence[int] = (256, 256, 256, 100), branch: Sequence[int] = (256, 100),
        hidden: Sequence[int] = (300, 100),
    ) -> None:  # fmt: skip
        super().__init__(n_slots)
        self.graph, self.cell_names = graph, list(cell_dims)
        self.n_gcn, self.n_branch, self.hidden = len(gcn), len(branch), tuple(hidden)
        widths = [drug_dim, *(gcn if graph else branch)]
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
