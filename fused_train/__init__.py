"""fused_train: train the FUSED head, DeepCDR-style baselines and naive predictors on cached embeddings, across folds.

>>> from fused_train import RunSpec, Execution, train, summarise_run
>>> spec = RunSpec(model="fused", drug_encoder="chemnet", omics=("methylation", "mutation"), split="lodo")
>>> train(spec, Path("runs/my-run"), fold="0-7", execution=Execution(slots=8))   # skips finished folds
>>> summarise_run(Path("runs/my-run"))        # pooled and per-drug PCC/RMSE, model beside naive baselines

A saved model of any kind (``fused-train fit``, or a run's ``models/<fold>/``) predicts new drugs and cell lines:
``load_model("models/neighbours").predict(drugs="new.csv")`` -> a DataFrame of ln IC50 per (drug, cell line).

Every model meets one contract (``fused_train.models.base``: ``Model``, ``Fitted``, ``Query``). Your own model is one
module plus one line in ``fused_train.models.registry.MODELS`` (name -> "module:Class"); a plain ``torch.nn.Module``
trains across folds in the batched engine as it is (docs/add-a-model.md). Or take our embeddings and folds elsewhere:
``EmbeddingPairs`` (a torch Dataset; ``.folds()``, ``.subset()``).

``write_report`` is imported on first use: its figures need the ``reports`` extra (matplotlib), training does not.
"""

from typing import Any

from fused_train.data import Inputs, load_inputs
from fused_train.engine import Execution, TrainConfig, Trainer
from fused_train.models.registry import MODELS, model_class
from fused_train.pairs import EmbeddingPairs
from fused_train.predict import TrainedModel, load_model
from fused_train.runs import RunError, RunSpec, predictions, summarise_run, train
from fused_train.splits import Fold, make_folds


def __getattr__(name: str) -> Any:
    if name == "write_report":
        from fused_train.report import write_report

        return write_report
    raise AttributeError(f"module 'fused_train' has no attribute {name!r}")


__all__ = [
    "MODELS",
    "EmbeddingPairs",
    "Execution",
    "Fold",
    "Inputs",
    "RunError",
    "RunSpec",
    "TrainConfig",
    "TrainedModel",
    "Trainer",
    "load_inputs",
    "load_model",
    "make_folds",
    "model_class",
    "predictions",
    "summarise_run",
    "train",
    "write_report",
]
