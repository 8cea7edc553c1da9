"""A real Fast-MpoxNet checkpoint with random weights, for tests that run the model (no Django needed).

``python -m tests.model_weights PATH`` writes one, for subprocesses and manual runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

CLASS_NAMES = ("chickenpox", "measles", "monkeypox", "normal")


def build_random_checkpoint(path: Path, *, seed: int = 0) -> Path:
    import torch

    from ml.checkpoint import Checkpoint
    from ml.model import fast_mpoxnet

    torch.manual_seed(seed)
    model = fast_mpoxnet(num_classes=4, aux_heads=False)
    Checkpoint(
        arch="fast_mpoxnet",
        class_names=CLASS_NAMES,
        state_dict=model.state_dict(),
        config=model.config.to_dict(),
        metrics={"note": "random weights for tests"},
    ).save(path)
    return path


if __name__ == "__main__":
    build_random_checkpoint(Path(sys.argv[1]))
