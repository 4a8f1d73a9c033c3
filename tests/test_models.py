"""Models: the folded grid arithmetic equals the per-pair model, in predictions, gradients and optimizer steps."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY

from fused_train.data import InputShapes
from fused_train.models.fused import FusedReference, FusedSlots
from fused_train.models.slots import SlotAdam


def test_folded_grid_model_equals_per_pair_attention() -> None:
    """FusedSlots' entity-level, folded arithmetic gives what nn.MultiheadAttention gives pair by pair."""
    dims = {"expression": 11, "methylation": 6}
    shapes = InputShapes(13, "dense", dims)
    model = FusedSlots(2, shapes, TINY)
    for s in range(2):
        model.reset_slot(s, seed=s)
    g = torch.Generator().manual_seed(0)
    drug, cells = torch.randn(2, 5, 13, generator=g), {k: torch.randn(2, 7, d, generator=g) for k, d in dims.items()}
    grid = model(drug, None, cells)
    a, c = (x.flatten() for x in torch.meshgrid(torch.arange(5), torch.arange(7), indexing="ij"))
    for s in range(2):
        reference = FusedReference(shapes, TINY).load_slot(model, s)
        per_pair = reference({"drug": drug[s][a]} | {k: cells[k][s][c] for k in dims})
        torch.testing.assert_close(per_pair.view(5, 7), grid[s], atol=1e-5, rtol=1e-5)


def _grid_and_reference(seed: int = 0) -> tuple[FusedSlots, FusedReference, dict, torch.Tensor]:
    dims = {"expression": 11, "methylation": 6}
    shapes = InputShapes(13, "dense", dims)
    model = FusedSlots(1, shapes, TINY)
    model.reset_slot(0, seed=seed)
    reference = FusedReference(shapes, TINY).load_slot(model, 0)
    g = torch.Generator().manual_seed(seed)  # not the global generator: the inputs must not depend on other tests
    inputs = {"drug": torch.randn(1, 5, 13, generator=g)} | {
        k: torch.randn(1, 7, d, generator=g) for k, d in dims.items()
    }
    return model, reference, inputs, torch.randn(5, 7, generator=g)


def _losses(model: FusedSlots, reference: FusedReference, inputs: dict, y: torch.Tensor, bf16: bool = False) -> tuple:
    a, c = (x.flatten() for x in torch.meshgrid(torch.arange(5), torch.arange(7), indexing="ij"))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        grid = model(inputs["drug"], None, {k: v for k, v in inputs.items() if k != "drug"}).float()[0]
    per_pair = reference({"drug": inputs["drug"][0][a]} | {k: v[0][c] for k, v in inputs.items() if k != "drug"})
    return ((grid - y) ** 2).mean(), ((per_pair - y.flatten()) ** 2).mean()


@pytest.mark.parametrize(("bf16", "tolerance"), [(False, 1e-5), (True, 0.1)])
def test_folded_grid_model_has_the_gradients_of_per_pair_attention(bf16: bool, tolerance: float) -> None:
    """Every parameter's gradient through the folded grid arithmetic equals the per-pair model's: to 1e-5 of each
    gradient's largest entry in fp32, to 10% under bf16 autocast (measured on these inputs: 1.2%). The key bias has
    no gradient in exact arithmetic (softmax ignores a shift shared by all keys): it is held to 1e-4 of the largest
    gradient of the model instead. The inputs come from their own generator: under bf16 this tiny model's gradients
    differ from fp32 ones by up to 67% on other random inputs (20 seeds tried; 86% before the grid arithmetic was
    rearranged), so drawing them from the global generator made the test depend on the tests run before it."""
    model, reference, inputs, y = _grid_and_reference()
    grid_loss, pair_loss = _losses(model, reference, inputs, y, bf16)
    grid_loss.backward()
    pair_loss.backward()
    layout = reference.slot_layout(grads=True)
    expected = {n: torch.stack(layout[n]) if p.dim() == layout[n][0].dim() + 2 else layout[n][0]
                for n, p in model.named_parameters()}  # fmt: skip
    largest = max(float(e.abs().max()) for e in expected.values())
    for name, param in model.named_parameters():
        scale = max(float(expected[name].abs().max()), 1e-4 * largest)
        torch.testing.assert_close(param.grad[0], expected[name], atol=tolerance * scale, rtol=0, msg=name)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_slot_adam_steps_like_torch_adam_on_the_per_pair_model(weight_decay: float) -> None:
    """Three optimizer steps on the grid model give the parameters torch's Adam (AdamW with weight decay) gives the
    per-pair model."""
    model, reference, inputs, y = _grid_and_reference(seed=3)
    ours = SlotAdam(model, lr=1e-2, weight_decay=weight_decay)
    torch_adam = torch.optim.AdamW if weight_decay else torch.optim.Adam
    theirs = torch_adam(reference.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(3):
        grid_loss, pair_loss = _losses(model, reference, inputs, y)
        grid_loss.backward()
        pair_loss.backward()
        ours.step()
        theirs.step()
        theirs.zero_grad()
    after = FusedReference(InputShapes(13, "dense", {"expression": 11, "methylation": 6}), TINY).load_slot(model, 0)
    theirs_now = reference.slot_layout()
    for name, mine in after.slot_layout().items():
        if name != "att_k_b":  # no gradient in exact arithmetic: Adam turns rounding noise into steps of either sign
            torch.testing.assert_close(mine, theirs_now[name], atol=1e-4, rtol=0, msg=name)  # steps move ~1e-2
