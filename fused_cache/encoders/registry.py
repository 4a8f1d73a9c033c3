"""The explicit list of encoders: name -> "module:Class". Modules are imported only when an encoder is used."""

from __future__ import annotations

import importlib
from typing import Any

from fused_cache.encoders.base import Encoder, EncoderError

ENCODERS: dict[str, str] = {
    "morgan": "fused_cache.encoders.rdkit_fingerprints:MorganEncoder",
    "rdkit2d": "fused_cache.encoders.rdkit_fingerprints:RDKit2DEncoder",
    "chemnet": "fused_cache.encoders.chemnet:ChemNetEncoder",
    "minimol": "fused_cache.encoders.minimol:MiniMolEncoder",
    "graph": "fused_cache.encoders.graph:GraphEncoder",
    "expression": "fused_cache.encoders.omics:ExpressionEncoder",
    "methylation": "fused_cache.encoders.omics:MethylationEncoder",
    "mutation": "fused_cache.encoders.omics:MutationEncoder",
    "chemberta": "fused_cache.encoders.chemberta:ChemBERTaEncoder",
    "molformer": "fused_cache.encoders.molformer:MoLFormerEncoder",
    "scgpt": "fused_cache.encoders.scgpt:ScGPTEncoder",
    "scfoundation": "fused_cache.encoders.scfoundation:ScFoundationEncoder",
}

DEFAULT_ENCODERS = ("morgan", "chemnet", "graph", "expression", "methylation", "mutation", "minimol")
"""Built by ``fused-cache build --encoder all``: everything that needs no user-supplied checkpoint. minimol needs the
extra ``fused-drp[minimol]`` (bin/demo installs it); last, so that an install without it builds the others first."""


def encoder_class(name: str) -> type[Encoder]:
    if name not in ENCODERS:
        raise EncoderError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    module, cls = ENCODERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_encoder(name: str, **options: Any) -> Encoder:
    """Instantiate an encoder by name; options (checkpoint, device, batch settings) go to its constructor."""
    return encoder_class(name)(**options)
