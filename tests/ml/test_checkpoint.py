from __future__ import annotations

import pytest
import torch

from ml.checkpoint import Checkpoint, CheckpointError, InconclusiveRule, Preprocessing, load_checkpoint
from tests.ml.factories import calibrated_model, checkpoint_for


def test_a_checkpoint_round_trips_with_its_contract(tmp_path) -> None:
    model = calibrated_model(seed=0)
    original = checkpoint_for(model, threshold=0.42)
    original.preprocessing = Preprocessing(input_size=192, resize=200)
    original.manifest_sha256 = "ab" * 32
    original.code_version = "0123456789ab"
    original.save(tmp_path / "w.pt")
    loaded = load_checkpoint(tmp_path / "w.pt")
    assert loaded.class_names == original.class_names
    assert loaded.preprocessing == original.preprocessing
    assert loaded.config == model.config.to_dict()
    assert loaded.inconclusive == InconclusiveRule(method="max_probability", threshold=0.42)
    assert (loaded.manifest_sha256, loaded.code_version) == ("ab" * 32, "0123456789ab")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.build_model()(x), model(x))


def test_a_file_that_is_not_a_checkpoint_is_rejected(tmp_path) -> None:
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    for name in ("text.pt", "plain.pt", "absent.pt"):
        with pytest.raises(CheckpointError):
            load_checkpoint(tmp_path / name)


def test_weights_that_do_not_fit_the_architecture_are_rejected() -> None:
    checkpoint = Checkpoint(arch="fast_mpoxnet", class_names=("a", "b"), state_dict={"fc.weight": torch.zeros(2, 3)})
    with pytest.raises(CheckpointError):
        checkpoint.build_model()
