"""Column statistics of entity features: one definition wherever features are standardised (engine, neighbours,
trees), from the rows the caller passes (TRAIN entities, reference drugs)."""

from __future__ import annotations

import numpy as np


def standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and sd of ``x`` in its dtype (sd 1 where a column is constant, so it maps to zero, not NaN).

    Computed in the features' own precision (float32 for stores: the results in docs/ were trained so), except the
    columns whose float32 statistics overflow: RDKit's ``Ipc`` reaches 4.9e23, its squares exceed float32, its sd
    becomes inf and the feature would be scaled to zero without a word. Those columns are computed in float64 (their
    mean and sd fit in float32).
    """
    mean, sd = x.mean(axis=0), x.std(axis=0)
    overflow = ~(np.isfinite(mean) & np.isfinite(sd))
    if overflow.any():
        wide = x[:, overflow].astype(np.float64)
        mean[overflow], sd[overflow] = wide.mean(axis=0), wide.std(axis=0)
    return mean, np.where(sd > 0, sd, 1.0)
