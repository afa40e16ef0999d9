"""nada.images: every kind of upload becomes an upright 8-bit RGB image, and bad input gets a clear ImageInputError."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nada.images import MAX_PIXELS, ImageInputError, load_image, to_rgb


def quadrants(w: int = 64, h: int = 48) -> np.ndarray:
    """An [h, w, 3] uint8 image with four flat, distinct quadrants (easy to check orientation after JPEG)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2, : w // 2] = (220, 30, 30)  # top-left red
    img[: h // 2, w // 2:] = (30, 220, 30)  # top-right green
    img[h // 2:, : w // 2] = (30, 30, 220)  # bottom-left blue
    img[h // 2:, w // 2:] = (230, 230, 40)  # bottom-right yellow
    return img


def quadrant_means(img: np.ndarray) -> np.ndarray:
    """[4, 3] mean colour of the centre of each quadrant (TL, TR, BL, BR)."""
    h, w = img.shape[:2]
    rows = (slice(h // 8, 3 * h // 8), slice(5 * h // 8, 7 * h // 8))
    cols = (slice(w // 8, 3 * w // 8), slice(5 * w // 8, 7 * w // 8))
    qs = [(r, c) for r in rows for c in cols]
    return np.stack([img[q].reshape(-1, 3).mean(0) for q in qs])


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but holds (almost) no pixel data: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- good input
def test_sources_path_bytes_file_pil_numpy_agree(tmp_path: Path) -> None:
    arr = quadrants()
    path = tmp_path / "q.png"
    Image.fromarray(arr).save(path)
    data = path.read_bytes()
    for source in (path, str(path), data, bytearray(data), memoryview(data), io.BytesIO(data), Image.open(path), arr):
        out = load_image(source)
        assert out.mode == "RGB" and out.size == (64, 48)
        np.testing.assert_array_equal(np.asarray(out), arr)


def test_result_is_detached_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "q.png"
    Image.fromarray(quadrants()).save(path)
    out = load_image(path)
    path.unlink()  # the pixels must already be in memory
    assert np.asarray(out).shape == (48, 64, 3)


@pytest.mark.parametrize("orientation,stored", [
    (1, lambda im: im),
    (3, lambda im: im.transpose(Image.Transpose.ROTATE_180)),
    (6, lambda im: im.transpose(Image.Transpose.ROTATE_90)),  # camera held rotated: stored turned 90 deg CCW
    (8, lambda im: im.transpose(Image.Transpose.ROTATE_270)),
    (2, lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
])
def test_exif_orientation_applied(orientation: int, stored) -> None:
    upright = Image.fromarray(quadrants())
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    data = encode(stored(upright), "JPEG", quality=95, exif=exif)
    out = load_image(data)
    assert out.size == upright.size
    np.testing.assert_allclose(quadrant_means(np.asarray(out, np.float64)), quadrant_means(quadrants()), atol=6)


def test_modes_convert_to_rgb(tmp_path: Path) -> None:
    arr = quadrants()
    rgb = Image.fromarray(arr)
    grey = rgb.convert("L")
    g = np.asarray(grey)
    cases = {
        "L": (grey, np.stack([g] * 3, -1), 0),
        "1": (grey.point(lambda v: 255 if v > 100 else 0).convert("1"), np.stack([(g > 100) * 255] * 3, -1), 0),
        "P": (rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8), arr, 0),
        "CMYK": (rgb.convert("CMYK"), arr, 1),
        "YCbCr": (rgb.convert("YCbCr"), arr, 3),
        "RGBA opaque": (rgb.convert("RGBA"), arr, 0),
        "LA opaque": (grey.convert("LA"), np.stack([g] * 3, -1), 0),
    }
    for name, (image, expected, tol) in cases.items():
        out = load_image(image)
        assert out.mode == "RGB", name
        diff = np.abs(np.asarray(out, np.int32) - expected.astype(np.int32))
        assert diff.max() <= tol, (name, diff.max())


def test_transparency_composited_on_background() -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[:, :4, 3] = 255  # left half opaque, right half fully transparent
    out = np.asarray(load_image(Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(out[:, :4], np.full((8, 4, 3), (10, 20, 30)))
    np.testing.assert_array_equal(out[:, 4:], np.full((8, 4, 3), 255))
    black = np.asarray(load_image(Image.fromarray(rgba, "RGBA"), background=(0, 0, 0)))
    np.testing.assert_array_equal(black[:, 4:], 0)
    # a palette image with a transparent index
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    pal.putpalette([200, 0, 0, 0, 0, 200] + [0] * 762)
    pal.info["transparency"] = 1
    np.testing.assert_array_equal(np.asarray(load_image(pal)), [[[200, 0, 0], [255] * 3], [[255] * 3, [200, 0, 0]]])


def test_16bit_greyscale_png_rescaled(tmp_path: Path) -> None:
    ramp = (np.arange(256, dtype=np.uint16)[None, :].repeat(4, 0) * 257)  # [4, 256], full 16-bit range
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode in ("I;16", "I")  # really stored as 16-bit
    out = np.asarray(load_image(path))
    np.testing.assert_array_equal(out[..., 0], np.arange(256)[None, :].repeat(4, 0))
    assert (out[..., 0] == out[..., 2]).all()
    dark = Image.fromarray(np.full((2, 2), 200 * 257 // 255, np.uint16))  # I;16 is rescaled even when dark
    assert np.asarray(load_image(dark))[0, 0, 0] == round(200 * 257 // 255 / 257)


def test_int32_and_float_modes() -> None:
    i32 = Image.fromarray(np.array([[0, 65535], [32896, 257]], np.int32), "I")
    np.testing.assert_array_equal(np.asarray(load_image(i32))[..., 0], [[0, 255], [128, 1]])
    f = Image.fromarray(np.array([[0.0, 1.0], [0.5, 0.25]], np.float32), "F")
    np.testing.assert_array_equal(np.asarray(load_image(f))[..., 0], [[0, 255], [128, 64]])


def test_numpy_arrays() -> None:
    arr = quadrants()
    np.testing.assert_array_equal(np.asarray(load_image(arr[..., :1])), np.repeat(arr[..., :1], 3, -1))
    np.testing.assert_array_equal(np.asarray(load_image(arr[..., 0])), np.repeat(arr[..., :1], 3, -1))
    np.testing.assert_array_equal(np.asarray(load_image(arr.astype(np.float32) / 255.0)), arr)
    np.testing.assert_array_equal(np.asarray(load_image(arr.astype(np.uint16) * 257)), arr)
    rgba = np.concatenate([arr, np.full(arr.shape[:2] + (1,), 255, np.uint8)], -1)
    np.testing.assert_array_equal(np.asarray(load_image(rgba)), arr)
    np.testing.assert_array_equal(np.asarray(load_image(np.eye(3, dtype=bool)))[..., 1], np.eye(3) * 255)


def test_to_rgb_keeps_rgb_untouched() -> None:
    img = Image.fromarray(quadrants())
    assert to_rgb(img) is img


# ----------------------------------------------------------------------------------------------- bad input
def assert_refused(source, *words: str, **kw) -> str:
    with pytest.raises(ImageInputError) as info:
        load_image(source, **kw)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_text_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a photo\n" * 10)
    msg = assert_refused(path, "not an image", "notes.txt")
    assert "Traceback" not in msg
    assert_refused(b"%PDF-1.4 not really", "not an image")


def test_corrupt_and_truncated_files_refused(tmp_path: Path) -> None:
    good = encode(Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)))
    assert_refused(good[: len(good) // 2], "corrupt or truncated")
    assert_refused(good[:60], "truncated")
    jpeg = encode(Image.fromarray(quadrants(256, 256)), "JPEG")
    assert_refused(jpeg[: len(jpeg) // 2], "corrupt or truncated")
    assert_refused(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not an image")
    broken = bytearray(good)
    broken[100:140] = b"\xff" * 40  # damaged compressed data, CRC mismatch
    assert_refused(bytes(broken), "could not be")


def test_empty_missing_and_wrong_types_refused(tmp_path: Path) -> None:
    assert_refused(b"", "empty")
    (tmp_path / "empty.png").write_bytes(b"")
    assert_refused(tmp_path / "empty.png", "empty")
    assert_refused(tmp_path / "missing.jpg", "not found")
    assert_refused(tmp_path, "not a file")
    assert_refused(12345, "cannot read an image from a int")
    assert_refused(np.zeros((4, 4, 2), np.uint8), "shape")
    assert_refused(np.zeros((0, 4, 3), np.uint8), "no pixels")
    assert_refused(np.full((4, 4), np.nan, np.float32), "nan")


def test_decompression_bomb_header_refused_before_decoding() -> None:
    # 100000 x 100000 = 10 gigapixels: Pillow itself refuses it as a bomb; we must turn that into ImageInputError.
    assert_refused(png_header(100_000, 100_000), "decompression bomb")
    # 9000 x 9000 = 81 MP: below Pillow's own limit, above ours; refused from the header (the data is 64 bytes).
    assert 9000 * 9000 > MAX_PIXELS
    assert_refused(png_header(9000, 9000), "9000x9000", "megapixels", "limit")


def test_pixel_cap_applies_to_every_source() -> None:
    small = quadrants()  # 64 x 48 = 3072 pixels
    assert_refused(encode(Image.fromarray(small)), "megapixels", max_pixels=1000)
    assert_refused(Image.fromarray(small), "megapixels", max_pixels=1000)
    assert_refused(small, "megapixels", max_pixels=1000)
    assert load_image(small, max_pixels=3072).size == (64, 48)
