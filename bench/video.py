"""Video cases: the Generate tab's walk (``nada.video``: render, then H.264 through PyAV) at 256 and 1024 px.

Each run renders and encodes a 12-frame walk through two seeds, the style fading in; ``fps`` is frames per second of
the median run. Optional (not in the default run): ``python -m bench --cases video256,video1024``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from nada.nets.stylegan2 import Generator
from nada.styles import style_from_generators
from nada.video import VideoPlan, render_video

FRAMES = 12  # per run: 2 seeds, 0.5 s at 24 fps


def walk_case(size: int) -> Callable[[torch.device], tuple[Callable[[], object], Callable[[], dict]]]:
    """A case: one walk of ``FRAMES`` frames at ``size`` px with a style fading in, written to a temp MP4."""

    def setup(device: torch.device) -> tuple[Callable[[], object], Callable[[], dict]]:
        torch.manual_seed(0)
        source = Generator(size).to(device).eval().requires_grad_(False)
        adapted = Generator(size).to(device).eval().requires_grad_(False)  # another random init: a "style"
        style = style_from_generators(source, adapted, {"source": f"random{size}"})
        plan = VideoPlan(seeds=(0, 1), seconds_per_seed=FRAMES / 24, fps=24)
        folder = Path(tempfile.mkdtemp(prefix="nada-bench-video-"))
        times: list[float] = []

        def run() -> Path:
            import time

            t0 = time.perf_counter()
            path = render_video(source, style, plan, folder / "walk.mp4", w_avg=torch.zeros(1, 512, device=device))
            times.append(time.perf_counter() - t0)
            return path

        def figures() -> dict:
            timed = sorted(times[1:] or times)  # the first run was the harness's warm-up
            best = timed[len(timed) // 2]
            return {"frames": plan.frames, "fps": round(plan.frames / best, 3)}

        return run, figures

    return setup


CASES = {"video256": walk_case(256), "video1024": walk_case(1024)}
OPTIONAL = ("video256", "video1024")
