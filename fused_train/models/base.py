"""One contract for every model, whatever its kind: fit on a fold, predict any drugs x cell lines, save, load.

``Model`` (registered by name in ``registry.py``) turns a fold's roles into a ``Fitted`` model per fold;
``runs.py`` (benchmarks), ``fit.py`` (a model for use), ``saved.py`` (the directory on disk) and ``predict.py`` (new
drugs and cell lines) talk to this contract only, never to a kind of model. The kinds behind it:

- ``networks.EngineModel``: a network trained by the batched engine, many folds at once (FUSED, DeepCDR, and a plain
  ``torch.nn.Module`` through ``module_slots.py``);
- ``fitted.FittedModel``: fitted per fold by its own code (neighbours, trees, matching);
- ``naive.NaiveOnly``: nothing of its own (the naive predictors every run reports).

The rules every model keeps: statistics and fitted parameters from TRAIN rows, every choice (epoch, hyperparameters,
neighbours) on VAL rows, TEST rows never read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fused_train.data import Graphs, Inputs
from fused_train.engine import Execution, TrainConfig
from fused_train.splits import Fold


class PredictError(ValueError):
    """Input that the model cannot predict: invalid SMILES, cells lacking genes or modalities, a foreign encoder, a
    kind of query the model cannot answer (new cell lines for a model of responses, a drug without a pilot)."""


@dataclass(frozen=True)
class Query:
    """What to predict: drugs and cell lines, each by id with its raw (unscaled) features.

    A model that predicts from responses rather than features (neighbours) knows its training drugs and cell lines
    by id; ``pilot`` holds measured rows (drug_id, cell_id, ln_ic50) of new drugs, for the models that read them.
    """

    drug_ids: np.ndarray
    drug: np.ndarray | Graphs
    cell_ids: np.ndarray
    cells: dict[str, np.ndarray]
    drug_annotations: dict[str, list[frozenset[str]]] = field(default_factory=dict)
    pilot: pd.DataFrame | None = None

    @classmethod
    def of(cls, inputs: Inputs) -> Query:
        """Every drug and cell line of a run's inputs."""
        return cls(inputs.drug_ids, inputs.drug, inputs.cell_ids, inputs.cells, inputs.drug_annotations)


class Fitted(ABC):
    """One fold's model, fitted: predicts any drugs x cell lines, and writes and reads what it needs to do so."""

    choices: dict[str, Any]
    """What it chose on the fold's validation rows (epoch, hyperparameters): a run writes them to choices/."""
    reads_pilot: ClassVar[bool] = False
    """Whether it predicts a drug from the drug's pilot screen (``Query.pilot``) rather than from features."""
    annotations: ClassVar[tuple[str, ...]] = ()
    """The drug annotations (``targets``, ``target_pathway``) it reads besides a drug's features: a new drug without
    them is predicted from the rest alone (``predict`` warns)."""

    @abstractmethod
    def predict(self, query: Query) -> np.ndarray:
        """(drugs, cells) float32 ln IC50 of the query's drugs x cell lines."""

    @abstractmethod
    def save(self, folder: Path) -> list[str]:
        """Write the model's own files into ``folder`` (an empty temporary directory); returns their names."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, info: dict[str, Any], device: str) -> Fitted:
        """The model ``save`` wrote; ``info`` is its model.json (``saved.py`` has checked every file's sha256)."""


@dataclass
class Outcome:
    """A finished fold: predictions on the run's grid (only TEST cells are read; None for a model with no
    predictions of its own), the choices made on VAL, the learning curve of a trained network, and the fitted model
    when the caller asked to keep it."""

    fold: Fold
    grid: np.ndarray | None
    choices: dict[str, Any]
    curve: pd.DataFrame | None = field(default=None, repr=False)
    fitted: Fitted | None = field(default=None, repr=False)


class Model(ABC):
    """A registered model with its options: fits folds, and names the ``Fitted`` class that loads a saved fold."""

    Options: ClassVar[type]
    """A frozen dataclass of the model's options (``registry.option``): the one source of their defaults."""
    drug_inputs: ClassVar[tuple[str, ...]] = ("dense",)
    """Drug store kinds it accepts: "dense" (an (n, d) embedding) and/or "graph" (atom graphs)."""
    fitted_class: ClassVar[type[Fitted] | None] = None
    """What ``saved.py`` loads a saved fold of this model with; None: nothing to save."""
    saves_by_default: ClassVar[bool] = False
    """Whether a run saves every fold's model unless told otherwise (on splits with a handful of folds)."""

    def __init__(self, options: Any, train: TrainConfig | None = None) -> None:
        self.options, self.train = options, train or TrainConfig()

    @abstractmethod
    def run(
        self, inputs: Inputs, folds: list[Fold], execution: Execution, keep: bool, quiet: bool
    ) -> Iterator[Outcome]:
        """Fit ``folds``; yield each as it finishes (``keep``: with its ``Fitted`` model, to be saved)."""
