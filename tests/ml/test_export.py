from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ml.checkpoint import PAPER_CLASSES, file_sha256, load_checkpoint
from ml.export import EXPORT_VERSION, export_onnx, main, pad_stem, split_at_fusion
from ml.model import FastMpoxNet, fast_mpoxnet
from tests.ml.factories import calibrated_model, checkpoint_for


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "fast_mpoxnet.pt"
    checkpoint_for(calibrated_model(seed=7)).save(path)
    return path


@pytest.fixture(scope="module")
def exported(weights):
    return export_onnx(load_checkpoint(weights), weights.with_suffix(".onnx"), weights_sha256=file_sha256(weights))


@pytest.mark.parametrize("seed", [0, 1])
def test_onnx_runtime_gives_the_same_logits_and_features_as_torch(weights, exported, seed) -> None:
    torch.manual_seed(seed)
    images = torch.randn(1, 3, 224, 224)
    model = load_checkpoint(weights).build_model()
    assert isinstance(model, FastMpoxNet)
    with torch.inference_mode():
        features = model.forward_features(images)
        logits = model.forward_head(features)

    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    onnx_logits, onnx_features = session.run(["logits", "features"], {"image": images.numpy()})

    assert onnx_logits.shape == (1, len(PAPER_CLASSES))
    assert onnx_features.shape == (1, 256, 7, 7)
    assert np.abs(onnx_logits - logits.numpy()).max() <= 1e-4
    # Features reach ~50 with random weights; float32 summation order differs by about 1e-4 of that.
    assert np.abs(onnx_features - features.numpy()).max() <= 1e-4 * features.abs().max().item()


def test_the_export_records_which_weights_it_came_from(weights, exported) -> None:
    metadata = {prop.key: prop.value for prop in onnx.load(str(exported)).metadata_props}
    assert metadata["weights_sha256"] == file_sha256(weights)
    assert json.loads(metadata["class_names"]) == list(PAPER_CLASSES)
    assert metadata["input_size"] == "224"
    assert metadata["arch"] == "fast_mpoxnet"
    assert metadata["export_version"] == str(EXPORT_VERSION)


@pytest.mark.parametrize("stem_channels", [24, 32])
def test_the_padded_stem_computes_exactly_what_the_model_computes(stem_channels) -> None:
    torch.manual_seed(3)
    channels = (stem_channels, 48, 96, 192, 256)
    model = fast_mpoxnet(num_classes=4, aux_heads=False, stage_channels=channels, stage_repeats=(2, 2, 2))
    with torch.no_grad():  # non-trivial batch-norm shifts and statistics
        for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            norm.bias.normal_(0, 0.5)
            norm.register_buffer("running_mean", torch.randn(norm.num_features) * 0.5)
            norm.register_buffer("running_var", torch.rand(norm.num_features) * 1.5 + 0.5)
    model.eval()
    padded = pad_stem(model).eval()
    images = torch.randn(2, 3, 64, 64)

    with torch.inference_mode():
        assert torch.equal(padded.forward_features(images), model.forward_features(images))
        assert torch.equal(padded(images), model(images))
    convs = [m for m in padded.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].out_channels == 32
    assert next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).out_channels == stem_channels


def test_the_export_runs_the_stem_in_onnx_runtime_blocks_without_layout_changes(exported, tmp_path) -> None:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
    nodes = onnx.load(options.optimized_model_filepath).graph.node

    ops = [node.op_type for node in nodes]
    assert ops.count("Gelu") == 40  # one node per GELU, not an Erf pattern
    if any(node.domain == "com.microsoft.nchwc" for node in nodes):  # the blocked layout is x86-only
        stem = next(node for node in nodes if node.op_type == "MaxPool")
        assert stem.domain == "com.microsoft.nchwc"  # not reordered to plain NCHW around the max pool


def test_the_export_cuts_into_parts_that_compose_to_the_whole(exported) -> None:
    parts = split_at_fusion(exported)
    assert parts is not None
    front, stages, projection, fusion = (ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for p in parts)
    whole = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4)).numpy()

    (low,) = front.run(["low"], {"image": image})
    (high,) = stages.run(["high"], {"low": low})
    (projected,) = projection.run(["low_projected"], {"low": low})
    logits, features = fusion.run(["logits", "features"], {"low_projected": projected, "high": high})

    expected_logits, expected_features = whole.run(["logits", "features"], {"image": image})
    assert (low.shape, high.shape, projected.shape) == ((1, 48, 28, 28), (1, 256, 7, 7), (1, 256, 7, 7))
    assert np.abs(logits - expected_logits).max() <= 1e-5
    assert np.abs(features - expected_features).max() <= 1e-5 * np.abs(expected_features).max()


def test_the_command_writes_beside_the_weights_and_leaves_no_temporary_file(weights, tmp_path) -> None:
    copy = tmp_path / "model.pt"
    copy.write_bytes(weights.read_bytes())

    assert main(["--weights", str(copy)]) == 0

    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.pt"]


def test_only_fast_mpoxnet_exports(tmp_path) -> None:
    from ml.checkpoint import Checkpoint
    from ml.model import build_model

    baseline = build_model("shufflenet_v2_x0_5", num_classes=4)
    checkpoint = Checkpoint(arch="shufflenet_v2_x0_5", class_names=PAPER_CLASSES, state_dict=baseline.state_dict())
    with pytest.raises(ValueError, match="only Fast-MpoxNet"):
        export_onnx(checkpoint, tmp_path / "x.onnx", weights_sha256="0" * 64)
    assert not list(tmp_path.iterdir())
