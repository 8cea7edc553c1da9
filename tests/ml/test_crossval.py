from __future__ import annotations

import json

import numpy as np
import pytest

import ml.crossval
from ml.crossval import main, variant_of
from ml.ood import softmax
from tests.ml.trees import image_tree

CLASSES = ("chickenpox", "measles", "monkeypox", "normal")
FAST = ["--epochs", "1", "--folds", "2", "--workers", "0", "--device", "cpu", "--threads", "1", "--no-report"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    # Four known classes and one out-of-distribution folder, as in mpox-skin.
    return image_tree(tmp_path_factory.mktemp("cv"), {**dict.fromkeys(CLASSES, 4), "cowpox": 2}, size=48)


def test_a_fold_file_keeps_logits_and_out_of_distribution_scores(tree, tmp_path) -> None:
    out = tmp_path / "cv"
    args = ["--data", str(tree), "--out", str(out), "--variants", "fast_mpoxnet_scratch", "--only-folds", "1"]
    assert main([*args, *FAST]) == 0

    fold = json.loads((out / "folds" / "fast_mpoxnet_scratch_fold1.json").read_text())
    assert np.asarray(fold["probs"]) == pytest.approx(softmax(np.asarray(fold["logits"])), abs=1e-4)
    assert len(fold["mahalanobis"]) == len(fold["y_true"]) == len(fold["test_files"])
    cowpox = fold["ood"]["cowpox"]
    assert len(cowpox["files"]) == len(cowpox["logits"]) == len(cowpox["mahalanobis"]) == 2
    assert not (out / "folds" / "fast_mpoxnet_scratch_fold2.json").exists()


def test_parallel_jobs_run_each_fold_in_its_own_process_and_log_it(tree, tmp_path) -> None:
    out = tmp_path / "cv"
    args = ["--data", str(tree), "--out", str(out), "--variants", "fast_mpoxnet_scratch", "--jobs", "2"]
    assert main([*args, *FAST]) == 0

    for fold in (1, 2):
        assert json.loads((out / "folds" / f"fast_mpoxnet_scratch_fold{fold}.json").read_text())["fold"] == fold
        assert "fast_mpoxnet_scratch fold" in (out / "logs" / f"fast_mpoxnet_scratch_fold{fold}.log").read_text()


def test_the_paper_folds_variant_records_how_many_test_photos_have_a_sibling_in_training(tmp_path) -> None:
    tree = image_tree(tmp_path / "data", dict.fromkeys(CLASSES, 6), size=48, group_size=2)
    out = tmp_path / "cv"
    args = ["--data", str(tree), "--out", str(out), "--variants", "fast_mpoxnet_paper_folds,fast_mpoxnet_scratch"]
    assert main([*args, "--only-folds", "1", "--baseline-epochs", "1", *FAST]) == 0

    leaky = json.loads((out / "folds" / "fast_mpoxnet_paper_folds_fold1.json").read_text())
    grouped = json.loads((out / "folds" / "fast_mpoxnet_scratch_fold1.json").read_text())
    assert leaky["grouped_folds"] is False
    assert grouped["grouped_folds"] is True
    assert grouped["test_photos_sharing_a_group_with_training"] == 0
    assert 0 < leaky["test_photos_sharing_a_group_with_training"] <= len(leaky["test_files"])


def test_a_final_model_is_never_taken_for_the_paper_folds_variant(monkeypatch) -> None:
    # Whatever the order of the variants, a model trained on all photos matches the group-aware one.
    monkeypatch.setattr(ml.crossval, "VARIANTS", dict(reversed(ml.crossval.VARIANTS.items())))
    assert variant_of("fast_mpoxnet", {"pretrained": True}) == "fast_mpoxnet"
