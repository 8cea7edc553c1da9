from __future__ import annotations

import numpy as np
import pytest

from ml import metrics

NAMES = ("a", "b", "c")


def test_per_class_metrics_match_a_hand_computed_confusion_matrix() -> None:
    y_true = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]
    matrix = metrics.confusion_matrix(y_true, y_pred, 3)
    assert matrix.tolist() == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    assert metrics.accuracy(matrix) == pytest.approx(0.7)
    a = metrics.per_class_metrics(matrix, NAMES)["a"]
    # Class a: TP 3, FN 1, FP 1, TN 5.
    assert a["precision"] == pytest.approx(3 / 4)
    assert a["recall"] == pytest.approx(3 / 4)
    assert a["specificity"] == pytest.approx(5 / 6)
    assert a["f1"] == pytest.approx(3 / 4)
    assert a["support"] == 4


def test_a_class_never_predicted_scores_zero_instead_of_dividing_by_zero() -> None:
    matrix = metrics.confusion_matrix([0, 1, 2], [0, 0, 0], 3)
    row = metrics.per_class_metrics(matrix, NAMES)["b"]
    assert (row["precision"], row["recall"], row["f1"]) == (0.0, 0.0, 0.0)
    assert metrics.per_class_metrics(np.zeros((3, 3)), NAMES)["a"]["recall"] == 0.0


def test_practicality_score_normalises_each_metric_across_models() -> None:
    scores = metrics.practicality_scores(
        {
            "fast": {"accuracy": 0.9, "fps": 70, "recall": 0.95, "specificity": 0.9},
            "slow": {"accuracy": 0.95, "fps": 10, "recall": 0.90, "specificity": 0.9},
            "middle": {"accuracy": 0.925, "fps": 40, "recall": 0.925, "specificity": 0.9},
        }
    )
    # Specificity ties everywhere, so it contributes nothing.
    assert scores["fast"] == pytest.approx(0.4 + 0.35)
    assert scores["slow"] == pytest.approx(0.15)
    assert scores["middle"] == pytest.approx(0.5 * (0.15 + 0.4 + 0.35))


def test_threshold_keeps_mpox_recall_within_the_budget() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3)) + 2.0 * np.eye(3)[y_true]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    scores, predicted = metrics.confidence(probs), probs.argmax(axis=1)
    threshold = metrics.choose_threshold(scores, predicted, y_true, 1, max_recall_drop=0.05, margin=0.01)
    assert threshold is not None
    before = metrics.recall_with_threshold(scores, predicted, y_true, 1)
    assert threshold > 0.4
    assert before - metrics.recall_with_threshold(scores, predicted, y_true, 1, threshold) <= 0.04 + 1e-9
    # The next candidate up would break the budget: it is the largest allowed.
    higher = np.unique(scores)
    higher = higher[higher > threshold][0]
    assert before - metrics.recall_with_threshold(scores, predicted, y_true, 1, float(higher)) > 0.04
    assert 0 < (scores < threshold).mean() < 1


def test_roc_gives_class_macro_and_micro_auc() -> None:
    y_true = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[y_true] * 0.8 + 0.2 / 3
    aucs = metrics.auc_summary(probs, y_true, NAMES)
    assert set(aucs) == {"a", "b", "c", "macro", "micro"}
    assert all(v == pytest.approx(1.0) for v in aucs.values())


def test_measure_fps_is_the_mean_of_reciprocal_call_times() -> None:
    calls: list[int] = []
    fps = metrics.measure_fps(calls.append, [1, 2], n=5, warmup=2)
    assert len(calls) == 7
    assert fps > 0
    with pytest.raises(ValueError, match="at least one input"):
        metrics.measure_fps(calls.append, [], n=5)


def test_mean_sd_uses_the_sample_deviation() -> None:
    assert metrics.mean_sd([1.0, 3.0]) == {"mean": 2.0, "sd": pytest.approx(np.sqrt(2))}
    assert metrics.mean_sd([0.5])["sd"] == 0.0


def test_certainty_is_one_for_a_sure_prediction_and_zero_for_a_uniform_one() -> None:
    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    assert metrics.confidence(probs, "certainty") == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError, match="unknown confidence"):
        metrics.confidence(probs, "energy")
