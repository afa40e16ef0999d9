"""What the page does as it opens: the browser's styles found again (nada.app.style_menus.restore_session), the Generate
tab's opening pictures rendered once per process, the published styles' thumbnails, a click on one picking it
(nada.app.generate_tab)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from nada.app import generate_tab
from nada.app.generate_tab import GenerateGpu
from nada.app.sessions import BrowserSessions
from nada.app.style_menus import NO_STYLE, restore_session
from nada.app.thumbnails import StyleThumbnails
from nada.app.wiring import KEEP


def counting(gpu: GenerateGpu, name: str, calls: list, fail: Exception | None = None) -> GenerateGpu:
    """``gpu`` with its ``name`` call counted in ``calls`` (and failing with ``fail`` when given)."""
    inner = getattr(gpu, name)

    def call(*args, **kwargs):
        calls.append(args)
        if fail is not None:
            raise fail
        return inner(*args, **kwargs)

    return dataclasses.replace(gpu, **{name: call})


def test_a_reload_finds_the_browsers_styles_and_other_browsers_do_not(store):
    sessions = BrowserSessions()
    try:
        first = restore_session(store, sessions, None)  # a new browser: a new key
        assert len(first.browser_key) >= 20 and len(first.session) == 0
        first.session.add("sketch", store.published_style("tiny-demo"))
        again = restore_session(store, sessions, first.browser_key)  # the same browser, reloaded
        assert again.session is first.session and again.browser_key == first.browser_key
        assert ("sketch (tiny) · this session: tiny demo", "session:sketch") in again.generate_style.constructor_args[
            "choices"]  # named with its generator
        other = restore_session(store, sessions, "../../etc/passwd")  # never a path: just unknown
        assert other.browser_key != first.browser_key and len(other.session) == 0
    finally:
        sessions.close_all()


def test_the_opening_pictures_are_rendered_once_per_process(store, session):
    calls: list = []
    gpu = counting(GenerateGpu.direct(store), "render", calls)
    opening = generate_tab.OpeningImages()
    try:
        out = generate_tab.opening_images(store, opening, gpu=gpu)
        again = generate_tab.opening_images(store, opening, gpu=gpu)
        assert len(calls) == 1  # the second visitor gets the same files
        d = generate_tab.GENERATE_DEFAULTS
        assert [c for _, c in out.source_gallery] == [f"seed {s} · source (tiny)" for s in range(d.n_images)]
        assert [c for _, c in out.styled_gallery] == [f"seed {s} · tiny-demo" for s in range(d.n_images)]
        assert again.styled_gallery == out.styled_gallery and "opening pictures" in out.info
        # The same pictures as Generate draws.
        expected = generate_tab.generate(store, session, "tiny-demo", d.seed, d.truncation, 1, d.strength)
        with Image.open(out.styled_gallery[0][0]) as shown:
            assert np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(expected.styled_gallery[0][0]))
    finally:
        opening.close()
    assert not Path(out.source_gallery[0][0]).exists()


def test_opening_pictures_that_fail_say_why_and_are_tried_again(store):
    calls: list = []
    gpu = counting(GenerateGpu.direct(store), "render", calls, fail=MemoryError())
    opening = generate_tab.OpeningImages()
    out = generate_tab.opening_images(store, opening, gpu=gpu)
    assert out.source_gallery is KEEP and out.styled_gallery is KEEP  # no error over them
    assert out.info.startswith("The opening pictures could not be made: The server ran out of memory")
    generate_tab.opening_images(store, opening, gpu=gpu)
    assert len(calls) == 2  # a failure is not kept
    opening.close()


def test_the_published_gallery_shows_each_style_once_and_a_click_picks_it(store, session, hub_cache):
    calls: list = []
    gpu = counting(GenerateGpu.direct(store), "thumbnails", calls)
    thumbnails = StyleThumbnails.beside_weights(tiny=True)
    out = generate_tab.published_gallery(store, thumbnails, gpu=gpu)
    assert out.published_names == ["tiny-demo", "tiny-invert-demo"]
    assert [caption for _, caption in out.published] == ["Tiny demo style (tiny)",  # each names its generator
                                                         "Tiny demo style for inversion (tiny-invert)"]
    assert all(Path(p).parent == hub_cache / "thumbnails" / "tiny" for p, _ in out.published)  # beside the weights
    assert len(calls) == 2  # one render per source generator
    assert generate_tab.published_gallery(store, thumbnails, gpu=gpu).published == out.published
    assert len(calls) == 2  # rendered once ever: the next page load reads the files
    pick = generate_tab.select_published(out.published_names, gr.SelectData(None, {"index": 1, "value": None}))
    assert pick == "tiny-invert-demo"
    assert generate_tab.check_generate(store, session, pick, 0, 0.7, 1, 1.0)[0].name == "tiny-invert-demo"
    stale = generate_tab.select_published(out.published_names, gr.SelectData(None, {"index": 5, "value": None}))
    assert stale == gr.skip()


@pytest.mark.parametrize("label, short", [("Witcher (StyleGAN-NADA, from text)", "Witcher"),
                                          ("Tiny demo style (random, tiny mode)", "Tiny demo style"),
                                          ("Plain", "Plain")])
def test_thumbnail_captions_drop_the_parenthesised_note(label, short):
    assert generate_tab.short_label(label) == short


def test_a_real_space_opens_on_the_witcher_style_when_it_can_get_it(hub_cache, monkeypatch):
    from nada.model_store import ModelStore
    from nada.weights import REGISTRY

    real = ModelStore()
    assert generate_tab.default_style(real) == NO_STYLE  # offline (the tests) and not cached: no style
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert generate_tab.default_style(real) == generate_tab.OPENING_STYLE == "nada-witcher"  # a Space: downloaded once
    assert REGISTRY[generate_tab.OPENING_STYLE].source == real.default_source()
