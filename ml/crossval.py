"""Five-fold, group-aware cross-validation of Fast-MpoxNet against its baselines and its ablation.

``python -m ml.crossval`` trains every model variant on every fold and writes one JSON file per (variant, fold)
under ``OUT/folds/``: the test files, true labels, predicted probabilities, the out-of-distribution folders'
probabilities and the training history. A run that is stopped picks up at the first missing file (an unfinished
fold resumes from its last epoch), so the full run can be spread over several sessions. After each fold the
Markdown/JSON/PNG report is rebuilt from whatever folds exist (``ml.report``).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.checkpoint import (
    PAPER_CLASSES,
    Checkpoint,
    CheckpointError,
    InconclusiveRule,
    Preprocessing,
    code_version,
    load_checkpoint,
)
from ml.data import (
    Dataset,
    ImageCache,
    ImageRecord,
    OodFold,
    group_stratified_folds,
    groups_shared,
    load_dataset,
    ood_folds,
    stratified_folds,
)
from ml.ood import MahalanobisScorer, embed, softmax
from ml.train import DEFAULT_BACKBONE, DEFAULT_DATA, TrainSettings, eval_tensor, pick_device, train_model

logger = logging.getLogger(__name__)


OUTLIER_EXPOSURE_FOLDERS = ("hfmd", "other", "smallpox")


@dataclass(frozen=True)
class Variant:
    key: str
    arch: str
    pretrained: bool
    title: str
    aux_weight: float = 1.0
    head_learning_rate: float | None = None
    outlier_exposure: tuple[str, ...] = ()
    recalibrate_bn: bool = False
    # False: the paper's class-stratified folds, where one photo's crops may sit on both sides of a split.
    grouped_folds: bool = True


VARIANTS: dict[str, Variant] = {
    v.key: v
    for v in (
        Variant("fast_mpoxnet", "fast_mpoxnet", True, "Fast-MpoxNet (ImageNet backbone)"),
        Variant("shufflenet_v2_x0_5", "shufflenet_v2_x0_5", True, "ShuffleNetV2-x0.5 (ImageNet backbone)"),
        Variant("fast_mpoxnet_scratch", "fast_mpoxnet", False, "Fast-MpoxNet (from scratch, ablation)"),
        # Its BatchNorm momentum (0.01) is too slow for this dataset's few steps per epoch: see recalibrate_bn.
        Variant(
            "mobilenet_v3_small",
            "mobilenet_v3_small",
            False,
            "MobileNetV3-small (from scratch)",
            recalibrate_bn=True,
        ),
        # Not in the paper: tests whether equally weighted auxiliary losses and a slow start for the random layers
        # are why Fast-MpoxNet trails its own backbone at a short training budget.
        Variant(
            "fast_mpoxnet_tuned",
            "fast_mpoxnet",
            True,
            "Fast-MpoxNet (aux weight 0.4, new layers at lr 1e-3; ablation)",
            aux_weight=0.4,
            head_learning_rate=1e-3,
        ),
        # Not in the paper: outlier exposure on the training folds' photos of three out-of-distribution folders
        # (scored on their test folds'); cowpox stays out of training as a disease the model never saw.
        Variant(
            "fast_mpoxnet_oe",
            "fast_mpoxnet",
            True,
            "Fast-MpoxNet (ImageNet backbone, outlier exposure)",
            outlier_exposure=OUTLIER_EXPOSURE_FOLDERS,
        ),
        # Not a model to ship: the paper setup on the paper's kind of folds, to measure how much of the gap to the
        # paper's accuracy is the evaluation rather than the model.
        Variant(
            "fast_mpoxnet_paper_folds",
            "fast_mpoxnet",
            True,
            "Fast-MpoxNet (ImageNet backbone, the paper's class-stratified folds: crops of one photo on both sides)",
            grouped_folds=False,
        ),
    )
}
FULL_EPOCH_VARIANTS = {"fast_mpoxnet", "fast_mpoxnet_tuned", "fast_mpoxnet_oe", "fast_mpoxnet_paper_folds"}


def folds_for(variant: Variant, dataset: Dataset, *, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if variant.grouped_folds:
        return group_stratified_folds(dataset, n_folds=n_folds, seed=seed)
    return stratified_folds(dataset, n_folds=n_folds, seed=seed)


def fold_path(out: Path, variant: str, fold: int) -> Path:
    return out / "folds" / f"{variant}_fold{fold}.json"


def run_fold(
    variant: Variant,
    fold: int,
    *,
    dataset: Dataset,
    train_index: np.ndarray,
    test_index: np.ndarray,
    cache: ImageCache,
    epochs: int,
    seed: int,
    out: Path,
    device: torch.device,
    workers: int,
    ood_split: dict[str, tuple[OodFold, ...]],
    backbone: Path = DEFAULT_BACKBONE,
) -> dict[str, Any]:
    preprocessing = Preprocessing()
    labels = dataset.labels
    records = dataset.records
    train_records = [records[i] for i in train_index]
    test_records = [records[i] for i in test_index]
    settings = TrainSettings(
        arch=variant.arch,
        pretrained=variant.pretrained,
        epochs=epochs,
        seed=seed + fold,
        workers=workers,
        aux_weight=variant.aux_weight,
        head_learning_rate=variant.head_learning_rate,
        backbone_weights=str(backbone),
        outlier_folders=variant.outlier_exposure,
        recalibrate_bn=variant.recalibrate_bn,
    )
    missing = [f for f in variant.outlier_exposure if f not in dataset.ood]
    if missing:
        raise ValueError(f"{variant.key} trains on out-of-distribution folder(s) the data lacks: {', '.join(missing)}")
    exposed = set(variant.outlier_exposure)
    outliers = [
        o.record
        for folder in variant.outlier_exposure
        for o in ood_split[folder]
        if o.fold != fold and not o.shares_group_with_known
    ]
    partial = out / "partial" / f"{variant.key}_fold{fold}.pt"
    partial.parent.mkdir(parents=True, exist_ok=True)
    result = train_model(
        settings,
        records=train_records,
        labels=[int(labels[i]) for i in train_index],
        num_classes=len(dataset.class_names),
        cache=cache,
        preprocessing=preprocessing,
        val_records=test_records,
        val_labels=[int(labels[i]) for i in test_index],
        outliers=outliers,
        device=device,
        resume_path=partial,
        description=f"{variant.key} fold {fold}",
    )
    model = result.model
    # The Mahalanobis scorer is fitted on the training photos' pooled features (Fast-MpoxNet only).
    train_features = embed(model, eval_tensor(train_records, cache, preprocessing), device=device).features
    scorer = (
        MahalanobisScorer.fit(train_features, np.asarray([int(labels[i]) for i in train_index]))
        if train_features is not None
        else None
    )

    def scored(batch_records: Sequence[ImageRecord]) -> dict[str, Any]:
        # Logits as well as probabilities: logit-based out-of-distribution scores (energy) need their scale.
        out = embed(model, eval_tensor(batch_records, cache, preprocessing), device=device)
        row: dict[str, Any] = {
            "probs": np.round(softmax(out.logits), 6).tolist(),
            "logits": np.round(out.logits, 5).tolist(),
        }
        if scorer is not None and out.features is not None:
            row["mahalanobis"] = np.round(scorer.score(out.features), 4).tolist()
        return row

    test_scores = scored(test_records)
    # A folder the model trained on as outliers is scored on this fold's test photos only; any other folder on all.
    ood_test = {
        folder: [o.record for o in ood_split[folder] if o.fold == fold] if folder in exposed else list(records_)
        for folder, records_ in dataset.ood.items()
    }
    ood = {
        folder: {
            "files": [r.relative_to(dataset.root) for r in ood_records],
            "exposed_in_training": folder in exposed,
            **scored(ood_records),
        }
        for folder, ood_records in ood_test.items()
    }
    report = {
        "variant": variant.key,
        "arch": variant.arch,
        "pretrained": variant.pretrained,
        "title": variant.title,
        "fold": fold,
        "epochs": epochs,
        "seed": settings.seed,
        "settings": settings.to_dict(),
        "class_names": list(dataset.class_names),
        "manifest_sha256": dataset.manifest_sha256,
        "code_version": code_version(),
        "device": str(device),
        "train_images": len(train_records),
        "grouped_folds": variant.grouped_folds,
        "test_photos_sharing_a_group_with_training": groups_shared(dataset, train_index, test_index),
        "outlier_images": len(outliers),
        "train_seconds": round(result.seconds, 1),
        "history": result.history,
        "test_files": [r.relative_to(dataset.root) for r in test_records],
        "y_true": [int(labels[i]) for i in test_index],
        **test_scores,
        "ood": ood,
    }
    path = fold_path(out, variant.key, fold)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report))
    tmp.replace(path)
    partial.unlink(missing_ok=True)
    return report


def variant_of(arch: str, training: dict[str, Any]) -> str:
    """The cross-validated variant a model was trained like (architecture, backbone, outlier folders, loss)."""
    outliers = frozenset(training.get("outlier_folders") or ())  # the order they were named in does not matter
    pretrained = bool(training.get("pretrained", True))
    for variant in VARIANTS.values():
        if (
            variant.arch == arch
            and variant.pretrained == pretrained
            and frozenset(variant.outlier_exposure) == outliers
            and variant.aux_weight == training.get("aux_weight", 1.0)
            and variant.head_learning_rate == training.get("head_learning_rate")
            and variant.grouped_folds  # a final model is trained on every photo: no folds at all
        ):
            return variant.key
    raise ValueError(
        f"no cross-validated variant was trained like this model ({arch}, outlier folders "
        f"{', '.join(sorted(outliers)) or 'none'})"
    )


def read_crossval(crossval_json: str | Path, variant: str) -> dict[str, Any]:
    """``crossval.json``, checked to hold ``variant``: ValueError names what is wrong."""
    try:
        data = json.loads(Path(crossval_json).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {crossval_json}: {exc}") from exc
    if variant not in data.get("variants", {}):
        raise ValueError(f"{crossval_json} has no cross-validation of {variant}")
    return data


def apply_crossval_summary(checkpoint: Checkpoint, crossval_json: str | Path, variant: str | None = None) -> Checkpoint:
    """Copy the cross-validated metrics and the inconclusive threshold chosen on the validation folds of the
    variant the checkpoint was trained like into its contract."""
    variant = variant or variant_of(checkpoint.arch, checkpoint.training or {})
    data = read_crossval(crossval_json, variant)
    summary = data["variants"][variant]["summary"]
    rules = data.get("inconclusive_by_variant") or {"fast_mpoxnet": data.get("inconclusive") or {}}
    rule = rules.get(variant) or {}
    checkpoint.metrics = {"crossval": summary, "variant": variant, "source": str(crossval_json)}
    if "threshold" in rule:
        by_label = rule.get("label_thresholds") or {}
        missing = [name for name in checkpoint.class_names if by_label and name not in by_label]
        if missing:
            raise ValueError(f"{crossval_json} has no inconclusive threshold for {', '.join(missing)}")
        checkpoint.inconclusive = InconclusiveRule(
            method=rule.get("method", "max_probability"),
            threshold=float(rule["threshold"]),
            label_thresholds=tuple(float(by_label[name]) for name in checkpoint.class_names) if by_label else (),
        )
        checkpoint.metrics["inconclusive"] = rule
    return checkpoint


def rebuild_report(out: Path) -> None:
    try:
        from ml.report import write_report
    except ImportError:  # the report module is optional while a run is in progress
        logger.warning("ml.report is not available; fold results are in %s", out / "folds")
        return
    try:
        write_report(out)
    except Exception:  # a report bug must not stop hours of training; --report-only rebuilds it later
        logger.exception("could not rebuild the report in %s", out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.crossval", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path("ml/reports/crossval"))
    parser.add_argument("--classes", default=",".join(PAPER_CLASSES))
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", default="", help="comma-separated fold numbers to run now (default: all)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs for Fast-MpoxNet (ImageNet)")
    parser.add_argument("--baseline-epochs", type=int, default=None, help="epochs for the other variants")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE, help="ImageNet backbone weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--report-only", action="store_true", help="rebuild the report from existing folds")
    parser.add_argument("--no-report", action="store_true", help="write fold files only (parallel jobs use it)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train this many (variant, fold) pairs at once in child processes, each logging to OUT/logs/ "
        "(for a GPU machine with many cores; each child decodes the images itself)",
    )
    parser.add_argument(
        "--apply-to",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="copy OUT/crossval.json's metrics and inconclusive threshold into CHECKPOINT, then stop",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.report_only:
        rebuild_report(args.out)
        return 0
    if args.apply_to is not None:
        summary = args.out / "crossval.json"
        if not summary.is_file():
            parser.error(f"{summary} does not exist; run the cross-validation (or --report-only) first")
        try:
            checkpoint = load_checkpoint(args.apply_to)
        except CheckpointError as exc:
            parser.error(str(exc))
        try:
            apply_crossval_summary(checkpoint, summary).save(args.apply_to)
        except ValueError as exc:
            parser.error(str(exc))
        logger.info(
            "wrote cross-validated metrics and threshold %.4f into %s", checkpoint.inconclusive.threshold, args.apply_to
        )
        return 0
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    unknown = [k for k in keys if k not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    try:
        dataset = load_dataset(args.data, class_names=[c.strip() for c in args.classes.split(",")])
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    folds = {key: folds_for(VARIANTS[key], dataset, n_folds=args.folds, seed=args.seed) for key in keys}
    wanted = {int(f) for f in args.only_folds.split(",") if f.strip()} or set(range(1, args.folds + 1))

    def epochs_for(key: str) -> int:
        own_epochs = key in FULL_EPOCH_VARIANTS or args.baseline_epochs is None
        return int(args.epochs if own_epochs else args.baseline_epochs)

    pending = [
        (key, fold)
        for key in keys
        for fold in range(1, len(folds[key]) + 1)
        if fold in wanted and not fold_path(args.out, key, fold).exists()
    ]
    if args.jobs > 1:
        failed = run_in_children(pending, args, epochs_for)
        if not args.no_report:
            rebuild_report(args.out)
        return 1 if failed else 0
    ood_splits = {key: ood_folds(dataset, folds[key], seed=args.seed) for key in keys}
    cache = ImageCache([*dataset.records, *(r for rs in dataset.ood.values() for r in rs)])
    device = pick_device(args.device)
    for key, fold in pending:
        variant, epochs = VARIANTS[key], epochs_for(key)
        train_index, test_index = folds[key][fold - 1]
        report = run_fold(
            variant,
            fold,
            dataset=dataset,
            train_index=train_index,
            test_index=test_index,
            cache=cache,
            epochs=epochs,
            seed=args.seed,
            out=args.out,
            device=device,
            workers=args.workers,
            backbone=args.backbone,
            ood_split=ood_splits[key],
        )
        accuracy = float((np.argmax(report["probs"], axis=1) == np.asarray(report["y_true"])).mean())
        logger.info("%s fold %d: accuracy %.4f in %.0f s", key, fold, accuracy, report["train_seconds"])
        if not args.no_report:
            rebuild_report(args.out)
    if not args.no_report:
        rebuild_report(args.out)
    return 0


def run_in_children(pending: Sequence[tuple[str, int]], args: argparse.Namespace, epochs_for: Any) -> list[str]:
    """Run each (variant, fold) as ``python -m ml.crossval`` in its own process, ``args.jobs`` at a time.
    Returns the jobs that failed (their logs say why); finished folds are on disk either way."""
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    queue = list(pending)
    running: list[tuple[str, subprocess.Popen[bytes], Any]] = []
    failed: list[str] = []
    while queue or running:
        while queue and len(running) < args.jobs:
            key, fold = queue.pop(0)
            name = f"{key}_fold{fold}"
            command = [
                sys.executable, "-m", "ml.crossval", "--no-report",
                "--data", str(args.data), "--out", str(args.out), "--classes", args.classes,
                "--variants", key, "--only-folds", str(fold), "--folds", str(args.folds),
                "--epochs", str(epochs_for(key)), "--seed", str(args.seed), "--device", args.device,
                "--backbone", str(args.backbone),
                "--workers", str(args.workers), "--threads", str(args.threads or 1),
            ]  # fmt: skip
            log = (logs / f"{name}.log").open("ab")
            running.append((name, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
            logger.info("started %s", name)
        time.sleep(1)
        for job in list(running):
            name, process, log = job
            if process.poll() is None:
                continue
            running.remove(job)
            log.close()
            if process.returncode:
                failed.append(name)
                logger.error("%s failed (exit %d); see %s", name, process.returncode, logs / f"{name}.log")
            else:
                logger.info("finished %s", name)
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
