from __future__ import annotations

from typing import Any

import pytest
import torch

from ml.checkpoint import load_checkpoint
from ml.data import ImageCache, load_dataset
from ml.train import TrainSettings, eval_tensor, main, recalibrate_batch_norm
from tests.ml.factories import TINY_PREPROCESSING, train_on
from tests.ml.trees import image_tree

CLASSES = ("chickenpox", "measles", "monkeypox", "normal")
PRE = TINY_PREPROCESSING


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return load_dataset(image_tree(tmp_path_factory.mktemp("train"), dict.fromkeys(CLASSES, 3)), class_names=CLASSES)


@pytest.fixture(scope="module")
def cache(dataset):
    return ImageCache(dataset.records, train_short_side=64, eval_resize=64, input_size=64)


def run(dataset, cache, epochs, *, lr=3e-3, resume_path=None, **settings_overrides):
    settings = TrainSettings(
        pretrained=False, epochs=epochs, batch_size=4, learning_rate=lr, workers=0, seed=1, **settings_overrides
    )
    return train_on(
        settings,
        dataset,
        cache,
        val_records=dataset.records,
        val_labels=list(dataset.labels),
        resume_path=resume_path,
    )


def test_two_epochs_lower_the_loss(dataset, cache) -> None:
    history = run(dataset, cache, 2).history
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert 0.0 <= history[1]["val_accuracy"] <= 1.0


def test_a_resumed_run_continues_at_the_next_epoch(dataset, cache, tmp_path) -> None:
    partial = tmp_path / "run.partial"
    run(dataset, cache, 1, resume_path=partial)
    assert torch.load(partial, weights_only=False)["epoch"] == 1
    history = run(dataset, cache, 2, resume_path=partial).history
    assert [row["epoch"] for row in history] == [1, 2]
    assert torch.load(partial, weights_only=False)["epoch"] == 2


def test_the_cli_writes_a_checkpoint_with_its_contract(dataset, tmp_path) -> None:
    out = tmp_path / "w.pt"
    args = ["--data", str(dataset.root), "--out", str(out), "--epochs", "1", "--scratch", "--batch-size", "4"]
    assert main([*args, "--workers", "0", "--device", "cpu"]) == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.class_names == CLASSES
    assert checkpoint.manifest_sha256 == dataset.manifest_sha256
    assert checkpoint.training["pretrained"] is False
    assert checkpoint.training["epochs"] == 1
    assert checkpoint.code_version
    assert checkpoint.epoch == 1
    assert not any(k.startswith("aux_heads.") for k in checkpoint.state_dict)
    assert not out.with_name("w.pt.partial").exists()


def test_a_head_learning_rate_puts_the_random_layers_in_their_own_faster_group() -> None:
    from ml.model import build_model
    from ml.train import make_optimizer

    model: Any = build_model("fast_mpoxnet", num_classes=4, aux_heads=True)
    optimizer = make_optimizer(model, TrainSettings(learning_rate=1e-4, head_learning_rate=1e-3))
    backbone, rest = optimizer.param_groups
    assert (backbone["lr"], rest["lr"]) == (1e-4, 1e-3)
    pretrained = [model.conv1, model.stage2, model.stage3, model.stage4]
    assert {id(p) for p in backbone["params"]} == {id(p) for part in pretrained for p in part.parameters()}
    assert id(model.fc.weight) in {id(p) for p in rest["params"]}
    assert len(backbone["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_it_refuses_a_negative_auxiliary_weight_or_head_learning_rate() -> None:
    with pytest.raises(ValueError, match="auxiliary"):
        TrainSettings(aux_weight=-1)
    with pytest.raises(ValueError, match="head learning rate"):
        TrainSettings(head_learning_rate=0)


def test_recalibrating_batch_norm_replaces_stale_running_statistics_by_those_of_the_inputs() -> None:
    conv, norm = torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4, momentum=0.01)
    model = torch.nn.Sequential(conv, norm)
    inputs = torch.randn(40, 3, 8, 8) * 5 + 3  # far from the fresh statistics (mean 0, variance 1)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}

    recalibrate_batch_norm(model, inputs, device=torch.device("cpu"), batch_size=8)

    with torch.no_grad():
        features = conv(inputs)
    assert norm.running_mean is not None
    assert norm.running_var is not None
    assert torch.allclose(norm.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-4)
    # The cumulative average of per-batch unbiased variances: close to, not exactly, the pooled variance.
    assert torch.allclose(norm.running_var, features.var(dim=(0, 2, 3)), rtol=0.05)
    assert norm.momentum == 0.01
    assert not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_a_mobilenet_trained_with_batch_norm_recalibration_ends_with_statistics_of_its_training_photos(
    dataset, cache
) -> None:
    result = run(dataset, cache, 1, arch="mobilenet_v3_small", recalibrate_bn=True)
    layers = list(result.model.modules())
    first_norm = next(m for m in layers if isinstance(m, torch.nn.BatchNorm2d))
    stem_conv = next(m for m in layers if isinstance(m, torch.nn.Conv2d))  # the convolution before that BatchNorm
    inputs = eval_tensor(dataset.records, cache, PRE)
    with torch.no_grad():
        stem = stem_conv(inputs)
    assert first_norm.running_mean is not None
    assert torch.allclose(first_norm.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-4)
    assert not result.model.training
