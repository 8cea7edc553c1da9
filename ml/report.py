"""The cross-validation report: Markdown, JSON and figures rebuilt from the per-fold result files.

``python -m ml.report [--out ml/reports/crossval] [--remeasure-fps]`` reads ``OUT/folds/*.json`` (written by
``ml.crossval``) and writes ``OUT/crossval.md``, ``OUT/crossval.json`` and PNG figures beside them. Every variant
with at least one finished fold is reported; unfinished ones are marked incomplete. The Eq. 6 FPS of each
architecture is measured once (batch 1, N=100, torch eager on CPU, random 224 x 224 inputs, all architectures
interleaved in one process) and cached in ``OUT/fps.json``, so rebuilding after every fold stays cheap.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ml import metrics
from ml.ood import energy

logger = logging.getLogger(__name__)

FOLD_COUNT = 5
COLLAPSE_SHARE = 0.95
FPS_NOISE = 0.05  # relative FPS spread below which speed differences are not trusted (shared, busy CPU)
FPS_RUNS = 100
MPOX = "monkeypox"
PAPER_TARGETS = {"accuracy": 0.943, "mpox_recall": 0.958}
# The variants a site could ship: each gets its own inconclusive rule, chosen on its own folds.
SHIPPABLE = ("fast_mpoxnet", "fast_mpoxnet_oe")
TITLES = {
    "fast_mpoxnet": "Fast-MpoxNet (ImageNet backbone)",
    "fast_mpoxnet_oe": "Fast-MpoxNet (ImageNet backbone, outlier exposure)",
    "fast_mpoxnet_20ep": "Fast-MpoxNet (ImageNet backbone, 20 epochs)",
    "shufflenet_v2_x0_5": "ShuffleNetV2-x0.5 (ImageNet backbone)",
    "shufflenet_v2_x0_5_10ep": "ShuffleNetV2-x0.5 (ImageNet backbone, 10 epochs)",
    "fast_mpoxnet_scratch": "Fast-MpoxNet (from scratch, ablation)",
    "fast_mpoxnet_scratch_20ep": "Fast-MpoxNet (from scratch, ablation, 20 epochs)",
    "mobilenet_v3_small": "MobileNetV3-small (from scratch)",
    "fast_mpoxnet_paper_folds": "Fast-MpoxNet (ImageNet backbone, the paper's class-stratified folds)",
}
PAPER_FOLDS = "fast_mpoxnet_paper_folds"


# ----------------------------------------------------------------------------------------------------- reading


def load_folds(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Fold results grouped by variant, each list sorted by fold number."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((out_dir / "folds").glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            logger.warning("skipping unreadable fold file %s", path)
            continue
        by_variant.setdefault(data["variant"], []).append(data)
    for folds in by_variant.values():
        folds.sort(key=lambda d: int(d["fold"]))
    order = [k for k in TITLES if k in by_variant] + sorted(k for k in by_variant if k not in TITLES)
    return {k: by_variant[k] for k in order}


def fold_metrics(fold: dict[str, Any]) -> dict[str, Any]:
    names = list(fold["class_names"])
    probs = np.asarray(fold["probs"], dtype=np.float64)
    y_true = np.asarray(fold["y_true"], dtype=np.int64)
    matrix = metrics.confusion_matrix(y_true, probs.argmax(axis=1), len(names))
    return {
        "fold": int(fold["fold"]),
        "epochs": int(fold["epochs"]),
        "n": len(y_true),
        "accuracy": metrics.accuracy(matrix),
        "per_class": metrics.per_class_metrics(matrix, names),
        "auc": metrics.auc_summary(probs, y_true, names),
        "confusion": matrix.tolist(),
        # A model that gives (nearly) every test photo the same label has collapsed, whatever its accuracy says.
        "collapsed": bool(matrix.sum(axis=0).max() >= COLLAPSE_SHARE * max(len(y_true), 1)),
        "final_train_loss": fold["history"][-1]["train_loss"] if fold.get("history") else None,
        "train_seconds": fold.get("train_seconds"),
        # Test photos with a crop or re-framing of the same photo in training (0 on group-aware folds).
        "test_sharing_group": fold.get("test_photos_sharing_a_group_with_training"),
    }


def summarise(per_fold: Sequence[dict[str, Any]], class_names: Sequence[str]) -> dict[str, Any]:
    auc_keys = [k for k in [*class_names, "macro", "micro"] if all(k in f["auc"] for f in per_fold)]
    return {
        "accuracy": metrics.mean_sd([f["accuracy"] for f in per_fold]),
        "per_class": {
            name: {m: metrics.mean_sd([f["per_class"][name][m] for f in per_fold]) for m in metrics.PER_CLASS_METRICS}
            for name in class_names
        },
        "auc": {k: metrics.mean_sd([f["auc"][k] for f in per_fold]) for k in auc_keys},
    }


# ------------------------------------------------------------------------------------------------- params, FPS


def _build(arch: str, num_classes: int) -> Any:
    from ml.model import FastMpoxNet, build_model

    model = build_model(arch, num_classes=num_classes, aux_heads=False)
    if isinstance(model, FastMpoxNet):
        model = model.inference_model()
    return model.eval()


def parameter_counts(archs: Sequence[str], num_classes: int) -> dict[str, int]:
    from ml.model import parameter_count

    return {arch: parameter_count(_build(arch, num_classes)) for arch in archs}


def measure_fps_interleaved(archs: Sequence[str], num_classes: int, *, runs: int = FPS_RUNS) -> dict[str, float]:
    """Eq. 6 at batch 1 for every architecture, interleaved in rounds of 10 calls so that background load on the
    machine affects all of them alike. Each model is warmed up first."""
    import torch

    torch.manual_seed(0)
    inputs = [torch.randn(1, 3, 224, 224) for _ in range(10)]
    models = {arch: _build(arch, num_classes) for arch in archs}
    rates: dict[str, list[float]] = {arch: [] for arch in archs}

    def call(model: Any) -> Callable[[Any], Any]:
        def run(x: Any) -> Any:
            with torch.inference_mode():
                return model(x)

        return run

    for model in models.values():
        metrics.measure_fps(call(model), inputs, n=1, warmup=10)
    rounds = max(1, runs // 10)
    for r in range(rounds):
        order = list(archs) if r % 2 == 0 else list(reversed(archs))
        for arch in order:
            rates[arch].append(metrics.measure_fps(call(models[arch]), inputs, n=runs // rounds, warmup=0))
    return {arch: float(np.mean(values)) for arch, values in rates.items()}


def fps_table(out_dir: Path, archs: Sequence[str], num_classes: int, *, remeasure: bool = False) -> dict[str, Any]:
    """The cached FPS table (``OUT/fps.json``), measured for all architectures together when any is missing."""
    path = out_dir / "fps.json"
    cached: dict[str, Any] = {}
    if path.is_file() and not remeasure:
        try:
            cached = json.loads(path.read_text())
        except json.JSONDecodeError:
            cached = {}
    if remeasure or any(a not in cached.get("fps", {}) for a in archs):
        import torch

        wanted = sorted(set(archs) | set(cached.get("fps", {})))
        logger.info("measuring FPS (batch 1, N=%d) for %s", FPS_RUNS, ", ".join(wanted))
        cached = {
            "fps": measure_fps_interleaved(wanted, num_classes),
            "method": f"Eq. 6, batch 1, N={FPS_RUNS} after 10 warm-up calls, torch eager, random 224x224 inputs, "
            "all architectures interleaved in one process",
            "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_text(path, json.dumps(cached, indent=2) + "\n")
    return cached


# ---------------------------------------------------------------------------------------------- inconclusive


# Scores an inconclusive rule can threshold, "higher = surer"; the fold files hold what each needs.
SCORE_METHODS = ("max_probability", "certainty", "energy", "mahalanobis")
# What ml.checkpoint.InconclusiveRule applies at inference (the others are reported for comparison).
DEPLOYABLE_METHODS = ("max_probability", "certainty", "energy")
SCORE_DESCRIPTIONS = {
    "max_probability": "top softmax probability",
    "certainty": "1 - entropy / log(classes)",
    "energy": "logsumexp of the logits",
    "mahalanobis": "minus the Mahalanobis distance of the pooled features to the nearest class mean",
}


def _scores(block: dict[str, Any], method: str) -> np.ndarray | None:
    """One score per photo of a fold (or of one of its OOD folders), or None when the file lacks what it needs."""
    if method in ("max_probability", "certainty"):
        return metrics.confidence(np.asarray(block["probs"], dtype=np.float64), method)
    if method == "energy":
        return energy(np.asarray(block["logits"], dtype=np.float64)) if "logits" in block else None
    return np.asarray(block["mahalanobis"], dtype=np.float64) if "mahalanobis" in block else None


def _pooled(folds: Sequence[dict[str, Any]], method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = [_scores(f, method) for f in folds]
    return (
        np.concatenate([s for s in scores if s is not None]),
        np.concatenate([np.asarray(f["probs"], dtype=np.float64).argmax(axis=1) for f in folds]),
        np.concatenate([np.asarray(f["y_true"], dtype=np.int64) for f in folds]),
    )


RULE_KINDS = ("by_label", "single")
RULE_KIND_DESCRIPTIONS = {
    "single": "one threshold for every label, the largest within the mpox-recall budget",
    "by_label": "the mpox threshold as for one threshold, and for the reassuring labels (chickenpox, measles, "
    "normal) the largest threshold below which they were right at most half the time (never below the mpox one)",
}
REASSURING_MAX_ACCURACY = 0.5


def inconclusive_analysis(folds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """For each score the fold files allow and each kind of rule, choose the thresholds on the pooled out-of-fold
    predictions of the known classes, then report them on the out-of-distribution folders (fractions pooled over
    folds: a folder the model trained on as outliers contributes each fold's test photos, any other folder every
    photo in every fold). The site's rule is by label (a stricter threshold for reassuring labels, which costs no
    mpox recall) on the deployable score that flags the most OOD photos."""
    names = list(folds[0]["class_names"])
    mpox_index = names.index(MPOX) if MPOX in names else 0
    methods = [m for m in SCORE_METHODS if all(_scores(f, m) is not None for f in folds)]
    summaries = {
        f"{m}/{kind}": {"method": m, "kind": kind, **_method_summary(folds, m, kind, mpox_index, names)}
        for m in methods
        for kind in (RULE_KINDS if m in DEPLOYABLE_METHODS else ("single",))
    }
    usable = [
        key
        for key, summary in summaries.items()
        if summary["method"] in DEPLOYABLE_METHODS
        and summary["kind"] == "by_label"
        and summary["threshold"] is not None
    ]
    chosen = max(usable, key=lambda k: summaries[k]["ood_flagged_fraction"]) if usable else None
    if chosen is None:  # no threshold fits the budget: the rule is off
        rule = {**summaries.get("max_probability/single", {}), "method": "max_probability", "kind": "single"}
        rule.update(threshold=0.0, label_thresholds={})
    else:
        rule = summaries[chosen]
    return {
        **rule,
        "score": SCORE_DESCRIPTIONS[rule["method"]],
        "variant": folds[0]["variant"],
        "title": folds[0].get("title", TITLES.get(folds[0]["variant"], folds[0]["variant"])),
        "chosen_on": "pooled out-of-fold predictions of the known classes",
        "rule": RULE_KIND_DESCRIPTIONS[rule["kind"]]
        + "; the mpox-recall budget: inconclusive mpox counted as missed, at most 4 points below the recall "
        "without the rule (a 5-point budget minus a 1-point margin)",
        "methods": {
            key: {k: v for k, v in summary.items() if k != "ood"}
            | {"ood_by_folder": {folder: row["flagged_fraction"] for folder, row in summary["ood"].items()}}
            for key, summary in summaries.items()
        },
    }


def _thresholds(
    scores: np.ndarray, predicted: np.ndarray, y_true: np.ndarray, kind: str, mpox_index: int, n_classes: int
) -> tuple[float | None, list[float]]:
    """The mpox threshold (None when none fits the budget) and one threshold per label for the rule's kind."""
    threshold = metrics.choose_threshold(scores, predicted, y_true, mpox_index, max_recall_drop=0.05, margin=0.01)
    cut = -np.inf if threshold is None else threshold
    per_label = [cut] * n_classes
    if kind == "by_label":
        reassuring = metrics.choose_reassuring_threshold(
            scores, predicted, y_true, mpox_index, max_accuracy=REASSURING_MAX_ACCURACY
        )
        if reassuring is not None:
            per_label = [cut if i == mpox_index else max(cut, reassuring) for i in range(n_classes)]
    return threshold, per_label


def _flagged(scores: np.ndarray, predicted: np.ndarray, per_label: Sequence[float]) -> np.ndarray:
    return np.asarray(scores, dtype=np.float64) < np.asarray(per_label, dtype=np.float64)[np.asarray(predicted)]


def _ood_blocks(folds: Sequence[dict[str, Any]], folder: str) -> list[dict[str, Any]]:
    return [f["ood"][folder] for f in folds if folder in f.get("ood", {}) and len(f["ood"][folder]["probs"])]


def _method_summary(
    folds: Sequence[dict[str, Any]], method: str, kind: str, mpox_index: int, names: Sequence[str]
) -> dict[str, Any]:
    scores, predicted, y_true = _pooled(folds, method)
    threshold, per_label = _thresholds(scores, predicted, y_true, kind, mpox_index, len(names))
    known_flags = _flagged(scores, predicted, per_label)
    ood: dict[str, Any] = {}
    pooled: list[np.ndarray] = []
    pooled_unseen: list[np.ndarray] = []
    for folder in sorted({k for f in folds for k in f.get("ood", {})}):
        blocks = _ood_blocks(folds, folder)
        if not blocks:
            continue
        folder_scores = np.concatenate([_scores(b, method) for b in blocks])  # type: ignore[misc]
        folder_probs = np.concatenate([np.asarray(b["probs"], dtype=np.float64) for b in blocks])
        flags = _flagged(folder_scores, folder_probs.argmax(axis=1), per_label)
        pooled.append(flags)
        if not any(b.get("exposed_in_training") for b in blocks):
            pooled_unseen.append(flags)
        predicted_ood = np.bincount(folder_probs.argmax(axis=1), minlength=len(names))
        ood[folder] = {
            "images": len({name for b in blocks for name in b.get("files", [])}),
            "exposed_in_training": any(b.get("exposed_in_training") for b in blocks),
            "predictions": len(folder_scores),
            "flagged_fraction": float(flags.mean()),
            "predicted_fraction": {n: float(c / len(folder_probs)) for n, c in zip(names, predicted_ood, strict=True)},
        }
    all_ood = np.concatenate(pooled) if pooled else np.zeros(0, dtype=bool)
    unseen = np.concatenate(pooled_unseen) if pooled_unseen else np.zeros(0, dtype=bool)
    shown = ~known_flags
    return {
        "threshold": threshold,
        # None of them when no mpox threshold fits the budget (the rule is then off, not -inf in the JSON).
        "label_thresholds": dict(zip(names, per_label, strict=True))
        if kind == "by_label" and threshold is not None
        else {},
        "ood_flagged_fraction": float(all_ood.mean()) if all_ood.size else 0.0,
        # Folders never used for outlier exposure: diseases the model never saw (all folders without exposure).
        "ood_unseen_flagged_fraction": float(unseen.mean()) if unseen.size else None,
        "ood": ood,
        "known_flagged_fraction": float(known_flags.mean()),
        "accuracy_shown": float((predicted[shown] == y_true[shown]).mean()) if shown.any() else None,
        "mpox_recall_before": metrics.recall_with_threshold(scores, predicted, y_true, mpox_index),
        "mpox_recall_after": _mpox_recall(known_flags, predicted, y_true, mpox_index),
        "held_out_check": held_out_threshold_check(folds, mpox_index, method, kind),
    }


def _mpox_recall(flags: np.ndarray, predicted: np.ndarray, y_true: np.ndarray, mpox_index: int) -> float:
    is_mpox = np.asarray(y_true) == mpox_index
    if not is_mpox.any():
        return 0.0
    return float(((np.asarray(predicted) == mpox_index) & ~flags)[is_mpox].mean())


def held_out_threshold_check(
    folds: Sequence[dict[str, Any]], mpox_index: int, method: str = "max_probability", kind: str = "single"
) -> dict[str, Any]:
    """Does the rule generalise? For each fold, choose the thresholds on the other folds' predictions and measure
    on the held-out fold the mpox recall drop (the budget is 5 points; 4 are spent when choosing), the share of
    known-class photos flagged and the share of out-of-distribution photos flagged."""
    if len(folds) < 2:
        return {}
    n_classes = len(folds[0]["class_names"])
    drops: list[float] = []
    known: list[float] = []
    ood: list[float] = []
    for k, held in enumerate(folds):
        rest_scores, rest_predicted, rest_true = _pooled([f for i, f in enumerate(folds) if i != k], method)
        _, per_label = _thresholds(rest_scores, rest_predicted, rest_true, kind, mpox_index, n_classes)
        scores, predicted, y_true = _pooled([held], method)
        flags = _flagged(scores, predicted, per_label)
        before = metrics.recall_with_threshold(scores, predicted, y_true, mpox_index)
        drops.append(before - _mpox_recall(flags, predicted, y_true, mpox_index))
        known.append(float(flags.mean()))
        ood_flags = [
            _flagged(_scores(b, method), np.asarray(b["probs"]).argmax(axis=1), per_label)  # type: ignore[arg-type]
            for folder in held.get("ood", {})
            for b in _ood_blocks([held], folder)
        ]
        if ood_flags:
            ood.append(float(np.concatenate(ood_flags).mean()))
    return {
        "mpox_recall_drop": metrics.mean_sd(drops),
        "max_mpox_recall_drop": max(drops),
        "folds_over_budget": sum(d > 0.05 + 1e-12 for d in drops),
        "known_flagged": metrics.mean_sd(known),
        **({"ood_flagged": metrics.mean_sd(ood)} if ood else {}),
    }


# ------------------------------------------------------------------------------------------------------ figures


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    tmp.replace(path)


def plot_confusions(path: Path, title: str, names: Sequence[str], summed: np.ndarray, worst: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    panels = [
        (summed, "all folds summed"),
        (np.asarray(worst["confusion"]), f"worst fold ({worst['fold']}, acc {worst['accuracy']:.1%})"),
    ]
    for ax, (matrix, label) in zip(axes, panels, strict=True):
        ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            colour = "white" if value > matrix.max() / 2 else "black"
            ax.text(j, i, str(value), ha="center", va="center", color=colour, fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label, fontsize=10)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def plot_roc(path: Path, title: str, probs: np.ndarray, y_true: np.ndarray, names: Sequence[str]) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for key, curve in metrics.roc_curves(probs, y_true, names).items():
        style = "--" if key in ("macro", "micro") else "-"
        ax.plot(curve.fpr, curve.tpr, style, label=f"{key} (AUC {curve.auc:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{title}: one-vs-rest ROC, pooled out-of-fold", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_accuracy_fps(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Like the paper's Figure 7: mean accuracy against FPS, bubble area proportional to the parameter count."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    for row in rows:
        ax.scatter(row["fps"], row["accuracy"] * 100, s=row["params"] / 400, alpha=0.5)
        ax.annotate(
            f"{row['title']}\n{row['params'] / 1e6:.2f}M params{row.get('note', '')}",
            (row["fps"], row["accuracy"] * 100),
            fontsize=7,
            ha="left",
            va="center",
            xytext=(14, 0),
            textcoords="offset points",
        )
    ax.set_xlabel("average FPS (Eq. 6, CPU, batch 1)")
    ax.set_ylabel("mean cross-validated accuracy (%)")
    ax.set_title("Accuracy vs speed (bubble area ~ parameters)", fontsize=10)
    low, high = ax.get_xlim()
    ax.set_xlim(low - 0.1 * (high - low), high + 0.6 * (high - low))
    ax.margins(y=0.2)
    _save(fig, path)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------ report


def build_report(out_dir: Path, *, remeasure_fps: bool = False) -> dict[str, Any]:
    by_variant = load_folds(out_dir)
    if not by_variant:
        return {"variants": {}, "practicality": {}, "inconclusive": {}}
    names = list(next(iter(by_variant.values()))[0]["class_names"])
    archs = sorted({folds[0]["arch"] for folds in by_variant.values()})
    params = parameter_counts(archs, len(names))
    fps = fps_table(out_dir, archs, len(names), remeasure=remeasure_fps)
    variants: dict[str, Any] = {}
    for key, folds in by_variant.items():
        per_fold = [fold_metrics(f) for f in folds]
        arch = folds[0]["arch"]
        variants[key] = {
            "title": folds[0].get("title", TITLES.get(key, key)),
            "arch": arch,
            "pretrained": bool(folds[0].get("pretrained")),
            "folds_done": len(folds),
            "complete": len(folds) >= FOLD_COUNT,
            "epochs": sorted({int(f["epochs"]) for f in folds}),
            # Where it trained: a 2-core CPU unless the fold file says otherwise (``ml/scripts/gpu_run.sh``).
            "trained_on": sorted({f.get("hardware") or "a 2-core CPU" for f in folds}),
            "data_notes": sorted({f["data_note"] for f in folds if f.get("data_note")}),
            "params": params[arch],
            "fps": fps["fps"][arch],
            "summary": summarise(per_fold, names),
            "per_fold": per_fold,
        }
    mpox = MPOX if MPOX in names else names[0]
    # Scored among the variants with all folds done (every variant while none is complete), so that a partial
    # run's one-fold mean cannot set the min or max that the others are normalised by. A variant that collapsed to
    # one label in any fold is not scored either: its perfect recall would otherwise win the ranking.
    for v in variants.values():
        v["collapsed"] = any(f["collapsed"] for f in v["per_fold"])
    complete = [k for k, v in variants.items() if v["complete"]] or list(variants)
    complete = [k for k in complete if not variants[k]["collapsed"]]
    # Leaky folds flatter the model they test: its scores would not be comparable with the others'.
    complete = [k for k in complete if k != PAPER_FOLDS]
    practicality = metrics.practicality_scores(
        {
            key: {
                "accuracy": v["summary"]["accuracy"]["mean"],
                "fps": v["fps"],
                "recall": v["summary"]["per_class"][mpox]["recall"]["mean"],
                "specificity": v["summary"]["per_class"][mpox]["specificity"]["mean"],
            }
            for key, v in variants.items()
            if key in complete
        }
    )
    inconclusive_by_variant = {k: inconclusive_analysis(by_variant[k]) for k in SHIPPABLE if k in by_variant}
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "class_names": names,
        "variants": variants,
        "practicality": practicality,
        "practicality_inputs": f"mean accuracy, FPS, and {mpox} recall and specificity; weights "
        + ", ".join(f"{k} {w}" for k, w in metrics.PRACTICALITY_WEIGHTS.items()),
        "fps_method": fps.get("method", ""),
        "fps_measured_at": fps.get("measured_at", ""),
        # "inconclusive" is the paper model's rule (older readers); each shippable variant's is in the other key.
        "inconclusive": inconclusive_by_variant.get("fast_mpoxnet", {}),
        "inconclusive_by_variant": inconclusive_by_variant,
        "paper_targets": PAPER_TARGETS,
    }


def write_report(out_dir: Path, *, remeasure_fps: bool = False) -> None:
    """Rebuild ``crossval.md``, ``crossval.json`` and the figures in ``out_dir`` from ``out_dir/folds``."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    report = build_report(out_dir, remeasure_fps=remeasure_fps)
    if not report["variants"]:
        logger.warning("no fold results in %s", out_dir / "folds")
        return
    by_variant = load_folds(out_dir)
    names = report["class_names"]
    figures: dict[str, str] = {}
    for key, variant in report["variants"].items():
        summed = np.sum([np.asarray(f["confusion"]) for f in variant["per_fold"]], axis=0)
        worst = min(variant["per_fold"], key=lambda f: f["accuracy"])
        figures[f"confusion_{key}"] = f"confusion_{key}.png"
        plot_confusions(out_dir / f"confusion_{key}.png", variant["title"], names, summed, worst)
    if "fast_mpoxnet" in by_variant:
        folds = by_variant["fast_mpoxnet"]
        probs = np.concatenate([np.asarray(f["probs"]) for f in folds])
        y_true = np.concatenate([np.asarray(f["y_true"]) for f in folds])
        figures["roc"] = "roc_fast_mpoxnet.png"
        plot_roc(out_dir / figures["roc"], report["variants"]["fast_mpoxnet"]["title"], probs, y_true, names)
    figures["accuracy_fps"] = "accuracy_fps.png"
    plot_accuracy_fps(
        out_dir / figures["accuracy_fps"],
        [
            {
                "title": v["title"],
                "fps": v["fps"],
                "params": v["params"],
                "accuracy": v["summary"]["accuracy"]["mean"],
                "note": "" if v["complete"] else f", {v['folds_done']}/{FOLD_COUNT} folds",
            }
            for v in report["variants"].values()
        ],
    )
    report["figures"] = figures
    _write_text(out_dir / "crossval.json", json.dumps(report, indent=1) + "\n")
    _write_text(out_dir / "crossval.md", render_markdown(report))
    logger.info("wrote %s", out_dir / "crossval.md")


def _score(value: float | None, *, collapsed: bool = False, leaky: bool = False) -> str:
    if value is None:
        return "n/a (collapsed)" if collapsed else "n/a (leaky folds)" if leaky else "n/a (incomplete)"
    return f"{value:.3f}"


def _pct(stat: dict[str, float]) -> str:
    return metrics.format_mean_sd(stat)


def render_markdown(report: dict[str, Any]) -> str:
    names: list[str] = report["class_names"]
    variants: dict[str, Any] = report["variants"]
    figures: dict[str, str] = report.get("figures", {})
    mpox = MPOX if MPOX in names else names[0]
    lines = [
        "# Five-fold cross-validation",
        "",
        f"Generated {report['generated_at']} by `python -m ml.report` from `folds/*.json`. Classes: "
        + ", ".join(names)
        + ". Metrics follow the paper's Eq. 1-6 (one class against the rest; a zero denominator counts as 0). "
        "Mean (± sample sd) over the finished folds.",
        "",
        "## Summary",
        "",
        "| variant | folds | epochs | params | FPS | accuracy | mpox recall | mpox specificity | macro AUC "
        "| practicality |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, v in variants.items():
        s = v["summary"]
        folds = f"{v['folds_done']}/{FOLD_COUNT}" + ("" if v["complete"] else " (incomplete)")
        macro = _pct(s["auc"]["macro"]) if "macro" in s["auc"] else "n/a"
        score = _score(report["practicality"].get(key), collapsed=v.get("collapsed", False), leaky=key == PAPER_FOLDS)
        lines.append(
            f"| {v['title']} | {folds} | {', '.join(map(str, v['epochs']))} | {v['params']:,} | {v['fps']:.1f} | "
            f"{_pct(s['accuracy'])} | {_pct(s['per_class'][mpox]['recall'])} | "
            f"{_pct(s['per_class'][mpox]['specificity'])} | {macro} | {score} |"
        )
    lines += [
        "",
        f"Practicality score (Eq. 7-11): {report['practicality_inputs']}; each metric is min-max normalised across "
        "the complete variants (a metric on which all tie counts 0; incomplete variants, variants that collapsed "
        "to one label in a fold, and the run on the paper's leaky folds get none), so the score ranks "
        "these variants only and changes when variants are added. FPS: "
        + report["fps_method"]
        + " (cached in `fps.json`; rebuild with "
        f"`python -m ml.report --remeasure-fps`; measured {report.get('fps_measured_at') or 'at an unrecorded time'} "
        "on a shared 2-core CPU): compare them with each other, not with the paper's i7 numbers. Torch eager is "
        "the same runtime for every architecture; the site runs Fast-MpoxNet on ONNX Runtime, several times faster "
        "(`ml.bench`).",
        "",
    ]
    scored = [v["fps"] for k, v in variants.items() if k in report["practicality"]]
    if len(scored) > 1 and max(scored) - min(scored) < FPS_NOISE * max(scored):
        lines += [
            f"**Caution:** the scored variants' FPS differ by less than {FPS_NOISE:.0%} "
            f"({min(scored):.1f} to {max(scored):.1f}), which is within the noise of a shared CPU, yet min-max "
            "normalisation turns that gap into the full FPS weight (0.4). Read the practicality ranking as "
            "accuracy, recall and specificity plus a coin toss on speed.",
            "",
        ]
    if "accuracy_fps" in figures:
        lines += [f"![accuracy vs FPS]({figures['accuracy_fps']})", ""]
    shippable = [key for key in SHIPPABLE if key in variants]
    if shippable:
        lines += ["## Against the paper", ""]
        for key in shippable:
            summary = variants[key]["summary"]
            acc = summary["accuracy"]["mean"]
            recall = summary["per_class"][mpox]["recall"]["mean"]
            lines += [
                f"- {variants[key]['title']}: mean accuracy {acc:.1%} against the paper's "
                f"≥ {PAPER_TARGETS['accuracy']:.1%} "
                + ("(met)" if acc >= PAPER_TARGETS["accuracy"] else "(**not met**)")
                + f", mpox recall {recall:.1%} against ≥ {PAPER_TARGETS['mpox_recall']:.1%} "
                + ("(met)." if recall >= PAPER_TARGETS["mpox_recall"] else "(**not met**)."),
            ]
        lines += _paper_folds_lines(variants)
        lines.append("")
    lines += _honest_notes(variants)
    for key, v in variants.items():
        s = v["summary"]
        lines += [f"## {v['title']}", ""]
        lines += ["| class | precision | recall | specificity | F1 | AUC |", "| --- | --- | --- | --- | --- | --- |"]
        for name in names:
            pc = s["per_class"][name]
            auc = _pct(s["auc"][name]) if name in s["auc"] else "n/a"
            lines.append(
                f"| {name} | {_pct(pc['precision'])} | {_pct(pc['recall'])} | {_pct(pc['specificity'])} | "
                f"{_pct(pc['f1'])} | {auc} |"
            )
        if "micro" in s["auc"]:
            lines.append(f"\nAUC macro {_pct(s['auc']['macro'])}, micro {_pct(s['auc']['micro'])}.")
        lines += [
            "",
            "| fold | epochs | test images | accuracy | mpox recall | mpox specificity | macro AUC |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for f in v["per_fold"]:
            macro = f"{f['auc']['macro']:.3f}" if "macro" in f["auc"] else "n/a"
            lines.append(
                f"| {f['fold']} | {f['epochs']} | {f['n']} | {f['accuracy']:.2%} | "
                f"{f['per_class'][mpox]['recall']:.2%} | {f['per_class'][mpox]['specificity']:.2%} | {macro} |"
            )
        figure = figures.get(f"confusion_{key}")
        if figure:
            lines += ["", f"![confusion matrices, {v['title']}]({figure})"]
        if key == "fast_mpoxnet" and "roc" in figures:
            lines += ["", f"![ROC curves]({figures['roc']})"]
        lines.append("")
    rules = report.get("inconclusive_by_variant") or {"fast_mpoxnet": report.get("inconclusive") or {}}
    for rule in rules.values():
        lines += _inconclusive_markdown(rule)
    return "\n".join(lines) + "\n"


def _paper_folds_lines(variants: dict[str, Any]) -> list[str]:
    """How the same training scores on folds split as the paper split them, against the group-aware folds."""
    leaky, grouped = variants.get(PAPER_FOLDS), variants.get("fast_mpoxnet")
    if leaky is None or grouped is None:
        return []
    shared = [f["test_sharing_group"] for f in leaky["per_fold"] if f.get("test_sharing_group") is not None]
    n = [f["n"] for f in leaky["per_fold"]]

    def figures(v: dict[str, Any]) -> tuple[float, float]:
        return v["summary"]["accuracy"]["mean"], v["summary"]["per_class"][MPOX]["recall"]["mean"]

    (acc_leaky, rec_leaky), (acc, rec) = figures(leaky), figures(grouped)
    share = f" ({sum(shared) / sum(n):.1%} of the test photos had a crop or re-framing of the same photo in training)"
    return [
        f"- The same training on the paper's kind of folds, split by class only{share if shared else ''}: "
        f"accuracy {acc_leaky:.1%} and mpox recall {rec_leaky:.1%}, against {acc:.1%} and {rec:.1%} on the "
        f"group-aware folds. The split alone is worth {100 * (acc_leaky - acc):+.1f} points of accuracy and "
        f"{100 * (rec_leaky - rec):+.1f} of mpox recall; "
        + (
            "that reaches the paper's accuracy, so the gap is the evaluation. "
            if acc_leaky >= PAPER_TARGETS["accuracy"]
            else "the rest of the gap to the paper's accuracy is not the split. "
        )
        + "These folds only measure the evaluation: no shipped figure comes from them.",
    ]


def _honest_notes(variants: dict[str, Any]) -> list[str]:
    epochs = "; ".join(f"{v['title']}: {', '.join(map(str, v['epochs']))}" for v in variants.values())
    incomplete = [
        f"{v['title']} ({v['folds_done']} of {FOLD_COUNT} folds)" for v in variants.values() if not v["complete"]
    ]
    notes = [
        "## What differs from the paper",
        "",
        f"- **Epochs.** The paper trains 100 epochs; here {epochs}. A 100-epoch five-fold run takes about 6 CPU-hours "
        "per variant on the 2-core machines this project is built on, so only the runs that got a GPU machine have "
        "100 epochs; the others are under-trained relative to the paper, and comparisons across different epoch "
        "counts are not the paper's comparisons.",
        "- **Hardware.** "
        + "; ".join(
            f"{v['title']}: {', '.join(v['trained_on'])}"
            + (f" ({'; '.join(v['data_notes'])})" if v["data_notes"] else "")
            for v in variants.values()
        )
        + ".",
        "- **ImageNet weights.** No torchvision ImageNet checkpoint for ShuffleNetV2-x0.5 exists offline. The "
        '"ImageNet backbone" is the substitute described in `shared/weights/WEIGHTS.md`: a ShuffleNetV2-x0.5 stem '
        "and stages 2-4 of unstated (probably ImageNet) pre-training, converted to torchvision's layout; `conv5` "
        "and the classifier start random. MobileNetV3-small is trained from scratch, since no ImageNet weights for "
        "it exist offline.",
        "- **Folds.** Group-aware, stratified five-fold splits: crops and augmentations of one photo (the manifest's "
        "`group=` notes) never straddle train and test. The paper split images without grouping, which lets "
        "near-duplicates leak into the test folds; our numbers are for a stricter test (the paper-folds run, where "
        "present, measures by how much).",
        "- **Augmentation** is applied on the fly in training (the paper's 12 strategies, 6 per image) rather than "
        "as a pre-augmented dataset, and test folds hold original photos only.",
    ]
    if "fast_mpoxnet_oe" in variants:
        notes.append(
            "- **Outlier exposure** (`fast_mpoxnet_oe`, the shipped weights) is not in the paper: photos of hfmd, "
            "other and smallpox from the training folds are trained towards an even spread over the classes; its "
            "inconclusive section below says how the out-of-distribution photos were split."
        )
    if "mobilenet_v3_small" in variants:
        notes.append(
            "- **MobileNetV3-small** gets its BatchNorm running statistics recomputed over the training photos after "
            "the last epoch (precise BN): torchvision's momentum of 0.01 leaves them too stale after this dataset's "
            "few steps per epoch, and eval mode then gave every photo one label."
        )
    for v in variants.values():
        collapsed = [f for f in v["per_fold"] if f["collapsed"]]
        if collapsed:
            notes.append(
                f"- **Collapsed:** {v['title']} gives one label to at least {COLLAPSE_SHARE:.0%} of the test photos in "
                f"fold(s) {', '.join(str(f['fold']) for f in collapsed)} (in eval mode); "
                "its accuracy there is the share of that class, not learning. Treat its numbers as a failed "
                "run, not as the architecture's ability."
            )
    if incomplete:
        notes.append("- **Incomplete:** " + "; ".join(incomplete) + ". Their means cover only the folds done.")
    return [*notes, ""]


def _inconclusive_markdown(rule: dict[str, Any]) -> list[str]:
    if not rule:
        return []
    check = rule.get("held_out_check") or {}
    methods = rule.get("methods") or {}
    label_thresholds = rule.get("label_thresholds") or {}
    if label_thresholds:
        cuts = ", ".join(f"{name} {value:.4f}" for name, value in label_thresholds.items())
        statement = f"{rule['score']} below the top label's threshold ({cuts}) → inconclusive"
    else:
        statement = f"{rule['score']} below **{rule['threshold']:.4f}** → inconclusive"
    lines = [
        f"## Inconclusive rule and out-of-distribution photos ({rule.get('title', TITLES['fast_mpoxnet'])})",
        "",
        f"Rule: {statement} (method `{rule['method']}`, {rule.get('kind', 'single').replace('_', ' ')}). "
        f"The thresholds were chosen on the {rule['chosen_on']}: {rule['rule']}. They were not tuned on the OOD "
        "photos, which are used only to report them"
        + (
            " and to pick, among the scores the site can apply, the one that flags the most of them (so the OOD "
            "figure of the chosen score is slightly optimistic)."
            if len({m["method"] for m in methods.values() if m["method"] in DEPLOYABLE_METHODS}) > 1
            else "."
        ),
        "",
        f"- Mpox recall (inconclusive counted as missed): {rule['mpox_recall_before']:.2%} without the rule, "
        f"{rule['mpox_recall_after']:.2%} with it "
        f"(drop {(rule['mpox_recall_before'] - rule['mpox_recall_after']) * 100:.1f} points).",
        f"- Known-class test photos flagged inconclusive: {rule['known_flagged_fraction']:.1%}"
        + (
            f"; accuracy of the labels still shown: {rule['accuracy_shown']:.1%}."
            if rule.get("accuracy_shown") is not None
            else "."
        ),
        *(
            [
                f"- Held-out check (thresholds chosen on the other folds, applied to each fold): mpox recall drop "
                f"{check['mpox_recall_drop']['mean'] * 100:.1f} ± {check['mpox_recall_drop']['sd'] * 100:.1f} points, "
                f"worst {check['max_mpox_recall_drop'] * 100:.1f}; {check['folds_over_budget']} fold(s) over the "
                "5-point budget"
                + (f"; known photos flagged {check['known_flagged']['mean']:.1%}" if "known_flagged" in check else "")
                + (f"; OOD photos flagged {check['ood_flagged']['mean']:.1%}" if "ood_flagged" in check else "")
                + "."
            ]
            if check
            else []
        ),
        f"- OOD photos flagged inconclusive: **{rule['ood_flagged_fraction']:.1%}** overall (target ≥ 50%) "
        + (
            "— met."
            if rule["ood_flagged_fraction"] >= 0.5
            else "— **not met**: the rule alone does not catch "
            "diseases outside the model's classes; the UI must keep saying so."
        ),
        *(
            [
                f"- Of those, photos of diseases never shown in training: "
                f"**{rule['ood_unseen_flagged_fraction']:.1%}** flagged."
            ]
            if rule.get("ood_unseen_flagged_fraction") is not None
            and any(row.get("exposed_in_training") for row in rule["ood"].values())
            else []
        ),
        "",
        "| folder | images | in training | flagged | predicted as (all fold models pooled) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for folder, row in rule["ood"].items():
        spread = ", ".join(f"{k} {v:.0%}" for k, v in row["predicted_fraction"].items())
        seen = "other photos, as outliers" if row.get("exposed_in_training") else "never"
        lines.append(f"| {folder} | {row['images']} | {seen} | {row['flagged_fraction']:.1%} | {spread} |")
    if any(row.get("exposed_in_training") for row in rule["ood"].values()):
        lines += [
            "",
            "A folder marked 'other photos, as outliers' was part of outlier-exposure training: each fold's model "
            "is scored on that folder's test-fold photos only, which it never saw (group-aware, like the classes), "
            "but the disease itself was shown to it. A folder marked 'never' measures a disease the model never "
            "saw at all, the harder case a clinic will meet.",
        ]
    if methods:
        folders = list(rule["ood"])
        lines += [
            "",
            "Every score and kind of rule under the same budget (site: the scores `ml.checkpoint.InconclusiveRule` "
            "can apply; by label: " + RULE_KIND_DESCRIPTIONS["by_label"] + "):",
            "",
            "| score | rule | site | mpox threshold | known flagged | accuracy shown | mpox recall after | "
            "worst held-out drop | OOD flagged | " + " | ".join(folders) + " |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + " --- |" * len(folders),
        ]
        for row in methods.values():
            threshold = "none fits" if row["threshold"] is None else f"{row['threshold']:.4f}"
            worst = row["held_out_check"].get("max_mpox_recall_drop")
            shown = row.get("accuracy_shown")
            lines.append(
                f"| {SCORE_DESCRIPTIONS[row['method']]} | {row['kind'].replace('_', ' ')} | "
                f"{'yes' if row['method'] in DEPLOYABLE_METHODS else 'no'} | {threshold} | "
                f"{row['known_flagged_fraction']:.1%} | {'n/a' if shown is None else f'{shown:.1%}'} | "
                f"{row['mpox_recall_after']:.2%} | "
                + ("n/a" if worst is None else f"{worst * 100:.1f} pts")
                + f" | {row['ood_flagged_fraction']:.1%} | "
                + " | ".join(f"{row['ood_by_folder'].get(f, 0.0):.1%}" for f in folders)
                + " |"
            )
    return [*lines, ""]


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.report", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("ml/reports/crossval"), help="folder holding folds/")
    parser.add_argument("--remeasure-fps", action="store_true", help="measure FPS again instead of using fps.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    if not (args.out / "folds").is_dir():
        parser.error(f"no fold results at {args.out / 'folds'}")
    write_report(args.out, remeasure_fps=args.remeasure_fps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
