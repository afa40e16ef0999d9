"""Videos: a smooth walk through seeds with the style strength ramping up, encoded as a playable H.264 MP4."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from nada.model_store import ModelStore
from nada.render import render_seeds, to_pil
from nada.video import VideoPlan, frame_latents, render_video, video_frames

from .helpers import PROJECT_ROOT

av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def style():
    return ModelStore(tiny=True).published_style("tiny-demo")


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)]


def test_the_walk_starts_and_ends_on_the_seeds_and_moves_smoothly(tiny_generator):
    plan = VideoPlan(seeds=(3, 7, 11), seconds_per_seed=1.0, fps=10, truncation=0.7)
    ws = frame_latents(tiny_generator, plan)
    assert ws.shape == (plan.frames, tiny_generator.style_dim) and plan.frames == 20
    ends = frame_latents(tiny_generator, VideoPlan(seeds=(3, 11), truncation=0.7))
    assert torch.allclose(ws[0], ends[0]) and torch.allclose(ws[-1], ends[-1])  # the first and last seeds exactly
    steps = (ws[1:] - ws[:-1]).norm(dim=1)
    assert steps.max() < 3 * steps.mean()  # no jumps


def test_strength_ramps_from_the_source_to_the_full_style(tiny_generator, style):
    plan = VideoPlan(seeds=(5,), seconds_per_seed=1.0, fps=8, truncation=0.7)
    frames = list(video_frames(tiny_generator, style, plan))
    assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
    with torch.no_grad():
        source = np.asarray(to_pil(render_seeds(tiny_generator, [5], 0.7))[0], dtype=np.int16)
    first, last = frames[0].astype(np.int16), frames[-1].astype(np.int16)
    assert np.abs(first - source).max() <= 1  # strength 0: the source itself
    assert np.abs(last - source).mean() > 5  # strength 1: the style
    walk = list(video_frames(tiny_generator, style, VideoPlan(seeds=(5,), fps=8, seconds_per_seed=1.0, ramp=False)))
    assert np.abs(walk[0].astype(np.int16) - last).max() <= 1  # no ramp: the full style throughout


def test_the_mp4_plays_back_at_the_planned_length_and_size(tiny_generator, style, tmp_path):
    plan = VideoPlan(seeds=(1, 2), seconds_per_seed=1.0, fps=12, size=64)
    seen = []
    path = render_video(tiny_generator, style, plan, tmp_path / "walk.mp4", progress=seen.append)
    frames = decode(path)
    assert len(frames) == plan.frames == 12 and frames[0].shape == (64, 64, 3)
    assert seen[-1] == 12 and not list(tmp_path.glob(".*.part"))  # written whole, no leftover


@pytest.mark.parametrize("plan, message", [
    (VideoPlan(seeds=()), "at least one seed"),
    (VideoPlan(seeds=(1,), fps=0), "Frames per second"),
    (VideoPlan(seeds=(1,), size=33), "even number"),
    (VideoPlan(seeds=tuple(range(200)), seconds_per_seed=2.0), "the limit is"),
])
def test_impossible_videos_are_refused_before_rendering(tiny_generator, plan, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        render_video(tiny_generator, None, plan, tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


def test_the_command_line_writes_a_video(tmp_path):
    out = tmp_path / "walk.mp4"
    run = subprocess.run([sys.executable, "-m", "nada", "video", "--tiny", "--seed", "0-1", "--seconds", "0.5",
                          "--fps", "8", "--size", "64", "-o", str(out)], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-1000:]
    assert run.stdout.strip().endswith("walk.mp4") and len(decode(out)) == 4
    bad = subprocess.run([sys.executable, "-m", "nada", "video", "--tiny", "-o", str(tmp_path / "walk.gif")],
                         capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().startswith("error:") and "must end in .mp4" in bad.stderr


def test_the_generate_tab_makes_a_video_of_the_chosen_style():
    from nada.app import generate_tab
    from nada.app.sessions import SessionStyles

    store, session = ModelStore(tiny=True), SessionStyles()
    try:
        told = []
        path = generate_tab.make_video(store, session, "tiny-demo", 3, 0.7, 2, 1.0, lambda f, desc: told.append(f))
        assert told[0] == pytest.approx(1 / 36) and told[-1] == 1.0 and told == sorted(told)  # the progress bar
        frames = decode(path)
        assert len(frames) == 36 and frames[0].shape == (256, 256, 3)  # 2 seeds, 1.5 s at 24 fps, enlarged
        assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 5  # it moves and the style fades in
        with pytest.raises(Exception, match="[Ss]eed"):
            generate_tab.make_video(store, session, "tiny-demo", 1.5, 0.7, 2, 1.0)  # the same checks as Generate
    finally:
        session.cleanup()


def test_a_list_of_styles_is_checked_before_rendering(tiny_generator, style, tmp_path):
    plan = VideoPlan(seeds=(1,), seconds_per_seed=0.5, fps=4)
    with pytest.raises(ValueError, match="at least one style"):
        render_video(tiny_generator, [], plan, tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="at most 16 styles"):
        render_video(tiny_generator, [style] * 17, plan, tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="Style objects"):
        render_video(tiny_generator, [style, "nada-pixar"], plan, tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()
    # a one-style list is that style: the same frames as passing the style itself
    one = list(video_frames(tiny_generator, [style], plan))
    assert all(np.array_equal(a, b) for a, b in zip(one, video_frames(tiny_generator, style, plan)))
