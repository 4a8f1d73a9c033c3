"""The same molecule under another id: a 'new' drug whose canonical SMILES (RDKit) is a training drug's.

Its predictions are not those of an unseen drug, since the model has learned from its measurements. ``predict --pilot``
refuses such a drug (its pilot would be matched to its own training responses); plain ``predict`` names it in a
warning line and predicts it.
"""

from __future__ import annotations

import pandas as pd


def canonical(smiles: str) -> str | None:
    """RDKit's canonical SMILES (one string per molecule, whatever atom order it was written in); None if RDKit cannot
    parse it (embedding refuses such a drug anyway)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def same_molecules(new: pd.DataFrame, known: pd.DataFrame) -> list[tuple[str, str]]:
    """(new drug id, training drug id) for every drug of ``new`` (drug_id, smiles) whose canonical SMILES equals that
    of a drug of ``known`` under another id; a drug given under its training id is not listed."""
    training: dict[str, str] = {}
    for drug_id, smiles in zip(known["drug_id"], known["smiles"], strict=True):
        if (key := canonical(str(smiles))) is not None:
            training.setdefault(key, str(drug_id))
    known_ids = set(known["drug_id"])
    pairs = []
    for drug_id, smiles in zip(new["drug_id"], new["smiles"], strict=True):
        twin = training.get(canonical(str(smiles)) or "")
        if twin is not None and drug_id not in known_ids:
            pairs.append((str(drug_id), twin))
    return pairs
