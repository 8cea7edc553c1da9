"""Online augmentation in the spirit of the paper's section 3.2 (Table 3).

Twelve strategies cover clarity (blur, sharpen), angle (rotation, horizontal and vertical flip), shooting distance
(zoom, off-centre crop), colour (brightness, contrast, saturation, hue) and sensor noise. For every image six are
drawn at random and applied in random order; then a random-resized crop to the input size and ImageNet
normalisation.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

Strategy = Callable[[Image.Image, random.Random], Image.Image]


def gaussian_blur(image: Image.Image, rng: random.Random) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.5)))


def sharpen(image: Image.Image, rng: random.Random) -> Image.Image:
    return ImageEnhance.Sharpness(image).enhance(rng.uniform(1.5, 3.0))


def rotate(image: Image.Image, rng: random.Random) -> Image.Image:
    return image.rotate(rng.uniform(-30, 30), resample=Image.Resampling.BILINEAR, expand=False)


def horizontal_flip(image: Image.Image, rng: random.Random) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def vertical_flip(image: Image.Image, rng: random.Random) -> Image.Image:
    return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def zoom(image: Image.Image, rng: random.Random) -> Image.Image:
    """Closer or farther shooting distance: zoom in on the centre, or shrink onto a reflected border."""
    factor = rng.uniform(0.8, 1.25)
    width, height = image.size
    if factor >= 1:
        w, h = round(width / factor), round(height / factor)
        left, top = (width - w) // 2, (height - h) // 2
        return image.crop((left, top, left + w, top + h)).resize((width, height), Image.Resampling.BILINEAR)
    small = image.resize((max(1, round(width * factor)), max(1, round(height * factor))), Image.Resampling.BILINEAR)
    array = np.asarray(small)
    pad_y, pad_x = height - small.height, width - small.width
    padded = np.pad(array, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)), mode="reflect")
    return Image.fromarray(padded)


def offset_crop(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    keep = rng.uniform(0.75, 0.95)
    w, h = round(width * keep), round(height * keep)
    left, top = rng.randint(0, width - w), rng.randint(0, height - h)
    return image.crop((left, top, left + w, top + h))


def brightness(image: Image.Image, rng: random.Random) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))


def contrast(image: Image.Image, rng: random.Random) -> Image.Image:
    return ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))


def saturation(image: Image.Image, rng: random.Random) -> Image.Image:
    return ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))


def hue(image: Image.Image, rng: random.Random) -> Image.Image:
    # Small shifts only: lesion colour is diagnostic.
    return TF.adjust_hue(image, rng.uniform(-0.04, 0.04))


def gaussian_noise(image: Image.Image, rng: random.Random) -> Image.Image:
    sigma = rng.uniform(3, 12)
    array = np.asarray(image, dtype=np.float32)
    # float32 draws scaled and added in place: half the time of float64 normal(), and augmentation is what bounds
    # training speed on a GPU machine.
    noisy = np.random.default_rng(rng.getrandbits(32)).standard_normal(array.shape, dtype=np.float32)
    noisy *= sigma
    noisy += array
    np.clip(noisy, 0, 255, out=noisy)
    return Image.fromarray(noisy.astype(np.uint8))


STRATEGIES: tuple[Strategy, ...] = (
    gaussian_blur,
    sharpen,
    rotate,
    horizontal_flip,
    vertical_flip,
    zoom,
    offset_crop,
    brightness,
    contrast,
    saturation,
    hue,
    gaussian_noise,
)


class PaperAugment:
    """Pick ``k`` of the twelve strategies at random, apply them in random order, then crop and normalise."""

    def __init__(
        self,
        *,
        input_size: int = 224,
        mean: Sequence[float],
        std: Sequence[float],
        k: int = 6,
        strategies: Sequence[Strategy] = STRATEGIES,
    ) -> None:
        if not 0 <= k <= len(strategies):
            raise ValueError(f"k must be between 0 and {len(strategies)}, got {k}")
        self.k = k
        self.strategies = tuple(strategies)
        self.crop = v2.RandomResizedCrop(input_size, scale=(0.5, 1.0), antialias=True)
        self.to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    def __call__(self, image: Image.Image, rng: random.Random) -> torch.Tensor:
        for strategy in rng.sample(self.strategies, self.k):
            image = strategy(image, rng)
        return self.to_tensor(self.crop(image))


def normalise(array: np.ndarray, *, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """HWC uint8 -> normalised CHW float tensor."""
    tensor = torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).float().div_(255)
    return TF.normalize(tensor, list(mean), list(std))
