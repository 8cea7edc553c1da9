from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, PngImagePlugin

from ml.checkpoint import Preprocessing
from ml.imaging import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    UnsupportedFormatError,
    centre_crop,
    centre_crop_box,
    decoded_size,
    image_format,
    open_image,
    strip_metadata,
    strip_metadata_and_decode,
)
from tests.ml.factories import encode, photo

ORIENTATION = 0x0112


def halves(width: int = 40, height: int = 20) -> Image.Image:
    """Red on the left, blue on the right: where the red ends up shows how the photo was turned."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, width // 2, height))
    return image


def with_orientation(image: Image.Image, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return encode(image, fmt, exif=exif.tobytes())


def png_claiming_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims ``width`` x ``height`` pixels (a pixel-flood file)."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = 8 + 4  # signature, then the IHDR chunk's length
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 4 + 13]))
    data[ihdr + 4 + 13 : ihdr + 4 + 17] = struct.pack(">I", crc)
    return bytes(data)


def rgb_at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def test_it_decodes_jpeg_png_and_webp_to_rgb_at_full_size() -> None:
    for fmt in ("JPEG", "PNG", "WEBP"):
        image = open_image(encode(photo(64, 48), fmt))
        assert (image.mode, image.size) == ("RGB", (64, 48)), fmt


def test_it_reads_a_path_as_well_as_bytes(tmp_path) -> None:
    path = tmp_path / "lesion.png"
    path.write_bytes(encode(photo(32, 24), "PNG"))
    assert open_image(path).tobytes() == open_image(str(path)).tobytes() == open_image(path.read_bytes()).tobytes()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_it_turns_the_photo_upright_from_its_exif_orientation(fmt) -> None:
    # Orientation 6: the camera was turned, the picture must be rotated 90 degrees clockwise to be upright.
    image = open_image(with_orientation(halves(), fmt, 6))
    assert image.size == (20, 40)
    top, bottom = rgb_at(image, (10, 5)), rgb_at(image, (10, 35))
    assert top[0] > 200 > top[2]
    assert bottom[2] > 200 > bottom[0]


def test_it_converts_a_cmyk_jpeg_to_rgb() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # red
    image = open_image(encode(cmyk, "JPEG", quality=95))
    assert image.mode == "RGB"
    red, green, blue = rgb_at(image, (16, 16))
    assert red > 230
    assert green < 30
    assert blue < 30


def test_it_converts_grayscale_to_rgb() -> None:
    image = open_image(encode(Image.new("L", (16, 16), 90), "PNG"))
    assert image.mode == "RGB"
    assert rgb_at(image, (3, 3)) == (90, 90, 90)


def test_it_scales_a_16_bit_grayscale_png_down_instead_of_clipping_it() -> None:
    samples = np.full((8, 8), 128 * 257, dtype=np.uint16)
    samples[0, 0] = 65535
    image = open_image(encode(Image.fromarray(samples), "PNG"))
    assert image.mode == "RGB"
    assert rgb_at(image, (4, 4)) == (128, 128, 128)
    assert rgb_at(image, (0, 0)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("mode", "colour", "expected"),
    [
        ("RGBA", (255, 0, 0, 0), (255, 255, 255)),
        ("RGBA", (255, 0, 0, 128), (255, 127, 127)),
        ("LA", (0, 0), (255, 255, 255)),
        ("LA", (0, 255), (0, 0, 0)),
    ],
)
def test_it_composites_transparency_on_white(mode, colour, expected) -> None:
    image = open_image(encode(Image.new(mode, (8, 8), colour), "PNG"))
    assert image.mode == "RGB"
    assert all(abs(a - b) <= 1 for a, b in zip(rgb_at(image, (4, 4)), expected, strict=True))


def test_it_converts_a_palette_png_with_a_transparent_colour() -> None:
    palette_image = halves().convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    red_index = palette_image.getpixel((0, 0))
    image = open_image(encode(palette_image, "PNG", transparency=red_index))
    assert rgb_at(image, (0, 0)) == (255, 255, 255)
    assert rgb_at(image, (39, 0)) == (0, 0, 255)


def test_it_decodes_a_large_jpeg_at_reduced_scale_but_never_below_the_target() -> None:
    data = encode(photo(2000, 1500), "JPEG", quality=85)
    image = open_image(data, target_short_side=224)
    assert image.size == (500, 375)  # 1/4 scale: 1/8 would leave a short side of 187 < 224
    assert open_image(data, target_short_side=1000).size == (2000, 1500)


def test_reduced_scale_decoding_keeps_the_exif_orientation() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    image = open_image(encode(photo(1600, 800), "JPEG", exif=exif.tobytes()), target_short_side=200)
    assert image.size == (200, 400)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"Dear colleague, the photo follows tomorrow.\n",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n",
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    ],
    ids=["zero-byte", "text", "pdf", "random-bytes"],
)
def test_it_says_when_a_file_is_not_an_image(data) -> None:
    with pytest.raises(NotAnImageError, match=r"^The file is empty\.|^This file is not a photo\."):
        open_image(data)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_it_rejects_real_images_in_formats_the_site_does_not_take(fmt) -> None:
    with pytest.raises(UnsupportedFormatError, match=f"{fmt} images are not supported"):
        open_image(encode(photo(16, 16), fmt))


def test_it_names_heic_when_an_iphone_sends_one() -> None:
    heic_header = struct.pack(">I", 24) + b"ftypheic" + b"\0" * 64
    with pytest.raises(UnsupportedFormatError, match="HEIC photos are not supported"):
        open_image(heic_header)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_it_rejects_a_truncated_file(fmt) -> None:
    data = encode(photo(256, 256), fmt)
    with pytest.raises(CorruptImageError, match="damaged or incomplete"):
        open_image(data[: len(data) // 2])


def test_it_rejects_a_truncated_jpeg_even_at_reduced_scale() -> None:
    data = encode(photo(1024, 1024), "JPEG")
    with pytest.raises(CorruptImageError):
        open_image(data[: len(data) * 2 // 3], target_short_side=64)


@pytest.mark.parametrize(("width", "height"), [(8000, 8000), (100_000, 100_000)], ids=["over-limit", "bomb"])
def test_it_rejects_a_pixel_flood_from_the_header_alone(width, height) -> None:
    with pytest.raises(ImageTooLargeError, match="too many pixels"):
        open_image(png_claiming_size(width, height))


def test_it_enforces_the_pixel_and_byte_limits_it_is_given() -> None:
    data = encode(photo(100, 100), "PNG")
    with pytest.raises(ImageTooLargeError, match="too many pixels"):
        open_image(data, max_pixels=9_999)
    with pytest.raises(ImageTooLargeError, match="too large"):
        open_image(data, max_bytes=len(data) - 1)


def test_no_pillow_exception_escapes_from_damaged_files() -> None:
    rng = np.random.default_rng(1)
    originals = [encode(photo(48, 40), fmt) for fmt in ("JPEG", "PNG", "WEBP")]
    messages: set[str] = set()
    for original in originals:
        for _ in range(40):
            damaged = bytearray(original)
            for position in rng.integers(0, len(damaged), size=int(rng.integers(1, 8))):
                damaged[position] = int(rng.integers(0, 256))
            cut = int(rng.integers(1, len(damaged) + 1))
            try:
                assert open_image(bytes(damaged[:cut])).mode == "RGB"
            except ImageError as exc:
                messages.add(str(exc))
    assert messages
    assert all(message.endswith(".") for message in messages)


def test_image_format_names_the_verified_format() -> None:
    for fmt in ("JPEG", "PNG", "WEBP"):
        assert image_format(encode(photo(32, 32), fmt)) == fmt
    data = encode(photo(512, 512), "JPEG")
    with pytest.raises(CorruptImageError):
        image_format(data[: len(data) // 2])


def test_strip_metadata_removes_exif_gps_xmp_and_the_colour_profile_but_keeps_the_orientation() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "PhoneMaker"  # camera make
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPS latitude
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description>patient 4711</rdf:Description></x:xmpmeta>'
    original = encode(halves(), "JPEG", exif=exif.tobytes(), icc_profile=srgb, xmp=xmp, quality=95)

    cleaned = strip_metadata(original)

    with Image.open(io.BytesIO(cleaned)) as image:
        assert image.format == "JPEG"
        assert image.size == (20, 40)
        assert not image.getexif()
        assert "icc_profile" not in image.info
        assert "xmp" not in image.info
    assert b"PhoneMaker" not in cleaned
    assert b"patient 4711" not in cleaned
    top = rgb_at(open_image(cleaned), (10, 5))
    assert top[0] > 200 > top[2]


def test_strip_metadata_keeps_an_upright_jpeg_s_pixels_bit_for_bit_and_drops_its_gps() -> None:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPS latitude
    original = encode(photo(64, 48), "JPEG", exif=exif.tobytes(), comment=b"bed 12", quality=90)

    cleaned = strip_metadata(original)

    assert b"PhoneMaker" not in cleaned
    assert b"bed 12" not in cleaned
    assert len(cleaned) < len(original)
    with Image.open(io.BytesIO(cleaned)) as image:
        assert not image.getexif()
    # No re-encoding: the compressed image data is copied, so the decoded pixels are identical.
    assert np.array_equal(np.asarray(open_image(cleaned)), np.asarray(open_image(original)))


def test_strip_metadata_refuses_a_jpeg_whose_segments_are_cut_short() -> None:
    original = encode(photo(64, 48), "JPEG")
    with pytest.raises(ImageError):
        strip_metadata(original[:200])


def test_strip_metadata_drops_png_text_chunks_and_keeps_png() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "Ward 3, bed 12")
    cleaned = strip_metadata(encode(photo(16, 16), "PNG", pnginfo=info))
    with Image.open(io.BytesIO(cleaned)) as image:
        assert image.format == "PNG"
        assert "Comment" not in image.info
    assert b"Ward 3" not in cleaned


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of each chunk of a PNG."""
    chunks, i = [], 8
    while i < len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        chunks.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + length]))
        i += 12 + length
    return chunks


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_strip_metadata_keeps_a_plain_png_s_image_data_as_it_is_and_drops_the_rest(mode) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "Ward 3, bed 12")
    info.add_itxt("Author", "Nurse 7", zip=True)
    original = encode(photo(64, 48).convert(mode), "PNG", pnginfo=info, dpi=(300, 300)) + b"hidden after the end"

    cleaned = strip_metadata(original)

    # No re-encoding: the compressed image data is copied, and only the critical chunks are kept.
    assert [kind for kind, _ in png_chunks(cleaned)] == [b"IHDR", b"IDAT", b"IEND"]
    idat = b"".join(body for kind, body in png_chunks(original) if kind == b"IDAT")
    assert png_chunks(cleaned)[1] == (b"IDAT", idat)
    for secret in (b"Ward 3", b"Author", b"hidden", b"pHYs"):
        assert secret not in cleaned
    assert np.array_equal(np.asarray(open_image(cleaned)), np.asarray(open_image(original)))


@pytest.mark.parametrize("metadata", ["exif", "xmp", "icc"])
def test_strip_metadata_re_encodes_a_png_whose_metadata_changes_its_pixels(metadata) -> None:
    info = PngImagePlugin.PngInfo()
    extra: dict[str, object] = {"pnginfo": info}
    if metadata == "exif":  # an eXIf chunk with the orientation
        extra["exif"] = Image.Exif()
        extra["exif"][ORIENTATION] = 6  # type: ignore[index]
    elif metadata == "xmp":  # the orientation in XMP, which Pillow also reads
        info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>')
    else:
        extra["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    original = encode(halves(), "PNG", **extra)

    cleaned = strip_metadata(original)

    assert [kind for kind, _ in png_chunks(cleaned)] == [b"IHDR", b"IDAT", b"IEND"]
    assert np.array_equal(np.asarray(open_image(cleaned)), np.asarray(open_image(original)))
    assert open_image(cleaned).size == ((20, 40) if metadata != "icc" else (40, 20))


@pytest.mark.parametrize("damage", ["crc", "cut"])
def test_strip_metadata_rejects_a_damaged_png(damage) -> None:
    original = bytearray(encode(photo(64, 48), "PNG"))
    if damage == "crc":
        original[-20] ^= 0xFF  # inside the last IDAT chunk
    else:
        del original[len(original) // 2 :]
    with pytest.raises(CorruptImageError):
        strip_metadata(bytes(original))


def test_strip_metadata_and_decode_hands_on_the_check_s_decode_of_a_jpeg_stored_as_it_is() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPS latitude
    original = encode(photo(1600, 1200), "JPEG", exif=exif.tobytes(), quality=90)

    stored, decoded = strip_metadata_and_decode(original, target_short_side=224)

    assert stored == strip_metadata(original)
    assert decoded is not None
    expected = open_image(stored, target_short_side=224)
    assert decoded.size == expected.size == decoded_size(stored, target_short_side=224) == (400, 300)
    assert np.array_equal(np.asarray(decoded), np.asarray(expected))


def test_strip_metadata_and_decode_hands_on_the_check_s_decode_of_a_plain_png() -> None:
    original = encode(photo(640, 480), "PNG")

    stored, decoded = strip_metadata_and_decode(original, target_short_side=224)

    assert stored == strip_metadata(original)
    assert decoded is not None
    expected = open_image(stored, target_short_side=224)  # a PNG is never scaled down
    assert decoded.size == expected.size == decoded_size(stored, target_short_side=224) == (640, 480)
    assert np.array_equal(np.asarray(decoded), np.asarray(expected))


@pytest.mark.parametrize("kind", ["turned JPEG", "JPEG with a profile", "PNG with a profile"])
def test_strip_metadata_and_decode_hands_on_nothing_when_the_stored_copy_is_not_what_was_decoded(kind) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    if kind == "turned JPEG":
        original = with_orientation(photo(64, 48), "JPEG", 6)
    elif kind == "JPEG with a profile":
        original = encode(photo(64, 48), "JPEG", icc_profile=srgb)
    else:
        original = encode(photo(64, 48), "PNG", icc_profile=srgb)
    stored, decoded = strip_metadata_and_decode(original)
    assert stored == strip_metadata(original)
    assert decoded is None


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("size", [(1200, 900), (500, 950), (200, 150)])
@pytest.mark.parametrize("orientation", [1, 6])
@pytest.mark.parametrize("target", [None, 224, 256])
def test_decoded_size_is_the_size_open_image_gives(fmt, size, orientation, target) -> None:
    data = with_orientation(photo(*size), fmt, orientation)
    assert decoded_size(data, target_short_side=target) == open_image(data, target_short_side=target).size


def test_decoded_size_reads_a_plain_png_s_header_without_decoding_its_pixels() -> None:
    stored = strip_metadata(encode(photo(640, 480), "PNG"))
    pixels = stored.index(b"IDAT") + 4
    damaged = stored[:pixels] + b"\xff" * 64 + stored[pixels + 64 :]  # same chunk lengths; the pixels cannot be decoded
    assert decoded_size(damaged) == (640, 480)
    with pytest.raises(CorruptImageError):
        open_image(damaged)


def test_strip_metadata_rejects_what_open_image_rejects() -> None:
    with pytest.raises(NotAnImageError):
        strip_metadata(b"not a photo")


def test_the_crop_box_is_the_region_centre_crop_takes() -> None:
    image = Image.new("RGB", (300, 200), (255, 0, 0))
    image.paste((0, 255, 0), (50, 0, 250, 200))
    preprocessing = Preprocessing(input_size=224, resize=224)
    assert centre_crop_box(image.size, preprocessing) == pytest.approx((50, 0, 250, 200))
    crop = np.asarray(centre_crop(image, preprocessing))
    assert crop.shape == (224, 224, 3)
    assert (crop[:, 2:-2] == (0, 255, 0)).all()
