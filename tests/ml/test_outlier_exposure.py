"""Outlier exposure: out-of-distribution folds, the per-epoch outlier draw, the loss, training, the CLI, a
cross-validation fold of ``fast_mpoxnet_oe``, its report section and the checkpoint's choice of rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ml.checkpoint import Checkpoint, InconclusiveRule
from ml.crossval import OUTLIER_EXPOSURE_FOLDERS, VARIANTS, apply_crossval_summary, fold_path, run_fold
from ml.data import Dataset, ImageCache, ImageRecord, group_stratified_folds, load_dataset, ood_folds
from ml.model import build_model
from ml.report import write_report
from ml.train import (
    OUTLIER,
    TrainResult,
    TrainSettings,
    _loss,
    epoch_indices,
    eval_tensor,
    main,
    predict_probabilities,
)
from tests.ml.factories import TINY_PREPROCESSING, train_on
from tests.ml.trees import image_tree

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("chickenpox", "measles", "monkeypox", "normal")


def share_group(root: Path, ood_file: str, known_file: str) -> None:
    """File ``ood_file`` under ``known_file``'s manifest group: one photo that the dataset holds under two names."""
    manifest = root / "manifest.csv"
    lines = manifest.read_text().splitlines()
    group = next(line.rsplit("group=", 1)[1] for line in lines if line.startswith(known_file + ","))
    manifest.write_text(
        "\n".join(
            f"{line.rsplit('group=', 1)[0]}group={group}" if line.startswith(ood_file + ",") else line for line in lines
        )
        + "\n"
    )


def group_of(dataset: Dataset, relative: str) -> str:
    return next(r.group for r in dataset.records if r.relative_to(dataset.root) == relative)


# ------------------------------------------------------------------------------------------------------ ood_folds


@pytest.fixture(scope="module")
def split_dataset(tmp_path_factory) -> Dataset:
    counts = {"chickenpox": 10, "monkeypox": 10, "hfmd": 12, "other": 10}
    root = image_tree(tmp_path_factory.mktemp("oodfolds"), counts, size=16, group_size=2)
    share_group(root, "hfmd/hfmd_000.jpg", "chickenpox/chickenpox_004.jpg")
    share_group(root, "other/other_003.jpg", "monkeypox/monkeypox_007.jpg")
    return load_dataset(root, class_names=("chickenpox", "monkeypox"))


def test_every_out_of_distribution_photo_gets_a_test_fold_and_groups_never_straddle_folds(split_dataset) -> None:
    folds = group_stratified_folds(split_dataset, n_folds=5, seed=0)
    split = ood_folds(split_dataset, folds, seed=0)

    assert split.keys() == split_dataset.ood.keys()
    for folder, placed in split.items():
        assert [o.record for o in placed] == list(split_dataset.ood[folder])
    placed_all = [o for placed in split.values() for o in placed]
    assert {o.fold for o in placed_all} == {1, 2, 3, 4, 5}
    folds_of_group: dict[str, set[int]] = {}
    for o in placed_all:
        folds_of_group.setdefault(o.record.group, set()).add(o.fold)
    assert all(len(f) == 1 for f in folds_of_group.values()), folds_of_group
    assert ood_folds(split_dataset, folds, seed=0) == split


def test_a_photo_filed_under_a_class_as_well_follows_that_photos_test_fold_and_is_flagged(split_dataset) -> None:
    folds = group_stratified_folds(split_dataset, n_folds=5, seed=0)
    split = ood_folds(split_dataset, folds, seed=0)
    test_fold_of = {
        split_dataset.records[i].relative_to(split_dataset.root): k for k, (_, t) in enumerate(folds, 1) for i in t
    }

    shared = {
        o.record.relative_to(split_dataset.root): o
        for placed in split.values()
        for o in placed
        if o.shares_group_with_known
    }
    assert set(shared) == {"hfmd/hfmd_000.jpg", "other/other_003.jpg"}
    assert shared["hfmd/hfmd_000.jpg"].fold == test_fold_of["chickenpox/chickenpox_004.jpg"]
    assert shared["other/other_003.jpg"].fold == test_fold_of["monkeypox/monkeypox_007.jpg"]
    assert shared["hfmd/hfmd_000.jpg"].record.group == group_of(split_dataset, "chickenpox/chickenpox_004.jpg")


# -------------------------------------------------------------------------------------------------- epoch_indices


def test_each_epoch_trains_every_class_photo_and_a_fresh_share_of_outliers() -> None:
    first = epoch_indices(40, 30, 0.25, seed=3, epoch=0)
    second = epoch_indices(40, 30, 0.25, seed=3, epoch=1)
    for drawn in (first, second):
        assert drawn[:40] == list(range(40))
        outliers = drawn[40:]
        assert len(outliers) == 10 == len(set(outliers))
        assert all(40 <= i < 70 for i in outliers)
    assert first[40:] != second[40:]
    assert epoch_indices(40, 30, 0.25, seed=3, epoch=0) == first
    assert epoch_indices(40, 30, 0.25, seed=4, epoch=0) != first


def test_without_outliers_an_epoch_is_the_class_photos_and_a_small_folder_is_drawn_whole() -> None:
    assert epoch_indices(12, 0, 0.25, seed=0, epoch=5) == list(range(12))
    assert sorted(epoch_indices(12, 2, 1.0, seed=0, epoch=0)[12:]) == [12, 13]
    assert len(epoch_indices(2, 50, 0.1, seed=0, epoch=0)) == 3  # at least one outlier, however few class photos


def test_the_outlier_draw_is_the_same_in_another_process_with_another_string_hash_seed() -> None:
    mine = os.environ.get("PYTHONHASHSEED", "")
    other = "2" if mine == "1" else "1"
    code = "from ml.train import epoch_indices; print(epoch_indices(40, 30, 0.25, seed=3, epoch=7))"
    child = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": other},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(child.stdout) == epoch_indices(40, 30, 0.25, seed=3, epoch=7)


# ----------------------------------------------------------------------------------------------------------- _loss


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("fast_mpoxnet", num_classes=4, aux_heads=True).eval()  # eval: no DropBlock, fixed BN


def outputs(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    with torch.no_grad():
        out = model.forward_train(inputs)  # type: ignore[operator]
    return out.logits, out.aux_logits


def test_without_outliers_the_loss_is_cross_entropy_on_the_main_and_auxiliary_heads(model) -> None:
    torch.manual_seed(1)
    inputs, targets = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    settings = TrainSettings(aux_weight=0.4, outlier_folders=("hfmd",), outlier_weight=0.5)
    logits, (aux1, aux2) = outputs(model, inputs)

    with torch.no_grad():
        loss = _loss(model, inputs, targets, nn.CrossEntropyLoss(), settings)
    expected = F.cross_entropy(logits, targets) + 0.4 * (
        F.cross_entropy(aux1, targets) + F.cross_entropy(aux2, targets)
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_outliers_add_the_weighted_cross_entropy_from_the_uniform_distribution_on_the_main_head_only(model) -> None:
    torch.manual_seed(2)
    inputs, targets = torch.randn(4, 3, 64, 64), torch.tensor([0, OUTLIER, 2, OUTLIER])
    settings = TrainSettings(aux_weight=0.4, outlier_folders=("hfmd",), outlier_weight=0.7)
    logits, (aux1, aux2) = outputs(model, inputs)

    with torch.no_grad():
        loss = _loss(model, inputs, targets, nn.CrossEntropyLoss(), settings)
    known, outlier = torch.tensor([0, 2]), torch.tensor([1, 3])
    known_ce = F.cross_entropy(logits[known], targets[known]) + 0.4 * (
        F.cross_entropy(aux1[known], targets[known]) + F.cross_entropy(aux2[known], targets[known])
    )
    uniform_ce = F.cross_entropy(logits[outlier], torch.full((2, 4), 0.25))  # soft targets: 1/4 on every class
    assert loss.item() == pytest.approx((known_ce + 0.7 * uniform_ce).item(), rel=1e-6)


def test_a_batch_of_outliers_only_trains_the_main_head_towards_uniform(model) -> None:
    torch.manual_seed(3)
    inputs, targets = torch.randn(3, 3, 64, 64), torch.full((3,), OUTLIER)
    settings = TrainSettings(outlier_folders=("hfmd",), outlier_weight=0.5)
    logits, _ = outputs(model, inputs)

    model.zero_grad(set_to_none=True)
    loss = _loss(model, inputs, targets, nn.CrossEntropyLoss(), settings)
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * F.cross_entropy(logits, torch.full((3, 4), 0.25)).item(), rel=1e-6)
    assert model.fc.weight.grad is not None
    assert model.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.aux_heads.parameters())
    model.zero_grad(set_to_none=True)


# ------------------------------------------------------------------------------------------------------ training


PRE = TINY_PREPROCESSING


@pytest.fixture(scope="module")
def train_dataset(tmp_path_factory) -> Dataset:
    root = image_tree(tmp_path_factory.mktemp("oetrain"), {**dict.fromkeys(CLASSES, 3), "hfmd": 6}, size=64)
    return load_dataset(root, class_names=CLASSES)


@pytest.fixture(scope="module")
def train_cache(train_dataset) -> ImageCache:
    records = [*train_dataset.records, *train_dataset.ood["hfmd"]]
    return ImageCache(records, train_short_side=64, eval_resize=64, input_size=64)


def train(settings: TrainSettings, dataset: Dataset, cache: ImageCache, outliers: Sequence[ImageRecord]) -> TrainResult:
    return train_on(settings, dataset, cache, outliers=outliers)


def distance_from_uniform(probs: np.ndarray) -> float:
    """Mean KL(uniform || probs): what the outlier term minimises, 0 for a model that cannot tell."""
    return float((-np.log(probs).mean(axis=1) - np.log(probs.shape[1])).mean())


def test_training_with_outliers_brings_the_main_head_closer_to_uniform_on_them(train_dataset, train_cache) -> None:
    hfmd = train_dataset.ood["hfmd"]
    # A four-epoch run on twelve photos is noisy, so the outlier term is weighted well above the default and every
    # outlier is drawn each epoch: its effect then dominates the run-to-run noise.
    settings = TrainSettings(epochs=4, batch_size=4, learning_rate=3e-3, workers=0, seed=0, outlier_weight=5.0)
    plain = train(settings, train_dataset, train_cache, ())
    exposed = train(replace(settings, outlier_folders=("hfmd",), outlier_share=1.0), train_dataset, train_cache, hfmd)

    assert [row["epoch"] for row in exposed.history] == [1, 2, 3, 4]
    assert all(np.isfinite(row["train_loss"]) for row in exposed.history)
    inputs = eval_tensor(hfmd, train_cache, PRE)
    assert distance_from_uniform(predict_probabilities(exposed.model, inputs)) < (
        distance_from_uniform(predict_probabilities(plain.model, inputs)) / 2
    )


def test_outlier_photos_without_outlier_folders_in_the_settings_are_refused(train_dataset, train_cache) -> None:
    settings = TrainSettings(pretrained=False, epochs=1, workers=0)
    with pytest.raises(ValueError, match="no outlier folders"):
        train(settings, train_dataset, train_cache, train_dataset.ood["hfmd"])


# ----------------------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli_tree(tmp_path_factory) -> Path:
    counts = {**dict.fromkeys(CLASSES, 2), "hfmd": 3, "cowpox": 2}
    root = image_tree(tmp_path_factory.mktemp("oecli"), counts, size=32, group_size=1)
    share_group(root, "hfmd/hfmd_001.jpg", "measles/measles_000.jpg")
    return root


def cli_args(tree: Path, out: Path) -> list[str]:
    return ["--data", str(tree), "--out", str(out), "--epochs", "1", "--batch-size", "4", "--workers", "0"]


def test_the_cli_names_a_folder_that_is_not_an_out_of_distribution_folder(cli_tree, tmp_path, capsys) -> None:
    out = tmp_path / "w.pt"
    with pytest.raises(SystemExit) as exit_:
        main([*cli_args(cli_tree, out), "--scratch", "--outlier-exposure", "hfmd,nosuchfolder"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "--outlier-exposure: nosuchfolder is not an out-of-distribution folder" in error
    assert "cowpox, hfmd" in error
    assert not out.exists()


def test_the_cli_never_trains_a_photo_filed_under_a_class_as_an_outlier(cli_tree, tmp_path) -> None:
    from ml.checkpoint import load_checkpoint

    out = tmp_path / "w.pt"
    assert main([*cli_args(cli_tree, out), "--scratch", "--device", "cpu", "--outlier-exposure", "hfmd"]) == 0
    training = load_checkpoint(out).training
    assert training["outlier_folders"] == ["hfmd"]
    assert training["outlier_images"] == 2  # hfmd_001 is the measles photo filed again
    assert "outlier exposure" in training["loss"]


def test_the_cli_checks_the_crossval_file_holds_the_outlier_exposure_variant_before_training(tmp_path, capsys) -> None:
    # The variant's three folders, so that the folders pass and the crossval file is what fails.
    tree = image_tree(
        tmp_path / "data", {**dict.fromkeys(CLASSES, 1), **dict.fromkeys(OUTLIER_EXPOSURE_FOLDERS, 1)}, size=16
    )
    crossval = tmp_path / "crossval.json"
    crossval.write_text(json.dumps({"variants": {"fast_mpoxnet": {"summary": {}}}}))
    out = tmp_path / "w.pt"
    exposure = ",".join(OUTLIER_EXPOSURE_FOLDERS)
    with pytest.raises(SystemExit) as exit_:
        main([*cli_args(tree, out), "--outlier-exposure", exposure, "--crossval", str(crossval)])
    assert exit_.value.code == 2
    assert "has no cross-validation of fast_mpoxnet_oe" in capsys.readouterr().err
    assert not out.exists()
    assert not out.with_name("w.pt.partial").exists()


# ------------------------------------------------------------------------------------------- a fold, its report


@pytest.fixture(scope="module")
def cv_dataset(tmp_path_factory) -> Dataset:
    counts = {**dict.fromkeys(CLASSES, 4), **dict.fromkeys(OUTLIER_EXPOSURE_FOLDERS, 4), "cowpox": 2}
    root = image_tree(tmp_path_factory.mktemp("oecv"), counts, size=32, group_size=1)
    share_group(root, "smallpox/smallpox_002.jpg", "monkeypox/monkeypox_001.jpg")
    return load_dataset(root, class_names=CLASSES)


@pytest.fixture(scope="module")
def cv_fold(cv_dataset, tmp_path_factory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    out = tmp_path_factory.mktemp("oecv_out")
    folds = group_stratified_folds(cv_dataset, n_folds=2, seed=0)
    split = ood_folds(cv_dataset, folds, seed=0)
    cache = ImageCache([*cv_dataset.records, *(r for rs in cv_dataset.ood.values() for r in rs)], threads=1)
    train_index, test_index = folds[0]
    run_fold(
        VARIANTS["fast_mpoxnet_oe"],
        1,
        dataset=cv_dataset,
        train_index=train_index,
        test_index=test_index,
        cache=cache,
        epochs=1,
        seed=0,
        out=out,
        device=torch.device("cpu"),
        workers=0,
        ood_split=split,
    )
    written = json.loads(fold_path(out, "fast_mpoxnet_oe", 1).read_text())
    return out, written, split


def test_a_fold_trains_on_the_exposure_folders_outside_its_test_fold_and_scores_them_inside_it(
    cv_dataset, cv_fold
) -> None:
    _, fold, split = cv_fold
    root = cv_dataset.root
    training = [o for f in OUTLIER_EXPOSURE_FOLDERS for o in split[f] if o.fold != 1 and not o.shares_group_with_known]
    assert fold["outlier_images"] == len(training)
    assert fold["settings"]["outlier_folders"] == list(OUTLIER_EXPOSURE_FOLDERS)
    for folder in OUTLIER_EXPOSURE_FOLDERS:
        block = fold["ood"][folder]
        assert block["exposed_in_training"] is True
        assert block["files"] == [o.record.relative_to(root) for o in split[folder] if o.fold == 1]
        assert len(block["probs"]) == len(block["logits"]) == len(block["files"])
    cowpox = fold["ood"]["cowpox"]
    assert cowpox["exposed_in_training"] is False
    assert cowpox["files"] == ["cowpox/cowpox_000.jpg", "cowpox/cowpox_001.jpg"]


def test_the_report_gives_the_outlier_exposure_variant_its_rule_and_the_never_seen_figure(cv_fold) -> None:
    out, fold, _ = cv_fold
    (out / "fps.json").write_text(json.dumps({"fps": {"fast_mpoxnet": 30.0}}))  # no timing on a busy CPU
    write_report(out)
    report = json.loads((out / "crossval.json").read_text())

    rule = report["inconclusive_by_variant"]["fast_mpoxnet_oe"]
    assert report["inconclusive"] == {}  # the paper variant was not run
    assert rule["variant"] == "fast_mpoxnet_oe"
    assert rule["ood"]["cowpox"]["exposed_in_training"] is False
    assert rule["ood"]["hfmd"]["exposed_in_training"] is True
    assert rule["ood"]["hfmd"]["images"] == len(fold["ood"]["hfmd"]["files"])
    assert rule["ood_unseen_flagged_fraction"] == rule["ood"]["cowpox"]["flagged_fraction"]
    markdown = (out / "crossval.md").read_text()
    assert (
        "## Inconclusive rule and out-of-distribution photos (Fast-MpoxNet (ImageNet backbone, outlier exposure))"
        in markdown
    )
    assert "| folder | images | in training | flagged |" in markdown
    assert "| cowpox | 2 | never |" in markdown
    assert "| hfmd | " in markdown
    assert "other photos, as outliers" in markdown
    assert "photos of diseases never shown in training" in markdown


def report_fold(out: Path, variant: str, fold: int, *, exposed: bool) -> None:
    """A fold file as ``ml.crossval`` writes it: hfmd's test-fold photos (exposed or not) and all three cowpox."""
    rng = np.random.default_rng(fold)
    y_true = np.repeat(np.arange(4), 10)
    logits = rng.normal(size=(40, 4)) + 3.0 * np.eye(4)[y_true]
    unsure = np.full((3, 4), 0.25) + rng.uniform(0, 0.05, size=(3, 4))
    data = {
        "variant": variant,
        "arch": "fast_mpoxnet",
        "pretrained": True,
        "fold": fold,
        "epochs": 1,
        "class_names": list(CLASSES),
        "history": [{"epoch": 1, "train_loss": 1.0}],
        "y_true": y_true.tolist(),
        "probs": (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).tolist(),
        "ood": {
            "hfmd": {
                "files": [f"hfmd/{fold}_{i}.jpg" for i in range(2)],
                "exposed_in_training": exposed,
                "probs": rng.dirichlet(np.ones(4) * 0.2, size=2).tolist(),
            },
            "cowpox": {
                "files": [f"cowpox/{i}.jpg" for i in range(3)],
                "exposed_in_training": False,
                "probs": (unsure / unsure.sum(axis=1, keepdims=True)).tolist(),
            },
        },
    }
    fold_path(out, variant, fold).parent.mkdir(parents=True, exist_ok=True)
    fold_path(out, variant, fold).write_text(json.dumps(data))


@pytest.fixture(scope="module")
def two_variants(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("oereport")
    for fold in (1, 2, 3):
        report_fold(out, "fast_mpoxnet", fold, exposed=False)
        report_fold(out, "fast_mpoxnet_oe", fold, exposed=True)
    (out / "fps.json").write_text(json.dumps({"fps": {"fast_mpoxnet": 30.0}}))
    write_report(out)
    return out


def test_each_shippable_variant_gets_its_own_rule_and_unique_photo_counts(two_variants) -> None:
    report = json.loads((two_variants / "crossval.json").read_text())
    paper, exposure = (report["inconclusive_by_variant"][k] for k in ("fast_mpoxnet", "fast_mpoxnet_oe"))

    assert report["inconclusive"] == paper
    for rule in (paper, exposure):
        assert rule["ood"]["cowpox"]["images"] == 3  # the same three photos in every fold
        assert rule["ood"]["cowpox"]["predictions"] == 9
        assert rule["ood"]["hfmd"]["images"] == rule["ood"]["hfmd"]["predictions"] == 6
    # Only cowpox was never shown; without exposure every folder is unseen.
    assert exposure["ood_unseen_flagged_fraction"] == exposure["ood"]["cowpox"]["flagged_fraction"]
    assert paper["ood_unseen_flagged_fraction"] == pytest.approx(paper["ood_flagged_fraction"])
    assert not paper["ood"]["hfmd"]["exposed_in_training"]
    assert exposure["ood"]["hfmd"]["exposed_in_training"]

    markdown = (two_variants / "crossval.md").read_text()
    assert "(Fast-MpoxNet (ImageNet backbone))\n" in markdown
    assert "(Fast-MpoxNet (ImageNet backbone, outlier exposure))\n" in markdown
    assert markdown.count("photos of diseases never shown in training") == 1
    assert "| hfmd | 6 | never |" in markdown
    assert "| hfmd | 6 | other photos, as outliers |" in markdown


# ---------------------------------------------------------------------------------------- apply_crossval_summary


def checkpoint_trained_like(**settings: Any) -> Checkpoint:
    return Checkpoint(
        arch="fast_mpoxnet", class_names=CLASSES, state_dict={}, training=TrainSettings(**settings).to_dict()
    )


@pytest.fixture
def crossval_json(tmp_path) -> Path:
    path = tmp_path / "crossval.json"
    path.write_text(
        json.dumps(
            {
                "variants": {"fast_mpoxnet": {"summary": {"paper": 1}}, "fast_mpoxnet_oe": {"summary": {"oe": 1}}},
                "inconclusive": {"method": "max_probability", "threshold": 0.6},
                "inconclusive_by_variant": {
                    "fast_mpoxnet": {"method": "max_probability", "threshold": 0.6},
                    "fast_mpoxnet_oe": {"method": "energy", "threshold": 3.5},
                },
            }
        )
    )
    return path


def test_a_checkpoint_trained_with_outlier_exposure_gets_that_variants_rule(crossval_json) -> None:
    checkpoint = apply_crossval_summary(
        checkpoint_trained_like(outlier_folders=OUTLIER_EXPOSURE_FOLDERS), crossval_json
    )
    assert checkpoint.inconclusive == InconclusiveRule(method="energy", threshold=3.5)
    assert checkpoint.metrics["variant"] == "fast_mpoxnet_oe"
    assert checkpoint.metrics["crossval"] == {"oe": 1}


def test_a_checkpoint_trained_without_it_gets_the_paper_variants_rule(crossval_json) -> None:
    checkpoint = apply_crossval_summary(checkpoint_trained_like(), crossval_json)
    assert checkpoint.inconclusive == InconclusiveRule(method="max_probability", threshold=0.6)
    assert checkpoint.metrics["variant"] == "fast_mpoxnet"
    assert checkpoint.metrics["crossval"] == {"paper": 1}


def by_label_crossval(tmp_path: Path, label_thresholds: dict[str, float]) -> Path:
    rule = {"method": "certainty", "threshold": 0.2, "label_thresholds": label_thresholds}
    path = tmp_path / "crossval.json"
    path.write_text(
        json.dumps(
            {
                "variants": {"fast_mpoxnet": {"summary": {}}},
                "inconclusive": rule,
                "inconclusive_by_variant": {"fast_mpoxnet": rule},
            }
        )
    )
    return path


def test_a_by_label_rule_is_given_to_the_checkpoint_in_its_class_order(tmp_path) -> None:
    # Written in another order than the checkpoint's classes.
    path = by_label_crossval(tmp_path, {"normal": 0.5, "monkeypox": 0.2, "measles": 0.4, "chickenpox": 0.3})
    checkpoint = apply_crossval_summary(checkpoint_trained_like(), path)
    assert CLASSES == ("chickenpox", "measles", "monkeypox", "normal")
    assert checkpoint.inconclusive == InconclusiveRule(
        method="certainty", threshold=0.2, label_thresholds=(0.3, 0.4, 0.2, 0.5)
    )


def test_a_by_label_rule_without_a_threshold_for_one_of_the_classes_is_refused_by_name(tmp_path) -> None:
    path = by_label_crossval(tmp_path, {"monkeypox": 0.2, "measles": 0.4, "chickenpox": 0.3})
    with pytest.raises(ValueError, match="no inconclusive threshold for normal"):
        apply_crossval_summary(checkpoint_trained_like(), path)


def test_a_crossval_file_without_the_checkpoints_variant_is_refused_by_name(tmp_path) -> None:
    path = tmp_path / "crossval.json"
    path.write_text(json.dumps({"variants": {"fast_mpoxnet": {"summary": {}}}, "inconclusive": {"threshold": 0.5}}))
    with pytest.raises(ValueError, match="no cross-validation of fast_mpoxnet_oe"):
        apply_crossval_summary(checkpoint_trained_like(outlier_folders=OUTLIER_EXPOSURE_FOLDERS), path)


def test_the_report_written_by_ml_report_sets_each_variants_rule(two_variants) -> None:
    report = json.loads((two_variants / "crossval.json").read_text())
    summary = two_variants / "crossval.json"
    for settings, key in (({}, "fast_mpoxnet"), ({"outlier_folders": OUTLIER_EXPOSURE_FOLDERS}, "fast_mpoxnet_oe")):
        checkpoint = apply_crossval_summary(checkpoint_trained_like(**settings), summary)
        rule = report["inconclusive_by_variant"][key]
        assert checkpoint.metrics["inconclusive"] == rule
        # The report's rule is by label: one threshold per class, given to the checkpoint in its class order.
        assert rule["kind"] == "by_label"
        assert set(rule["label_thresholds"]) == set(CLASSES)
        assert checkpoint.inconclusive == InconclusiveRule(
            method=rule["method"],
            threshold=rule["threshold"],
            label_thresholds=tuple(rule["label_thresholds"][name] for name in CLASSES),
        )


def test_the_outlier_folders_are_matched_whatever_their_order(crossval_json) -> None:
    checkpoint = apply_crossval_summary(
        checkpoint_trained_like(outlier_folders=("smallpox", "hfmd", "other")), crossval_json
    )
    assert checkpoint.metrics["variant"] == "fast_mpoxnet_oe"
