"""Predictions a person reads carry each cell line's name and tissue beside its DepMap id."""

from __future__ import annotations

import pandas as pd
import pytest

from fused_train.annotate import annotate_cells


def test_cell_lines_get_their_name_and_tissue_and_new_ones_stay_blank() -> None:
    pred = pd.DataFrame({"drug_id": ["osimertinib"] * 3, "cell_id": ["ACH-000362", "ACH-000918", "NEW-1"],
                         "pred_ln_ic50": [-1.0, -5.5, 0.2]})  # fmt: skip
    out = annotate_cells(pred, "gdsc-deepcdr")
    assert list(out.columns) == ["drug_id", "cell_id", "cell_name", "tcga_type", "pred_ln_ic50"]
    assert out[["cell_name", "tcga_type"]].values.tolist() == [["MOLM-13", "LAML"], ["MOLT-16", "ALL"], ["", ""]]
    assert "cell_name" not in pred  # the caller's table is left as it was


def test_a_table_without_cell_ids_or_already_annotated_is_refused() -> None:
    with pytest.raises(ValueError, match="no cell_id column"):
        annotate_cells(pd.DataFrame({"drug_id": ["1"]}), "gdsc-deepcdr")
    with pytest.raises(ValueError, match="already has cell_name"):
        annotate_cells(pd.DataFrame({"cell_id": ["ACH-000362"], "cell_name": ["x"]}), "gdsc-deepcdr")
