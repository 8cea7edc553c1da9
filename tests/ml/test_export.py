from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ml.checkpoint import PAPER_CLASSES, file_sha256, load_checkpoint
from ml.export import export_onnx, main
from ml.model import FastMpoxNet
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
