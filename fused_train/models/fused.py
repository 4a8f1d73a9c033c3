"""FUSED (Rössner, Balke, Tang 2025): one token per modality, each contextualised by its own attention block.

Per pair: tokens t_j = net_j(x_j) for the drug and each cell modality (width D); block b attends from token b (query)
to all tokens (keys, values) with H heads; its output goes through the block's output projection and a projection to
width P; the B outputs are concatenated and an MLP regresses ln IC50.

``FusedSlots`` computes exactly this, but arranged for speed on the drug x cell grid. Token networks and the q/k/v
projections depend on one entity only, so they run once per drug and once per cell line. Everything linear after the
attention mixing (output projection, projection to P, first MLP layer) is folded into per-entity value vectors
U = v W_o W_P W_1, so a pair needs only its attention weights (B x H x B numbers) to mix U into the first hidden layer.
``FusedReference`` is the same model written per pair with ``nn.MultiheadAttention``: the tests check that both give
the same predictions for the same parameters, and the speed benchmark trains it as the straightforward reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fused_train.data import InputShapes
from fused_train.models.registry import ModelError, option
from fused_train.models.slots import DrugInput, SlotModel, linear, take_rows


@dataclass(frozen=True)
class FusedOptions:
    width: int = option(128, "Token width: each token network's output and the attention width.")
    heads: int = option(4, "Attention heads per block (must divide --width).")
    proj: int = option(128, "Width each block's output is projected to before concatenation.")
    hidden: tuple[int, ...] = option((256, 64), "Hidden widths of the MLP after the concatenation.")

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ModelError(f"token width {self.width} must be divisible by the number of heads {self.heads}")
        if not self.hidden:
            raise ModelError("the MLP needs at least one hidden layer")


class FusedSlots(SlotModel):
    Options = FusedOptions
    drug_inputs = ("dense",)
    pairs_independent = True

    def __init__(self, n_slots: int, shapes: InputShapes, options: FusedOptions = FusedOptions()) -> None:
        super().__init__(n_slots)
        width, proj, hidden = options.width, options.proj, options.hidden
        self.cell_names = list(shapes.cell_dims)
        self.width, self.heads, self.proj_width, self.hidden = width, options.heads, proj, hidden
        n_tokens = 1 + len(self.cell_names)
        self.n_tokens = n_tokens
        for name, dim in {"drug": shapes.drug_dim, **shapes.cell_dims}.items():
            self.add_linear(f"tok_{name}_1", dim, width)
            self.add_linear(f"tok_{name}_2", width, width)
        for part in ("q", "k", "v", "o"):
            self.add_linear(f"att_{part}", width, width, groups=(n_tokens,))
        self.add_linear("proj", width, proj, groups=(n_tokens,))
        self.add_linear("mlp_0", n_tokens * proj, hidden[0])
        for i in range(1, len(hidden)):
            self.add_linear(f"mlp_{i}", hidden[i - 1], hidden[i])
        self.add_linear("out", hidden[-1], 1)

    def _token(self, name: str, x: Tensor) -> Tensor:
        h = torch.relu(linear(x, getattr(self, f"tok_{name}_1"), getattr(self, f"tok_{name}_1_b")))
        return linear(h, getattr(self, f"tok_{name}_2"), getattr(self, f"tok_{name}_2_b"))

    def _project_all_blocks(self, tokens: Tensor, part: str) -> Tensor:
        """k or v of every block from tokens (S, n, D) -> (S, n, B, D)."""
        weight, bias = getattr(self, f"att_{part}"), getattr(self, f"att_{part}_b")
        s, b, d, _ = weight.shape
        flat = weight.permute(0, 2, 1, 3).reshape(s, d, b * d)
        return linear(tokens, flat, bias.reshape(s, b * d)).reshape(*tokens.shape[:-1], b, d)

    def forward(self, drug: DrugInput, drug_rows: Tensor | None, cells: dict[str, Tensor]) -> Tensor:
        S, B, H, D = self.n_slots, self.n_tokens, self.heads, self.width
        M, dh = B - 1, D // H
        t_drug = self._token("drug", take_rows(drug, drug_rows))  # (S, a, D)
        t_cell = torch.stack([self._token(n, cells[n]) for n in self.cell_names], dim=2)  # (S, c, M, D)
        a, c = t_drug.shape[1], t_cell.shape[1]

        q_drug = linear(t_drug, self.att_q[:, 0], self.att_q_b[:, 0]).view(S, a, H, dh)
        q_cell = (torch.einsum("scmd,smde->scme", t_cell, self.att_q[:, 1:]) + self.att_q_b[:, None, 1:]).view(
            S, c, M, H, dh
        )
        k_drug = self._project_all_blocks(t_drug, "k").view(S, a, B, H, dh)
        k_cell = self._project_all_blocks(t_cell, "k").view(S, c, M, B, H, dh)
        v_drug = self._project_all_blocks(t_drug, "v").view(S, a, B, H, dh)
        v_cell = self._project_all_blocks(t_cell, "v").view(S, c, M, B, H, dh)

        # attention logits per pair, laid out (S, c, a, key, block, head): the softmax runs over the key dimension
        # (not the last one: vectorised over the 16 blocks x heads behind it), and the mixing matmuls read the key 0
        # (drug) and keys 1..M (cell tokens) slices of the weights as they lie
        scale = 1.0 / math.sqrt(dh)
        s00 = (q_drug * k_drug[:, :, 0]).sum(-1) * scale  # (S, a, H): block 0 (drug query), drug key
        sc0 = torch.einsum("scmhx,samhx->scamh", q_cell, k_drug[:, :, 1:]) * scale  # (S, c, a, M, H): blocks 1.., key 0
        s0c = torch.einsum("sahx,scnhx->scanh", q_drug, k_cell[:, :, :, 0]) * scale  # (S, c, a, M, H): block 0, key 1..
        scc = torch.einsum("scmhx,scnmhx->scnmh", q_cell, k_cell[:, :, :, 1:]) * scale  # (S, c, M, M, H): key, block
        key_drug = torch.cat([s00[:, None, :, None].expand(S, c, a, 1, H), sc0], dim=3)  # (S, c, a, B, H)
        key_cells = torch.cat([s0c[:, :, :, :, None], scc[:, :, None].expand(S, c, a, M, M, H)], dim=4)  # (.., M, B, H)
        logits = torch.cat([key_drug[:, :, :, None], key_cells], dim=3).float()  # (S, c, a, B, B, H)
        weights = torch.softmax(logits.view(S, c, a, B, B * H), dim=3)  # (S, c, a, key, block x head)

        # fold W_o, W_P and the first MLP layer into the values
        h0 = self.hidden[0]
        w1 = self.mlp_0.view(S, B, self.proj_width, h0)
        fold = torch.einsum("sbde,sbep,sbpk->sbdk", self.att_o, self.proj, w1)
        fold = fold.view(S, B, H, dh, h0)
        const = self.mlp_0_b + torch.einsum(
            "sbe,sbep,sbpk->sk", self.att_o_b, self.proj, w1
        ) + torch.einsum("sbp,sbpk->sk", self.proj_b, w1)  # fmt: skip
        # each (block, head)'s weights sum to one, so adding const / (B H) to every value vector adds const once
        u_drug = torch.einsum("sabhx,sbhxk->sabhk", v_drug, fold)  # (S, a, B, H, h0)
        u_cell = torch.einsum("scnbhx,sbhxk->scnbhk", v_cell, fold)  # (S, c, M, B, H, h0)
        share = (const / (B * H)).to(u_cell.dtype)[:, None, None, None]  # added in the values' precision
        u_drug, u_cell = u_drug + share, u_cell + share[:, None]
        kind = u_cell.device.type
        dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else u_cell.dtype
        h = MixRelu.apply(weights, u_drug.reshape(S, a, B * H, h0), u_cell.reshape(S, c, M * B * H, h0), dtype)
        for i in range(1, len(self.hidden)):
            h = torch.relu(linear(h, getattr(self, f"mlp_{i}"), getattr(self, f"mlp_{i}_b")))
        return linear(h, self.out, self.out_b).squeeze(-1).transpose(1, 2)  # (S, a, c)


class MixRelu(torch.autograd.Function):
    """relu of the first hidden layer of every pair: its attention weights mixing the per-entity value vectors,
    h[s, c, a] = relu(sum_j w[s, c, a, 0, j] u_drug[s, a, j] + sum_{n >= 1, j} w[s, c, a, n, j] u_cell[s, c, n, j]).

    The cell keys are one matmul batched over (slot, cell line), the drug key one batched over (slot, drug); written
    by hand so that each reads and writes its operands in the layout it needs (autograd would hand the second one
    a transposed gradient, and bmm copies such operands slowly) and relu runs in place."""

    @staticmethod
    def forward(ctx: Any, weights: Tensor, u_drug: Tensor, u_cell: Tensor, dtype: torch.dtype) -> Tensor:
        # weights (S, c, a, B, J) with J = B x H; u_drug (S, a, J, h0); u_cell (S, c, M x J, h0); matmuls in dtype
        S, c, a, B, J = weights.shape
        h0 = u_cell.shape[-1]
        ctx.dtypes = weights.dtype, u_drug.dtype, u_cell.dtype
        w_cell = weights[:, :, :, 1:].to(dtype).reshape(S * c, a, (B - 1) * J)
        w_drug = weights[:, :, :, 0].transpose(1, 2).to(dtype).contiguous()  # (S, a, c, J)
        w_drug = w_drug.view(S * a, c, J)
        u_drug, u_cell = u_drug.to(dtype).reshape(S * a, J, h0), u_cell.to(dtype).reshape(S * c, (B - 1) * J, h0)
        z = torch.bmm(w_cell, u_cell).view(S, c, a, h0)
        z += torch.bmm(w_drug, u_drug).view(S, a, c, h0).transpose(1, 2)
        h = z.relu_()
        ctx.save_for_backward(w_cell, w_drug, u_drug, u_cell, h)
        ctx.shape = weights.shape
        return h

    @staticmethod
    def backward(ctx: Any, grad_h: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        w_cell, w_drug, u_drug, u_cell, h = ctx.saved_tensors
        S, c, a, B, J = ctx.shape
        h0 = h.shape[-1]
        grad_z = _relu_backward(grad_h.to(h.dtype), h).view(S * c, a, h0)  # (S c, a, h0)
        grad_zt = grad_z.view(S, c, a, h0).transpose(1, 2).reshape(S * a, c, h0)  # (S a, c, h0)
        grad_w_cell = torch.bmm(grad_z, u_cell.transpose(1, 2)).view(S, c, a, B - 1, J)
        grad_w_drug = torch.bmm(grad_zt, u_drug.transpose(1, 2)).view(S, a, c, 1, J).transpose(1, 2)
        grad_weights = torch.cat([grad_w_drug, grad_w_cell], dim=3)  # (S, c, a, B, J)
        grad_u_cell = torch.bmm(w_cell.transpose(1, 2), grad_z).view(S, c, (B - 1) * J, h0)
        grad_u_drug = torch.bmm(w_drug.transpose(1, 2), grad_zt).view(S, a, J, h0)
        dtypes = ctx.dtypes
        return grad_weights.to(dtypes[0]), grad_u_drug.to(dtypes[1]), grad_u_cell.to(dtypes[2]), None


def _relu_backward(grad: Tensor, out: Tensor) -> Tensor:
    """``grad`` where relu's output ``out`` > 0, else 0. In bf16 it compares the bit patterns as int16 (a bf16 is
    positive iff its int16 is, NaN aside: a NaN output makes the loss NaN, which stops the run anyway): the same
    values, at half the time of torch's bf16 kernel (27 vs 52 ms on a (8, 64, 223, 256) tensor, one thread)."""
    if out.dtype != torch.bfloat16:
        return torch.ops.aten.threshold_backward(grad, out, 0)
    return torch.ops.aten.threshold_backward(grad.view(torch.int16), out.view(torch.int16), 0).view(torch.bfloat16)


class FusedReference(nn.Module):
    """FUSED written per pair with ``nn.MultiheadAttention``: the straightforward model, one fold at a time."""

    def __init__(self, shapes: InputShapes, options: FusedOptions = FusedOptions()) -> None:
        super().__init__()
        cell_dims, drug_dim = shapes.cell_dims, shapes.drug_dim
        width, heads, proj, hidden = options.width, options.heads, options.proj, options.hidden
        self.names = ["drug", *cell_dims]
        dims = {"drug": drug_dim, **cell_dims}
        self.tokens = nn.ModuleDict(
            {n: nn.Sequential(nn.Linear(dims[n], width), nn.ReLU(), nn.Linear(width, width)) for n in self.names}
        )
        self.attention = nn.ModuleList(
            [nn.MultiheadAttention(width, heads, batch_first=True) for _ in self.names]
        )  # fmt: skip
        self.projections = nn.ModuleList([nn.Linear(width, proj) for _ in self.names])
        layers: list[nn.Module] = []
        n_in = proj * len(self.names)
        for n_out in hidden:
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
            n_in = n_out
        self.mlp = nn.Sequential(*layers, nn.Linear(n_in, 1))

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        """Predictions (n,) for per-pair features ``{"drug": (n, d), modality: (n, d_m), ...}``."""
        tokens = torch.stack([self.tokens[n](features[n]) for n in self.names], dim=1)  # (n, B, D)
        outputs = []
        for b, (attention, projection) in enumerate(zip(self.attention, self.projections, strict=True)):
            mixed, _ = attention(tokens[:, b : b + 1], tokens, tokens, need_weights=False)
            outputs.append(projection(mixed[:, 0]))
        return self.mlp(torch.cat(outputs, dim=1)).squeeze(-1)

    def slot_layout(self, grads: bool = False) -> dict[str, list[Tensor]]:
        """Each ``FusedSlots`` parameter of one slot as views of this module's parameters (or, with ``grads``, of their
        gradients) in the slot model's x @ W layout: one view per block for the per-block parameters."""
        width = self.attention[0].embed_dim

        def t(param: Tensor) -> Tensor:
            return param.grad if grads else param

        views: dict[str, list[Tensor]] = {}

        def linear_(name: str, layers: list[nn.Linear]) -> None:
            views[name], views[f"{name}_b"] = [t(m.weight).T for m in layers], [t(m.bias) for m in layers]

        for n in self.names:
            linear_(f"tok_{n}_1", [self.tokens[n][0]])
            linear_(f"tok_{n}_2", [self.tokens[n][2]])
        for j, part in enumerate("qkv"):
            rows = slice(j * width, (j + 1) * width)
            views[f"att_{part}"] = [t(a.in_proj_weight)[rows].T for a in self.attention]
            views[f"att_{part}_b"] = [t(a.in_proj_bias)[rows] for a in self.attention]
        linear_("att_o", [a.out_proj for a in self.attention])
        linear_("proj", list(self.projections))
        linears = [m for m in self.mlp if isinstance(m, nn.Linear)]
        for i, layer in enumerate(linears):
            linear_(f"mlp_{i}" if i < len(linears) - 1 else "out", [layer])
        return views

    @torch.no_grad()
    def load_slot(self, slots: FusedSlots, slot: int) -> FusedReference:
        """Copy one slot's parameters into this module."""
        layout = self.slot_layout()
        for name, param in slots.named_parameters():
            values = param[slot] if param.dim() > layout[name][0].dim() + 1 else param[slot][None]  # per block
            for view, value in zip(layout[name], values, strict=True):
                view.copy_(value)
        return self
