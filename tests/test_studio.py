"""The front door, ``nada.Studio``, in tiny mode: generate, adapt (every record's ``.style``), invert, styles saved and
loaded by name, evaluate, video; ``import nada`` stays light; the README's Python example runs as written."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nada
from nada.invert import tiny_inversion_models
from nada.metrics import CLIP_KEYS
from nada.styles import Style, StyleFileError, StyleMismatchError, generator_fingerprint
from nada.tiny import TINY_INVERT, TINY_NAME

from .helpers import PROJECT_ROOT

ASTRONAUT = PROJECT_ROOT / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def studio() -> nada.Studio:
    return nada.Studio(tiny=True)


@pytest.fixture(scope="module")
def run(studio: nada.Studio) -> dict:
    """Three training steps on the 32 px tiny generator (fast), with the source's fingerprint before and after."""
    source = studio.store.generator(TINY_NAME)
    before = generator_fingerprint(source)
    records = list(studio.adapt("Photo", "Sketch", source=TINY_NAME, iterations=3, preview_every=2))
    return {"records": records, "before": before, "after": generator_fingerprint(source), "source": source}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


# ------------------------------------------------------------------------------------------------ import nada
def test_import_nada_loads_no_torch_and_names_resolve_lazily() -> None:
    code = textwrap.dedent("""
        import sys
        import nada
        assert "torch" not in sys.modules, "import nada loaded torch"
        assert "nada.studio" not in sys.modules and "nada.nets.stylegan2" not in sys.modules
        assert {"Studio", "Style", "RECIPES", "AdaptConfig"} <= set(dir(nada))
        studio_cls = nada.Studio
        assert "torch" in sys.modules  # used: now it loads
        import nada.studio, nada.styles, nada.train
        assert studio_cls is nada.studio.Studio and nada.Style is nada.styles.Style
        assert nada.RECIPES is nada.train.RECIPES and nada.AdaptConfig is nada.train.AdaptConfig
        assert {"paper", "shape", "notebook"} <= set(nada.RECIPES)
        assert nada.metrics.Evaluation is nada.Evaluation  # a module, reached as an attribute
        assert nada.notebook.tiny_mode({"NADA_TINY": "1"})
        try:
            nada.no_such_thing
        except AttributeError as exc:
            assert "no_such_thing" in str(exc)
        else:
            raise AssertionError("nada.no_such_thing resolved")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_tiny_defaults_to_the_nada_tiny_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NADA_TINY", "1")
    assert nada.Studio().tiny
    assert not nada.Studio(tiny=False).tiny
    monkeypatch.delenv("NADA_TINY")
    assert not nada.Studio().tiny  # nothing loads until used, so a real studio is free to make here
    assert nada.Studio(tiny=True).tiny


# ------------------------------------------------------------------------------------------------ generate
def test_generate_images_of_the_generators_size(studio: nada.Studio) -> None:
    assert studio.source == TINY_INVERT  # the generator photos are inverted into
    images = studio.generate([0, 1, 2])
    assert len(images) == 3 and all(isinstance(im, Image.Image) for im in images)
    assert {im.size for im in images} == {(256, 256)} and {im.mode for im in images} == {"RGB"}
    small = studio.generate(5, source=TINY_NAME)
    assert len(small) == 1 and small[0].size == (32, 32)
    again = studio.generate([2, 0], truncation=0.7)
    assert np.array_equal(pixels(again[1]), pixels(images[0]))  # a seed gives the same picture
    assert not np.array_equal(pixels(images[0]), pixels(images[1]))


def test_a_style_changes_pixels_and_strength_0_is_the_source(studio: nada.Studio, run: dict) -> None:
    style = run["records"][-1].style
    source = studio.generate([0, 1], source=TINY_NAME)
    styled = studio.generate([0, 1], style=style)  # the style names its generator ("tiny")
    zero = studio.generate([0, 1], style=style, strength=0.0)
    assert [im.size for im in styled] == [(32, 32), (32, 32)]
    for s, a, z in zip(source, styled, zero, strict=True):
        assert np.abs(pixels(a) - pixels(s)).mean() > 1.0
        assert np.array_equal(pixels(z), pixels(s))
    half = studio.generate([0], style=style, strength=0.5)[0]
    assert not np.array_equal(pixels(half), pixels(source[0])) and not np.array_equal(pixels(half), pixels(styled[0]))
    demo = studio.generate([0], style="tiny-invert-demo")[0]  # a ready-made style, by name
    assert demo.size == (256, 256)


def test_generate_refuses_bad_input(studio: nada.Studio, run: dict) -> None:
    with pytest.raises(ValueError, match="at least one seed"):
        studio.generate([])
    with pytest.raises(ValueError, match="seed"):
        studio.generate([-1])
    with pytest.raises(ValueError, match="Truncation"):
        studio.generate([0], truncation=1.5)
    with pytest.raises(ValueError, match="strength"):
        studio.generate([0], style=run["records"][-1].style, strength=2)
    with pytest.raises(ValueError, match="Unknown source generator 'ffhq-x'"):
        studio.generate([0], source="ffhq-x")
    with pytest.raises(StyleMismatchError, match="source='tiny'"):  # a style of the 32 px generator on the 256 px one
        studio.generate([0], style=run["records"][-1].style, source=TINY_INVERT)


# ------------------------------------------------------------------------------------------------ adapt
def test_every_record_has_a_style_and_the_last_is_the_trained_generator(run: dict) -> None:
    records, source = run["records"], run["source"]
    assert [r.step for r in records] == [1, 2, 3] and records[-1].done
    assert all(isinstance(r, nada.Progress) and isinstance(r.style, Style) for r in records)
    assert all(r.style.source == TINY_NAME and r.style.meta["steps"] == r.step for r in records)
    assert records[1].preview is not None and records[-1].preview is not None
    last = records[-1]
    src_sd, trained_sd = source.state_dict(), last.generator.state_dict()
    changed = {k: v for k, v in trained_sd.items() if not torch.equal(v, src_sd[k])}
    assert changed and set(last.style.tensors) == set(changed)
    assert all(torch.equal(last.style.tensors[k], changed[k].cpu()) for k in changed)
    # each record's style is a snapshot of its step, not a view of the weights that kept training
    first = records[0].style
    assert any(not torch.equal(first.tensors[k], last.style.tensors[k]) for k in first.tensors)
    assert last.style.meta["source_text"] == "Photo" and last.style.meta["target_text"] == "Sketch"


def test_adapt_leaves_the_source_generator_unchanged(run: dict) -> None:
    assert run["after"] == run["before"]


def test_style_every_and_bad_settings(studio: nada.Studio) -> None:
    records = list(studio.adapt("Photo", "Sketch", source=TINY_NAME, iterations=3, preview_every=0, style_every=2))
    assert [r.style is not None for r in records] == [False, True, True]  # step 2, and the last always
    only_last = list(studio.adapt("Photo", "Sketch", source=TINY_NAME, iterations=2, preview_every=0, style_every=0))
    assert [r.style is not None for r in only_last] == [False, True]
    with pytest.raises(ValueError, match="iteratons"):
        studio.adapt("Photo", "Sketch", iteratons=3)
    with pytest.raises(ValueError, match="recipe"):
        studio.adapt("Photo", "Sketch", recipe="fast")
    with pytest.warns(UserWarning, match="identity loss needs a face generator"):  # none in tiny mode: one rule
        no_id = list(studio.adapt("Photo", "Sketch", source=TINY_NAME, lambda_id=0.1, iterations=1))
    assert no_id[-1].style.meta["config"]["lambda_id"] == 0.0  # the style records what ran
    assert "needs a face generator" in no_id[0].warnings[0]
    fresh = nada.Studio(tiny=True)
    with pytest.raises(ValueError, match="Iterations must be at least 1"):
        fresh.adapt("Photo", "Sketch", iterations=0)
    assert fresh.store.loaded() == []  # refused before any model loaded


# ------------------------------------------------------------------------------------------------ styles
def test_save_and_load_style_by_name_and_path(studio: nada.Studio, run: dict, hub_cache: Path,
                                              tmp_path: Path) -> None:
    style = run["records"][-1].style
    path = studio.save_style(style, "My Sketch")
    assert path == (hub_cache / "styles" / "my-sketch.safetensors").resolve() and path.is_file()
    assert "my-sketch" in studio.styles and "tiny-invert-demo" in studio.styles
    for key in ("my-sketch", "My Sketch", path, str(path)):
        loaded = studio.load_style(key)
        assert set(loaded.tensors) == set(style.tensors)
        assert all(torch.equal(loaded.tensors[k], style.tensors[k]) for k in style.tensors)
        assert loaded.source == TINY_NAME and loaded.meta["target_text"] == "Sketch"
    elsewhere = studio.save_style(style, tmp_path / "sub.safetensors")
    assert elsewhere == tmp_path / "sub.safetensors" and studio.load_style(elsewhere).meta == loaded.meta
    with pytest.raises(StyleFileError, match="not found"):
        studio.load_style("no-such-style")
    with pytest.raises(StyleMismatchError):  # checked against the generator asked for
        studio.load_style("my-sketch", source=TINY_INVERT)
    with pytest.raises(TypeError):
        studio.save_style("my-sketch", "copy")


# ------------------------------------------------------------------------------------------------ invert
def test_invert_the_astronaut_in_styles(studio: nada.Studio, run: dict) -> None:
    demo = studio.load_style("tiny-invert-demo")
    result = studio.invert(ASTRONAUT, styles=[demo, "tiny-invert-demo"])
    assert isinstance(result, nada.InvertResult)
    assert result.aligned.size == (256, 256) and result.reconstruction.size == (256, 256)
    assert len(result.styled) == 2 and all(im.size == (256, 256) for im in result.styled)
    assert np.array_equal(pixels(result.styled[0]), pixels(result.styled[1]))
    assert np.abs(pixels(result.styled[0]) - pixels(result.reconstruction)).mean() > 1.0
    assert result.inversion.codes.shape == (1, 14, 512)
    none = studio.invert(result)  # the codes again: no styles, same reconstruction
    assert none.styled == [] and np.array_equal(pixels(none.reconstruction), pixels(result.reconstruction))
    zero = studio.invert(result, styles=[demo], strength=0.0)
    assert np.array_equal(pixels(zero.styled[0]), pixels(result.reconstruction))


def test_invert_refuses_a_style_of_another_generator_before_any_work(run: dict) -> None:
    fresh = nada.Studio(tiny=True)
    with pytest.raises(StyleMismatchError, match="photos are inverted into 'tiny-invert'"):
        fresh.invert(ASTRONAUT, styles=[run["records"][-1].style])
    with pytest.raises(StyleMismatchError, match="adapt"):
        fresh.invert(ASTRONAUT, styles=["tiny-demo"])
    assert fresh.store.loaded() == []  # refused before anything loaded, even the style's own generator
    with pytest.raises(StyleMismatchError, match="photos are inverted into"):
        fresh.invert(ASTRONAUT, styles="tiny-demo")  # one style on its own is one style, not letters
    with pytest.raises(ValueError, match="strength"):
        fresh.invert(ASTRONAUT, strength=1.5)


def test_the_tiny_invert_source_is_the_generator_the_tiny_encoder_was_made_for(studio: nada.Studio) -> None:
    _, latent_avg, generator = tiny_inversion_models()
    assert studio.store.fingerprint(TINY_INVERT) == generator_fingerprint(generator)
    assert torch.equal(studio.store.e4e()[1].cpu(), latent_avg)


# ------------------------------------------------------------------------------------------------ evaluate, video
def test_evaluate_returns_a_record_that_names_its_judge(studio: nada.Studio, run: dict) -> None:
    metrics = studio.evaluate(run["records"][-1].style, n=4)
    assert isinstance(metrics, nada.Evaluation)
    assert all(math.isfinite(getattr(metrics, k)) for k in CLIP_KEYS)
    assert metrics.source_text == "Photo" and metrics.target_text == "Sketch" and metrics.n == 4
    assert metrics.s_dir != 0.0  # the style moved the images
    assert metrics.judge == ("tiny-clip",) and metrics.id is None and "judged by tiny-clip" in metrics.judged_by
    assert set(CLIP_KEYS) <= set(metrics.as_dict())
    with pytest.warns(DeprecationWarning, match="record"):  # the dict it used to be still reads, for one release
        assert metrics["s_dir"] == metrics.s_dir
    with pytest.raises(ValueError, match="identity"):
        studio.evaluate(run["records"][-1].style, n=4, identity=True)


def test_video_writes_an_mp4(studio: nada.Studio, run: dict, tmp_path: Path) -> None:
    style = run["records"][-1].style
    path = studio.video([0, 1], style=style, path=tmp_path / "walk.mp4", seconds_per_seed=0.5, fps=8)
    assert path == tmp_path / "walk.mp4"
    data = path.read_bytes()
    assert len(data) > 1000 and data[4:8] == b"ftyp"  # an MP4 container
    with pytest.warns(DeprecationWarning, match="video"):  # the old order, (style, path, seeds), for one release
        old = studio.video(style, tmp_path / "old.mp4", [0, 1], seconds_per_seed=0.5, fps=8)
    assert old == tmp_path / "old.mp4" and old.read_bytes() == data  # the same video
    with pytest.raises(ValueError, match="fsp"):
        studio.video([0], path=tmp_path / "x.mp4", fsp=8)
    with pytest.raises(ValueError, match="path="):
        studio.video([0])


def test_old_names_still_work_with_a_deprecation_warning(studio: nada.Studio, run: dict) -> None:
    with pytest.warns(DeprecationWarning, match="nada.Progress"):
        import nada.studio
        assert nada.studio.StudioProgress is nada.Progress
    with pytest.warns(DeprecationWarning, match="properties"):
        assert studio.styles() == list(studio.styles) and studio.sources() == list(studio.sources)
    result = nada.InvertResult(*[studio.generate([0])[0]] * 2, styled=[studio.generate([1])[0]])
    with pytest.warns(DeprecationWarning, match="styled"):
        assert result.images is result.styled


# ------------------------------------------------------------------------------------------------ README
def readme_python() -> str:
    """The ```python block under the README's "## Python" heading."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python section has one ```python block"
    return blocks[0]


def test_readme_python_example_runs_in_tiny_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 hub_cache: Path) -> None:
    """The block, verbatim, with NADA_TINY=1, in a folder holding examples/astronaut.jpg."""
    code = readme_python()
    assert "nada.Studio()" in code and "studio.adapt(" in code and "studio.invert(" in code
    assert len(code.strip().splitlines()) <= 12
    (tmp_path / "examples").mkdir()
    shutil.copy(ASTRONAUT, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NADA_TINY", "1")
    scope: dict = {}
    exec(compile(code, "README.md:python", "exec"), scope)  # noqa: S102 - the README's own example
    assert scope["studio"].tiny
    assert (hub_cache / "styles" / "sketch.safetensors").is_file()
    for name in ("sketch-0.png", "sketch-1.png", "sketch-2.png", "astronaut-sketch.png"):
        with Image.open(tmp_path / name) as im:
            assert im.size == (256, 256)
    assert scope["record"].done and scope["record"].style.source == TINY_INVERT
    assert len(scope["photo"].styled) == 1
    assert os.environ["NADA_TINY"] == "1"


def test_a_zoo_from_a_list_of_prompts_lands_in_its_folder_and_renders(studio: nada.Studio, tmp_path) -> None:
    out = tmp_path / "zoo"
    prompts = ["Sketch | iterations=2", "Photo -> Pixar character | iterations=2 seed=3"]
    events = list(studio.zoo(prompts, out, source="tiny", judge_samples=0))
    done = [e.record["name"] for e in events if e.kind == "style"]
    assert done == ["sketch", "pixar-character"] and events[-1].kind == "pictures"
    assert {p.name for p in out.iterdir()} >= {"sketch.safetensors", "pixar-character.safetensors", "zoo.json",
                                               "sheet.png", "index.html"}
    plain, styled = studio.generate([0], source="tiny"), studio.generate([0], style=out / "sketch.safetensors")
    assert np.abs(np.asarray(plain[0], float) - np.asarray(styled[0], float)).max() > 0
    again = list(studio.zoo(prompts, out, source="tiny", judge_samples=0))  # the same run: nothing trains
    assert [e.kind for e in again] == ["skip", "skip"]
    with pytest.raises(ValueError, match="line 1"):
        studio.zoo(["Photo ->"], out, source="tiny")
