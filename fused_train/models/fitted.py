"""Models fitted directly on each fold (no gradient training by the engine): ``fused-train run`` calls ``predict``.

A subclass sets ``Options`` and ``drug_inputs`` like a ``SlotModel``. ``predict`` sees the whole fold, so it must keep
to the rules every model keeps: statistics and fitted parameters from TRAIN rows, every choice (hyperparameters,
neighbours, weights) on VAL rows, TEST rows never read; it may then refit on TRAIN + VAL with the chosen setting,
as the naive predictors do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from fused_train.data import Inputs
from fused_train.splits import Fold


class FittedModel(ABC):
    Options: ClassVar[type]
    drug_inputs: ClassVar[tuple[str, ...]] = ("dense",)

    def __init__(self, options: Any) -> None:
        self.options = options

    @abstractmethod
    def predict(self, inputs: Inputs, fold: Fold) -> tuple[np.ndarray, dict[str, Any]]:
        """Predicted ln IC50 on the whole (drugs x cells) grid (float32), and the choices made on validation rows
        (written to the fold's ``choices/<fold>.json``)."""
