from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from ml.cam import OVERLAY_MAX_SIDE, _png, class_activation_maps, heatmap_png, overlay_png
from ml.checkpoint import Preprocessing
from ml.imaging import centre_crop_box
from ml.model import FastMpoxNet
from tests.ml.factories import calibrated_model, encode, photo


@pytest.fixture(scope="module")
def model() -> FastMpoxNet:
    return calibrated_model(seed=3)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(4)
    return torch.randn(2, 3, 224, 224)


def fast_path(model: FastMpoxNet, images: torch.Tensor, classes: list[int]) -> np.ndarray:
    with torch.inference_mode():
        features = model.forward_features(images).numpy()
    return class_activation_maps(features, model.fc.weight.detach().numpy(), classes, size=images.shape[-1])


@pytest.mark.parametrize("target", [0, 1, 2, 3])
def test_the_fast_path_equals_pytorch_grad_cam_on_the_fusion_layer(model, images, target) -> None:
    with GradCAM(model=model, target_layers=[model.fusion]) as cam:
        expected = cam(input_tensor=images, targets=[ClassifierOutputTarget(target)] * len(images))

    actual = fast_path(model, images, [target] * len(images))

    assert actual.shape == expected.shape == (2, 224, 224)
    assert actual.dtype == np.float32
    assert np.abs(actual - expected).max() <= 1e-4
    # A flat map would make the comparison meaningless.
    assert all(m.max() > 0.99 and m.min() < 0.01 and m.std() > 0.05 for m in actual)


def test_each_image_gets_its_own_class(model, images) -> None:
    both = fast_path(model, images, [0, 3])
    assert np.allclose(both[0], fast_path(model, images[:1], [0])[0], atol=1e-5)
    assert np.allclose(both[1], fast_path(model, images[1:], [3])[0], atol=1e-5)


def test_a_map_with_no_positive_evidence_is_all_zero() -> None:
    features = np.ones((1, 2, 7, 7), dtype=np.float32)
    heatmap = class_activation_maps(features, np.array([[-1.0, -1.0]]), [0], size=32)
    assert heatmap.shape == (1, 32, 32)
    assert not heatmap.any()


def test_it_wants_one_class_per_image() -> None:
    with pytest.raises(ValueError, match="one class index per image"):
        class_activation_maps(np.zeros((2, 4, 7, 7), np.float32), np.zeros((3, 4)), [0], size=8)


def hot_corner(size: int = 224) -> np.ndarray:
    heatmap = np.zeros((size, size), dtype=np.float32)
    heatmap[: size // 4, : size // 4] = 1.0
    return heatmap


def decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def test_the_overlay_is_the_centre_crop_with_the_heatmap_blended_in() -> None:
    original = photo(1200, 800, seed=5)
    data = encode(original, "PNG")

    overlay = np.asarray(decode_png(overlay_png(data, hot_corner())).convert("RGB"), dtype=np.int16)
    plain = np.asarray(decode_png(overlay_png(data, hot_corner(), alpha=0.0)), dtype=np.int16)

    assert overlay.shape == plain.shape == (OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE, 3)
    left, top, right, bottom = centre_crop_box(original.size, Preprocessing())
    expected = np.asarray(
        original.resize((OVERLAY_MAX_SIDE,) * 2, Image.Resampling.BILINEAR, box=(left, top, right, bottom)),
        dtype=np.int16,
    )
    assert np.abs(plain - expected).max() <= 1
    # The jet map runs from dark blue (0) to dark red (1).
    hot = 0.55 * plain[:100, :100] + 0.45 * np.array([128, 0, 0])
    cold = 0.55 * plain[300:, 300:] + 0.45 * np.array([0, 0, 128])
    assert np.abs(overlay[:100, :100] - hot).max() <= 1
    assert np.abs(overlay[300:, 300:] - cold).max() <= 1


def test_the_overlay_accepts_a_decoded_image_and_keeps_small_photos_at_their_size() -> None:
    overlay = decode_png(overlay_png(photo(300, 200), hot_corner()))
    assert overlay.size == (200, 200)


def test_at_the_photos_own_scale_the_overlay_shows_its_pixels_unresampled() -> None:
    original = photo(641, 480, seed=3)  # the centre square starts half a pixel in: cut at the nearest pixel
    left, top, _, _ = centre_crop_box(original.size, Preprocessing())
    plain = np.asarray(decode_png(overlay_png(original, hot_corner(), alpha=0.0)))
    x, y = round(left), round(top)
    assert plain.shape == (480, 480, 3)
    assert np.array_equal(plain, np.asarray(original)[y : y + 480, x : x + 480])


def test_the_overlay_checks_alpha() -> None:
    with pytest.raises(ValueError, match="alpha"):
        overlay_png(photo(), hot_corner(), alpha=1.5)


def test_the_heatmap_png_is_transparent_where_the_heat_is_zero() -> None:
    heatmap = decode_png(heatmap_png(hot_corner()))
    assert (heatmap.mode, heatmap.size) == ("RGBA", (224, 224))
    pixels = np.asarray(heatmap)
    assert (pixels[:50, :50, 3] == 255).all()
    assert (pixels[100:, 100:, 3] == 0).all()
    red, green, blue, _ = pixels[10, 10]
    assert red > 100
    assert blue < 50
    assert green < 50


def test_the_heatmap_png_refuses_a_batch() -> None:
    with pytest.raises(ValueError, match="H x W"):
        heatmap_png(np.zeros((2, 8, 8)))


@pytest.mark.parametrize(("channels", "mode"), [(3, "RGB"), (4, "RGBA")])
def test_the_png_writer_is_lossless_for_any_pixels(channels, mode) -> None:
    # Random pixels make the Sub filter's differences wrap around 0 and 255 everywhere.
    pixels = np.random.default_rng(7).integers(0, 256, size=(37, 53, channels), dtype=np.uint8)
    image = decode_png(_png(pixels))
    assert image.mode == mode
    assert np.array_equal(np.asarray(image), pixels)


def test_the_png_writer_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="uint8"):
        _png(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        _png(np.zeros((4, 4), dtype=np.uint8))
