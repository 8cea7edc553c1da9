from __future__ import annotations

import random

import pytest
import torch

from ml.augment import STRATEGIES, PaperAugment
from ml.checkpoint import IMAGENET_MEAN, IMAGENET_STD
from tests.ml.factories import photo


def test_twelve_strategies_of_which_six_are_applied(monkeypatch) -> None:
    assert len(STRATEGIES) == 12
    used: list[str] = []

    def spy(strategy):
        def wrapped(image, rng):
            used.append(strategy.__name__)
            return strategy(image, rng)

        return wrapped

    augment = PaperAugment(input_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD, strategies=[spy(s) for s in STRATEGIES])
    augment(photo(48, 40), random.Random(0))
    assert len(used) == 6
    assert len(set(used)) == 6


def test_output_is_a_normalised_input_size_tensor() -> None:
    augment = PaperAugment(input_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    out = augment(photo(64, 48, seed=1), random.Random(1))
    assert out.shape == (3, 32, 32)
    assert out.dtype == torch.float32
    assert out.min() < 0 < out.max()  # ImageNet normalisation centres the values


def test_the_same_rng_seed_gives_the_same_image() -> None:
    augment = PaperAugment(input_size=32, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    image = photo(64, 48, seed=2)
    torch.manual_seed(0)
    first = augment(image, random.Random(5))
    torch.manual_seed(0)
    assert torch.equal(first, augment(image, random.Random(5)))


@pytest.mark.parametrize("k", [-1, 13])
def test_k_outside_zero_to_twelve_is_rejected(k) -> None:
    with pytest.raises(ValueError, match="k must be between"):
        PaperAugment(mean=IMAGENET_MEAN, std=IMAGENET_STD, k=k)
