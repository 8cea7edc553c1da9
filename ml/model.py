"""Fast-MpoxNet (paper sections 3.5-3.8) and the baselines it is compared with.

The network is ShuffleNetV2-x0.5 (stem, stages 2-4 as in torchvision) with conv5 cut to 256 channels, GELU
everywhere, DropBlock on the stage-2 and stage-5 outputs, the ABLGFM fusion of stage 2 and stage 5, and a
GAP + linear head. Two auxiliary heads (stage 2 and stage 3) exist only in training mode.

With four classes the inference model has 274,084 parameters, the paper's "0.27M".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ABLGFM",
    "FastMpoxNet",
    "FastMpoxNetConfig",
    "FastMpoxNetOutput",
    "InvertedResidual",
    "build_model",
    "fast_mpoxnet",
    "load_backbone_weights",
    "parameter_count",
]


class DropBlock2d(nn.Module):
    """DropBlock (Ghiasi et al., 2018) that, unlike torchvision's, accepts even block sizes (the paper uses 4x4).

    Active only in training mode; an identity in eval mode. The kept activations are rescaled so that the expected
    value is unchanged.
    """

    def __init__(self, p: float, block_size: int) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"DropBlock probability must be in [0, 1), got {p}")
        if block_size < 1:
            raise ValueError(f"DropBlock block_size must be positive, got {block_size}")
        self.p = p
        self.block_size = block_size

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        batch, channels, height, width = x.shape
        block = min(self.block_size, height, width)
        valid = (height - block + 1) * (width - block + 1)
        gamma = self.p * height * width / (block**2 * valid)
        seeds = torch.bernoulli(
            torch.full((batch, channels, height - block + 1, width - block + 1), gamma, device=x.device, dtype=x.dtype)
        )
        # Growing each seed into a block x block square: pad by block-1, then a stride-1 max pool of size block.
        seeds = F.pad(seeds, [block - 1] * 4)
        dropped = F.max_pool2d(seeds, kernel_size=block, stride=1)
        keep = 1.0 - dropped
        return x * keep * (keep.numel() / keep.sum().clamp(min=1.0))

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}"


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    batch, channels, height, width = x.shape
    x = x.view(batch, groups, channels // groups, height, width)
    return x.transpose(1, 2).contiguous().view(batch, channels, height, width)


class InvertedResidual(nn.Module):
    """ShuffleNetV2 unit with torchvision's module names (``branch1`` / ``branch2``) so its weights load as they are."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if out_channels % 2:
            raise ValueError(f"out_channels must be even, got {out_channels}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a stride-1 unit keeps its channel count: in_channels must equal out_channels")
        self.stride = stride
        branch_channels = out_channels // 2

        self.branch1: nn.Module
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(in_channels, stride),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, branch_channels, 1, bias=False),
                nn.BatchNorm2d(branch_channels),
                nn.GELU(),
            )
        else:
            self.branch1 = nn.Sequential()

        branch2_in = in_channels if stride > 1 else branch_channels
        self.branch2 = nn.Sequential(
            nn.Conv2d(branch2_in, branch_channels, 1, bias=False),
            nn.BatchNorm2d(branch_channels),
            nn.GELU(),
            _depthwise(branch_channels, stride),
            nn.BatchNorm2d(branch_channels),
            nn.Conv2d(branch_channels, branch_channels, 1, bias=False),
            nn.BatchNorm2d(branch_channels),
            nn.GELU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            left, right = x.chunk(2, dim=1)
            out = torch.cat((left, self.branch2(right)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


def _stage(in_channels: int, out_channels: int, repeats: int) -> nn.Sequential:
    units = [InvertedResidual(in_channels, out_channels, 2)]
    units += [InvertedResidual(out_channels, out_channels, 1) for _ in range(repeats - 1)]
    return nn.Sequential(*units)


def _pw_bn(in_channels: int, out_channels: int, *, bias: bool) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 1, bias=bias), nn.BatchNorm2d(out_channels)]


class ABLGFM(nn.Module):
    """Attention-Based Local and Global Fusion Module (paper section 3.6).

    ``low`` (stage 2) is projected to ``channels`` and average-pooled down to ``high``'s (stage 5) size, the two are
    added (Merge), and a local (per pixel) plus a global (per channel) bottleneck attention on Merge gives a weight
    in [0, 1] that blends the two: ``out = low' * (1 - w) + DropBlock(high) * w``. Both attention branches are
    ``channels -> channels / reduction -> channels`` bottlenecks with biased convs, as in Attentional Feature Fusion.
    """

    def __init__(
        self,
        *,
        low_channels: int,
        channels: int,
        reduction: int = 4,
        pool: int = 4,
        high_drop_prob: float = 0.1,
    ) -> None:
        super().__init__()
        if min(low_channels, channels, reduction, pool) < 1:
            raise ValueError("ABLGFM sizes must be positive")
        if channels % reduction:
            raise ValueError(f"channels ({channels}) must be divisible by reduction ({reduction})")
        if not 0.0 <= high_drop_prob < 1.0:
            raise ValueError(f"high_drop_prob must be in [0, 1), got {high_drop_prob}")
        inner = channels // reduction
        self.low_projection = nn.Sequential(
            *_pw_bn(low_channels, channels, bias=False), nn.GELU(), nn.AvgPool2d(pool, pool)
        )
        self.local_attention = nn.Sequential(
            *_pw_bn(channels, inner, bias=True), nn.GELU(), *_pw_bn(inner, channels, bias=True)
        )
        self.global_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            *_pw_bn(channels, inner, bias=True),
            nn.GELU(),
            *_pw_bn(inner, channels, bias=True),
        )
        # Block size 1 on the 7x7 stage-5 map: DropBlock degenerates to spatial dropout, as in the paper.
        self.high_dropblock = DropBlock2d(p=high_drop_prob, block_size=1)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        low = self.low_projection(low)
        if low.shape[-2:] != high.shape[-2:]:
            raise ValueError(
                f"pooled stage-2 map {tuple(low.shape[-2:])} does not match stage 5 {tuple(high.shape[-2:])}"
            )
        merge = low + high
        weight = torch.sigmoid(self.local_attention(merge) + self.global_attention(merge))
        return low * (1 - weight) + self.high_dropblock(high) * weight


class AuxiliaryHead(nn.Module):
    """Training-only classifier on an intermediate stage (paper section 3.7)."""

    def __init__(self, in_channels: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(*_pw_bn(in_channels, hidden, bias=False), nn.GELU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.body(x), 1))


@dataclass(frozen=True)
class FastMpoxNetConfig:
    """Architecture arguments; stored in every checkpoint so the network can be rebuilt exactly."""

    num_classes: int = 4
    stage_repeats: tuple[int, ...] = (4, 8, 4)
    stage_channels: tuple[int, ...] = (24, 48, 96, 192, 256)
    fusion_reduction: int = 4
    low_drop_prob: float = 0.1
    low_block_size: int = 4
    high_drop_prob: float = 0.1
    aux_heads: bool = True

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if len(self.stage_repeats) != 3:
            raise ValueError(f"stage_repeats needs 3 entries (stages 2-4), got {self.stage_repeats}")
        if len(self.stage_channels) != 5:
            raise ValueError(f"stage_channels needs 5 entries (stem, stages 2-4, conv5), got {self.stage_channels}")
        if any(r < 1 for r in self.stage_repeats) or any(c < 2 for c in self.stage_channels):
            raise ValueError("stage repeats and channels must be positive")
        for prob in (self.low_drop_prob, self.high_drop_prob):
            if not 0.0 <= prob < 1.0:
                raise ValueError(f"drop probabilities must be in [0, 1), got {prob}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stage_repeats"] = list(self.stage_repeats)
        data["stage_channels"] = list(self.stage_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FastMpoxNetConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("stage_repeats", "stage_channels"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


@dataclass(frozen=True)
class FastMpoxNetOutput:
    """Training-mode output: main logits plus the auxiliary heads' logits (stage 2, stage 3)."""

    logits: Tensor
    aux_logits: tuple[Tensor, ...]


class FastMpoxNet(nn.Module):
    def __init__(self, config: FastMpoxNetConfig) -> None:
        super().__init__()
        self.config = config
        stem, c2, c3, c4, c5 = config.stage_channels
        r2, r3, r4 = config.stage_repeats
        self.conv1 = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.GELU())
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage2 = _stage(stem, c2, r2)
        self.low_dropblock = DropBlock2d(p=config.low_drop_prob, block_size=config.low_block_size)
        self.stage3 = _stage(c2, c3, r3)
        self.stage4 = _stage(c3, c4, r4)
        self.conv5 = nn.Sequential(nn.Conv2d(c4, c5, 1, bias=False), nn.BatchNorm2d(c5), nn.GELU())
        # stage 2 is at 1/8 of the input, stage 5 at 1/32.
        self.fusion = ABLGFM(
            low_channels=c2,
            channels=c5,
            reduction=config.fusion_reduction,
            pool=4,
            high_drop_prob=config.high_drop_prob,
        )
        self.fc = nn.Linear(c5, config.num_classes)
        self.aux_heads = (
            nn.ModuleList([AuxiliaryHead(c2, config.num_classes), AuxiliaryHead(c3, config.num_classes)])
            if config.aux_heads
            else None
        )

    def _stages(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        low = self.low_dropblock(self.stage2(self.maxpool(self.conv1(x))))
        mid = self.stage3(low)
        high = self.conv5(self.stage4(mid))
        return low, mid, high

    def forward_features(self, x: Tensor) -> Tensor:
        """The ABLGFM output (N x 256 x H/32 x W/32): the Grad-CAM layer."""
        low, _, high = self._stages(x)
        return self.fusion(low, high)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features.mean(dim=(2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_train(self, x: Tensor) -> FastMpoxNetOutput:
        """Main and auxiliary logits, for the training loss (paper section 3.7)."""
        low, mid, high = self._stages(x)
        logits = self.forward_head(self.fusion(low, high))
        aux: tuple[Tensor, ...] = ()
        if self.aux_heads is not None:
            aux = (self.aux_heads[0](low), self.aux_heads[1](mid))
        return FastMpoxNetOutput(logits=logits, aux_logits=aux)

    def inference_model(self) -> FastMpoxNet:
        """A copy without auxiliary heads, in eval mode: what is shipped and served."""
        clone = FastMpoxNet(FastMpoxNetConfig.from_dict({**self.config.to_dict(), "aux_heads": False}))
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("aux_heads.")}
        clone.load_state_dict(state)
        return clone.eval()


def fast_mpoxnet(*, num_classes: int = 4, aux_heads: bool = True, **overrides: Any) -> FastMpoxNet:
    """Build Fast-MpoxNet with randomly initialised weights (see ``load_backbone_weights``)."""
    config = FastMpoxNetConfig(num_classes=num_classes, aux_heads=aux_heads, **overrides)
    return FastMpoxNet(config)


BACKBONE_PREFIXES = ("conv1.", "stage2.", "stage3.", "stage4.")


def load_backbone_weights(model: nn.Module, path: str) -> list[str]:
    """Load the offline ImageNet-style ShuffleNetV2-x0.5 stem and stages 2-4 (torchvision key layout).

    Returns the names of the parameters that were loaded. Raises ``ValueError`` when the file has none of the
    expected keys or a shape does not fit, so that a wrong file never silently leaves the backbone random.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    picked: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(BACKBONE_PREFIXES) or key not in target:
            continue
        if target[key].shape != value.shape:
            raise ValueError(
                f"backbone weight {key} has shape {tuple(value.shape)}, model expects {tuple(target[key].shape)}"
            )
        picked[key] = value
    expected = [k for k in target if k.startswith(BACKBONE_PREFIXES)]
    missing = sorted(set(expected) - set(picked))
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} backbone weights, for example {missing[0]}")
    model.load_state_dict(picked, strict=False)
    return sorted(picked)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


BASELINES = ("fast_mpoxnet", "shufflenet_v2_x0_5", "mobilenet_v3_small")


def build_model(name: str, *, num_classes: int, aux_heads: bool = True) -> nn.Module:
    """Any model the cross-validation compares, by name; all have random weights."""
    from torchvision import models

    if name == "fast_mpoxnet":
        return fast_mpoxnet(num_classes=num_classes, aux_heads=aux_heads)
    if name == "shufflenet_v2_x0_5":
        return models.shufflenet_v2_x0_5(weights=None, num_classes=num_classes)
    if name == "mobilenet_v3_small":
        return models.mobilenet_v3_small(weights=None, num_classes=num_classes)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(BASELINES)}")
