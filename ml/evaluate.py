"""Evaluate shipped weights on any folder-per-class tree, with the production preprocessing.

``python -m ml.evaluate --data DIR [--weights PATH] [--backend auto|openvino|onnx|torch] [--json]``

Folders named after one of the model's classes are scored (accuracy, per-class precision/recall/specificity/F1,
confusion matrix); any other folder is treated as out-of-distribution and reported by what the model called its
photos and how many the inconclusive rule flagged. With ``--json`` exactly one JSON object goes to stdout:

    {"n": int, "accuracy": float,
     "per_class": {label: {"precision", "recall", "specificity", "f1", "support"}},
     "confusion": {"labels": [...], "matrix": [[...]]},   # rows true, columns predicted
     "ood": {folder: {"n", "predicted": {label: count}, "inconclusive": int}},
     "unreadable": [relative paths], "model_version": str, "backend": str}

Logs and unreadable-file warnings go to stderr. This interface is stable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml import metrics
from ml.checkpoint import DEFAULT_CHECKPOINT, CheckpointError
from ml.data import IMAGE_SUFFIXES
from ml.imaging import ImageError

logger = logging.getLogger(__name__)

BATCH = 16


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def evaluate(data: Path, predictor: Any) -> dict[str, Any]:
    """Score every image under ``data`` with a loaded ``ml.inference.Predictor``."""
    from ml.inference import to_input

    names: list[str] = list(predictor.class_names)
    index = {name: i for i, name in enumerate(names)}
    preprocessing = predictor.checkpoint.preprocessing
    y_true: list[int] = []
    y_pred: list[int] = []
    ood: dict[str, dict[str, Any]] = {}
    unreadable: list[str] = []
    folders = sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders:
        arrays: list[np.ndarray] = []
        for path in _images(folder):
            try:
                arrays.append(to_input(path, preprocessing))
            except (ImageError, OSError) as exc:
                unreadable.append(path.relative_to(data).as_posix())
                logger.warning("unreadable image %s: %s", path, exc)
        predictions = [
            p
            for i in range(0, len(arrays), BATCH)
            for p in predictor.predict_arrays(np.stack(arrays[i : i + BATCH]), heatmap=False)
        ]
        if folder.name in index:
            y_true += [index[folder.name]] * len(predictions)
            y_pred += [index[p.label] for p in predictions]
        else:
            ood[folder.name] = {
                "n": len(predictions),
                "predicted": {name: sum(p.label == name for p in predictions) for name in names},
                "inconclusive": sum(p.inconclusive for p in predictions),
            }
    matrix = metrics.confusion_matrix(y_true, y_pred, len(names))
    return {
        "n": len(y_true),
        "accuracy": metrics.accuracy(matrix),
        "per_class": metrics.per_class_metrics(matrix, names),
        "confusion": {"labels": names, "matrix": matrix.tolist()},
        "ood": ood,
        "unreadable": unreadable,
        "model_version": predictor.version,
        "backend": predictor.backend,
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['n']} images, accuracy {result['accuracy']:.2%}  ({result['model_version']}, {result['backend']})",
        "",
        f"{'class':<14}{'precision':>10}{'recall':>10}{'specif.':>10}{'F1':>10}{'support':>9}",
    ]
    for name, row in result["per_class"].items():
        lines.append(
            f"{name:<14}{row['precision']:>10.2%}{row['recall']:>10.2%}{row['specificity']:>10.2%}"
            f"{row['f1']:>10.2%}{row['support']:>9}"
        )
    labels = result["confusion"]["labels"]
    lines += ["", "confusion (rows true, columns predicted): " + ", ".join(labels)]
    lines += ["  " + " ".join(f"{v:>6}" for v in row) for row in result["confusion"]["matrix"]]
    for folder, row in result["ood"].items():
        spread = ", ".join(f"{k} {v}" for k, v in row["predicted"].items())
        lines.append(f"\nOOD {folder}: {row['n']} images, {row['inconclusive']} inconclusive; predicted {spread}")
    if result["unreadable"]:
        lines.append(f"\n{len(result['unreadable'])} unreadable image(s) skipped")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder-per-class tree")
    parser.add_argument("--weights", type=Path, default=DEFAULT_CHECKPOINT, help="checkpoint (default: %(default)s)")
    parser.add_argument("--backend", choices=("auto", "openvino", "onnx", "torch"), default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    if not args.data.is_dir():
        parser.error(f"data folder {args.data} does not exist")
    if not args.weights.is_file():
        parser.error(f"weights {args.weights} do not exist (train them with python -m ml.train, or pass --weights)")
    from ml.inference import Predictor

    # Anything a library prints while loading or predicting goes to stderr: stdout holds only the result.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            predictor = Predictor.load(args.weights, backend=args.backend)
        except CheckpointError as exc:
            parser.error(str(exc))
        result = evaluate(args.data, predictor)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
