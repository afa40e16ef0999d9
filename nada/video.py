"""Videos of a style: an MP4 that walks smoothly through chosen seeds
(interpolating in W) while the style strength goes from the source to the full style, or a plain latent walk at one
strength. Frames are rendered at the chosen truncation, in batches, and encoded with H.264 by PyAV (its wheels carry
FFmpeg and libx264: nothing to install besides ``pip``). The frame iterator and the encoder are separate, so the app
and the command line only choose what to show and where the file goes.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .edits import apply_edit
from .files import atomic_write
from .nets.stylegan2 import Generator, seeded_z, truncate
from .render import to_pil
from .styles import Style, check_style_fits, combine_tensors, is_offset_key

MAX_FRAMES = 3000  # about 2 minutes at 24 fps: longer requests are refused, not rendered for hours
MAX_STYLES = 16  # styles in one video (a morph through them, or a 4x4 grid)


@dataclass(frozen=True)
class VideoPlan:
    """What a video shows: the seeds it walks through, how long, how fast, at which truncation and strength."""

    seeds: tuple[int, ...]  # the walk's stops, in order (one seed: a still latent)
    seconds_per_seed: float = 2.0  # time from one stop to the next (and the whole video for a single seed)
    fps: int = 24
    truncation: float = 0.7
    ramp: bool = True  # style strength from 0 (source) at the start to ``strength`` at the end; else constant
    strength: float = 1.0  # the full strength (constant strength when ``ramp`` is off)
    size: int | None = None  # frame side in pixels (None: the generator's); even, as H.264 wants; with ``grid``,
    #                          each tile's side
    grid: bool = False  # several styles side by side on the same walk (as the official video tool lays out its
    #                     models: a near-square grid) instead of one morphing from style to style

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
    device = generator.device
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


class StyleMix:
    """One copy of the source generator set in place to any weighted blend of ``styles`` (None: the source itself),
    as :func:`nada.styles.blend` computes it, on the generator's device: no copy per frame. The style tensors move to
    the device once; each call recomputes only when the weights change."""

    def __init__(self, source: Generator, styles: list[Style | None]):
        self.source = source
        device = source.device
        for style in styles:
            if style is not None:
                check_style_fits(style, source)  # before anything is copied
        self.styles = [None if s is None else Style({k: v.to(device) for k, v in s.tensors.items()}, s.meta)
                       for s in styles]
        self.source_sd = {k: v.detach() for k, v in source.state_dict().items()}
        self.keys = sorted({k for s in self.styles if s is not None for k in s.weights})
        self.generator = copy.deepcopy(source) if any(s is not None for s in styles) else source
        self.weights: tuple[float, ...] | None = None

    def at(self, weights: list[float] | tuple[float, ...]) -> Generator:
        """The generator at ``sum_i weights[i] * (style_i - source)`` (all zeros: the source; (1, 0, ...): the first
        style exactly)."""
        weights = tuple(float(w) for w in weights)
        if weights == self.weights or self.generator is self.source:
            return self.generator
        pairs = [(s, w) for s, w in zip(self.styles, weights) if s is not None and w != 0]
        tensors = combine_tensors(pairs, self.source_sd, dtype=torch.float32) if pairs else {}
        dst = self.generator.state_dict()
        with torch.no_grad():
            for key in self.keys:
                dst[key].copy_(tensors.get(key, self.source_sd[key]))
        self.generator.set_style_offsets({k: v for k, v in tensors.items() if is_offset_key(k)})
        self.weights = weights
        return self.generator


class StrengthBlend(StyleMix):
    """One style at any strength (0: the source, 1: the full style), in place: a :class:`StyleMix` of one style."""

    def __init__(self, source: Generator, style: Style | None):
        super().__init__(source, [style])

    def at(self, strength: float) -> Generator:  # type: ignore[override]
        """The generator at ``strength``."""
        return super().at([strength])


def as_style_list(styles: Style | list[Style | None] | tuple | None) -> list[Style | None]:
    """``render_video``'s styles argument as a list: None -> [None] (the source), a Style -> [it]."""
    if styles is None or isinstance(styles, Style):
        return [styles]
    out = list(styles)
    if not out:
        raise ValueError("Give at least one style (or None for the source generator).")
    if len(out) > MAX_STYLES:
        raise ValueError(f"A video shows at most {MAX_STYLES} styles, got {len(out)}.")
    bad = [s for s in out if s is not None and not isinstance(s, Style)]
    if bad:
        raise ValueError(f"Styles must be nada Style objects (or None for the source), got {type(bad[0]).__name__}.")
    return out


def style_weights(n_styles: int, plan: VideoPlan, i: int, n: int) -> list[float]:
    """The blend weights of frame ``i`` of ``n``: one style ramps from 0 to ``plan.strength`` (or holds it); several
    morph from the first to the last, each pair in turn, ``plan.strength`` throughout (frame 0: the first style)."""
    t = i / max(n - 1, 1)
    if n_styles == 1:
        return [plan.strength * (t if plan.ramp else 1.0)]
    u = t * (n_styles - 1)
    j = min(int(u), n_styles - 2)
    f = u - j
    weights = [0.0] * n_styles
    weights[j], weights[j + 1] = plan.strength * (1.0 - f), plan.strength * f
    return weights


def _fit(image: Image.Image, size: int | None) -> np.ndarray:
    """``image`` at ``size`` pixels (nearest-neighbour up, for tiny generators; Lanczos down) as [H, W, 3] uint8."""
    if size is not None and image.size != (size, size):
        up = size > image.size[0]
        image = image.resize((size, size), Image.Resampling.NEAREST if up else Image.Resampling.LANCZOS)
    return np.asarray(image)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of a grid of ``n`` tiles: a square for square counts, as the official tool requires (4 -> 2x2,
    9 -> 3x3), else ``floor(sqrt(n))`` rows (2 -> 1x2, 3 -> 1x3, 6 -> 2x3)."""
    rows = max(1, math.isqrt(n))
    return rows, math.ceil(n / rows)


def _tile(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles [H, W, 3] in a near-square grid (:func:`grid_shape`), left to right then top to bottom; empty cells
    black."""
    rows, cols = grid_shape(len(tiles))
    h, w = tiles[0].shape[:2]
    out = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return out


def video_frames(source: Generator, styles: Style | list[Style | None] | None, plan: VideoPlan,
                 w_avg: torch.Tensor | None = None, batch: int = 4) -> Iterator[np.ndarray]:
    """Every frame of ``plan`` as an ``[H, W, 3]`` uint8 array, in order. ``styles``: None (the source), one Style
    (ramping in, or at ``plan.strength``), or a list: the video starts in the first style and morphs through the
    others (``plan.ramp`` is then moot), or with ``plan.grid`` shows each side by side on the same walk (None in a
    list: the source). Rendered ``batch`` frames at a time while the styles hold still, one at a time while they
    change."""
    plan.validate()
    styles = as_style_list(styles)
    ws = frame_latents(source, plan, w_avg)  # [F, 512]
    n = ws.shape[0]
    if plan.grid:
        mixes = [StyleMix(source, [s]) for s in styles]
        changing = plan.ramp and any(s is not None for s in styles)
    else:
        mixes = [StyleMix(source, styles)]
        changing = (len(styles) > 1 or plan.ramp) and any(s is not None for s in styles)
    step = 1 if changing else max(1, batch)
    for i in range(0, n, step):
        tiles = []
        for mix in mixes:
            weights = style_weights(1 if plan.grid else len(styles), plan, i, n)
            with torch.no_grad():
                images = mix.at(weights).synthesis(ws[i:i + step], noise_mode="const")  # [b, 3, H, W]
            tiles.append([_fit(image, plan.size) for image in to_pil(images.cpu())])
        for frame_tiles in zip(*tiles):
            yield frame_tiles[0] if len(frame_tiles) == 1 else _tile(list(frame_tiles))


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


def render_video(source: Generator, style_or_styles: Style | list[Style | None] | None, plan: VideoPlan,
                 path: str | os.PathLike, w_avg: torch.Tensor | None = None,
                 progress: Callable[[int], None] | None = None) -> Path:
    """Render ``plan`` with ``source`` and ``style_or_styles`` (None, one Style, or a list: a morph from the first
    style through the others, or side by side with ``plan.grid``; see :func:`video_frames`) into an MP4 at ``path``."""
    plan.validate()
    styles = as_style_list(style_or_styles)  # checked before any frame
    return write_mp4(video_frames(source, styles, plan, w_avg), path, plan.fps, progress=progress)



# ------------------------------------------------------------------------------------------- a photo's video
@dataclass(frozen=True)
class PhotoVideoPlan:
    """A video of one inverted photo: it holds each stop (the reconstruction, then each style) while the edit goes
    forth and back (0 -> ``edit_strength`` -> 0), then morphs to the next stop. The GIF copy is smaller and slower."""

    fps: int = 24
    hold_s: float = 1.5  # seconds at each stop (the edit's forth and back)
    morph_s: float = 1.0  # seconds from one stop to the next
    edit_strength: float = 0.0  # the edit's peak strength (0: no edit)
    style_strength: float = 1.0  # each style's strength (0: the source, 1: the full style)
    size: int | None = None  # MP4 frame side (None: the generator's); even
    gif_size: int = 256  # GIF frame side at most
    gif_fps: int = 12  # GIF frames per second at most (every k-th frame)

    def frames(self, n_stops: int) -> int:
        """Frames of the MP4 for ``n_stops`` stops."""
        return n_stops * self._hold() + (n_stops - 1) * self._morph()

    def _hold(self) -> int:
        return max(2, int(round(self.hold_s * self.fps)))

    def _morph(self) -> int:
        return max(1, int(round(self.morph_s * self.fps)))

    def validate(self, n_stops: int = 1) -> None:
        """Raise ``ValueError`` with a readable message for a video that cannot be made."""
        if not 1 <= self.fps <= 60:
            raise ValueError(f"Frames per second must be from 1 to 60, got {self.fps}.")
        if not (0.1 <= self.hold_s <= 60 and 0.1 <= self.morph_s <= 60):
            raise ValueError("The seconds at each style and between styles must be from 0.1 to 60.")
        if not math.isfinite(self.edit_strength):
            raise ValueError(f"The edit strength must be a finite number, got {self.edit_strength}.")
        if not 0.0 <= self.style_strength <= 1.0:
            raise ValueError(f"Style strength must be from 0 to 1, got {self.style_strength}.")
        if self.size is not None and not (16 <= self.size <= 2048 and self.size % 2 == 0):
            raise ValueError(f"The frame size must be an even number of pixels from 16 to 2048, got {self.size}.")
        if not (16 <= self.gif_size <= 1024 and 1 <= self.gif_fps <= 50):
            raise ValueError("The GIF size must be from 16 to 1024 pixels and its rate from 1 to 50 frames a second.")
        if self.frames(n_stops) > MAX_FRAMES:
            raise ValueError(f"That is {self.frames(n_stops)} frames; the limit is {MAX_FRAMES} (fewer styles or "
                             "fewer seconds).")

    def schedule(self, n_stops: int) -> list[tuple[int, int, float, float]]:
        """Per frame: (stop, next stop, morph fraction, edit fraction of ``edit_strength``)."""
        out: list[tuple[int, int, float, float]] = []
        hold, morph = self._hold(), self._morph()
        for k in range(n_stops):
            out += [(k, k, 0.0, math.sin(math.pi * f / (hold - 1)) ** 2) for f in range(hold)]
            if k < n_stops - 1:
                out += [(k, k + 1, _ease(f / (morph + 1)), 0.0) for f in range(1, morph + 1)]  # strictly between
        return out


def stop_weights(n_stops: int, i: int, j: int, t: float, strength: float) -> list[float]:
    """:class:`StyleMix` weights ``1 - t`` of the way at stop ``i`` and ``t`` at stop ``j``, times ``strength``."""
    weights = [0.0] * n_stops
    weights[i] += strength * (1.0 - t)
    weights[j] += strength * t
    return weights


def photo_frames(source: Generator, styles: list[Style], codes: torch.Tensor, plan: PhotoVideoPlan,
                 direction: torch.Tensor | None = None, batch: int = 4) -> Iterator[np.ndarray]:
    """Every frame of a photo's video as ``[H, W, 3]`` uint8: the codes ``[1, n_latent, 512]`` drawn at each stop
    (the source, then ``styles``), the edit ``direction`` going forth and back at each (frames of one generator
    are rendered ``batch`` at a time)."""
    stops: list[Style | None] = [None, *styles]
    plan.validate(len(stops))
    ref = next(source.parameters())
    codes = codes.to(ref)
    if direction is not None:
        apply_edit(codes, direction, 0.0)  # shape check before any frame
    mix = StyleMix(source, stops)  # the styles' fit is checked here, before any frame
    schedule = plan.schedule(len(stops))
    for _, group in itertools.groupby(schedule, key=lambda f: f[:3]):  # frames of one generator: in batches
        group = list(group)
        for k in range(0, len(group), max(1, batch)):
            part = group[k:k + max(1, batch)]
            w = torch.cat([codes if direction is None or e == 0 else
                           apply_edit(codes, direction, plan.edit_strength * e) for *_, e in part])  # [b, n_latent, D]
            with torch.no_grad():
                images = mix.at(stop_weights(len(stops), *part[0][:3], plan.style_strength)).synthesis(
                    w, noise_mode="const")  # [b, 3, H, W]
            for image in to_pil(images.cpu()):
                if plan.size is not None and image.size != (plan.size, plan.size):
                    up = plan.size > image.size[0]  # tiny generators: keep pixels sharp
                    image = image.resize((plan.size, plan.size),
                                         Image.Resampling.NEAREST if up else Image.Resampling.LANCZOS)
                yield np.asarray(image)


def write_gif(frames: list[Image.Image], path: str | os.PathLike, fps: int) -> Path:
    """An animated GIF that loops forever (Pillow), written atomically."""
    if not frames:
        raise ValueError("No frames to write.")
    duration = max(20, int(round(1000 / fps)))
    return atomic_write(path, lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                                                         duration=duration, loop=0))


def render_photo_video(source: Generator, styles: list[Style], codes: torch.Tensor, path: str | os.PathLike,
                       plan: PhotoVideoPlan | None = None, direction: torch.Tensor | None = None,
                       gif_path: str | os.PathLike | None = None,
                       progress: Callable[[int, int], None] | None = None) -> tuple[Path, Path | None]:
    """The photo's video (:func:`photo_frames`) as an MP4 at ``path`` and, with ``gif_path``, a smaller GIF
    (at most ``plan.gif_size`` px, ``plan.gif_fps`` frames a second) from the same frames. ``progress(done, total)``
    after each frame. Returns (MP4 path, GIF path or None)."""
    plan = plan or PhotoVideoPlan()
    total = plan.frames(len(styles) + 1)
    plan.validate(len(styles) + 1)
    every = max(1, int(round(plan.fps / plan.gif_fps)))
    gif: list[Image.Image] = []

    def tee() -> Iterator[np.ndarray]:
        for n, frame in enumerate(photo_frames(source, styles, codes, plan, direction)):
            if gif_path is not None and n % every == 0:
                image = Image.fromarray(frame)
                if image.width > plan.gif_size:
                    image = image.resize((plan.gif_size, plan.gif_size), Image.Resampling.LANCZOS)
                gif.append(image)
            yield frame

    mp4 = write_mp4(tee(), path, plan.fps, progress=(lambda done: progress(done, total)) if progress else None)
    return mp4, (write_gif(gif, gif_path, max(1, round(plan.fps / every))) if gif_path is not None else None)

__all__ = ["VideoPlan", "frame_latents", "StrengthBlend", "video_frames", "write_mp4", "render_video", "MAX_FRAMES",
           "PhotoVideoPlan", "stop_weights", "photo_frames", "write_gif", "render_photo_video"]
