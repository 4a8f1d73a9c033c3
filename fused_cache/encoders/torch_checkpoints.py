"""Plain-torch pieces shared by the FM encoders: reading checkpoints with errors that name the file and key, and the
post-norm transformer layer that scGPT and scFoundation both use."""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from fused_cache.encoders.base import CheckpointError


def load_checkpoint_file(path: Path, trust: bool, refused: str) -> Any:
    """``torch.load`` that names the file when it fails.

    Pickled Python objects are loaded only with ``trust`` (unpickling can run code); otherwise the error says what
    was refused and ``refused`` says what to do. Zip checkpoints are memory-mapped, so reading a config is cheap.
    """
    import torch

    zipped = zipfile.is_zipfile(path)
    with open(path, "rb") as handle:
        pickled = handle.read(1) == b"\x80"
    if not zipped and not pickled:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a torch.save archive nor a pickle)")
    try:
        with warnings.catch_warnings():  # torch's advice on pickle protocols is not ours to give
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=not trust, mmap=zipped)
    except pickle.UnpicklingError as err:
        if trust:
            why = str(err).splitlines()[0]
            raise CheckpointError(f"{path} could not be read as a PyTorch checkpoint: {why}") from err
        # torch's own text recommends weights_only=False; the safe way here is the user's explicit trust
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(err))
        what = unsafe.group(1) if unsafe else (detail.group(1).strip() if detail else "not plain tensors")
        raise CheckpointError(
            f"{path} holds pickled Python objects ({what}), which torch.load(weights_only=True) refuses because "
            f"unpickling can run code: {refused}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} could not be read as a PyTorch checkpoint: {err}") from err


def load_state_checked(model: Any, state: dict[str, Any], path: Path, config: str) -> None:
    """Load ``state`` into ``model`` strictly; a missing, unexpected or misshapen key is named with the config."""
    import torch

    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(
            f"{path} lacks key {missing[0]!r} ({len(missing)} missing: {', '.join(missing[:8])}) "
            f"of the model that {config} describes"
        )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CheckpointError(
            f"{path} has unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected: {', '.join(unexpected[:8])}) "
            f"for the model that {config} describes"
        )
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: {key!r} is a {type(value).__name__}, not a tensor")
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{path}: {key!r} has shape {tuple(value.shape)}, but {config} implies {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)


def post_norm_layer(layer: Any, x: Any, keep: Any) -> Any:
    """A post-norm ``nn.TransformerEncoderLayer`` (ReLU, eval mode) computed with scaled_dot_product_attention.

    Same result as the layer's own forward and as scGPT's flash-attn layer; about twice as fast on CPU. ``keep``
    (cells, 1, 1, tokens) is False at padded keys.
    """
    import torch.nn.functional as F

    attention = layer.self_attn
    n, length, d = x.shape
    heads = attention.num_heads
    qkv = F.linear(x, attention.in_proj_weight, attention.in_proj_bias)
    q, k, v = qkv.view(n, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=keep).transpose(1, 2).reshape(n, length, d)
    x = layer.norm1(x + attention.out_proj(mixed))
    return layer.norm2(x + layer.linear2(F.relu(layer.linear1(x))))
