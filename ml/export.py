"""ONNX export of a Fast-MpoxNet checkpoint, for the ONNX Runtime backend of ``ml.inference``.

The graph has one input, ``image`` (1 x 3 x S x S, normalised), and two outputs: ``logits`` and ``features`` (the
ABLGFM output), from which the heatmap is computed without a backward pass (see ``ml.cam``). The checkpoint file's
SHA-256 is stored in the model's metadata so that a stale export is recognised.

The batch size is fixed at 1: static shapes let ONNX Runtime fold the channel-shuffle shape arithmetic away, and on
CPU eight single calls were measured faster than one batch of eight.

    python -m ml.export [--weights PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ml.checkpoint import DEFAULT_CHECKPOINT, Checkpoint, file_sha256, load_checkpoint
from ml.model import FastMpoxNet

__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "WEIGHTS_SHA256_KEY", "export_onnx", "main"]

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "features")
WEIGHTS_SHA256_KEY = "weights_sha256"
OPSET = 17


class LogitsAndFeatures(nn.Module):
    """Fast-MpoxNet returning its logits and the feature map they were pooled from."""

    def __init__(self, model: FastMpoxNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        features = self.model.forward_features(image)
        return self.model.forward_head(features), features


def export_onnx(checkpoint: Checkpoint, out: str | Path, *, weights_sha256: str) -> Path:
    """Write ``checkpoint``'s network to ``out`` as ONNX (batch size 1), atomically; returns ``out``.

    ``weights_sha256`` is the checkpoint file's hash, stored in the metadata with the class names and input size.
    """
    import onnx

    model = checkpoint.build_model()
    if not isinstance(model, FastMpoxNet):
        raise ValueError(f"only Fast-MpoxNet checkpoints export with a feature output, not {checkpoint.arch}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    size = checkpoint.preprocessing.input_size
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated, but torch.export fails on this model in torch 2.14; the
            # tracer's warning about the ABLGFM shape check is harmless with a fixed input size.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                LogitsAndFeatures(model).eval(),
                (torch.zeros(1, 3, size, size),),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=OPSET,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        metadata = {
            WEIGHTS_SHA256_KEY: weights_sha256,
            "arch": checkpoint.arch,
            "class_names": json.dumps(list(checkpoint.class_names)),
            "input_size": str(size),
            "created_at": checkpoint.created_at,
        }
        del proto.metadata_props[:]
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("exported %s weights sha256:%s to %s", checkpoint.arch, weights_sha256[:12], out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_CHECKPOINT, help="checkpoint (.pt)")
    parser.add_argument("--out", type=Path, default=None, help="ONNX file (default: the weights path with .onnx)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = args.out or args.weights.with_suffix(".onnx")
    export_onnx(load_checkpoint(args.weights), out, weights_sha256=file_sha256(args.weights))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
