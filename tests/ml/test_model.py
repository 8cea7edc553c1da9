from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ml.model import (
    FastMpoxNetConfig,
    InvertedResidual,
    build_model,
    fast_mpoxnet,
    load_backbone_weights,
    parameter_count,
)

BACKBONE = Path(__file__).parents[3] / "shared" / "weights" / "shufflenetv2_x0.5_backbone_tv.pth"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return fast_mpoxnet(num_classes=4)


def test_inference_model_has_the_papers_parameter_count(model) -> None:
    assert parameter_count(model.inference_model()) == pytest.approx(274_084, rel=0.01)
    assert parameter_count(build_model("shufflenet_v2_x0_5", num_classes=4)) == 345_892


def test_inference_model_drops_the_auxiliary_heads(model) -> None:
    served = model.inference_model()
    assert served.aux_heads is None
    assert not served.training
    assert not any(k.startswith("aux_heads.") for k in served.state_dict())
    assert any(k.startswith("aux_heads.") for k in model.state_dict())


def test_dropblock_acts_only_in_training_mode(model) -> None:
    x = torch.randn(2, 3, 96, 96)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(1)
        first = model.forward_train(x).logits
        second = model.forward_train(x).logits
    model.eval()
    assert not torch.equal(first, second)


def test_forward_features_is_the_256_channel_map_at_a_32nd(model) -> None:
    with torch.no_grad():
        assert model.eval().forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 256, 7, 7)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: InvertedResidual(24, 47, 2), "even"),
        (lambda: InvertedResidual(24, 48, 3), "stride"),
        (lambda: FastMpoxNetConfig(low_drop_prob=1.0), "drop prob"),
        (lambda: FastMpoxNetConfig(stage_repeats=(4, 8)), "stage_repeats"),
        (lambda: FastMpoxNetConfig(num_classes=1), "num_classes"),
    ],
    ids=["odd-channels", "bad-stride", "bad-drop-prob", "bad-repeats", "one-class"],
)
def test_bad_configuration_raises_value_error(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.skipif(not BACKBONE.is_file(), reason="shared/weights is not beside the repository")
def test_pretrained_backbone_loads_and_a_wrong_file_raises(tmp_path) -> None:
    model = fast_mpoxnet(num_classes=4, aux_heads=False)
    loaded = load_backbone_weights(model, str(BACKBONE))
    assert loaded
    assert all(k.startswith(("conv1.", "stage2.", "stage3.", "stage4.")) for k in loaded)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(4, 256)}, wrong)
    with pytest.raises(ValueError, match="lacks"):
        load_backbone_weights(model, str(wrong))
    torch.save({"conv1.0.weight": torch.zeros(8, 3, 3, 3)}, wrong)
    with pytest.raises(ValueError, match="shape"):
        load_backbone_weights(model, str(wrong))
