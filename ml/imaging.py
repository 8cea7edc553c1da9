"""Decoding uploaded photos: safe, upright, 8-bit RGB, and fast for large phone JPEGs.

Every failure is an ``ImageError`` whose message a nurse can act on; no Pillow exception type escapes. The pixel
count is checked from the header before any pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:  # importing ml.checkpoint at run time would load torch into the web process
    from ml.checkpoint import Preprocessing


__all__ = [
    "ALLOWED_FORMATS",
    "CHECK_SHORT_SIDE",
    "MAX_BYTES",
    "MAX_PIXELS",
    "CorruptImageError",
    "ImageError",
    "ImageTooLargeError",
    "NotAnImageError",
    "UnsupportedFormatError",
    "as_rgb",
    "centre_crop",
    "centre_crop_box",
    "decoded_size",
    "image_format",
    "open_image",
    "strip_metadata",
    "strip_metadata_and_decode",
]

logger = logging.getLogger(__name__)

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
# A JPEG upload is checked by a decode at the scale a model resizing its short side to this many pixels reads it
# (ml.checkpoint.Preprocessing's default), so that the check's decode can serve the model as well.
CHECK_SHORT_SIDE = 224
_ORIENTATION = 0x0112
MAX_PIXELS = 50_000_000
MAX_BYTES = 20 * 1024 * 1024

# Containers Pillow cannot identify but a phone may send; named so the message says what to do instead.
_KNOWN_UNSUPPORTED = {b"ftypheic": "HEIC", b"ftypheix": "HEIC", b"ftypmif1": "HEIF", b"ftypmsf1": "HEIF"}
_DAMAGED = "The photo file is damaged or incomplete. Please take or send it again."
# What Pillow's decoders and EXIF parser raise for damaged files; none of it may reach the caller as is.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    MemoryError,
)


class ImageError(ValueError):
    """The upload cannot be used as a photo; ``str(exc)`` is a sentence a nurse understands."""


class NotAnImageError(ImageError):
    pass


class UnsupportedFormatError(ImageError):
    pass


class CorruptImageError(ImageError):
    pass


class ImageTooLargeError(ImageError):
    pass


def open_image(
    data: bytes | str | Path,
    *,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
    target_short_side: int | None = None,
) -> Image.Image:
    """Decode ``data`` (the file's bytes or its path) into an upright 8-bit RGB image.

    EXIF orientation is applied; CMYK, grayscale, 16-bit, palette and alpha images (composited on white) become
    RGB. With ``target_short_side``, a JPEG is decoded at the smallest DCT scale whose short side is still at least
    that long (Pillow draft mode: a 12 MP photo decodes about five times faster); other formats decode in full.
    Raises an ``ImageError`` subclass for anything that is not a usable JPEG, PNG or WebP.
    """
    image, _ = _decode(_read(data, max_bytes), max_pixels=max_pixels, target_short_side=target_short_side)
    return image


def image_format(data: bytes) -> str:
    """``"JPEG"``, ``"PNG"`` or ``"WEBP"`` once the whole file has decoded; raises the same errors as ``open_image``.

    A JPEG is decoded at reduced scale, which still reads every byte of it, so truncation is caught cheaply.
    """
    _, fmt = _decode(_read(data, MAX_BYTES), max_pixels=MAX_PIXELS, target_short_side=1)
    return fmt


def strip_metadata(data: bytes) -> bytes:
    """Re-encode an upload in its own format without EXIF (GPS included), XMP, comments, text chunks or ICC profile.

    The orientation is baked into the pixels and, when the photo carries a colour profile, the pixels are converted
    to sRGB first so the stored copy looks the same without the profile. JPEG and WebP are written at quality 95.
    An upright JPEG without a profile and a plain 8-bit PNG keep their compressed pixels: only metadata is dropped.
    """
    return strip_metadata_and_decode(data)[0]


def strip_metadata_and_decode(
    data: bytes, *, target_short_side: int = CHECK_SHORT_SIDE
) -> tuple[bytes, Image.Image | None]:
    """``strip_metadata``, plus the stored copy decoded as ``open_image(stored, target_short_side=...)`` decodes it,
    when checking the upload produced exactly that for free (a JPEG or a plain PNG stored without re-encoding);
    otherwise ``None``.

    The decode that checks a JPEG is also most of a worker's work on it (28 of 45 ms for a 12 MP photo), and a PNG's
    is most of the rest (3 ms at 640 x 480): handing it on saves doing it twice.
    """
    data = _read(data, MAX_BYTES)
    if _jpeg_is_plain_upright(data):
        # Decoding at reduced scale (draft mode) still reads every compressed byte, so a truncated or corrupt file
        # fails here, at a fraction of a full decode's cost; the stored pixels are the original's, unchanged. The
        # copy itself is decoded, so what is stored is what was checked.
        stored = _jpeg_without_metadata(data)
        decoded, _ = _decode(stored, max_pixels=MAX_PIXELS, target_short_side=target_short_side)
        return stored, decoded
    plain_png = _png_without_metadata(data)
    if plain_png is not None:
        # Re-encoding a photo-sized PNG costs ten to twenty times this decode. open_image never scales a PNG down,
        # so the full decode is what it gives whatever the target.
        decoded, _ = _decode(plain_png, max_pixels=MAX_PIXELS, target_short_side=None)
        return plain_png, decoded
    image, fmt = _decode(data, max_pixels=MAX_PIXELS, target_short_side=None)
    icc = image.info.get("icc_profile")
    if isinstance(icc, bytes) and icc:
        image = _to_srgb(image, icc)
    image.info = {}
    out = io.BytesIO()
    if fmt == "PNG":
        image.save(out, format="PNG")
    else:
        image.save(out, format=fmt, quality=95)
    return out.getvalue(), None


def decoded_size(data: bytes, *, target_short_side: int | None = None) -> tuple[int, int]:
    """The size of ``open_image(data, target_short_side=...)``, read from the header: nothing is decoded (except
    for a PNG with ancillary chunks, whose EXIF may follow the pixels)."""
    data = _read(data, MAX_BYTES)
    image = _open_checked(data, max_pixels=MAX_PIXELS)
    try:
        if target_short_side is not None and image.format == "JPEG":
            _draft(image, target_short_side)
        width, height = image.size
        # A PNG of critical chunks alone (what strip_metadata stores) has nowhere to hold an orientation; for any
        # other, Pillow decodes the whole image to look for EXIF after the pixels.
        plain_png = image.format == "PNG" and _png_has_only_critical_chunks(data)
        turned = not plain_png and image.getexif().get(_ORIENTATION) in (5, 6, 7, 8)
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(_DAMAGED) from exc
    finally:
        image.close()
    return (height, width) if turned else (width, height)


# JPEG markers kept when metadata is dropped: JFIF (APP0) and Adobe (APP14, it says how the colours are coded).
_JPEG_KEPT_APP_MARKERS = {0xE0, 0xEE}
_JPEG_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}


def _jpeg_is_plain_upright(data: bytes) -> bool:
    """A JPEG whose pixels need no change to be stored: upright, RGB or grey, with no colour profile."""
    if not data.startswith(b"\xff\xd8"):
        return False
    try:
        with Image.open(io.BytesIO(data)) as header:
            orientation = header.getexif().get(_ORIENTATION, 1)
            return header.mode in ("RGB", "L") and orientation in (1, None) and not header.info.get("icc_profile")
    except Exception:  # any doubt (odd EXIF, unreadable header): take the re-encoding path, which reports errors
        return False


def _jpeg_without_metadata(data: bytes) -> bytes:
    """Copy a JPEG segment by segment, leaving out EXIF/GPS, XMP, IPTC, ICC and comments; the compressed pixel
    data (everything from the start-of-scan marker on) is copied unchanged, so nothing is lost to re-encoding."""
    view = memoryview(data)  # slices of it copy nothing: the kept parts are copied once, by the final join
    kept = [view[:2]]
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise CorruptImageError(_DAMAGED)
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is image data
            kept.append(view[i:])
            return b"".join(kept)
        if marker in _JPEG_STANDALONE_MARKERS:
            kept.append(view[i : i + 2])
            i += 2
            continue
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        is_metadata = (0xE1 <= marker <= 0xEF and marker not in _JPEG_KEPT_APP_MARKERS) or marker == 0xFE
        if not is_metadata:
            kept.append(view[i:end])
        i = end
    raise CorruptImageError(_DAMAGED)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ancillary chunks that change the pixels a viewer sees (colour profile, transparency, animation, EXIF with its
# orientation): a PNG carrying one is re-encoded instead, with the change baked in.
_PNG_PIXEL_CHUNKS = {b"iCCP", b"tRNS", b"acTL", b"eXIf"}
_PNG_TEXT_CHUNKS = {b"tEXt", b"zTXt", b"iTXt"}


def _png_without_metadata(data: bytes) -> bytes | None:
    """An 8-bit grey or RGB PNG reduced to its critical chunks (header, palette, image data, end), or ``None`` when
    the file needs re-encoding: another sample format, a chunk that changes the pixels, EXIF or XMP (where Pillow
    finds an orientation) in a text chunk, or anything malformed (a bad length or CRC, no end chunk).

    Text, time, physical size, gamma and every other ancillary chunk are dropped, as is anything after the end.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return None
    view = memoryview(data)  # slices of it copy nothing
    out = bytearray(_PNG_SIGNATURE)
    i = len(_PNG_SIGNATURE)
    while i + 12 <= len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if end > len(data) or zlib.crc32(view[i + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return None
        body = view[i + 8 : end - 4]
        if i == len(_PNG_SIGNATURE) and (
            kind != b"IHDR" or length != 13 or bytes(body[8:10]) not in (b"\x08\x00", b"\x08\x02")
        ):
            return None
        if kind in _PNG_PIXEL_CHUNKS:
            return None
        if kind in _PNG_TEXT_CHUNKS:
            keyword = bytes(body[:80]).split(b"\0", 1)[0].lower()  # keywords are 1 to 79 bytes
            if b"exif" in keyword or b"xmp" in keyword:
                return None
        elif kind[0] & 0x20 == 0:  # critical (upper-case first letter): kept
            out += view[i:end]
        if kind == b"IEND":
            return bytes(out)
        i = end
    return None


def _png_has_only_critical_chunks(data: bytes) -> bool:
    """Whether a PNG's chunks, up to its end chunk, are all critical (header, palette, image data, end). Only the
    chunk lengths are read: a damaged file still fails where its pixels are decoded."""
    i = len(_PNG_SIGNATURE)
    while i + 12 <= len(data):
        kind = data[i + 4 : i + 8]
        if kind[0] & 0x20:  # ancillary (lower-case first letter)
            return False
        if kind == b"IEND":
            return True
        i += 12 + int.from_bytes(data[i : i + 4], "big")
    return False


def as_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB: EXIF orientation applied, alpha composited on white, 16-bit samples scaled down."""
    upright = ImageOps.exif_transpose(image)
    mode = upright.mode
    if mode == "RGB":
        return upright
    if mode == "P":
        upright = upright.convert("RGBA" if "transparency" in upright.info else "RGB")
        mode = upright.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        samples = np.asarray(upright, dtype=np.float64)
        # 16-bit grayscale: Pillow's own convert would clip everything above 255 to white.
        scale = 257.0 if mode.startswith("I;16") or samples.max(initial=0) > 255 else 1.0
        gray = np.clip(np.rint(samples / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = upright.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return upright.convert("RGB")
    except ValueError as exc:
        raise UnsupportedFormatError(
            f"This photo uses a colour format ({mode}) the app cannot read. Please send it as an ordinary JPEG."
        ) from exc


def centre_crop_box(size: tuple[int, int], preprocessing: Preprocessing) -> tuple[float, float, float, float]:
    """The region (left, top, right, bottom), in pixels of an image of ``size``, that the model sees.

    The same square ``centre_crop`` takes after resizing the short side to ``preprocessing.resize``.
    """
    width, height = size
    scale = preprocessing.resize / min(width, height)
    resized_w, resized_h = _resized_size(size, preprocessing)
    crop = preprocessing.input_size
    left, top = (resized_w - crop) // 2, (resized_h - crop) // 2
    return (left / scale, top / scale, (left + crop) / scale, (top + crop) / scale)


def centre_crop(image: Image.Image, preprocessing: Preprocessing) -> Image.Image:
    """Resize the short side to ``preprocessing.resize`` (bilinear), then take the central ``input_size`` square.

    Rounding and offsets follow ``ml.data.centre_crop``, the view the model was evaluated on during training.
    """
    resized_w, resized_h = _resized_size(image.size, preprocessing)
    resized = image.resize((resized_w, resized_h), Image.Resampling.BILINEAR)
    crop = preprocessing.input_size
    left, top = (resized_w - crop) // 2, (resized_h - crop) // 2
    return resized.crop((left, top, left + crop, top + crop))


def _resized_size(size: tuple[int, int], preprocessing: Preprocessing) -> tuple[int, int]:
    width, height = size
    scale = preprocessing.resize / min(width, height)
    crop = preprocessing.input_size
    return max(crop, round(width * scale)), max(crop, round(height * scale))


def _read(data: bytes | str | Path, max_bytes: int) -> bytes:
    if isinstance(data, str | Path):
        path = Path(data)
        if path.stat().st_size > max_bytes:
            raise ImageTooLargeError(_too_many_bytes(max_bytes))
        data = path.read_bytes()
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes or a path, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise NotAnImageError("The file is empty. Please choose the photo again.")
    if len(data) > max_bytes:
        raise ImageTooLargeError(_too_many_bytes(max_bytes))
    return data


def _decode(data: bytes, *, max_pixels: int, target_short_side: int | None) -> tuple[Image.Image, str]:
    image = _open_checked(data, max_pixels=max_pixels)
    fmt = str(image.format)
    try:
        if target_short_side is not None and fmt == "JPEG":
            _draft(image, target_short_side)
        image.load()
        rgb = as_rgb(image)
        # Some conversions drop ``info``; the colour profile is kept for strip_metadata's sRGB conversion.
        if image.info.get("icc_profile"):
            rgb.info["icc_profile"] = image.info["icc_profile"]
        return rgb, fmt
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(_too_many_pixels(max_pixels)) from exc
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(_DAMAGED) from exc
    finally:
        image.close()


def _open_checked(data: bytes, *, max_pixels: int) -> Image.Image:
    """Identify the format and check the header's pixel count; nothing is decoded yet."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(_too_many_pixels(max_pixels)) from exc
    except UnidentifiedImageError as exc:
        brand = _KNOWN_UNSUPPORTED.get(data[4:12])
        if brand:
            raise UnsupportedFormatError(
                f"{brand} photos are not supported. Please send the photo as JPEG (on iPhone: Settings, Camera, "
                "Formats, Most Compatible)."
            ) from exc
        raise NotAnImageError("This file is not a photo. Please upload a JPEG, PNG or WebP image.") from exc
    except _DECODE_ERRORS as exc:
        raise CorruptImageError(_DAMAGED) from exc
    if image.format not in ALLOWED_FORMATS:
        fmt = image.format or "unknown"
        image.close()
        raise UnsupportedFormatError(f"{fmt} images are not supported. Please upload a JPEG, PNG or WebP photo.")
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise CorruptImageError(_DAMAGED)
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(_too_many_pixels(max_pixels))
    return image


def _draft(image: Image.Image, target_short_side: int) -> None:
    width, height = image.size
    short = min(width, height)
    if short <= target_short_side:
        return
    # draft() picks the smallest 1/2, 1/4 or 1/8 scale that is at least the requested size in both dimensions.
    requested = (math.ceil(width * target_short_side / short), math.ceil(height * target_short_side / short))
    image.draft("RGB", requested)


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        # A broken profile: the pixels are kept as they are, which is what a browser ignoring it would show.
        logger.warning("ignoring an unreadable ICC colour profile while stripping metadata", exc_info=True)
        return image
    return converted if converted is not None else image


def _too_many_pixels(max_pixels: int) -> str:
    return (
        f"The photo has too many pixels (the limit is {max_pixels / 1e6:.0f} megapixels). Please send a smaller photo."
    )


def _too_many_bytes(max_bytes: int) -> str:
    return f"The file is too large (the limit is {max_bytes / 1024 / 1024:.0f} MB). Please send a smaller photo."
