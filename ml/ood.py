"""Out-of-distribution scores: how far a photo lies from what the model was trained on.

Three scores, each "higher = more like the training data", so one thresholding rule serves them all:

* ``max_probability``: the top softmax probability (Hendrycks & Gimpel, 2017);
* ``energy``: logsumexp of the logits (Liu et al., 2020), which keeps the logits' scale that softmax discards;
* ``mahalanobis``: minus the smallest squared Mahalanobis distance from the pooled ABLGFM features to a class mean,
  with one shared covariance fitted on the training photos (Lee et al., 2018).

The cross-validation stores all three for every test and out-of-distribution photo, and ``ml.report`` compares them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ml.model import FastMpoxNet

SHRINKAGE = 0.1  # share of the mean variance added to the covariance's diagonal: 256 features, ~800 photos


@dataclass(frozen=True)
class Embedding:
    logits: np.ndarray  # N x classes
    features: np.ndarray | None  # N x 256 pooled ABLGFM output (Fast-MpoxNet only)


@torch.inference_mode()
def embed(model: nn.Module, inputs: Tensor, *, device: torch.device | None = None, batch_size: int = 64) -> Embedding:
    """Logits, and for Fast-MpoxNet the pooled features the head reads, in eval mode."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    logits: list[Tensor] = []
    features: list[Tensor] = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start : start + batch_size].to(device)
        if isinstance(model, FastMpoxNet):
            fused = model.forward_features(batch)
            features.append(fused.mean(dim=(2, 3)).float().cpu())
            logits.append(model.forward_head(fused).float().cpu())
        else:
            logits.append(model(batch).float().cpu())
    model.train(was_training)
    width = getattr(getattr(model, "config", None), "num_classes", 0)
    return Embedding(
        logits=torch.cat(logits).numpy() if logits else np.zeros((0, width), dtype=np.float32),
        features=torch.cat(features).numpy() if features else None,
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def energy(logits: np.ndarray) -> np.ndarray:
    """logsumexp of the logits (the negative free energy): low for photos unlike the training data."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1))


@dataclass(frozen=True)
class MahalanobisScorer:
    means: np.ndarray  # classes x features
    precision: np.ndarray  # features x features

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> MahalanobisScorer:
        features = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        classes = np.unique(labels)
        if len(classes) < 2 or len(features) <= len(classes):
            raise ValueError("a Mahalanobis scorer needs photos of at least two classes")
        means = np.stack([features[labels == c].mean(axis=0) for c in range(int(classes.max()) + 1)])
        centred = features - means[labels]
        covariance = centred.T @ centred / len(features)
        covariance += SHRINKAGE * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
        return cls(means=means, precision=np.linalg.inv(covariance))

    def distances(self, features: np.ndarray) -> np.ndarray:
        """N x classes squared Mahalanobis distances."""
        diff = np.asarray(features, dtype=np.float64)[:, None, :] - self.means[None, :, :]
        return np.einsum("ncf,fg,ncg->nc", diff, self.precision, diff)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Minus the distance to the nearest class mean (higher = more like the training photos)."""
        if len(features) == 0:
            return np.zeros(0)
        return -self.distances(features).min(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"means": self.means.tolist(), "precision": self.precision.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MahalanobisScorer:
        return cls(means=np.asarray(data["means"]), precision=np.asarray(data["precision"]))
