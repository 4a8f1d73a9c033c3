"""Device selection and mixed precision for encoder inference (CUDA > MPS > CPU)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def select_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; an explicit device that is absent is an error, not a fallback."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device} was asked for, but torch sees no CUDA device; use --device cpu")
    return torch.device(device)


@contextlib.contextmanager
def inference(device: torch.device) -> Iterator[None]:
    """``inference_mode`` everywhere, plus bf16 autocast on CUDA (fp16 where the GPU lacks bf16)."""
    with torch.inference_mode():
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                yield
        else:
            yield
