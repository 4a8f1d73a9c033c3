"""The batched engine: folds trained together equal folds trained alone, draws are seeded by the fold, and the
held-out labels and entities never influence training, scaling or selection."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import scramble_test_labels, tiny_spec

from fused_train.engine import SELECT_BY, Execution, TrainConfig, Trainer, _Slot
from fused_train.models.fused import FusedSlots
from fused_train.runs import folds_of, load_run_inputs
from fused_train.splits import TRAIN


def _trainer(
    dataset: str, cache: Path, slots: int, seed: int = 0, select_by: str = "auto", epochs: int = 3
) -> tuple[Trainer, list]:
    train = replace(tiny_spec(dataset).train, select_by=select_by, max_epochs=epochs, patience=epochs)
    spec = replace(tiny_spec(dataset), seeds=(seed,), train=train)
    inputs = load_run_inputs(spec, cache)
    return spec.trainer(inputs, Execution(slots=slots)), folds_of(spec, inputs)


def test_folds_trained_together_match_folds_trained_alone(trained_on: tuple[str, Path]) -> None:
    together, folds = _trainer(*trained_on, slots=4)
    batched = {r.fold.name: r for r in together.run(folds[:4], quiet=True)}
    alone, _ = _trainer(*trained_on, slots=1)
    for fold in folds[:4]:
        (single,) = alone.run([fold], quiet=True)
        assert single.best_epoch == batched[fold.name].best_epoch
        np.testing.assert_allclose(single.test_pred, batched[fold.name].test_pred, atol=2e-4)


def test_same_seed_same_predictions_and_other_seed_differs(trained_on: tuple[str, Path]) -> None:
    first, folds = _trainer(*trained_on, slots=2)
    second, _ = _trainer(*trained_on, slots=2)
    other, other_folds = _trainer(*trained_on, slots=2, seed=1)
    a, b = ([r.test_pred for r in t.run(folds[:2], quiet=True)] for t in (first, second))
    c = [r.test_pred for r in other.run(other_folds[:2], quiet=True)]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    assert not np.allclose(np.concatenate(a), np.concatenate(c))


@pytest.mark.parametrize("select_by", SELECT_BY)
def test_held_out_labels_never_influence_training_or_selection(trained_on: tuple[str, Path], select_by: str) -> None:
    """Scramble the held-out drug's ln IC50: its predictions must not change (scalers, early stopping included)."""
    trainer, folds = _trainer(*trained_on, slots=1, select_by=select_by)
    fold = folds[3]
    (clean,) = trainer.run([fold], quiet=True)
    scrambled = scramble_test_labels(_trainer(*trained_on, slots=1, select_by=select_by)[0], fold)
    (result,) = scrambled.run([fold], quiet=True)
    np.testing.assert_array_equal(result.test_pred, clean.test_pred)
    assert result.curve.equals(clean.curve)


def test_scalers_are_fitted_on_training_entities_only(trained_on: tuple[str, Path]) -> None:
    trainer, folds = _trainer(*trained_on, slots=1)
    fold = folds[0]
    scalers = trainer._scalers(fold)
    train_drugs = (fold.roles == TRAIN).any(axis=1)
    assert not train_drugs[0] and train_drugs.sum() == len(train_drugs) - 2  # held-out and validation drug
    np.testing.assert_allclose(scalers["drug"][0], trainer.inputs.drug[train_drugs].mean(axis=0), rtol=1e-6)
    w = trainer.count_np * (fold.roles == TRAIN)
    assert float(scalers["y"][0]) == pytest.approx((w * trainer.target_np).sum() / w.sum())


def test_each_slot_reads_its_inputs_scaled_by_its_own_fold(trained_on: tuple[str, Path]) -> None:
    """Inputs are scaled once per epoch, per slot: a tile of cell lines is the same whether it is gathered by index
    (training steps, each slot its own order) or sliced for all slots at once (evaluation when every slot needs every
    cell line)."""
    trainer, folds = _trainer(*trained_on, slots=2)
    slots = [_Slot(fold, trainer._scalers(fold)) for fold in folds[:2]]
    scaled = trainer._scaled_inputs(slots)
    n_cells = trainer.inputs.shape[1]
    assert not np.array_equal(slots[0].scalers["drug"][0], slots[1].scalers["drug"][0])  # held out: other drugs
    for i, slot in enumerate(slots):
        for name, x in {"drug": trainer.inputs.drug, **trainer.inputs.cells}.items():
            mu, sd = slot.scalers[name]
            ours = scaled.drug[i] if name == "drug" else scaled.cells[name][i]
            np.testing.assert_allclose(ours.numpy(), (x - mu) / sd, rtol=1e-5, atol=1e-5)
    index = torch.arange(2, n_cells).repeat(2, 1)
    gathered, sliced = scaled.tile(index), scaled.tile(slice(2, None))
    for name in trainer.inputs.cells:
        assert torch.equal(gathered[name], sliced[name])


@pytest.mark.parametrize(("select_by", "best"), [("rmse", "idxmin"), ("drug-pcc", "idxmax")])
def test_the_kept_epoch_is_the_best_by_the_selection_metric(
    trained_on: tuple[str, Path], select_by: str, best: str
) -> None:
    trainer, folds = _trainer(*trained_on, slots=2, select_by=select_by, epochs=8)
    column = "val_rmse" if select_by == "rmse" else "val_drug_pcc"
    for result in trainer.run(folds[:2], quiet=True):
        assert result.best_epoch == getattr(result.curve[column], best)()


def test_an_unknown_or_unresolved_selection_metric_is_refused(trained_on: tuple[str, Path]) -> None:
    with pytest.raises(ValueError, match="choose auto, rmse or drug-pcc"):
        TrainConfig(select_by="pcc")
    trainer, _ = _trainer(*trained_on, slots=1)
    with pytest.raises(ValueError, match="RunSpec resolves auto from the split"):
        Trainer(trainer.inputs, trainer.model, trainer.options, TrainConfig(), Execution())


def test_leaving_out_drugs_without_training_pairs_changes_nothing_but_time(
    trained_on: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FUSED's training steps leave out each fold's held-out and validation drugs (they weigh nothing in the loss):
    the same folds trained with every drug in every step give the same predictions, up to float rounding."""
    widths = []
    step_losses = Trainer._step_losses

    def recording(self: Trainer, net: object, scaled: object, roles: object, rows: Any, *args: Any) -> Any:
        widths.append(rows.shape[1])
        return step_losses(self, net, scaled, roles, rows, *args)

    monkeypatch.setattr(Trainer, "_step_losses", recording)
    skipping, folds = _trainer(*trained_on, slots=2)
    fast = {r.fold.name: r for r in skipping.run(folds[:2], quiet=True)}
    n_drugs = skipping.inputs.shape[0]
    assert widths and max(widths) < n_drugs  # the held-out and validation drugs were left out
    monkeypatch.setattr(FusedSlots, "pairs_independent", False)
    widths.clear()
    every, _ = _trainer(*trained_on, slots=2)
    for result in every.run(folds[:2], quiet=True):
        assert result.best_epoch == fast[result.fold.name].best_epoch
        np.testing.assert_allclose(result.test_pred, fast[result.fold.name].test_pred, atol=2e-4)
    assert set(widths) == {n_drugs}
