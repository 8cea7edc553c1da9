from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.checkpoint import CheckpointError, InconclusiveRule, load_checkpoint
from ml.metrics import confidence
from ml.ood import MahalanobisScorer, embed, energy, softmax
from tests.ml.factories import calibrated_model, checkpoint_for


def test_energy_is_the_logsumexp_of_the_logits() -> None:
    logits = np.array([[2.0, 0.5, -1.0, 0.0], [50.0, 49.0, 10.0, 0.0]])
    assert energy(logits) == pytest.approx(np.log(np.exp(logits).sum(axis=1)))
    assert softmax(logits).sum(axis=1) == pytest.approx([1.0, 1.0])


def test_mahalanobis_scores_photos_near_a_class_above_photos_far_from_all() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    labels = np.repeat([0, 1], 100)
    features = centres[labels] + rng.normal(scale=0.5, size=(200, 3))
    scorer = MahalanobisScorer.fit(features, labels)
    near = centres + 0.1
    far = np.array([[0.0, 0.0, 9.0], [-6.0, -6.0, 0.0]])
    assert scorer.score(near).min() > scorer.score(far).max()
    assert MahalanobisScorer.from_dict(scorer.to_dict()).score(far) == pytest.approx(scorer.score(far))


def test_mahalanobis_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="two classes"):
        MahalanobisScorer.fit(np.zeros((10, 3)), np.zeros(10, dtype=int))


def test_embed_returns_the_logits_the_model_gives_and_its_pooled_features() -> None:
    model = calibrated_model(seed=0)
    inputs = torch.randn(3, 3, 96, 96)
    out = embed(model, inputs, batch_size=2)
    with torch.no_grad():
        expected = model(inputs).numpy()
    assert out.logits == pytest.approx(expected, abs=1e-5)
    assert out.features is not None
    assert out.features.shape == (3, 256)


def test_the_energy_rule_flags_photos_whose_logits_are_all_small() -> None:
    rule = InconclusiveRule(method="energy", threshold=2.0)
    assert rule.is_inconclusive(np.array([0.1, 0.0, -0.2, 0.3]))
    assert not rule.is_inconclusive(np.array([6.0, 0.0, -0.2, 0.3]))
    # The max-probability rule looks only at the softmax, which ignores the logits' scale.
    same_softmax = InconclusiveRule(method="max_probability", threshold=0.5)
    assert same_softmax.score(np.array([1.0, 0.0])) == pytest.approx(same_softmax.score(np.array([11.0, 10.0])))


def test_the_certainty_rule_matches_the_reports_entropy_score() -> None:
    logits = np.array([[2.0, 0.5, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [30.0, 0.0, 0.0, 0.0]])
    expected = confidence(softmax(logits), "certainty")
    rule = InconclusiveRule(method="certainty", threshold=0.5)
    assert [rule.score(row) for row in logits] == pytest.approx(expected, abs=1e-9)
    assert [rule.is_inconclusive(row) for row in logits] == [bool(c < 0.5) for c in expected]
    assert rule.is_inconclusive(logits[1])
    assert not rule.is_inconclusive(logits[2])


def test_an_energy_rule_round_trips_and_an_unknown_method_is_refused(tmp_path) -> None:
    checkpoint = checkpoint_for(calibrated_model(seed=0))
    checkpoint.inconclusive = InconclusiveRule(method="energy", threshold=3.25)
    checkpoint.save(tmp_path / "w.pt")
    assert load_checkpoint(tmp_path / "w.pt").inconclusive == InconclusiveRule(method="energy", threshold=3.25)

    with pytest.raises(ValueError, match="unknown inconclusive method 'entropy'"):
        InconclusiveRule(method="entropy")
    data = torch.load(tmp_path / "w.pt", weights_only=True)
    data["inconclusive"] = {"method": "entropy", "threshold": 0.5}
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="unknown inconclusive method"):
        load_checkpoint(tmp_path / "bad.pt")
