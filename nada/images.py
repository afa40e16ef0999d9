"""Safe image loading: any upload (path, bytes, file object, PIL image, numpy array) -> an upright RGB PIL image.

Non-images, corrupt files and images over a pixel cap (decompression bombs included) are refused with an
``ImageInputError`` whose message a person understands. EXIF orientation (phone photos) is applied, and every
colour mode (RGBA, LA, P, 1, L, I;16, I, F, CMYK, YCbCr, ...) becomes 8-bit RGB.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 80 megapixels: more than any phone saves by default, and below Pillow's own decompression-bomb warning (89.5 MP).
MAX_PIXELS = 80_000_000

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray

# Errors Pillow's decoders raise on broken data (truncated streams, bad chunks, bad headers).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, TypeError)


class ImageInputError(ValueError):
    """The input is not a usable image (unreadable, corrupt, too large, unsupported); the message says why."""


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS, background: tuple[int, int, int] = (255, 255, 255)
               ) -> Image.Image:
    """Open ``source`` safely and return a fully decoded, upright, 8-bit RGB image.

    Transparent pixels are composited over ``background``. Raises ``ImageInputError``."""
    if isinstance(source, np.ndarray):
        image = _from_array(source, max_pixels)
    elif isinstance(source, Image.Image):
        _check_size(source.size, max_pixels)
        image = source
        _decode(image, "The image")
    else:
        return _open(source, max_pixels, background)
    return to_rgb(_upright(image), background=background)


def probe_image(source: str | os.PathLike | bytes | bytearray | BinaryIO, *, max_pixels: int = MAX_PIXELS
                ) -> tuple[int, int]:
    """(width, height) from an image file's header, without decoding its pixels (milliseconds); ``ImageInputError``
    when it is not an image Pillow can read or is over ``max_pixels``. Corrupt pixel data shows only when decoded."""
    name, fp = _named_file(source)
    image = _identify(fp, name)
    try:
        _check_size(image.size, max_pixels, name)
        return image.size
    finally:
        image.close()


def _named_file(source: ImageSource) -> tuple[str, object]:
    """(how messages name it, what ``Image.open`` takes) for a path, bytes or file object; checks a path exists."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageInputError("The upload is empty (0 bytes); please choose an image file.")
        return "The upload", io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        name = f"'{path.name}'"
        if not path.exists():
            raise ImageInputError(f"Image file not found: {path}")
        if not path.is_file():
            raise ImageInputError(f"{path} is not a file; please choose an image file.")
        if path.stat().st_size == 0:
            raise ImageInputError(f"{name} is empty (0 bytes); please choose an image file.")
        return name, path
    if hasattr(source, "read"):
        return "The upload", source
    raise ImageInputError(f"Cannot read an image from a {type(source).__name__}; "
                          "give a file path, bytes, a PIL image or a numpy array.")


def _identify(fp: object, name: str) -> Image.Image:
    """``Image.open`` (reads the header only), its failures as ``ImageInputError``."""
    try:
        return Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{name} declares a gigantic size and was refused as a possible decompression bomb "
                              f"({exc}).") from exc
    except UnidentifiedImageError as exc:
        raise ImageInputError(f"{name} is not an image Pillow can read (is it a photo? JPEG, PNG, WebP, BMP, "
                              "TIFF and GIF work).") from exc
    except _DECODE_ERRORS as exc:
        raise ImageInputError(f"{name} could not be opened as an image: {_short(exc)}.") from exc


def _open(source: ImageSource, max_pixels: int, background: tuple[int, int, int]) -> Image.Image:
    """Open a path, bytes or file object, check its header size, decode it, and return it upright in RGB."""
    name, fp = _named_file(source)
    image = _identify(fp, name)
    try:
        _check_size(image.size, max_pixels, name)
        _decode(image, name)
        rgb = to_rgb(_upright(image), background=background)
        return rgb.copy() if rgb is image else rgb  # detached from the file either way
    finally:
        image.close()


def _decode(image: Image.Image, name: str) -> None:
    """Force the lazy decoder to run now, turning decoder failures into ``ImageInputError``."""
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{name} was refused as a possible decompression bomb ({exc}).") from exc
    except MemoryError as exc:
        raise ImageInputError(f"{name} is too large to decode in memory.") from exc
    except _DECODE_ERRORS as exc:
        raise ImageInputError(f"{name} is corrupt or truncated and could not be decoded: {_short(exc)}.") from exc


def _check_size(size: tuple[int, int], max_pixels: int, name: str = "The image") -> None:
    """Refuse empty images and images above ``max_pixels`` before any pixel is decoded."""
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageInputError(f"{name} has no pixels ({w}x{h}).")
    if w * h > max_pixels:
        raise ImageInputError(
            f"{name} is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), over the limit of "
            f"{max_pixels / 1e6:.0f} megapixels. Please resize it (a few megapixels is plenty for a face).")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, so a phone photo shows the way its camera held it."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block must not make a good photo unusable
        return image


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: alpha composited on ``background``, 16/32-bit and float rescaled."""
    mode = image.mode
    if mode == "RGB":
        return image
    try:
        if mode.startswith("I;16"):  # 16-bit greyscale: the full range maps to 0..255
            wide = np.asarray(image).astype(np.float64)
            return Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), "L").convert("RGB")
        if mode in ("I", "F"):
            return Image.fromarray(_to_uint8(np.asarray(image)), "L").convert("RGB")
        if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (*background, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV
    except (ValueError, OSError) as exc:
        raise ImageInputError(f"Images in colour mode '{mode}' are not supported ({_short(exc)}); "
                              "please save the photo as an ordinary RGB JPEG or PNG.") from exc


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Rescale one image array to uint8: 16-bit ranges by /257, floats in [0, 1] by x255, others clipped."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageInputError("The image holds NaN or infinite values.")
        scale = 255.0 if arr.size and float(arr.max()) <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        wide = arr.astype(np.int64)
        if arr.dtype.itemsize >= 2 and wide.size and wide.max() > 255:  # 16-bit data (also 16-bit PNGs opened as "I")
            return np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        return np.clip(wide, 0, 255).astype(np.uint8)
    raise ImageInputError(f"Image arrays of dtype {arr.dtype} are not supported.")


def _from_array(arr: np.ndarray, max_pixels: int) -> Image.Image:
    """A [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] array (uint8, uint16, bool or float) -> PIL image."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ImageInputError(f"An image array must be [H, W], [H, W, 3] or [H, W, 4]; got shape {tuple(arr.shape)}.")
    _check_size((arr.shape[1], arr.shape[0]), max_pixels, "The image array")
    data = np.ascontiguousarray(_to_uint8(arr))
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[data.shape[2] if data.ndim == 3 else 2]
    return Image.fromarray(data, mode)


def _short(exc: BaseException) -> str:
    """First line of an exception, for messages."""
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else type(exc).__name__)
