"""Models: the folded grid arithmetic equals the per-pair model."""

from __future__ import annotations

import torch
from helpers import TINY

from fused_train.data import InputShapes
from fused_train.models.fused import FusedReference, FusedSlots


def test_folded_grid_model_equals_per_pair_attention() -> None:
    """FusedSlots' entity-level, folded arithmetic gives what nn.MultiheadAttention gives pair by pair."""
    dims = {"expression": 11, "methylation": 6}
    shapes = InputShapes(13, "dense", dims)
    model = FusedSlots(2, shapes, TINY)
    for s in range(2):
        model.reset_slot(s, seed=s)
    drug, cells = torch.randn(2, 5, 13), {k: torch.randn(2, 7, d) for k, d in dims.items()}
    grid = model(drug, None, cells)
    a, c = (x.flatten() for x in torch.meshgrid(torch.arange(5), torch.arange(7), indexing="ij"))
    for s in range(2):
        reference = FusedReference(shapes, TINY).load_slot(model, s)
        per_pair = reference({"drug": drug[s][a]} | {k: cells[k][s][c] for k in dims})
        torch.testing.assert_close(per_pair.view(5, 7), grid[s], atol=1e-5, rtol=1e-5)
