from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ml.report
from ml.report import write_report

CLASSES = ["chickenpox", "measles", "monkeypox", "normal"]


def fold_file(
    out: Path, variant: str, arch: str, fold: int, *, seed: int, scores: bool = False, **extra: object
) -> None:
    rng = np.random.default_rng(seed)
    y_true = np.repeat(np.arange(4), 10)
    logits = rng.normal(size=(40, 4)) + 2.5 * np.eye(4)[y_true]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    ood = rng.dirichlet(np.ones(4), size=6)
    data = {
        "variant": variant,
        "arch": arch,
        "pretrained": True,
        "title": variant.replace("_", " "),
        "fold": fold,
        "epochs": 2,
        "class_names": CLASSES,
        "train_seconds": 1.0,
        "history": [{"epoch": 1, "train_loss": 1.0, "val_accuracy": 0.5}],
        "y_true": y_true.tolist(),
        "probs": probs.tolist(),
        "ood": {"hfmd": {"files": [f"hfmd/{i}.jpg" for i in range(6)], "probs": ood.tolist()}},
    }
    if scores:  # what ml.crossval now stores: logits, and Mahalanobis scores for Fast-MpoxNet
        # Known photos get large logits; OOD photos small ones with the same softmax spread.
        ood_logits = np.log(ood)
        ood_logits -= ood_logits.max(axis=1, keepdims=True) + 3.0
        data["logits"] = (logits + 3.0).tolist()
        data["mahalanobis"] = (-rng.uniform(1, 5, size=40)).tolist()
        data["ood"]["hfmd"] |= {"logits": ood_logits.tolist(), "mahalanobis": (-rng.uniform(3, 9, size=6)).tolist()}
    path = out / "folds" / f"{variant}_fold{fold}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data | extra))


@pytest.fixture
def out(tmp_path, monkeypatch):
    for fold in (1, 2):
        fold_file(tmp_path, "fast_mpoxnet", "fast_mpoxnet", fold, seed=fold)
    fold_file(tmp_path, "shufflenet_v2_x0_5", "shufflenet_v2_x0_5", 1, seed=9)
    # Measuring is slow on a busy CPU; the table is what matters here.
    monkeypatch.setattr(
        ml.report, "measure_fps_interleaved", lambda archs, num_classes: {a: 30.0 + i for i, a in enumerate(archs)}
    )
    return tmp_path


def test_report_writes_markdown_json_and_figures(out) -> None:
    write_report(out)
    report = json.loads((out / "crossval.json").read_text())
    fast = report["variants"]["fast_mpoxnet"]
    assert fast["folds_done"] == 2
    assert not fast["complete"]
    assert fast["params"] == 274_084
    assert report["variants"]["shufflenet_v2_x0_5"]["params"] == 345_892
    assert set(fast["summary"]) == {"accuracy", "per_class", "auc"}
    assert set(fast["summary"]["accuracy"]) == {"mean", "sd"}
    assert set(fast["summary"]["per_class"]["monkeypox"]) == {"precision", "recall", "specificity", "f1"}
    assert {"macro", "micro", "monkeypox"} <= set(fast["summary"]["auc"])
    assert len(fast["per_fold"]) == 2
    assert set(report["practicality"]) == {"fast_mpoxnet", "shufflenet_v2_x0_5"}
    rule = report["inconclusive"]
    assert rule["method"] == "max_probability"
    assert 0 <= rule["mpox_recall_before"] - rule["mpox_recall_after"] <= 0.04 + 1e-9
    assert 0 <= rule["ood_flagged_fraction"] <= 1
    assert "hfmd" in rule["ood"]
    assert rule["kind"] == "by_label"
    assert set(rule["label_thresholds"]) == set(CLASSES)
    assert set(rule["held_out_check"]) == {
        "mpox_recall_drop",
        "max_mpox_recall_drop",
        "folds_over_budget",
        "known_flagged",
        "ood_flagged",
    }
    for name in report["figures"].values():
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    markdown = (out / "crossval.md").read_text()
    assert "incomplete" in markdown
    assert "](roc_fast_mpoxnet.png)" in markdown
    cuts = ", ".join(f"{name} {value:.4f}" for name, value in rule["label_thresholds"].items())
    assert f"below the top label's threshold ({cuts}) → inconclusive" in markdown
    assert json.loads((out / "fps.json").read_text())["fps"].keys() == {"fast_mpoxnet", "shufflenet_v2_x0_5"}


def test_rebuilding_reuses_the_cached_fps(out, monkeypatch) -> None:
    (out / "fps.json").write_text(json.dumps({"fps": {"fast_mpoxnet": 50.0, "shufflenet_v2_x0_5": 60.0}}))

    def no_measuring(*args, **kwargs):
        raise AssertionError("FPS measured again")

    monkeypatch.setattr(ml.report, "measure_fps_interleaved", no_measuring)
    write_report(out)
    report = json.loads((out / "crossval.json").read_text())
    assert report["variants"]["shufflenet_v2_x0_5"]["fps"] == 60.0
    assert report["practicality"]["shufflenet_v2_x0_5"] >= 0.4  # the fastest gets the whole FPS weight


def test_a_variant_that_collapsed_to_one_label_gets_no_practicality_score(tmp_path, monkeypatch) -> None:
    for fold in range(1, 6):
        fold_file(tmp_path, "fast_mpoxnet", "fast_mpoxnet", fold, seed=fold)
        fold_file(tmp_path, "shufflenet_v2_x0_5", "shufflenet_v2_x0_5", fold, seed=10 + fold)
        fold_file(tmp_path, "mobilenet_v3_small", "mobilenet_v3_small", fold, seed=20 + fold)
        # Every test photo called mpox: perfect recall, nothing learnt.
        path = tmp_path / "folds" / f"mobilenet_v3_small_fold{fold}.json"
        data = json.loads(path.read_text())
        data["probs"] = [[0.1, 0.1, 0.7, 0.1]] * len(data["y_true"])
        path.write_text(json.dumps(data))
    monkeypatch.setattr(
        ml.report, "measure_fps_interleaved", lambda archs, num_classes: {a: 30.0 + i for i, a in enumerate(archs)}
    )
    write_report(tmp_path)
    report = json.loads((tmp_path / "crossval.json").read_text())
    assert report["variants"]["mobilenet_v3_small"]["collapsed"]
    assert set(report["practicality"]) == {"fast_mpoxnet", "shufflenet_v2_x0_5"}
    assert "n/a (collapsed)" in (tmp_path / "crossval.md").read_text()


def test_with_logits_every_score_is_compared_and_the_site_gets_the_best_one_it_can_apply(tmp_path, monkeypatch) -> None:
    for fold in (1, 2, 3):
        fold_file(tmp_path, "fast_mpoxnet", "fast_mpoxnet", fold, seed=fold, scores=True)
    monkeypatch.setattr(ml.report, "measure_fps_interleaved", lambda archs, num_classes: dict.fromkeys(archs, 30.0))
    write_report(tmp_path)
    rule = json.loads((tmp_path / "crossval.json").read_text())["inconclusive"]

    # Each score with one threshold; the scores the site can apply also by label (Mahalanobis is report-only).
    assert set(rule["methods"]) == {
        "max_probability/single",
        "max_probability/by_label",
        "certainty/single",
        "certainty/by_label",
        "energy/single",
        "energy/by_label",
        "mahalanobis/single",
    }
    assert rule["method"] in ml.report.DEPLOYABLE_METHODS
    assert rule["kind"] == "by_label"
    best = max(rule["methods"][f"{m}/by_label"]["ood_flagged_fraction"] for m in ml.report.DEPLOYABLE_METHODS)
    assert rule["ood_flagged_fraction"] == best
    for row in rule["methods"].values():
        assert row["mpox_recall_before"] - row["mpox_recall_after"] <= 0.04 + 1e-9
    markdown = (tmp_path / "crossval.md").read_text()
    assert "logsumexp of the logits" in markdown
    assert "Mahalanobis distance" in markdown


def test_the_by_label_rule_costs_no_mpox_recall_and_is_stricter_on_the_reassuring_labels(tmp_path) -> None:
    for fold in (1, 2, 3):
        fold_file(tmp_path, "fast_mpoxnet", "fast_mpoxnet", fold, seed=fold, scores=True)
    folds = [json.loads(p.read_text()) for p in sorted((tmp_path / "folds").glob("*.json"))]
    rule = ml.report.inconclusive_analysis(folds)
    mpox = ml.report.MPOX

    stricter = []
    for method in ml.report.DEPLOYABLE_METHODS:
        by_label, single = rule["methods"][f"{method}/by_label"], rule["methods"][f"{method}/single"]
        assert (by_label["kind"], single["kind"]) == ("by_label", "single")
        assert single["label_thresholds"] == {}
        # The mpox threshold is the single rule's, so mpox recall is the same, held-out folds included.
        cuts = by_label["label_thresholds"]
        assert set(cuts) == set(CLASSES)
        assert cuts[mpox] == by_label["threshold"] == single["threshold"]
        assert by_label["mpox_recall_after"] == single["mpox_recall_after"]
        held, held_single = by_label["held_out_check"], single["held_out_check"]
        assert held["mpox_recall_drop"] == held_single["mpox_recall_drop"]
        # The reassuring labels are never judged more leniently than mpox, so at least as much is flagged.
        assert all(cuts[name] >= cuts[mpox] for name in CLASSES)
        assert by_label["known_flagged_fraction"] >= single["known_flagged_fraction"]
        assert held["known_flagged"]["mean"] >= held_single["known_flagged"]["mean"]
        assert by_label["ood_flagged_fraction"] >= single["ood_flagged_fraction"]
        stricter.append(any(cuts[name] > cuts[mpox] for name in CLASSES))
    assert any(stricter)  # the data give the by-label rule something to do
    assert rule["kind"] == "by_label"
    assert rule["label_thresholds"] == rule["methods"][f"{rule['method']}/by_label"]["label_thresholds"]


def test_the_paper_folds_run_is_set_against_the_group_aware_one(tmp_path, monkeypatch) -> None:
    for fold in range(1, 6):
        fold_file(tmp_path, "fast_mpoxnet", "fast_mpoxnet", fold, seed=fold)
        fold_file(
            tmp_path,
            "fast_mpoxnet_paper_folds",
            "fast_mpoxnet",
            fold,
            seed=fold + 10,
            test_photos_sharing_a_group_with_training=8,
        )
    monkeypatch.setattr(ml.report, "measure_fps_interleaved", lambda archs, num_classes: dict.fromkeys(archs, 30.0))
    write_report(tmp_path)
    report = json.loads((tmp_path / "crossval.json").read_text())
    leaky, grouped = report["variants"]["fast_mpoxnet_paper_folds"], report["variants"]["fast_mpoxnet"]
    assert [f["test_sharing_group"] for f in leaky["per_fold"]] == [8] * 5
    markdown = (tmp_path / "crossval.md").read_text()
    accuracy = leaky["summary"]["accuracy"]["mean"], grouped["summary"]["accuracy"]["mean"]
    assert (
        "The same training on the paper's kind of folds, split by class only (20.0% of the test photos had a crop "
        f"or re-framing of the same photo in training): accuracy {accuracy[0]:.1%}"
    ) in markdown
    assert f"The split alone is worth {100 * (accuracy[0] - accuracy[1]):+.1f} points of accuracy" in markdown
    assert "fast_mpoxnet_paper_folds" not in report["inconclusive_by_variant"]
    assert set(report["practicality"]) == {"fast_mpoxnet"}
    assert "| n/a (leaky folds) |" in markdown
