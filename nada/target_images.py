"""Target pictures for image-guided adaptation: decoded and checked with the same safe loader as Invert, before any
model loads, and reduced to what CLIP sees.

A handful of pictures (a painting, frames of a cartoon) can name a style that words do not. Each is opened with
:func:`nada.images.load_image` (format, pixel cap, EXIF orientation, RGB), then shrunk to at most
:data:`MAX_SIDE` px (CLIP looks at 224 px; small pictures pickle cheaply into a GPU worker), and later resized as
tensors (bicubic) to CLIP's input like the generator's images. The official code uses CLIP's own PIL preprocessing
(resize and centre crop) instead; the difference is a slightly different resampling of the same picture. Styles record
the pictures' hashes, never the pictures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .images import ImageInputError, ImageSource, load_image

MIN_PICTURES, MAX_PICTURES = 1, 16
MAX_SIDE = 448  # twice CLIP's input: enough for its resize and crop, small in memory


def load_target_images(sources: Sequence[ImageSource]) -> list[Image.Image]:
    """1 to 16 target pictures as RGB images of at most :data:`MAX_SIDE` px; ``ImageInputError`` naming the bad one."""
    items = list(sources)
    if not MIN_PICTURES <= len(items) <= MAX_PICTURES:
        raise ImageInputError(f"Give {MIN_PICTURES} to {MAX_PICTURES} target pictures, got {len(items)}.")
    pictures = []
    for i, item in enumerate(items, 1):
        try:
            image = load_image(item)
        except ImageInputError as exc:
            raise ImageInputError(f"Target picture {i} of {len(items)}: {exc}") from None
        if min(image.size) < 16:
            raise ImageInputError(f"Target picture {i} of {len(items)} is {image.size[0]}x{image.size[1]} px; "
                                  "use pictures at least 16 px on each side (CLIP looks at 224 px).")
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        pictures.append(image)
    return pictures


def picture_hashes(pictures: Sequence[Image.Image]) -> list[str]:
    """sha256 (hex, first 16 chars) of each picture's size and RGB pixels: what a style records of them."""
    out = []
    for picture in pictures:
        rgb = np.asarray(picture.convert("RGB"))  # [H, W, 3] uint8
        out.append(hashlib.sha256(f"{rgb.shape}".encode() + rgb.tobytes()).hexdigest()[:16])
    return out


def to_tensor(picture: Image.Image) -> torch.Tensor:
    """An RGB picture as a generator-range image ``[1, 3, H, W]`` in [-1, 1] (what CLIP preprocessing expects)."""
    rgb = torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32).copy())  # [H, W, 3] in [0, 255]
    return (rgb.permute(2, 0, 1)[None] / 127.5 - 1.0).contiguous()


__all__ = ["load_target_images", "picture_hashes", "to_tensor", "MIN_PICTURES", "MAX_PICTURES", "MAX_SIDE"]
