"""Small photos, checkpoints and training runs for the ml tests, made on the fly (no shipped weights needed)."""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ml.checkpoint import PAPER_CLASSES, Checkpoint, InconclusiveRule, Preprocessing
from ml.data import Dataset, ImageCache
from ml.model import FastMpoxNet, fast_mpoxnet
from ml.train import TrainResult, TrainSettings, train_model

# Tiny photos keep a training run in the tests to seconds.
TINY_PREPROCESSING = Preprocessing(input_size=64, resize=64)


def train_on(settings: TrainSettings, dataset: Dataset, cache: ImageCache, **options: Any) -> TrainResult:
    """``train_model`` on all of ``dataset``'s class photos at 64 pixels, on the CPU, without a progress bar."""
    return train_model(
        settings,
        records=dataset.records,
        labels=list(dataset.labels),
        num_classes=len(dataset.class_names),
        cache=cache,
        preprocessing=TINY_PREPROCESSING,
        device=torch.device("cpu"),
        progress=False,
        **options,
    )


@functools.cache
def calibrated_model(*, seed: int = 0) -> FastMpoxNet:
    """Random Fast-MpoxNet whose batch-norm statistics come from real forward passes, so its CAMs are not flat.

    Cached per seed: treat the model as read-only.
    """
    torch.manual_seed(seed)
    model = fast_mpoxnet(num_classes=len(PAPER_CLASSES), aux_heads=False)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = None  # a plain average over the passes below
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 160, 160))
    for norm in norms:
        norm.momentum = 0.1
    return model.eval()


def checkpoint_for(model: FastMpoxNet, *, threshold: float = 0.0) -> Checkpoint:
    return Checkpoint(
        arch="fast_mpoxnet",
        class_names=PAPER_CLASSES,
        state_dict=model.state_dict(),
        config=model.config.to_dict(),
        inconclusive=InconclusiveRule(threshold=threshold),
        created_at="2026-11-25T10:00:00+00:00",
    )


def photo(width: int = 320, height: int = 240, *, seed: int = 0) -> Image.Image:
    """A smooth random RGB picture (smooth so that JPEG keeps it close)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    return Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BILINEAR)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()
