"""Evaluation metrics of the Fast-MpoxNet paper (section 3.3) and the inconclusive-threshold rule.

* Eq. 1-5: accuracy and per-class precision, recall, specificity and F1 from a confusion matrix (one class against
  the rest). A ratio whose denominator is zero (a class never predicted, or absent from the labels) is reported as
  0.0, like scikit-learn's ``zero_division=0``, so that an empty class lowers a mean instead of breaking it.
* Eq. 6: average frames per second, the mean over N calls of 1 / (t_out - t_in).
* Eq. 7-11: the practicality score, a weighted sum of min-max normalised accuracy, FPS, recall and specificity
  across the compared models. A metric on which every model ties (max == min) normalises to 0 for all of them: it
  does not separate the models, so it adds nothing to any score.
* One-vs-rest ROC curves and AUC per class, macro (mean of the class AUCs) and micro (all decisions pooled).
* ``choose_threshold``: the inconclusive rule's threshold on any confidence score, chosen on known-class
  validation predictions only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PRACTICALITY_WEIGHTS: dict[str, float] = {"accuracy": 0.15, "fps": 0.4, "recall": 0.35, "specificity": 0.15}
PER_CLASS_METRICS = ("precision", "recall", "specificity", "f1")


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int
) -> np.ndarray:
    """Rows are the true classes, columns the predicted ones."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def accuracy(matrix: np.ndarray) -> float:
    """Eq. 1 over all classes: the diagonal over the total."""
    return _ratio(float(np.trace(matrix)), float(matrix.sum()))


def per_class_metrics(matrix: np.ndarray, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Eq. 2-5 for each class against the rest, plus its support (true count). Zero denominators give 0.0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(class_names):
        tp = matrix[i, i]
        fn = matrix[i].sum() - tp
        fp = matrix[:, i].sum() - tp
        tn = total - tp - fn - fp
        precision = _ratio(tp, tp + fp)
        recall = _ratio(tp, tp + fn)
        out[name] = {
            "precision": precision,
            "recall": recall,
            "specificity": _ratio(tn, tn + fp),
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": int(tp + fn),
        }
    return out


@dataclass(frozen=True)
class RocCurve:
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


def roc_curves(
    probs: np.ndarray, y_true: Sequence[int] | np.ndarray, class_names: Sequence[str]
) -> dict[str, RocCurve]:
    """One-vs-rest ROC curves keyed by class name, plus ``macro`` (the class curves averaged on a common FPR grid;
    its AUC is the mean of the class AUCs) and ``micro`` (every class decision pooled). A class with no positive or
    no negative example has no curve (AUC is undefined) and is left out of the macro mean."""
    from sklearn.metrics import auc, roc_curve

    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    onehot = np.eye(len(class_names), dtype=np.int64)[y]
    curves: dict[str, RocCurve] = {}
    for i, name in enumerate(class_names):
        positives = int(onehot[:, i].sum())
        if positives == 0 or positives == len(y):
            continue
        fpr, tpr, _ = roc_curve(onehot[:, i], probs[:, i])
        curves[name] = RocCurve(fpr=fpr, tpr=tpr, auc=float(auc(fpr, tpr)))
    if curves:
        grid = np.unique(np.concatenate([c.fpr for c in curves.values()]))
        mean_tpr = np.mean([np.interp(grid, c.fpr, c.tpr) for c in curves.values()], axis=0)
        curves["macro"] = RocCurve(fpr=grid, tpr=mean_tpr, auc=float(np.mean([c.auc for c in curves.values()])))
        fpr, tpr, _ = roc_curve(onehot.ravel(), probs.ravel())
        curves["micro"] = RocCurve(fpr=fpr, tpr=tpr, auc=float(auc(fpr, tpr)))
    return curves


def auc_summary(probs: np.ndarray, y_true: Sequence[int] | np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    return {name: curve.auc for name, curve in roc_curves(probs, y_true, class_names).items()}


def mean_sd(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value), as the paper's mean (± sd)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {"mean": float("nan"), "sd": float("nan")}
    return {"mean": float(array.mean()), "sd": float(array.std(ddof=1)) if array.size > 1 else 0.0}


def format_mean_sd(stat: Mapping[str, float], *, percent: bool = True) -> str:
    scale = 100.0 if percent else 1.0
    suffix = "%" if percent else ""
    return f"{stat['mean'] * scale:.2f}{suffix} (± {stat['sd'] * scale:.2f})"


def measure_fps(model_fn: Callable[[Any], Any], inputs: Sequence[Any], n: int = 100, warmup: int = 10) -> float:
    """Eq. 6: call ``model_fn`` on ``inputs`` (cycled) ``warmup`` times untimed, then ``n`` times, and return the
    mean of 1 / (t_out - t_in) over the timed calls."""
    if n < 1 or not inputs:
        raise ValueError("measure_fps needs n >= 1 and at least one input")
    for i in range(warmup):
        model_fn(inputs[i % len(inputs)])
    rates = []
    for i in range(n):
        item = inputs[i % len(inputs)]
        t_in = time.perf_counter()
        model_fn(item)
        t_out = time.perf_counter()
        rates.append(1.0 / max(t_out - t_in, 1e-9))
    return float(np.mean(rates))


def practicality_scores(
    metrics: Mapping[str, Mapping[str, float]], weights: Mapping[str, float] = PRACTICALITY_WEIGHTS
) -> dict[str, float]:
    """Eq. 7-11. ``metrics`` maps a model to its accuracy, fps, recall and specificity (the paper uses the mpox
    class's recall and specificity). Each metric is min-max normalised across the models; a metric where all models
    tie normalises to 0."""
    names = list(metrics)
    scores = dict.fromkeys(names, 0.0)
    for key, weight in weights.items():
        values = np.array([float(metrics[name][key]) for name in names])
        low, high = values.min(initial=np.inf), values.max(initial=-np.inf)
        if not names or high == low:
            continue
        for name, value in zip(names, values, strict=True):
            scores[name] += weight * float((value - low) / (high - low))
    return scores


CONFIDENCE_METHODS = ("max_probability", "certainty")


def confidence(probs: np.ndarray, method: str = "max_probability") -> np.ndarray:
    """Per prediction, how sure the model is (higher = surer): ``max_probability`` (the top softmax probability,
    what the site's rule uses) or ``certainty`` (1 - entropy / log(classes), in [0, 1]). Logit-based scores such as
    the energy score need the logits (``ml.ood.energy``): softmax discards their scale."""
    probs = np.asarray(probs, dtype=np.float64)
    if method == "max_probability":
        return probs.max(axis=1)
    if method == "certainty":
        entropy = -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=1)
        return 1.0 - entropy / np.log(probs.shape[1])
    raise ValueError(f"unknown confidence method {method!r}; choose from {', '.join(CONFIDENCE_METHODS)}")


def recall_with_threshold(
    scores: np.ndarray,
    predicted: np.ndarray,
    y_true: Sequence[int] | np.ndarray,
    mpox_index: int,
    threshold: float = -np.inf,
) -> float:
    """Mpox recall when a prediction whose score (any "higher = surer" score) is below ``threshold`` is
    inconclusive and so counts as missed."""
    y = np.asarray(y_true, dtype=np.int64)
    is_mpox = y == mpox_index
    if not is_mpox.any():
        return 0.0
    hit = (np.asarray(predicted) == mpox_index) & (np.asarray(scores, dtype=np.float64) >= threshold)
    return float(hit[is_mpox].mean())


def choose_threshold(
    scores: np.ndarray,
    predicted: np.ndarray,
    y_true: Sequence[int] | np.ndarray,
    mpox_index: int,
    max_recall_drop: float = 0.05,
    margin: float = 0.01,
) -> float | None:
    """The largest score threshold whose mpox recall on these (out-of-fold, known-class) predictions is at most
    ``max_recall_drop - margin`` below the recall without the rule, or None when even the smallest observed score
    breaks that budget. The margin (default 1 point, so a 4-point budget) leaves room for the threshold to
    generalise to new photos."""
    budget = max_recall_drop - margin
    base = recall_with_threshold(scores, predicted, y_true, mpox_index)
    best: float | None = None
    # Recall can only fall as the threshold rises, so scan the candidate values (each observed score).
    for candidate in np.unique(np.asarray(scores, dtype=np.float64)):
        if base - recall_with_threshold(scores, predicted, y_true, mpox_index, float(candidate)) <= budget + 1e-12:
            best = float(candidate)
        else:
            break
    return best


def choose_reassuring_threshold(
    scores: np.ndarray,
    predicted: np.ndarray,
    y_true: Sequence[int] | np.ndarray,
    mpox_index: int,
    max_accuracy: float = 0.5,
) -> float | None:
    """The largest score threshold below which the reassuring labels (every prediction that is not mpox) were right
    at most ``max_accuracy`` of the time on these out-of-fold predictions: withholding a label that is more often
    wrong than right costs the reviewer nothing and keeps a misleading "not mpox" off the screen. Flagging these
    never lowers mpox recall (an mpox photo given another label is missed either way). None when even the least
    sure reassuring prediction was right more often than that."""
    reassuring = np.asarray(predicted) != mpox_index
    ranked = np.asarray(scores, dtype=np.float64)[reassuring]
    right = (np.asarray(predicted) == np.asarray(y_true))[reassuring]
    order = np.argsort(ranked, kind="stable")
    ranked, right = ranked[order], right[order]
    best: float | None = None
    correct = 0
    # The rule flags score < threshold, so a threshold equal to the next distinct score flags all scores so far.
    for i in range(len(ranked)):
        correct += int(right[i])
        last_of_its_value = i + 1 == len(ranked) or ranked[i + 1] > ranked[i]
        if last_of_its_value and correct / (i + 1) <= max_accuracy + 1e-12:
            best = float(ranked[i + 1]) if i + 1 < len(ranked) else float(np.nextafter(ranked[i], np.inf))
    return best
