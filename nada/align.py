"""FFHQ face alignment: dlib finds the most confident face and its 68 landmarks, an oriented square is cut around it.

The geometry follows the FFHQ / e4e recipe (e4e's ``utils/alignment.py::align_face``): the square's centre, size and
rotation come from the eye and mouth positions; large photos are shrunk first, the square's neighbourhood is cropped,
regions outside the photo are filled by reflection, blurred and faded to the median colour, and the square is
resampled to the output size. Differences from the reference, on purpose:

- the most confident detection wins (the reference keeps the last, least confident one);
- photos larger than ``detect_max_side`` are searched on a downscaled copy (landmarks are scaled back);
- with ``supersample=True`` a square larger than the output is sampled at a multiple of the output size and then
  downscaled with a Lanczos filter instead of being sampled directly (which aliases). Only squares no larger than
  the output (a face about 60 px or less between the eyes, for the 256 px e4e input) are sampled exactly as in the
  reference; larger ones give a sharper image than the reference's, not the same one;
- small faces are aligned as the reference does (the result is upscaled, so soft: the aligned image's
  ``info["nada_soft_face"]`` holds the eye distance so callers can warn); only faces below :data:`MIN_FACE_PX`, where
  the landmarks stop being reliable, raise ``FaceTooSmallError``. No face raises ``NoFaceError``.

dlib is imported only when a ``FaceAligner`` is built, never at import time.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nada.images import MAX_PIXELS, ImageSource, load_image
from nada.weights import WeightsUnavailableError, fetch

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
BLEND_ROWS = 256  # rows per chunk in the padding blend (bounds temporary memory)


class NoFaceError(ValueError):
    """No usable face was found in the photo."""


class FaceTooSmallError(NoFaceError):
    """A face was found but it is too small (in pixels) to give a useful aligned image."""


class AlignmentUnavailableError(RuntimeError):
    """dlib or its landmark model is missing; the message says how to install it."""


# ------------------------------------------------------------------------------------------ predictor and detector
def predictor_path() -> Path:
    """Path of the 68-landmark model: from ``face_recognition_models`` if installed, else the weights registry."""
    spec = importlib.util.find_spec("face_recognition_models")  # located without importing (it imports pkg_resources)
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "models" / PREDICTOR_FILE
            if candidate.is_file():
                return candidate
    try:
        return fetch("dlib-landmarks")
    except WeightsUnavailableError as exc:
        raise AlignmentUnavailableError(
            f"The dlib face landmark model ({PREDICTOR_FILE}) is not available: install it with "
            f"`pip install face_recognition_models`, or let it download once. ({exc})") from exc


def _import_dlib() -> Any:
    """Import dlib, or explain how to install it."""
    try:
        import dlib  # optional: only the alignment needs dlib (dlib-bin)
    except ImportError as exc:
        raise AlignmentUnavailableError(
            "Face alignment needs dlib: `pip install dlib-bin` (prebuilt) or `pip install dlib`.") from exc
    return dlib


def load_predictor(path: str | os.PathLike | None = None) -> Any:
    """Load dlib's 68-point shape predictor from ``path`` (default: ``predictor_path()``)."""
    dlib = _import_dlib()
    path = Path(path) if path is not None else predictor_path()
    if not path.is_file():
        raise AlignmentUnavailableError(f"Landmark model not found: {path}")
    try:
        return dlib.shape_predictor(str(path))
    except RuntimeError as exc:
        raise AlignmentUnavailableError(f"{path} is not a dlib shape predictor file: {exc}") from exc


# ------------------------------------------------------------------------------------------ geometry
@dataclass(frozen=True)
class Face:
    """One detected face, in the coordinates of the full photo."""

    landmarks: np.ndarray  # [68, 2] (x, y) pixels
    score: float  # dlib detector confidence
    box: tuple[float, float, float, float]  # detection rectangle (left, top, right, bottom)


def eye_mouth(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eye_avg, eye_to_eye, eye_to_mouth), each [2], from 68 landmarks [68, 2]."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    mouth_avg = (lm[48] + lm[54]) * 0.5
    return eye_avg, eye_right - eye_left, mouth_avg - eye_avg


def face_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The oriented crop square ([4, 2] corners: top-left, bottom-left, bottom-right, top-right) and its side."""
    eye_avg, eye_to_eye, eye_to_mouth = eye_mouth(landmarks)
    # x: the square's horizontal half-axis, between the eye line and the perpendicular of the eye-mouth line.
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x = x / np.hypot(x[0], x[1])
    x = x * max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    y = np.array([-x[1], x[0]])  # x turned by 90 degrees
    c = eye_avg + 0.1 * eye_to_mouth
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(2.0 * np.hypot(x[0], x[1]))


def warp_quad(image: Image.Image, quad: np.ndarray, qsize: float, output_size: int = 256,
              supersample: bool = True, enable_padding: bool = True) -> Image.Image:
    """Cut the square ``quad`` out of an RGB ``image`` and resample it to ``output_size`` (FFHQ crop rules)."""
    quad = np.array(quad, dtype=np.float64)  # [4, 2], a private copy
    img = image if image.mode == "RGB" else image.convert("RGB")

    # Shrink very large faces (Lanczos) and crop to the square's bounding box plus a border. The shrink resizes only
    # the cropped window (Pillow's ``box``), which gives the same pixels as resizing the whole photo, then cropping.
    shrink = int(math.floor(qsize / output_size * 0.5))
    full_w, full_h = img.size
    work_w, work_h = full_w, full_h
    if shrink > 1:
        work_w, work_h = int(np.rint(full_w / shrink)), int(np.rint(full_h / shrink))
        quad /= shrink
        qsize /= shrink
    border = max(int(np.rint(qsize * 0.1)), 3)
    x0, y0 = int(math.floor(quad[:, 0].min())), int(math.floor(quad[:, 1].min()))
    x1, y1 = int(math.ceil(quad[:, 0].max())), int(math.ceil(quad[:, 1].max()))
    crop = (max(x0 - border, 0), max(y0 - border, 0), min(x1 + border, work_w), min(y1 + border, work_h))
    cropped = crop[2] - crop[0] < work_w or crop[3] - crop[1] < work_h
    if not cropped:
        crop = (0, 0, work_w, work_h)
    if shrink > 1:
        sx, sy = full_w / work_w, full_h / work_h
        box = (crop[0] * sx, crop[1] * sy, crop[2] * sx, crop[3] * sy)
        img = img.resize((crop[2] - crop[0], crop[3] - crop[1]), Image.Resampling.LANCZOS, box=box)
    elif cropped:
        img = img.crop(crop)
    if cropped:
        quad -= crop[0:2]

    # Where the square leaves the photo: reflect, blur towards the edge and fade to the median colour.
    x0, y0 = int(math.floor(quad[:, 0].min())), int(math.floor(quad[:, 1].min()))
    x1, y1 = int(math.ceil(quad[:, 0].max())), int(math.ceil(quad[:, 1].max()))
    pad = np.array([max(-x0 + border, 0), max(-y0 + border, 0),
                    max(x1 - img.size[0] + border, 0), max(y1 - img.size[1] + border, 0)])
    if enable_padding and max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = Image.fromarray(_pad_and_blend(np.asarray(img), pad, qsize), "RGB")
        quad += pad[:2]

    # Sample the square; supersample (then Lanczos down) only where the square is larger than the output.
    factor = min(max(math.ceil(qsize / output_size), 1), 4) if supersample else 1
    size = output_size * factor
    out = img.transform((size, size), Image.Transform.QUAD, tuple((quad + 0.5).flatten()), Image.Resampling.BILINEAR)
    if size != output_size:
        out = out.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return out


def _pad_and_blend(rgb: np.ndarray, pad: np.ndarray, qsize: float) -> np.ndarray:
    """Reflect-pad an [H, W, 3] uint8 image by ``pad`` (left, top, right, bottom) and hide the seams -> uint8."""
    img = np.pad(rgb.astype(np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="reflect")  # [h, w, 3]
    h, w, _ = img.shape
    p = [float(max(v, 1)) for v in pad]
    xs = np.arange(w, dtype=np.float64)
    edge_x = np.minimum(xs / p[0], (w - 1 - xs) / p[2])  # [w], >= 1 away from the left/right pads

    def mask_rows(r0: int, r1: int) -> np.ndarray:  # [rows, w, 1]: 1 at the outer edge, <= 0 inside the photo
        ys = np.arange(r0, r1, dtype=np.float64)[:, None]
        edge_y = np.minimum(ys / p[1], (h - 1 - ys) / p[3])
        return np.maximum(1.0 - edge_x[None, :], 1.0 - edge_y)[:, :, None]

    blurred = gaussian_blur(img, qsize * 0.02)  # [h, w, 3]
    for r0 in range(0, h, BLEND_ROWS):
        r1 = min(r0 + BLEND_ROWS, h)
        weight = np.clip(mask_rows(r0, r1) * 3.0 + 1.0, 0.0, 1.0)
        img[r0:r1] += (blurred[r0:r1] - img[r0:r1]) * weight
    del blurred
    median = np.median(img, axis=(0, 1))  # [3]
    for r0 in range(0, h, BLEND_ROWS):
        r1 = min(r0 + BLEND_ROWS, h)
        img[r0:r1] += (median - img[r0:r1]) * np.clip(mask_rows(r0, r1), 0.0, 1.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Gaussian blur of an [H, W, C] array over H and W (not C), mirror edges; equals
    ``scipy.ndimage.gaussian_filter(img, [sigma, sigma, 0])`` up to float rounding, computed by FFT."""
    if sigma <= 0:
        return img.copy()
    out = _blur_axis(img, sigma, truncate, axis=0)
    return _blur_axis(out, sigma, truncate, axis=1)


def _blur_axis(a: np.ndarray, sigma: float, truncate: float, axis: int, chunk: int = 1 << 20) -> np.ndarray:
    """1-D Gaussian along ``axis`` with half-sample-symmetric extension, in chunks of the other axes."""
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-0.5 / sigma**2 * np.arange(-radius, radius + 1, dtype=np.float64) ** 2)
    taps /= taps.sum()
    moved = np.moveaxis(a, axis, 0)  # [n, ...]
    n = moved.shape[0]
    flat = moved.reshape(n, -1)  # [n, m]
    length = n + 2 * radius
    kernel_f = np.fft.rfft(taps, length)[:, None]  # [length // 2 + 1, 1]
    out = np.empty(flat.shape, dtype=a.dtype)
    step = max(1, chunk // length)
    for c0 in range(0, flat.shape[1], step):
        ext = np.pad(flat[:, c0:c0 + step].astype(np.float64), ((radius, radius), (0, 0)), mode="symmetric")
        full = np.fft.irfft(np.fft.rfft(ext, length, axis=0) * kernel_f, length, axis=0)
        out[:, c0:c0 + step] = full[2 * radius:2 * radius + n]
    return np.moveaxis(out.reshape(moved.shape), 0, axis)


# ------------------------------------------------------------------------------------------ the aligner
# Measured on the astronaut photo downscaled step by step (landmarks scaled back and compared with the full-size ones):
# from 43 px between the eyes down to 14 px the 68 landmarks stay within 2.1% of the eye distance on average and the
# FFHQ crop's corners within 1.8% of its size; at 12 px and below dlib's detector finds no face at all. So faces are
# refused only under 12 px, and results under 30 px are flagged as soft (upscaled more than 2x into the 256 px input).
MIN_FACE_PX = 12.0
SOFT_FACE_PX = 30.0
SOFT_FACE_WARNING = ("The face in this photo is small (about {px:.0f} px between the eyes): it was aligned, but the "
                     "result is enlarged and may look soft. A closer or higher-resolution photo is sharper.")


@dataclass(frozen=True)
class FaceAligner:
    """A loaded dlib detector and landmark predictor, with the settings used to find and align faces."""

    detector: Any  # dlib.fhog_object_detector
    predictor: Any  # dlib.shape_predictor
    detect_max_side: int = 1024  # larger photos are searched on a copy downscaled to this longest side
    upsample: int = 1  # detector upsampling (1 finds faces from ~40 px, as in the reference)
    min_face_px: float = MIN_FACE_PX  # refuse faces whose eye-eye and eye-mouth distances are both below this
    max_pixels: int = MAX_PIXELS  # larger photos are refused before decoding (see nada.images)

    @classmethod
    def load(cls, predictor: Any = None, **settings: Any) -> FaceAligner:
        """Build an aligner; ``predictor`` is a dlib shape predictor, a path to one, or None for the default."""
        dlib = _import_dlib()
        if predictor is None or isinstance(predictor, (str, os.PathLike)):
            predictor = load_predictor(predictor)
        return cls(dlib.get_frontal_face_detector(), predictor, **settings)

    def find_faces(self, image: Image.Image) -> list[Face]:
        """All faces in an RGB image, most confident first, with landmarks in full-image pixels."""
        w, h = image.size
        scale = max(w, h) / self.detect_max_side
        small = image
        if scale > 1.0:
            small = image.resize((max(1, round(w / scale)), max(1, round(h / scale))), Image.Resampling.BILINEAR,
                                 reducing_gap=2.0)
        pixels = np.asarray(small.convert("RGB"))  # [h, w, 3] uint8
        rects, scores, _ = self.detector.run(pixels, self.upsample, 0.0)
        sx, sy = w / small.size[0], h / small.size[1]
        faces = []
        for rect, score in zip(rects, scores, strict=True):
            parts = self.predictor(pixels, rect).parts()
            lm = np.array([[p.x, p.y] for p in parts], dtype=np.float64)  # [68, 2]
            box = (rect.left(), rect.top(), rect.right(), rect.bottom())
            if small is not image:  # pixel centres map as (x + 0.5) * s - 0.5
                lm = (lm + 0.5) * [sx, sy] - 0.5
                box = ((box[0] + 0.5) * sx - 0.5, (box[1] + 0.5) * sy - 0.5,
                       (box[2] + 0.5) * sx - 0.5, (box[3] + 0.5) * sy - 0.5)
            faces.append(Face(lm, float(score), tuple(float(v) for v in box)))
        faces.sort(key=lambda f: -f.score)  # stable: dlib's order breaks ties
        return faces

    def landmarks(self, image: Image.Image) -> np.ndarray:
        """The [68, 2] landmarks of the most confident face; ``NoFaceError``/``FaceTooSmallError`` otherwise."""
        faces = self.find_faces(image)
        if not faces:
            raise NoFaceError(
                "No face was found in this photo. Use a photo where one face is clearly visible, looking roughly "
                "towards the camera, well lit and not cut off by the edge of the picture.")
        lm = faces[0].landmarks
        _, eye_to_eye, eye_to_mouth = eye_mouth(lm)
        eyes, mouth = float(np.hypot(*eye_to_eye)), float(np.hypot(*eye_to_mouth))
        if max(eyes, mouth) < self.min_face_px:
            raise FaceTooSmallError(
                f"The face in this photo is too small to align well (about {eyes:.0f} px between the eyes and "
                f"{mouth:.0f} px from eyes to mouth; at least {self.min_face_px:.0f} px is needed). Use a closer or "
                "higher-resolution photo, or crop the picture around the face.")
        return lm

    def align(self, image: ImageSource | Image.Image, output_size: int = 256,
              supersample: bool = True) -> Image.Image:
        """Find the most confident face in ``image`` and return it FFHQ-aligned as an RGB square."""
        if not isinstance(output_size, int) or output_size < 8:
            raise ValueError(f"output_size must be an integer >= 8, got {output_size!r}")
        rgb = load_image(image, max_pixels=self.max_pixels)
        lm = self.landmarks(rgb)
        quad, qsize = face_quad(lm)
        out = warp_quad(rgb, quad, qsize, output_size, supersample=supersample)
        eyes = float(np.hypot(*eye_mouth(lm)[1]))
        if eyes < SOFT_FACE_PX:
            out.info["nada_soft_face"] = eyes  # callers warn with SOFT_FACE_WARNING
        return out


def align_face(image: ImageSource | Image.Image, output_size: int = 256, predictor: Any = None) -> Image.Image:
    """Align the most confident face in ``image`` (FFHQ crop). ``predictor``: a ``FaceAligner``, a dlib shape
    predictor, a path to one, or None (loads the default model, ~1 s: reuse a ``FaceAligner`` for many photos)."""
    aligner = predictor if isinstance(predictor, FaceAligner) else FaceAligner.load(predictor)
    return aligner.align(image, output_size)
