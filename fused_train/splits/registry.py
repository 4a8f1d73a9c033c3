"""The explicit list of splits: name -> split. Adding a split = one module + one line here (``docs/add-a-split.md``).

``--split`` offers every benchmark split here and its aliases; ``RunSpec`` resolves a name or alias with ``split_of``
and records the name; runs, the report, the plots and ``fused-train splits --export`` read the split's attributes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fused_train.splits.base import Shares, Split
from fused_train.splits.cell_out import CellOut
from fused_train.splits.drug_known import DrugKnown
from fused_train.splits.fit import Fit
from fused_train.splits.folds import Fold, FoldSelectionError
from fused_train.splits.lodo import Lodo
from fused_train.splits.pilot import PILOT_SHOTS, Pilot
from fused_train.splits.tissue_out import TissueOut

SPLITS: dict[str, Split] = {
    split.name: split
    for split in (
        DrugKnown(),
        Lodo(),
        CellOut(),
        *(Pilot(k, across_tissues) for across_tissues in (False, True) for k in PILOT_SHOTS),
        TissueOut(),
        Fit(),
    )
}


def benchmark_splits() -> list[Split]:
    """The splits ``--split`` offers, in the registry's order (which is also the report's)."""
    return [split for split in SPLITS.values() if split.benchmark]


def split_of(name: str) -> Split:
    """The split called ``name``, or whose alias it is (any case)."""
    if name in SPLITS:
        return SPLITS[name]
    for split in SPLITS.values():
        if name.lower() in (alias.lower() for alias in split.aliases):
            return split
    known = [f"{s.name} ({'/'.join(s.aliases)})" if s.aliases else s.name for s in benchmark_splits()]
    raise FoldSelectionError(f"unknown split {name!r}; choose one of {', '.join(known)}")


def make_folds(
    split: str, count: np.ndarray, drug_ids: np.ndarray, cell_groups: np.ndarray, seed: int = 0, **shares: Any
) -> list[Fold]:
    """All folds of one split and seed. ``count`` (drugs x cells) says which grid cells were measured; ``shares``
    override the fields of ``Shares`` (``val_fraction``, ``test_fraction``, ``n_cell_folds``)."""
    return split_of(split).folds(count > 0, drug_ids, cell_groups, seed, Shares(**shares))


def drug_blind(split: str) -> bool:
    """Whether the split (a name or alias) holds whole drugs out: LODO and its pilot-K variants. For callers that hold
    a split's name; given the split, read its ``holds_out``."""
    return split_of(split).holds_out == "drug"


def pilot_shots(split: str) -> int | None:
    """K of a ``pilot-K`` or ``pilot-K-tissue`` split; None for the other splits (and unknown names)."""
    chosen = SPLITS.get(split)
    return chosen.shots if isinstance(chosen, Pilot) else None
