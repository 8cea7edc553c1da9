"""Checkpoints that carry their contract next to the weights.

A checkpoint is a plain dict saved with ``torch.save``: the ``state_dict`` plus everything needed to use it
correctly without reading code — class names, preprocessing, architecture arguments, the training data's
manifest hash, training settings, metrics, the inconclusive rule and the code version.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ml.model import FastMpoxNet, FastMpoxNetConfig, build_model

FORMAT = "fast-mpoxnet-checkpoint/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_CLASSES = ("chickenpox", "measles", "monkeypox", "normal")
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "fast_mpoxnet.pt"
DEFAULT_ONNX = WEIGHTS_DIR / "fast_mpoxnet.onnx"


class CheckpointError(ValueError):
    """The file is not a usable checkpoint (wrong format, missing fields, weights that do not fit)."""


@dataclass(frozen=True)
class Preprocessing:
    """Eval-time preprocessing: resize the short side to ``resize``, centre-crop ``input_size``, normalise."""

    input_size: int = 224
    resize: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


INCONCLUSIVE_METHODS = ("max_probability", "certainty", "energy")


@dataclass(frozen=True)
class InconclusiveRule:
    """Flag a prediction inconclusive when its score is below ``threshold``. The score is the top softmax
    probability (``max_probability``; a threshold of 0 disables the rule), ``certainty`` (1 - the softmax's
    entropy / log(classes): low when the probability is spread over several classes, not only when the top one is
    small), or ``energy`` (the logsumexp of the logits, which keeps the scale that softmax discards). ``ml.report``
    chooses the method and threshold on the cross-validation's out-of-fold predictions.

    With ``label_thresholds`` (one per class, in the checkpoint's class order) the threshold depends on the top
    label: the report sets a stricter one for the reassuring labels (not mpox) than for mpox, whose threshold is
    bounded by the mpox-recall budget. ``threshold`` then holds the mpox one, for readers of older contracts."""

    method: str = "max_probability"
    threshold: float = 0.0
    label_thresholds: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in INCONCLUSIVE_METHODS:
            raise ValueError(
                f"unknown inconclusive method {self.method!r}; choose from {', '.join(INCONCLUSIVE_METHODS)}"
            )
        if not all(np.isfinite(t) for t in (self.threshold, *self.label_thresholds)):
            raise ValueError("inconclusive thresholds must be finite numbers")

    def score(self, logits: np.ndarray) -> float:
        logits = np.asarray(logits, dtype=np.float64)
        top = float(logits.max())
        log_total = top + float(np.log(np.exp(logits - top).sum()))
        if self.method == "energy":
            return log_total
        log_probs = logits - log_total
        if self.method == "certainty":
            entropy = -float((np.exp(log_probs) * log_probs).sum())
            return 1.0 - entropy / float(np.log(len(logits)))
        return float(np.exp(top - log_total))  # the top softmax probability

    def threshold_for(self, label_index: int) -> float:
        return self.label_thresholds[label_index] if self.label_thresholds else self.threshold

    def is_inconclusive(self, logits: np.ndarray) -> bool:
        return self.score(logits) < self.threshold_for(int(np.argmax(logits)))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"method": self.method, "threshold": self.threshold}
        if self.label_thresholds:
            data["label_thresholds"] = list(self.label_thresholds)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InconclusiveRule:
        return cls(
            method=data.get("method", "max_probability"),
            threshold=float(data.get("threshold", 0.0)),
            label_thresholds=tuple(float(t) for t in data.get("label_thresholds") or ()),
        )


@dataclass
class Checkpoint:
    arch: str
    class_names: tuple[str, ...]
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    inconclusive: InconclusiveRule = field(default_factory=InconclusiveRule)
    manifest_sha256: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    created_at: str = ""
    epoch: int = 0
    optimizer_state: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        thresholds = self.inconclusive.label_thresholds
        if thresholds and len(thresholds) != len(self.class_names):
            raise ValueError(
                f"the inconclusive rule has {len(thresholds)} label thresholds for {len(self.class_names)} classes"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "arch": self.arch,
            "class_names": list(self.class_names),
            "config": self.config,
            "preprocessing": {
                "input_size": self.preprocessing.input_size,
                "resize": self.preprocessing.resize,
                "mean": list(self.preprocessing.mean),
                "std": list(self.preprocessing.std),
            },
            "inconclusive": self.inconclusive.to_dict(),
            "manifest_sha256": self.manifest_sha256,
            "training": self.training,
            "metrics": self.metrics,
            "code_version": self.code_version,
            "created_at": self.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
            "epoch": self.epoch,
            "state_dict": self.state_dict,
            "optimizer_state": self.optimizer_state,
        }

    def save(self, path: str | Path) -> None:
        """Write atomically, so an interrupted run never leaves a half-written checkpoint behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.to_dict(), tmp)
        tmp.replace(path)

    def build_model(self) -> nn.Module:
        """The network in eval mode with these weights (auxiliary heads dropped for Fast-MpoxNet)."""
        model: nn.Module
        if self.arch == "fast_mpoxnet":
            config = FastMpoxNetConfig.from_dict({**self.config, "aux_heads": False})
            model = FastMpoxNet(config)
            state = {k: v for k, v in self.state_dict.items() if not k.startswith("aux_heads.")}
        else:
            model = build_model(self.arch, num_classes=len(self.class_names))
            state = self.state_dict
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"weights do not fit the {self.arch} architecture: {exc}") from exc
        return model.eval()


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise CheckpointError(f"{path} is not a readable checkpoint: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    try:
        pre = data["preprocessing"]
        rule = data.get("inconclusive") or {}
        return Checkpoint(
            arch=data["arch"],
            class_names=tuple(data["class_names"]),
            state_dict=data["state_dict"],
            config=data.get("config") or {},
            preprocessing=Preprocessing(
                input_size=int(pre["input_size"]),
                resize=int(pre["resize"]),
                mean=tuple(pre["mean"]),  # type: ignore[arg-type]
                std=tuple(pre["std"]),  # type: ignore[arg-type]
            ),
            inconclusive=InconclusiveRule.from_dict(rule),
            manifest_sha256=data.get("manifest_sha256", ""),
            training=data.get("training") or {},
            metrics=data.get("metrics") or {},
            code_version=data.get("code_version", ""),
            created_at=data.get("created_at", ""),
            epoch=int(data.get("epoch", 0)),
            optimizer_state=data.get("optimizer_state"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} lacks part of its contract: {exc}") from exc


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of this code, with ``+dirty`` when there are uncommitted changes; ``unknown`` outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "ml"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")
