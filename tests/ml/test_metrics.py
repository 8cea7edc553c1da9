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


def noisy_predictions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-probability scores, predicted labels and true labels of 400 noisy three-class predictions."""
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3)) + 2.0 * np.eye(3)[y_true]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return metrics.confidence(probs), probs.argmax(axis=1), y_true


def test_threshold_keeps_mpox_recall_within_the_budget() -> None:
    scores, predicted, y_true = noisy_predictions()
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


def test_the_reassuring_threshold_ignores_mpox_predictions() -> None:
    # Reassuring predictions (not mpox, index 2) by score: wrong, wrong, right, right, right.
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.15])
    predicted = np.array([0, 1, 0, 1, 0, 2])
    y_true = np.array([1, 0, 0, 1, 0, 2])  # the mpox prediction at 0.15 is right
    # Below 0.5 the reassuring labels were right 2 times out of 4; below anything larger, 3 out of 5. Counting the
    # right mpox prediction at 0.15 would give 0.4 instead.
    assert metrics.choose_reassuring_threshold(scores, predicted, y_true, mpox_index=2) == 0.5
    # Whatever the mpox predictions score or whether they are right.
    for mpox_score, mpox_truth in ((0.05, 2), (0.45, 0), (0.9, 2)):
        moved = np.array([*scores[:5], mpox_score])
        truth = np.array([*y_true[:5], mpox_truth])
        assert metrics.choose_reassuring_threshold(moved, predicted, truth, mpox_index=2) == 0.5
    # A stricter accuracy flags only the two wrong ones.
    assert metrics.choose_reassuring_threshold(scores, predicted, y_true, mpox_index=2, max_accuracy=0.0) == 0.3


def test_the_reassuring_threshold_never_splits_tied_scores() -> None:
    predicted = np.zeros(4, dtype=int)
    scores = np.array([0.2, 0.2, 0.4, 0.6])
    for first_two in ([1, 0], [0, 1]):  # one of the two tied predictions is wrong, whichever comes first
        y_true = np.array([*first_two, 0, 0])
        # Flagging only the wrong one of the tie is impossible (score < t flags both or neither); both are right
        # half the time, which is within 0.5 but not within 0.4.
        assert metrics.choose_reassuring_threshold(scores, predicted, y_true, mpox_index=1) == 0.4
        assert metrics.choose_reassuring_threshold(scores, predicted, y_true, mpox_index=1, max_accuracy=0.4) is None
    # A tie at the top that may all be flagged: the threshold is just above it, so every prediction is flagged.
    both_wrong = metrics.choose_reassuring_threshold(np.array([0.3, 0.3]), np.array([0, 0]), [1, 1], mpox_index=1)
    assert both_wrong == np.nextafter(0.3, np.inf)
    assert both_wrong is not None
    assert (np.array([0.3, 0.3]) < both_wrong).all()


def test_no_reassuring_threshold_when_every_reassuring_prediction_was_right() -> None:
    scores = np.array([0.1, 0.3, 0.5, 0.7])
    predicted = np.array([2, 0, 1, 2])
    # The mpox predictions are wrong, but they are not the reassuring labels' business.
    assert metrics.choose_reassuring_threshold(scores, predicted, [0, 0, 1, 0], mpox_index=2) is None
    # Nor is there one without any reassuring prediction.
    assert metrics.choose_reassuring_threshold(scores, np.full(4, 2), [0, 1, 0, 1], mpox_index=2) is None


def test_the_reassuring_threshold_is_the_largest_whose_flagged_labels_are_right_at_most_half_the_time() -> None:
    scores, predicted, y_true = noisy_predictions()
    reassuring = predicted != 1
    right = predicted == y_true

    def accuracy_below(threshold: float) -> float:
        flagged = reassuring & (scores < threshold)
        return float(right[flagged].mean())

    threshold = metrics.choose_reassuring_threshold(scores, predicted, y_true, 1)
    assert threshold is not None
    assert 0 < (reassuring & (scores < threshold)).sum() < reassuring.sum()
    assert accuracy_below(threshold) <= 0.5
    # Every larger candidate (the next reassuring scores, and just above the last) flags labels right more often.
    larger = [*np.unique(scores[reassuring & (scores > threshold)]), np.nextafter(scores[reassuring].max(), np.inf)]
    assert larger
    assert all(accuracy_below(float(candidate)) > 0.5 for candidate in larger)
