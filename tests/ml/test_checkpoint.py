from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ml.checkpoint import (
    PAPER_CLASSES,
    Checkpoint,
    CheckpointError,
    InconclusiveRule,
    Preprocessing,
    load_checkpoint,
)
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


# Stricter for the reassuring labels than for mpox, as ml.report sets it.
BY_LABEL = InconclusiveRule(method="max_probability", threshold=0.5, label_thresholds=(0.8, 0.7, 0.5, 0.9))


def test_a_by_label_rule_judges_a_prediction_by_its_top_labels_threshold() -> None:
    mpox = PAPER_CLASSES.index("monkeypox")
    says_mpox = np.array([0.0, 0.5, 2.0, 0.0])
    says_chickenpox = says_mpox[[2, 1, 0, 3]]  # the same logits with chickenpox on top
    assert BY_LABEL.score(says_mpox) == pytest.approx(BY_LABEL.score(says_chickenpox))
    assert 0.5 < BY_LABEL.score(says_mpox) < 0.8
    assert not BY_LABEL.is_inconclusive(says_mpox)
    assert BY_LABEL.is_inconclusive(says_chickenpox)
    assert [BY_LABEL.threshold_for(i) for i in range(4)] == [0.8, 0.7, 0.5, 0.9]
    assert BY_LABEL.threshold_for(mpox) == BY_LABEL.threshold
    # Without label thresholds every label gets the one threshold.
    single = InconclusiveRule(threshold=0.7)
    assert [single.threshold_for(i) for i in range(4)] == [0.7] * 4
    assert single.is_inconclusive(says_mpox)
    assert single.is_inconclusive(says_chickenpox)


def test_a_by_label_rule_round_trips_and_an_older_contract_still_loads(tmp_path) -> None:
    checkpoint = dataclasses.replace(checkpoint_for(calibrated_model(seed=0)), inconclusive=BY_LABEL)
    checkpoint.save(tmp_path / "w.pt")
    assert load_checkpoint(tmp_path / "w.pt").inconclusive == BY_LABEL

    # A rule with one threshold is written as before, and a contract written before label thresholds loads.
    assert InconclusiveRule(method="energy", threshold=3.0).to_dict() == {"method": "energy", "threshold": 3.0}
    data = torch.load(tmp_path / "w.pt", weights_only=True)
    data["inconclusive"] = {"method": "max_probability", "threshold": 0.42}
    torch.save(data, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt").inconclusive
    assert loaded == InconclusiveRule(method="max_probability", threshold=0.42)
    assert loaded.label_thresholds == ()


def test_a_label_threshold_count_that_is_not_the_class_count_is_refused(tmp_path) -> None:
    three = InconclusiveRule(threshold=0.5, label_thresholds=(0.5, 0.6, 0.7))
    with pytest.raises(ValueError, match="3 label thresholds for 4 classes"):
        dataclasses.replace(checkpoint_for(calibrated_model(seed=0)), inconclusive=three)
    checkpoint_for(calibrated_model(seed=0)).save(tmp_path / "w.pt")
    data = torch.load(tmp_path / "w.pt", weights_only=True)
    data["inconclusive"] = {"method": "max_probability", "threshold": 0.5, "label_thresholds": [0.5, 0.6, 0.7]}
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="3 label thresholds for 4 classes"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    "thresholds",
    [
        {"threshold": float("nan")},
        {"threshold": float("inf")},
        {"threshold": 0.5, "label_thresholds": (0.5, float("nan"), 0.5, 0.5)},
        {"threshold": 0.5, "label_thresholds": (0.5, 0.5, float("-inf"), 0.5)},
    ],
)
def test_a_threshold_that_is_not_a_finite_number_is_refused(thresholds, tmp_path) -> None:
    with pytest.raises(ValueError, match="finite"):
        InconclusiveRule(**thresholds)
    checkpoint_for(calibrated_model(seed=0)).save(tmp_path / "w.pt")
    data = torch.load(tmp_path / "w.pt", weights_only=True)
    data["inconclusive"] = {"method": "max_probability", **thresholds}
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="finite"):
        load_checkpoint(tmp_path / "bad.pt")
