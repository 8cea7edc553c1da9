"""Grad-CAM heatmaps for Fast-MpoxNet from the forward pass alone, and their rendering as PNG.

The main head is global average pooling followed by a linear layer, so the gradient of class ``c``'s logit with
respect to the ABLGFM output ``A`` (C x H x W) is ``fc.weight[c] / (H * W)`` at every position. Grad-CAM's channel
weights (the spatial mean of that gradient) are therefore ``fc.weight[c] / (H * W)`` and

    Grad-CAM_c = ReLU(sum_k fc.weight[c, k] / (H * W) * A_k)

which is class activation mapping (Zhou et al., 2016): no backward pass is needed, and the ONNX backend gets the
heatmap from the feature map it already returns. The normalisation and upsampling copy ``pytorch_grad_cam`` exactly
(``tests/ml/test_cam.py`` holds the two equal).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from isal import isal_zlib
from PIL import Image

from ml.imaging import as_rgb, centre_crop_box, open_image

if TYPE_CHECKING:  # ml.checkpoint loads torch, which rendering does not need
    from ml.checkpoint import Preprocessing

__all__ = ["class_activation_maps", "heatmap_png", "overlay_png"]

# The overlay is rendered at the photo's own resolution inside the crop, up to this many pixels a side.
OVERLAY_MAX_SIDE = 512


def class_activation_maps(
    features: np.ndarray, fc_weight: np.ndarray, class_indices: np.ndarray | list[int], *, size: int
) -> np.ndarray:
    """Heatmaps (N x size x size, float32 in [0, 1]) for ``features`` (N x C x H x W) and one class per image.

    Equal to ``pytorch_grad_cam.GradCAM`` on the layer that produced ``features`` with ``ClassifierOutputTarget``.
    """
    if features.ndim != 4:
        raise ValueError(f"features must be N x C x H x W, got shape {features.shape}")
    batch, _, height, width = features.shape
    indices = np.asarray(class_indices, dtype=np.int64)
    if indices.shape != (batch,):
        raise ValueError(f"need one class index per image: {batch} images, {indices.shape} indices")
    weights = fc_weight[indices].astype(np.float32) / np.float32(height * width)
    flat = features.astype(np.float32, copy=False).reshape(batch, -1, height * width)
    cams = np.maximum(np.matmul(weights[:, None, :], flat).reshape(batch, height, width), 0)
    out = np.empty((batch, size, size), dtype=np.float32)
    for i, cam in enumerate(cams):
        # pytorch_grad_cam normalises per layer, resizes, then normalises again after averaging the layers. The
        # second pass works in place (fresh 200 kB temporaries cost more than the arithmetic) and takes the minimum
        # and maximum in one OpenCV pass: max(x - min) is max - min exactly, since rounding is monotonic.
        cv2.resize(_normalise(cam), (size, size), dst=out[i], interpolation=cv2.INTER_LINEAR)
        low, high = (np.float32(v) for v in cv2.minMaxLoc(out[i])[:2])
        out[i] -= low
        out[i] /= np.float32(1e-7) + (high - low)
    return out


def overlay_png(
    image: bytes | str | Path | Image.Image,
    heatmap: np.ndarray,
    *,
    alpha: float = 0.45,
    preprocessing: Preprocessing | None = None,
) -> bytes:
    """The region of the photo the model saw (the centre crop), with the jet-coloured heatmap blended on top, as PNG.

    The crop is taken from the photo at up to ``OVERLAY_MAX_SIDE`` pixels a side rather than at the model's input
    size, so the overlay stays sharp. ``alpha`` is the heatmap's weight in the blend.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if preprocessing is None:
        from ml.checkpoint import Preprocessing

        preprocessing = Preprocessing()
    if isinstance(image, Image.Image):
        photo = as_rgb(image)
    else:
        photo = open_image(
            image, target_short_side=-(-OVERLAY_MAX_SIDE * preprocessing.resize // preprocessing.input_size)
        )
    left, top, right, bottom = centre_crop_box(photo.size, preprocessing)
    side = max(1, min(OVERLAY_MAX_SIDE, round(right - left)))
    if side == round(right - left):
        # At the photo's own scale (a phone JPEG decoded at reduced scale, most PNGs) the crop is cut at the nearest
        # whole pixel instead of resampled: half a pixel off at most, and 2 ms less for a 640 x 480 photo.
        width, height = photo.size
        x, y = min(round(left), width - side), min(round(top), height - side)
        pixels = np.asarray(photo)[y : y + side, x : x + side]
    else:
        box = (left, top, right, bottom)
        pixels = np.asarray(photo.resize((side, side), Image.Resampling.BILINEAR, box=box))
    colours = _jet(cv2.resize(_as_heatmap(heatmap), (side, side), interpolation=cv2.INTER_LINEAR))
    # Blended by OpenCV on 8-bit RGB: one pass (1.5 ms at 480 x 480) where numpy's float32 arithmetic took eight
    # (9-13 ms); the rounding differs by at most 1 in a few pixels in 10,000.
    return _png(cv2.addWeighted(pixels, 1.0 - alpha, colours, alpha, 0.0))


def heatmap_png(heatmap: np.ndarray) -> bytes:
    """The jet-coloured heatmap alone as an RGBA PNG, to lay over the centre crop of the photo.

    Opacity follows the heat (0 where the map is 0, opaque at 1), so cold regions leave the photo visible; the
    site's opacity slider scales it further. It covers the square ``ml.imaging.centre_crop_box`` gives.
    """
    values = _as_heatmap(heatmap)
    return _png(np.dstack([_jet(values), np.rint(values * 255).astype(np.uint8)]))


def _normalise(cam: np.ndarray) -> np.ndarray:
    cam = cam - np.min(cam)
    return cam / (1e-7 + np.max(cam))


def _as_heatmap(heatmap: np.ndarray) -> np.ndarray:
    values = np.asarray(heatmap, dtype=np.float32)
    if values.ndim != 2 or min(values.shape) < 1:
        raise ValueError(f"heatmap must be a non-empty H x W array, got shape {values.shape}")
    return np.clip(np.nan_to_num(values), 0.0, 1.0)


def _jet(values: np.ndarray) -> np.ndarray:
    """H x W in [0, 1] to H x W x 3 uint8 RGB through OpenCV's jet colour map (as pytorch_grad_cam draws it)."""
    return cv2.cvtColor(cv2.applyColorMap(np.rint(values * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


_PNG_COLOUR_TYPES = {3: 2, 4: 6}  # channels -> PNG colour type (RGB, RGBA)


def _png(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB or RGBA image (H x W x 3 or 4 uint8) as PNG, written for speed: every row with the Sub filter
    (the difference to the pixel on the left, which suits both smooth heatmaps and photos) and ISA-L's deflate at
    level 2. A worker writes two of these per photo: 1.3 ms in all at 375 + 224 px, where libpng and Pillow took
    11-13 ms for files as small (one filter tried per row instead of five, a faster deflate than zlib's)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in _PNG_COLOUR_TYPES:
        raise ValueError(f"expected H x W x 3 or 4 uint8 pixels, got {pixels.dtype} {pixels.shape}")
    height, width, channels = pixels.shape
    rows = np.empty((height, width * channels + 1), np.uint8)
    rows[:, 0] = 1  # filter type Sub
    filtered = rows[:, 1:].reshape(height, width, channels)
    filtered[:, 0] = pixels[:, 0]
    np.subtract(pixels[:, 1:], pixels[:, :-1], out=filtered[:, 1:])  # modulo 256, as PNG defines it
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", isal_zlib.compress(rows.data, 2)),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
