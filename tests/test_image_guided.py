"""Image-guided adaptation: a few pictures as the target, on a CLIP stand-in whose embedding space is colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nada.app.adapt_tab import train_style
from nada.clip_loss import ClipGuide
from nada.images import ImageInputError
from nada.model_store import ModelStore
from nada.render import render_seeds
from nada.styles import load_style
from nada.target_images import MAX_SIDE, load_target_images, picture_hashes, to_tensor
from nada.train import AdaptConfig, adapt

from .helpers import ColourClip


def pictures(colour: tuple[int, int, int], n: int = 3, size: int = 64) -> list[Image.Image]:
    """``n`` noisy pictures of one colour (different, so their mean matters)."""
    rng = np.random.default_rng(sum(colour))
    out = []
    for _ in range(n):
        noise = rng.integers(-30, 30, size=(size, size, 3))
        out.append(Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)))
    return out


def redness(g, seeds=range(8)) -> float:
    """Mean red minus blue of the generator's images for fixed seeds."""
    with torch.no_grad():
        img = render_seeds(g, list(seeds), truncation=1.0)  # [N, 3, H, W]
    return float((img[:, 0] - img[:, 2]).mean())


def test_reddish_pictures_make_the_generator_redder(tiny_generator):
    clip = ColourClip(resolution=32)
    cfg = AdaptConfig(source_text="photo", target_text="", target_images=tuple(pictures((220, 40, 40))),
                      iterations=25, layers_k=0, lr=0.01, preview_every=0, preview_seeds=(0,))
    last = list(adapt(tiny_generator, [(clip, 1.0)], cfg))[-1]
    assert last.error is None and last.step == 25
    assert redness(last.generator) > redness(tiny_generator) + 0.05  # towards the pictures
    blue = AdaptConfig(source_text="photo", target_text="", target_images=tuple(pictures((40, 40, 220))),
                       iterations=25, layers_k=0, lr=0.01, preview_every=0, preview_seeds=(0,))
    assert redness(list(adapt(tiny_generator, [(clip, 1.0)], blue))[-1].generator) < redness(tiny_generator)


def test_text_and_pictures_together_average_the_two_directions(tiny_generator):
    clip = ColourClip(resolution=32)
    with torch.no_grad():
        samples = tiny_generator.synthesis(tiny_generator.mapping(torch.randn(8, tiny_generator.style_dim)))
    reds = [to_tensor(p) for p in pictures((220, 40, 40))]
    text = ClipGuide([(clip, 1.0)], "photo", "blue").directions[0].direction
    image = ClipGuide([(clip, 1.0)], "photo", "", target_images=reds, source_images=samples).directions[0].direction
    both = ClipGuide([(clip, 1.0)], "photo", "blue", target_images=reds, source_images=samples)
    expected = torch.nn.functional.normalize(text + image, dim=-1)
    assert torch.allclose(both.directions[0].direction, expected, atol=1e-6)
    assert abs(float((text * image).sum())) < 0.99  # two different directions, truly mixed
    # the global loss (used by the probe) aims at the pictures' mean feature, not at a text
    feats = both.image_features(torch.cat(reds))
    assert float(both.global_(feats)) < float(both.global_(both.image_features(samples)))


def test_a_mixed_text_and_picture_run_trains(tiny_generator):
    cfg = AdaptConfig(source_text="photo", target_text="red", target_images=tuple(pictures((220, 40, 40), 2)),
                      iterations=3, layers_k=2, probe_batch=2, preview_every=0, preview_seeds=(0,))
    last = list(adapt(tiny_generator, [(ColourClip(resolution=32), 1.0)], cfg))[-1]
    assert last.done and last.error is None and last.rows is not None and len(last.rows) == 2


def test_the_style_records_the_mode_and_picture_hashes_not_pictures(tmp_path):
    store = ModelStore(tiny=True)
    reds = pictures((220, 40, 40), 2)
    cfg = AdaptConfig(source_text="photo", target_text="", target_images=tuple(reds), iterations=2, layers_k=0,
                      preview_every=0, preview_seeds=(0,))
    path = tmp_path / "red.safetensors"
    updates = list(train_style(store, "tiny", cfg, str(path), {"source": "tiny"}))
    assert updates[-1].done and updates[-1].saved_step == 2
    meta = load_style(path).meta
    assert meta["mode"] == "image" and meta["config"]["target_images"] == picture_hashes(reds)
    assert all(isinstance(h, str) and len(h) == 16 for h in meta["config"]["target_images"])


def test_pictures_are_checked_before_anything_loads(tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    good = tmp_path / "red.png"
    pictures((220, 40, 40), 1)[0].save(good)
    with pytest.raises(ImageInputError, match="Target picture 2 of 3"):
        load_target_images([good, notes, good])
    with pytest.raises(ImageInputError, match="1 to 16 target pictures"):
        load_target_images([good] * 17)
    with pytest.raises(ImageInputError, match="at least 16 px"):
        load_target_images([Image.new("RGB", (8, 8))])
    big = load_target_images([Image.new("RGB", (3000, 1000), (200, 0, 0))])[0]
    assert max(big.size) == MAX_SIDE  # reduced to what CLIP needs
    with pytest.raises(ValueError, match="target prompt is empty"):
        AdaptConfig(source_text="photo", target_text="").validate()
    AdaptConfig(source_text="photo", target_text="", target_images=(good,)).validate()  # pictures name the target
    with pytest.raises(ValueError, match="1 to 16 target pictures"):
        AdaptConfig(target_images=(good,) * 17).validate()


def test_the_command_line_takes_pictures_as_the_target(tmp_path):
    import os
    import subprocess
    import sys

    from .helpers import PROJECT_ROOT

    files = []
    for i, picture in enumerate(pictures((220, 40, 40), 2)):
        files.append(str(tmp_path / f"red{i}.png"))
        picture.save(files[-1])
    out = tmp_path / "red.safetensors"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "nada", "adapt", "--tiny", "--from", "Photo", "--to-images", *files,
                          "--iterations", "2", "-o", str(out)], capture_output=True, text=True, cwd=PROJECT_ROOT,
                         env=env, timeout=180)
    assert run.returncode == 0, run.stderr[-1000:]
    assert load_style(out).meta["mode"] == "image"
    bad = tmp_path / "notes.jpg"
    bad.write_text("no")
    refused = subprocess.run([sys.executable, "-m", "nada", "adapt", "--tiny", "--from", "Photo", "--to-images",
                              files[0], str(bad), "-o", str(out)], capture_output=True, text=True, cwd=PROJECT_ROOT,
                             env=env, timeout=180)
    assert refused.returncode == 1 and "Target picture 2 of 2" in refused.stderr and "notes.jpg" in refused.stderr


def test_the_app_trains_towards_uploaded_pictures_and_says_so_in_the_style(tmp_path):
    from nada.app import adapt_tab
    from nada.app.sessions import SessionStyles
    from nada.app.training_queue import TrainingRuns

    files = []
    for i, picture in enumerate(pictures((220, 40, 40), 3)):
        files.append(str(tmp_path / f"red{i}.png"))
        picture.save(files[-1])
    store, session = ModelStore(tiny=True), SessionStyles()
    try:
        assert adapt_tab.picture_thumbnails(files) == files  # shown under the upload
        outs = list(adapt_tab.adapt_stream(store, TrainingRuns(), session, "tiny", "Photo", "", 3, 0, False,
                                         ["clip-vit-b32"], 1.0, 0.0, 0.0, 0.0, 0, 0.002, 2, "paper", None, files,
                                         min_interval_s=0.0))
        style = load_style(outs[-1].style_file)
        assert style.meta["mode"] == "image" and len(style.meta["config"]["target_images"]) == 3
        assert session.names() == ["image-style"]
    finally:
        session.cleanup()
