"""ONNX export of a Fast-MpoxNet checkpoint, for the ONNX Runtime backend of ``ml.inference``.

The graph has one input, ``image`` (1 x 3 x S x S, normalised), and two outputs: ``logits`` and ``features`` (the
ABLGFM output), from which the heatmap is computed without a backward pass (see ``ml.cam``). The checkpoint file's
SHA-256 is stored in the model's metadata so that a stale export is recognised.

The batch size is fixed at 1: static shapes let ONNX Runtime fold the channel-shuffle shape arithmetic away, and on
CPU eight single calls were measured faster than one batch of eight.

Two changes make the exported graph faster on ONNX Runtime's CPU provider without changing what it computes:

* opset 20, where GELU is one ``Gelu`` node (ONNX Runtime's kernel for it is faster than the ``com.microsoft`` one it
  fuses the opset-17 ``Erf`` pattern into: 20 us against 28 on a 32 x 28 x 28 map);
* the stem padded with zero channels to a multiple of 16 (``pad_stem``). ONNX Runtime runs convolutions in a blocked
  layout of 16 channels (NCHWc) and pads the 24 stem channels to 32 anyway; with 24 real channels it had to convert
  the 112 x 112 stem map back to plain NCHW for the max pool and forward again for stage 2 (0.2 ms of a 2.3 ms run).
  The added channels have zero weights, so they stay exactly zero and add nothing downstream.

    python -m ml.export [--weights PATH] [--out PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ml.checkpoint import DEFAULT_CHECKPOINT, Checkpoint, file_sha256, load_checkpoint
from ml.model import FastMpoxNet, InvertedResidual

if TYPE_CHECKING:
    import onnx

__all__ = [
    "EXPORT_VERSION",
    "INPUT_NAME",
    "OUTPUT_NAMES",
    "WEIGHTS_SHA256_KEY",
    "export_onnx",
    "main",
    "pad_stem",
    "split_at_fusion",
]

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "features")
WEIGHTS_SHA256_KEY = "weights_sha256"
OPSET = 20
# Raised whenever the exported graph changes (2: opset 20 and the padded stem; 3: shapes folded and the fusion's
# inputs named), so that cached exports, which are
# named by the weights' hash and this number, are made again.
EXPORT_VERSION = 3
# Tensors named in the export so that ``ml.inference`` can cut the graph around the ABLGFM fusion: the stage-2 map
# (``low``), its projection (``low_projected``) and the stage-5 map (``high``); see ``split_at_fusion``.
LOW, LOW_PROJECTED, HIGH = "low", "low_projected", "high"
# ONNX Runtime's blocked-layout (NCHWc) channel block on AVX-512; a multiple of the AVX2 block (8) too.
CHANNEL_BLOCK = 16


class LogitsAndFeatures(nn.Module):
    """Fast-MpoxNet returning its logits and the feature map they were pooled from."""

    def __init__(self, model: FastMpoxNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        features = self.model.forward_features(image)
        return self.model.forward_head(features), features


def pad_stem(model: FastMpoxNet, *, multiple: int = CHANNEL_BLOCK) -> FastMpoxNet:
    """A copy of ``model`` whose stem (conv1, the max pool and stage 2's first unit's inputs) has zero channels added
    up to a multiple of ``multiple``; it computes the same logits and features (``model`` itself is left alone).

    The new conv1 filters and their batch-norm shift are zero, so the new channels are exactly zero after GELU
    (GELU(0) = 0) and the max pool; the convolutions of stage 2's first unit give them zero weights (a zero depthwise
    filter in ``branch1``, zero input columns in both branches' 1 x 1 convolutions).
    """
    stem = model.conv1[0]
    assert isinstance(stem, nn.Conv2d)
    width = -(-stem.out_channels // multiple) * multiple
    padded = copy.deepcopy(model)
    if width == stem.out_channels:
        return padded
    padded.conv1[0] = _grown_conv(stem, in_channels=stem.in_channels, out_channels=width)
    padded.conv1[1] = _grown_norm(padded.conv1[1], width)
    unit = padded.stage2[0]
    assert isinstance(unit, InvertedResidual)
    branch1, branch2 = unit.branch1, unit.branch2
    assert isinstance(branch1, nn.Sequential)
    depthwise, pointwise, first = branch1[0], branch1[2], branch2[0]
    assert isinstance(depthwise, nn.Conv2d)
    assert isinstance(pointwise, nn.Conv2d)
    assert isinstance(first, nn.Conv2d)
    branch1[0] = _grown_conv(depthwise, in_channels=width, out_channels=width)
    branch1[1] = _grown_norm(branch1[1], width)
    branch1[2] = _grown_conv(pointwise, in_channels=width, out_channels=pointwise.out_channels)
    branch2[0] = _grown_conv(first, in_channels=width, out_channels=first.out_channels)
    return padded


def _grown_conv(conv: nn.Conv2d, *, in_channels: int, out_channels: int) -> nn.Conv2d:
    """``conv`` with zero filters / zero input weights added; a depthwise convolution stays depthwise."""
    depthwise = conv.groups > 1
    if depthwise and not conv.groups == conv.in_channels == conv.out_channels:
        raise ValueError("only plain and depthwise convolutions can be grown")
    grown = nn.Conv2d(
        in_channels,
        out_channels,
        conv.kernel_size,  # type: ignore[arg-type]
        conv.stride,  # type: ignore[arg-type]
        conv.padding,  # type: ignore[arg-type]
        groups=out_channels if depthwise else 1,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        grown.weight.zero_()
        grown.weight[: conv.out_channels, : conv.weight.shape[1]] = conv.weight
        if grown.bias is not None and conv.bias is not None:
            grown.bias.zero_()
            grown.bias[: conv.out_channels] = conv.bias
    return grown


def _grown_norm(norm: nn.Module, channels: int) -> nn.BatchNorm2d:
    """``norm`` with identity channels added (zero shift, so a zero input stays zero)."""
    assert isinstance(norm, nn.BatchNorm2d)
    grown = nn.BatchNorm2d(channels, eps=norm.eps).eval()
    count = norm.num_features
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(grown, name)[:count] = getattr(norm, name)
    return grown


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
                LogitsAndFeatures(pad_stem(model)).eval(),
                (torch.zeros(1, 3, size, size),),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=OPSET,
                dynamo=False,
            )
        proto = _name_fusion_inputs(_constant_folded(tmp))
        metadata = {
            WEIGHTS_SHA256_KEY: weights_sha256,
            "arch": checkpoint.arch,
            "class_names": json.dumps(list(checkpoint.class_names)),
            "input_size": str(size),
            "created_at": checkpoint.created_at,
            "export_version": str(EXPORT_VERSION),
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


def split_at_fusion(path: str | Path) -> tuple[bytes, bytes, bytes, bytes] | None:
    """The export at ``path`` cut into four serialised graphs: ``image -> low``, ``low -> high`` (stages 3-5),
    ``low -> low_projected`` (the fusion's projection of stage 2) and ``low_projected, high -> logits, features``.

    The second and third are independent, so two cores can run them at once. ``None`` for an export older than
    version 3, which has no named fusion inputs.
    """
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(path))
    produced = {name for node in model.graph.node for name in node.output}
    if not {LOW, LOW_PROJECTED, HIGH} <= produced:
        return None
    extractor = Extractor(onnx.shape_inference.infer_shapes(model))
    cuts = (
        ([INPUT_NAME], [LOW]),
        ([LOW], [HIGH]),
        ([LOW], [LOW_PROJECTED]),
        ([LOW_PROJECTED, HIGH], list(OUTPUT_NAMES)),
    )
    first, second, third, fourth = (extractor.extract_model(i, o).SerializeToString() for i, o in cuts)
    return first, second, third, fourth


def _constant_folded(path: Path) -> onnx.ModelProto:
    """The graph at ``path`` after ONNX Runtime's basic, hardware-independent optimisations: the tracer's shape
    arithmetic (Shape, Gather, Div...) folded into constants, so that the graph can be cut anywhere."""
    import onnx
    import onnxruntime as ort

    folded = path.with_name(f"{path.name}.folded")
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(str(folded))
    finally:
        folded.unlink(missing_ok=True)


def _name_fusion_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rename the fusion's inputs to ``LOW``, ``LOW_PROJECTED`` and ``HIGH`` (found by the tracer's scope names)."""
    nodes = list(model.graph.node)
    projection = [node for node in nodes if node.name.startswith("/fusion/low_projection/")]
    merge = [node for node in nodes if node.name == "/fusion/Add"]
    if not projection or len(merge) != 1:
        raise ValueError("the traced graph has no /fusion/low_projection or /fusion/Add node to name the cut by")
    low, projected = projection[0].input[0], projection[-1].output[0]
    if projected not in merge[0].input:
        raise ValueError("the fusion's merge does not add the projected stage-2 map")
    high = next(name for name in merge[0].input if name != projected)
    names = {low: LOW, projected: LOW_PROJECTED, high: HIGH}
    for node in nodes:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                field[i] = names.get(name, name)
    for info in model.graph.value_info:
        info.name = names.get(info.name, info.name)
    return model


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
