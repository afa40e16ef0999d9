"""Videos of a style, as the official project shows its results: an MP4 that walks smoothly through chosen seeds
(interpolating in W) while the style strength goes from the source to the full style, or a plain latent walk at one
strength. Frames are rendered at the chosen truncation, in batches, and encoded with H.264 by PyAV (its wheels carry
FFmpeg and libx264: nothing to install besides ``pip``). The frame iterator and the encoder are separate, so the app
and the command line only choose what to show and where the file goes.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .render import to_pil
from .stylegan2 import Generator, seeded_z, truncate
from .styles import Style, apply_style, atomic_write

MAX_FRAMES = 3000  # about 2 minutes at 24 fps: longer requests are refused, not rendered for hours


@dataclass(frozen=True)
class VideoPlan:
    """What a video shows: the seeds it walks through, how long, how fast, at which truncation and strength."""

    seeds: tuple[int, ...]  # the walk's stops, in order (one seed: a still latent)
    seconds_per_seed: float = 2.0  # time from one stop to the next (and the whole video for a single seed)
    fps: int = 24
    truncation: float = 0.7
    ramp: bool = True  # style strength from 0 (source) at the start to ``strength`` at the end; else constant
    strength: float = 1.0  # the full strength (constant strength when ``ramp`` is off)
    size: int | None = None  # frame side in pixels (None: the generator's); even, as H.264 wants

    @property
    def frames(self) -> int:
        """Frames in the video."""
        segments = max(len(self.seeds) - 1, 1)
        return max(2, int(round(segments * self.seconds_per_seed * self.fps)))

    def validate(self) -> None:
        """Raise ``ValueError`` with a readable message for a video that cannot be made."""
        if not self.seeds:
            raise ValueError("A video needs at least one seed.")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"Frames per second must be from 1 to 60, got {self.fps}.")
        if not 0.1 <= self.seconds_per_seed <= 60:
            raise ValueError(f"Seconds per seed must be from 0.1 to 60, got {self.seconds_per_seed}.")
        if not 0.0 <= self.truncation <= 1.0 or not 0.0 <= self.strength <= 1.0:
            raise ValueError("Truncation and strength must be from 0 to 1.")
        if self.size is not None and not (16 <= self.size <= 2048 and self.size % 2 == 0):
            raise ValueError(f"The frame size must be an even number of pixels from 16 to 2048, got {self.size}.")
        if self.frames > MAX_FRAMES:
            raise ValueError(f"That is {self.frames} frames; the limit is {MAX_FRAMES} (fewer seeds, fewer seconds "
                             "per seed or a lower frame rate).")


def _ease(t: float) -> float:
    """Cosine ease in and out on [0, 1]: the walk slows down at each seed."""
    return 0.5 - 0.5 * math.cos(math.pi * t)


def frame_latents(generator: Generator, plan: VideoPlan, w_avg: torch.Tensor | None = None) -> torch.Tensor:
    """The W latent of every frame ``[F, 512]``: eased linear steps between the truncated latents of the seeds."""
    device = generator.input.input.device
    with torch.no_grad():
        w = generator.mapping(seeded_z(list(plan.seeds), generator.style_dim, device))  # [S, 512]
        center = generator.truncation_center() if w_avg is None else w_avg.to(w)
        w = truncate(w, center, plan.truncation)
    if len(plan.seeds) == 1:
        return w.expand(plan.frames, -1).clone()
    pos = torch.linspace(0, len(plan.seeds) - 1, plan.frames)  # [F]: where each frame is along the walk
    out = []
    for p in pos.tolist():
        i = min(int(p), len(plan.seeds) - 2)
        t = _ease(p - i)
        out.append(torch.lerp(w[i], w[i + 1], t))
    return torch.stack(out)  # [F, 512]


class StrengthBlend:
    """One copy of the source generator whose styled tensors are set in place to any strength (no copy per frame)."""

    def __init__(self, source: Generator, style: Style | None):
        self.source, self.style = source, style
        self.generator = copy.deepcopy(source) if style is not None else source
        self.strength: float | None = None

    def at(self, strength: float) -> Generator:
        """The generator at ``strength`` (0: the source, 1: the full style)."""
        if self.style is None or strength == self.strength:
            return self.generator
        if self.strength is None:  # first use: checks the style fits, exactly as applying it does
            self.generator = apply_style(self.source, self.style, strength, check_source=False)
        else:
            src, dst = self.source.state_dict(), self.generator.state_dict()
            with torch.no_grad():
                for key, value in self.style.tensors.items():
                    dst[key].copy_(torch.lerp(src[key], value.to(src[key]), float(strength)))
        self.strength = strength
        return self.generator


def video_frames(source: Generator, style: Style | None, plan: VideoPlan, w_avg: torch.Tensor | None = None,
                 batch: int = 4) -> Iterator[np.ndarray]:
    """Every frame of ``plan`` as an ``[H, W, 3]`` uint8 array, in order (rendered ``batch`` at a time when the
    strength is constant, one at a time while it ramps)."""
    plan.validate()
    ws = frame_latents(source, plan, w_avg)  # [F, 512]
    blend = StrengthBlend(source, style)
    n = ws.shape[0]
    ramping = plan.ramp and style is not None
    step = 1 if ramping else max(1, batch)
    for i in range(0, n, step):
        strength = plan.strength * (i / (n - 1) if ramping else 1.0)
        with torch.no_grad():
            images = blend.at(strength).synthesis(ws[i:i + step], noise_mode="const")  # [b, 3, H, W]
        for image in to_pil(images.cpu()):
            if plan.size is not None and image.size != (plan.size, plan.size):
                up = plan.size > image.size[0]  # tiny generators: keep pixels sharp
                image = image.resize((plan.size, plan.size),
                                     Image.Resampling.NEAREST if up else Image.Resampling.LANCZOS)
            yield np.asarray(image)


def write_mp4(frames: Iterator[np.ndarray], path: str | os.PathLike, fps: int = 24, crf: int = 20,
              progress: Callable[[int], None] | None = None) -> Path:
    """Encode RGB frames as an H.264 MP4 (yuv420p: plays in every browser) at ``path``; returns the path.
    ``progress(frames_done)`` is called after each frame. The file appears only when complete."""
    import av  # heavy (FFmpeg): only video needs it

    def encode(tmp: str) -> None:
        with av.open(tmp, mode="w", format="mp4") as container:
            stream = None
            for done, frame in enumerate(frames, 1):
                if stream is None:
                    h, w = frame.shape[:2]
                    if h % 2 or w % 2:
                        raise ValueError(f"H.264 needs even frame sizes, got {w}x{h}.")
                    stream = container.add_stream("libx264", rate=int(fps))
                    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                    stream.options = {"crf": str(crf), "preset": "medium"}
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                if progress is not None:
                    progress(done)
            if stream is None:
                raise ValueError("No frames to write.")
            for packet in stream.encode():  # flush
                container.mux(packet)

    return atomic_write(path, encode)


def render_video(source: Generator, style: Style | None, plan: VideoPlan, path: str | os.PathLike,
                 w_avg: torch.Tensor | None = None, progress: Callable[[int], None] | None = None) -> Path:
    """Render ``plan`` with ``source`` (and ``style``) into an MP4 at ``path``."""
    plan.validate()
    return write_mp4(video_frames(source, style, plan, w_avg), path, plan.fps, progress=progress)


__all__ = ["VideoPlan", "frame_latents", "StrengthBlend", "video_frames", "write_mp4", "render_video", "MAX_FRAMES"]
