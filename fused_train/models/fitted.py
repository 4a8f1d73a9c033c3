"""Models fitted on each fold by their own code (no gradient training by the engine): neighbours, trees, matching.

A subclass sets ``Options``, ``drug_inputs`` and ``fitted_class`` and implements ``fit(inputs, fold)``. ``fit`` sees
the whole fold, so it must keep to the rules every model keeps: statistics and fitted parameters from TRAIN rows,
every choice (hyperparameters, neighbours, weights) on VAL rows, TEST rows never read; it may then refit on TRAIN +
VAL with the chosen setting, as the naive predictors do. A run scores the fitted model's predictions on the fold's
whole grid.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np

from fused_cache.progress import progress
from fused_train.data import Inputs
from fused_train.engine import Execution
from fused_train.models.base import Fitted, Model, Outcome, Query
from fused_train.splits import Fold


class FittedModel(Model):
    @abstractmethod
    def fit(self, inputs: Inputs, fold: Fold) -> Fitted:
        """The fold's model, fitted on its TRAIN (and VAL) rows with the setting chosen on its VAL rows."""

    def predict_fold(self, inputs: Inputs, fold: Fold) -> tuple[np.ndarray, dict[str, Any]]:
        """Fitted on the fold, predictions on its whole grid and the choices made on its validation rows."""
        fitted = self.fit(inputs, fold)
        return fitted.predict(Query.of(inputs)), fitted.choices

    def run(
        self, inputs: Inputs, folds: list[Fold], execution: Execution, keep: bool, quiet: bool
    ) -> Iterator[Outcome]:
        query = Query.of(inputs)
        bar = progress(len(folds), "fitting", "folds", quiet)
        for fold in folds:
            fitted = self.fit(inputs, fold)
            yield Outcome(fold, fitted.predict(query), fitted.choices, None, fitted if keep else None)
            bar.update()
        bar.close()
