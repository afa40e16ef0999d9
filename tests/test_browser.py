"""The page in a real browser: Debian's chromium driven by playwright, tiny mode, on a desktop and a 390 px phone.

What a first-time visitor meets: the opening pictures and the published styles, training with its status, line and
charts, styles that survive a reload, Invert's captioned results, errors that touch nothing else, text alternatives
on every picture. ``NADA_UPDATE_SCREENSHOT=1`` also writes the README's pictures (``docs/*.png``) from these runs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
LONG = 60_000  # ms: a first render or a model load on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (Debian: apt-get install -y chromium; CI installs .ci/apt.txt)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def counting_store():
    """The tiny model store, counting what reaches it: ``renders`` (each render of seeds, the opening pictures, a
    video or thumbnails asks once for the truncation centre), optionally ``render_delay_s`` slower, as a real render
    is; ``inversions`` (each e4e inversion asks for the encoder)."""
    from nada.model_store import ModelStore

    class CountingStore(ModelStore):
        renders = inversions = 0
        render_delay_s = 0.0

        def truncation_center(self, name):
            self.renders += 1
            time.sleep(self.render_delay_s)
            return super().truncation_center(name)

        def e4e(self):
            self.inversions += 1
            return super().e4e()

    return CountingStore(tiny=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The tiny app on a free port, with its weights cache (thumbnails) in a temp folder; ``store`` counts renders."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    saved = os.environ.get("NADA_CACHE")
    os.environ["NADA_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import app
    from nada.app.sessions import BrowserSessions

    sessions = BrowserSessions()
    store = counting_store()
    demo = app.build_demo(store=store, sessions=sessions)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                **app.launch_kwargs())
    try:
        yield SimpleNamespace(url=demo.local_url, sessions=sessions, store=store)
    finally:
        demo.close()
        sessions.close_all()
        if saved is None:
            os.environ.pop("NADA_CACHE", None)
        else:
            os.environ["NADA_CACHE"] = saved


def open_page(browser_or_context, server, viewport=DESKTOP):
    is_browser = hasattr(browser_or_context, "new_context")  # a context has its viewport already
    page = browser_or_context.new_page(**({"viewport": viewport} if is_browser else {}))
    page.goto(server.url, wait_until="domcontentloaded", timeout=LONG)
    page.get_by_text("TINY MODE").first.wait_for(timeout=LONG)
    return page


def keep_picture(page, name: str, tmp_path: Path, element=None) -> Path:
    """Screenshot the page (or one element) into tmp_path; with NADA_UPDATE_SCREENSHOT=1 also into docs/."""
    shot = tmp_path / name
    (element or page).screenshot(path=str(shot), **({} if element else {"full_page": True}))
    assert shot.stat().st_size > 10_000
    if os.environ.get("NADA_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / name)
    return shot


def images_without_text(page) -> list[str]:
    """The visible pictures of the page with no text alternative (their source, shortened)."""
    return page.evaluate("""() => [...document.querySelectorAll('img')]
        .filter(i => i.offsetParent !== null && !(i.getAttribute('alt') || '').trim())
        .map(i => i.src.slice(0, 80))""")


def gallery_images(page, elem_id: str):
    return page.locator(f"#{elem_id} img")


def status_text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def invert_the_astronaut_smiling(page) -> None:
    """On the Invert tab (opened here when it is not): the example photo, the "smile" edit, then Invert pressed."""
    tab = page.get_by_role("tab", name="Invert")
    if tab.get_attribute("aria-selected") != "true":
        tab.click()
    page.locator("#invert-photo input[type=file]").set_input_files(str(ROOT / "examples" / "astronaut.jpg"))
    page.wait_for_timeout(1500)
    edit = page.locator("#invert-edit input")
    edit.fill("smile")
    edit.press("Enter")
    page.wait_for_timeout(500)
    page.locator("#invert-run").click()


def wait_status(page, elem_id: str, text: str, timeout: int = LONG) -> None:
    """Wait until the element's text contains ``text``."""
    page.wait_for_function("([id, text]) => (document.getElementById(id) || {innerText: ''}).innerText.includes(text)",
                           arg=[elem_id, text], timeout=timeout)


def under_the_arrow(page, elem_id: str) -> bool:
    """True if the dropdown's text area reaches under its arrow."""
    return page.evaluate("""(id) => { const d = document.getElementById(id);
        const input = d.querySelector('input').getBoundingClientRect(), icon = d.querySelector('.icon-wrap');
        const style = getComputedStyle(d.querySelector('input'));
        const textEnd = input.right - parseFloat(style.paddingRight);
        return icon !== null && textEnd > icon.getBoundingClientRect().left; }""", elem_id)


# ------------------------------------------------------------------------------------------------ first screen
def test_generate_opens_on_pictures_and_a_click_picks_a_published_style(browser, server, tmp_path):
    page = open_page(browser, server)
    try:
        gallery_images(page, "styled-gallery").nth(3).wait_for(state="visible", timeout=LONG)  # nothing pressed
        assert page.get_by_role("tab", name="Generate").get_attribute("aria-selected") == "true"  # opens on it
        assert gallery_images(page, "source-gallery").count() == 4
        assert "opening pictures" in status_text(page, "generate-info")
        thumbs = gallery_images(page, "published-styles")
        thumbs.nth(1).wait_for(state="visible", timeout=LONG)
        assert thumbs.count() == 2  # the two tiny demo styles, rendered once and kept beside the weights
        assert thumbs.nth(1).get_attribute("alt") == "Tiny demo style for inversion (tiny-invert)"  # the caption
        thumbs.nth(1).click()
        style = page.locator("#generate-style input")
        page.wait_for_function("() => document.querySelector('#generate-style input').value.includes('inversion')",
                               timeout=10_000)
        page.get_by_role("button", name="Generate", exact=True).click()
        page.wait_for_function("() => document.querySelector('#generate-info').innerText.includes('style "
                               "tiny-invert-demo')", timeout=LONG)  # rendered with the picked style
        assert "inversion" in style.input_value()
        assert images_without_text(page) == []
        keep_picture(page, "screenshot.png", tmp_path)
        page.get_by_role("button", name="Video: walk through the seeds, the style fading in").click()
        video = page.locator("#generate-video video")
        video.wait_for(state="visible", timeout=LONG)  # an MP4 the page plays
        page.wait_for_function("() => document.querySelector('#generate-video video').duration > 4", timeout=LONG)
        assert video.evaluate("v => v.videoWidth") == 256  # tiny frames, enlarged; 4 seeds at 1.5 s each
    finally:
        page.close()


def test_a_second_visit_gets_the_cached_opening_pictures(browser, server):
    """The opening pictures and the thumbnails are rendered once: a later visitor gets the same files, and the store
    (which counts every render) renders nothing for them."""
    first = open_generate(browser, server)  # the first visit, unless other tests made it already
    pictures, thumbnails = styled_sources(first), published_sources(first)
    first.close()
    renders = server.store.renders
    page = open_page(browser, server)
    try:
        gallery_images(page, "styled-gallery").nth(3).wait_for(state="visible", timeout=20_000)  # opens on Generate
        gallery_images(page, "published-styles").nth(1).wait_for(state="visible", timeout=20_000)
        page.wait_for_timeout(1500)  # anything the visit started would have rendered by now
        assert server.store.renders == renders
        assert styled_sources(page) == pictures and published_sources(page) == thumbnails
    finally:
        page.close()


def published_sources(page) -> list[str]:
    """The addresses of the published styles' thumbnails shown."""
    return page.evaluate("() => [...document.querySelectorAll('#published-styles img')].map(i => i.src)")


# ---------------------------------------------------------------------------------------------- live controls
def styled_sources(page) -> list[str]:
    """The addresses of the styled pictures shown (a new render has new files)."""
    return page.evaluate("() => [...document.querySelectorAll('#styled-gallery img')].map(i => i.src)")


def wait_new_pictures(page, before: list[str], timeout: int = LONG) -> list[str]:
    """Wait until the styled gallery shows other pictures than ``before``; returns their addresses."""
    page.wait_for_function("""(before) => { const now = [...document.querySelectorAll('#styled-gallery img')]
        .map(i => i.src); return now.length > 0 && now.every(s => !before.includes(s)); }""", arg=before,
                           timeout=timeout)
    return styled_sources(page)


def open_generate(browser_or_context, server, viewport=DESKTOP):
    """The Generate tab with its opening pictures and thumbnails shown and nothing left running."""
    page = open_page(browser_or_context, server, viewport)  # the page opens on Generate
    gallery_images(page, "styled-gallery").nth(3).wait_for(state="visible", timeout=LONG)
    gallery_images(page, "published-styles").nth(1).wait_for(state="visible", timeout=LONG)
    page.wait_for_timeout(1500)
    assert "opening pictures" in status_text(page, "generate-info")  # opening the page renders nothing more
    return page


def drag(page, slider, start: float, end: float, steps: int = 4) -> None:
    """Drag ``slider`` with the mouse from one fraction of its width to another, through several values."""
    box = slider.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    for i in range(1, steps + 1):
        page.mouse.move(box["x"] + box["width"] * (start + (end - start) * i / steps), y, steps=2)
    page.mouse.up()


def test_generate_re_renders_when_a_slider_is_released_and_when_a_seed_is_typed(browser, server):
    """No Generate press: a drag of the truncation slider renders once, on release; a typed seed, the dice and a
    picked style render too, and the info line says what is shown."""
    page = open_generate(browser, server)
    try:
        shown, renders = styled_sources(page), server.store.renders
        truncation = page.get_by_label("range slider for Truncation")
        drag(page, truncation, 0.75, 0.3)
        value = float(truncation.input_value())
        assert 0.2 < value < 0.4
        shown = wait_new_pictures(page, shown)
        wait_status(page, "generate-info", f"truncation {value:g}, seeds 0–3")
        page.wait_for_timeout(1000)
        assert server.store.renders - renders == 1  # one render for the whole drag, on release

        page.locator("#generate-seed input").fill("5")
        shown = wait_new_pictures(page, shown)
        wait_status(page, "generate-info", "seeds 5–8")
        assert page.locator("#styled-gallery").get_by_text("seed 5 · tiny-demo").first.is_visible()

        page.get_by_role("button", name="Random seed").click()
        shown = wait_new_pictures(page, shown)
        assert "seeds 5–8" not in status_text(page, "generate-info")

        page.locator("#generate-style input").click()
        page.get_by_role("option", name=re.compile("inversion")).click()
        wait_new_pictures(page, shown)
        wait_status(page, "generate-info", "style tiny-invert-demo")
        assert _error_marks(page) == []
    finally:
        page.close()


def test_a_refused_or_half_typed_seed_renders_nothing_and_marks_only_the_seed(browser, server):
    page = open_generate(browser, server)
    try:
        seed, renders = page.locator("#generate-seed input"), server.store.renders
        seed.fill("")  # emptied to type another: no message, no render
        page.wait_for_timeout(1500)
        assert server.store.renders == renders and "opening pictures" in status_text(page, "generate-info")
        assert page.locator("#generate-seed .validation-error").count() == 0
        seed.fill("1.5")  # refused as Generate refuses it: the message on the seed, nothing else changes
        page.get_by_text("got 1.5").first.wait_for(timeout=20_000)
        page.wait_for_timeout(1000)
        assert server.store.renders == renders and _error_marks(page) == []
        assert "opening pictures" in status_text(page, "generate-info")
        seed.fill("2")
        wait_status(page, "generate-info", "seeds 2–5")
        page.wait_for_function("() => !document.querySelector('#generate-seed .validation-error')", timeout=10_000)
    finally:
        page.close()


def test_quick_changes_make_at_most_two_renders_and_the_last_settings_show(browser, server):
    """Changes made while a (slowed) render runs wait for it; only the newest of them runs."""
    page = open_generate(browser, server)
    server.store.render_delay_s = 1.5  # a real render's time, so that the changes below overlap it
    try:
        renders, shown = server.store.renders, styled_sources(page)
        seed = page.locator("#generate-seed input")
        for value in ("21", "22", "23"):
            seed.fill(value)
        page.get_by_label("range slider for Truncation").focus()
        for _ in range(2):
            page.keyboard.press("ArrowLeft")
        page.get_by_label("range slider for Images").focus()
        page.keyboard.press("ArrowLeft")
        wait_status(page, "generate-info", "truncation 0.68, seeds 23–25")  # the last settings of all three
        wait_new_pictures(page, shown)
        page.wait_for_timeout(3000)  # anything still waiting would have started by now
        assert 1 <= server.store.renders - renders <= 2
        assert gallery_images(page, "styled-gallery").count() == 3
    finally:
        server.store.render_delay_s = 0.0
        page.close()


def test_keys_on_a_slider_and_a_touch_drag_re_render_once_each(browser, server):
    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    try:
        page = open_generate(context, server)
        truncation = page.get_by_label("range slider for Truncation")
        truncation.scroll_into_view_if_needed()
        renders, shown = server.store.renders, styled_sources(page)
        truncation.focus()
        for _ in range(5):  # five presses, then the keys stop: one render
            page.keyboard.press("ArrowLeft")
        shown = wait_new_pictures(page, shown)
        wait_status(page, "generate-info", "truncation 0.65")
        page.wait_for_timeout(1000)
        assert server.store.renders - renders == 1

        renders = server.store.renders
        box = truncation.bounding_box()
        y = box["y"] + box["height"] / 2
        cdp = context.new_cdp_session(page)
        points = [0.5, 0.45, 0.4, 0.35, 0.3, 0.25]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [
            {"x": box["x"] + box["width"] * points[0], "y": y}]})
        for f in points[1:]:  # a finger dragging through several values
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                {"x": box["x"] + box["width"] * f, "y": y}]})
            page.wait_for_timeout(50)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        value = float(truncation.input_value())
        assert value < 0.4
        wait_new_pictures(page, shown)
        wait_status(page, "generate-info", f"truncation {value:g}")
        page.wait_for_timeout(1000)
        assert server.store.renders - renders == 1  # once, when the finger is lifted
    finally:
        context.close()


# ---------------------------------------------------------------------------------- generate: a visitor's first minute
VIEWPORTS = [pytest.param(DESKTOP, id="desktop"), pytest.param(PHONE, id="phone")]


def box_of(page, selector: str) -> dict:
    """The element's box in the page (not the window): x, y, width, height, plus bottom and right."""
    box = page.locator(selector).first.evaluate("""e => { const r = e.getBoundingClientRect();
        return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}; }""")
    return {**box, "bottom": box["y"] + box["height"], "right": box["x"] + box["width"]}


def covered(page, selector: str) -> bool:
    """True if something else is drawn over the first word of the element's text (a badge, a label, a box), the
    element scrolled into view."""
    page.locator(selector).first.scroll_into_view_if_needed()
    return page.locator(selector).first.evaluate("""e => {
        const walker = document.createTreeWalker(e, NodeFilter.SHOW_TEXT,
            {acceptNode: n => n.textContent.trim() ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT});
        const text = walker.nextNode(); if (!text) return true;
        const start = text.textContent.search(/\\S/), range = document.createRange();
        range.setStart(text, start); range.setEnd(text, Math.min(start + 3, text.textContent.length));
        const r = range.getBoundingClientRect();
        const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
        return !(top && (top === text.parentElement || text.parentElement.contains(top) || top.contains(text))); }""")


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_page_opens_on_pictures_and_their_controls(browser, server, viewport, tmp_path):
    """The page opens on Generate: on a desktop the pictures, the style, seed and truncation, the Generate button and
    its status line are all inside the first screen; on a phone the pictures come first, near the top, and their
    controls follow, all before the published styles' thumbnails. The status line sits under the Generate button."""
    page = open_page(browser, server, viewport)
    try:
        gallery_images(page, "styled-gallery").nth(3).wait_for(state="visible", timeout=LONG)
        gallery_images(page, "published-styles").nth(1).wait_for(state="visible", timeout=LONG)
        assert page.get_by_role("tab", name="Generate").get_attribute("aria-selected") == "true"
        assert page.evaluate("() => scrollY") == 0
        pictures = [box_of(page, f"#{g} img >> nth={i}") for g in ("source-gallery", "styled-gallery")
                    for i in range(4)]
        controls = {name: box_of(page, f"#generate-{name}") for name in ("style", "seed", "truncation", "run", "info")}
        thumbnails = box_of(page, "#published-styles")
        if viewport is DESKTOP:  # everything on the first screen, side by side
            for box in pictures + list(controls.values()):
                assert 0 <= box["y"] and box["bottom"] <= viewport["height"], box
            assert max(b["right"] for b in pictures) <= controls["style"]["x"]  # pictures left, controls right
        else:  # the pictures first, then their controls, then the thumbnails
            assert pictures[0]["bottom"] <= viewport["height"]  # the first picture on the first screen
            assert max(b["bottom"] for b in pictures) <= min(b["y"] for b in controls.values())
            assert max(b["bottom"] for b in controls.values()) <= thumbnails["y"]
            assert max(b["right"] for b in pictures + list(controls.values())) <= viewport["width"]
        run, info = controls["run"], controls["info"]
        assert 0 <= info["y"] - run["bottom"] <= 40 and info["x"] < run["right"] and run["x"] < info["right"]
        page.screenshot(path=str(tmp_path / "generate.png"))
    finally:
        page.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_video_fits_the_window_with_its_controls(browser, server, viewport):
    """The Generate tab's video (also Mix's) is drawn at most ~600 px tall on a desktop and no wider than a phone,
    its player controls inside its box: scrolled to, all of it is in view (it was 1216 px tall in a 900 px window)."""
    page = open_generate(browser, server, viewport)
    try:
        page.locator("#generate-make-video").click()
        video = page.locator("#generate-video video")
        video.wait_for(state="visible", timeout=LONG)
        page.wait_for_function("() => document.querySelector('#generate-video video').duration > 4", timeout=LONG)
        page.locator("#generate-video").scroll_into_view_if_needed()
        video.hover()  # the player shows its controls
        block = page.locator("#generate-video").bounding_box()
        shown = video.bounding_box()
        bar = page.locator("#generate-video .controls").bounding_box()
        assert shown["height"] <= 600 and block["height"] <= 610
        assert block["x"] >= 0 and block["x"] + block["width"] <= viewport["width"]
        assert 0 <= block["y"] and block["y"] + block["height"] <= viewport["height"]  # all of it in view
        assert block["y"] <= bar["y"] and bar["y"] + bar["height"] <= block["y"] + block["height"]
        assert page.locator("#generate-video .controls").is_visible()
        assert _error_marks(page) == []
    finally:
        page.close()


def option_texts(page, elem_id: str) -> list[str]:
    """The options of an open dropdown, as listed (without the tick of the picked one)."""
    return [t.split("\n")[-1].strip() for t in page.locator(f"#{elem_id}").get_by_role("option").all_inner_texts()]


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_style_picker_names_the_styles_generator(browser, server, viewport):
    """Generate's style picker, the published thumbnails' captions and the Mix rows name the generator each style
    is for (the two tiny demo styles are of different generators, and only styles of one generator mix)."""
    page = open_generate(browser, server, viewport)
    try:
        named = re.compile(r"\((tiny|tiny-invert)\)")
        thumbs = gallery_images(page, "published-styles")
        assert [thumbs.nth(i).get_attribute("alt") for i in range(thumbs.count())] == [
            "Tiny demo style (tiny)", "Tiny demo style for inversion (tiny-invert)"]
        assert page.locator("#published-styles").get_by_text("Tiny demo style (tiny)").first.is_visible()
        page.locator("#generate-style input").click()
        options = option_texts(page, "generate-style")
        assert len(options) == 3 and all(named.search(o) for o in options), options
        assert "Tiny demo style for inversion (tiny-invert) · random, tiny mode" in options
        page.keyboard.press("Escape")
        page.get_by_text("Mix styles: blend up to four styles").click()
        page.locator("#mix-style-2 input").click()
        rows = option_texts(page, "mix-style-2")
        assert rows[0] == "(no style)" and len(rows) == 3 and all(named.search(o) for o in rows[1:]), rows
        page.keyboard.press("Escape")
    finally:
        page.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_the_mix_rows_start_with_styles_that_mix(browser, server, viewport):
    """The Mix rows start with what mixes (they offered two styles of different generators): tiny mode publishes one
    style per generator, so Style 1 starts with the tiny demo style alone and the box says why; releasing its
    weight previews the mix in the tab's pictures with no error anywhere."""
    page = open_generate(browser, server, viewport)
    try:
        page.get_by_text("Mix styles: blend up to four styles").click()
        assert page.locator("#mix-style-1 input").input_value() == "Tiny demo style (tiny) · random, tiny mode"
        assert page.locator("#mix-style-2 input").input_value() == "(no style)"
        assert "one published style" in page.locator("#mix-note").inner_text()
        shown = styled_sources(page)
        weight = page.locator("#mix-weight-1 input[data-testid='number-input']")
        weight.fill("0.8")
        weight.press("Enter")  # released: the preview
        wait_status(page, "generate-info", "style mix 0.8·tiny-demo")
        wait_new_pictures(page, shown)
        assert "not saved" in status_text(page, "generate-info")
        assert page.locator(".validation-error").count() == 0 and _error_marks(page) == []
    finally:
        page.close()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_refused_press_says_why_beside_its_button_and_nothing_covers_the_message(browser, server, viewport):
    """A refused Generate press says why on the status line under the button as well as on the seed; a refused Mix
    says why under its buttons as well as on the row at fault, whose message no label or badge covers (the row's
    label covered its first word)."""
    page = open_generate(browser, server, viewport)
    try:
        renders = server.store.renders
        page.locator("#generate-seed input").fill("1.5")
        page.locator("#generate-seed").get_by_text("got 1.5").wait_for(timeout=20_000)  # on the input, as typed
        page.locator("#generate-run").click()
        wait_status(page, "generate-info", "Not rendered: The seed must be a whole number")
        run, info = box_of(page, "#generate-run"), box_of(page, "#generate-info")
        assert 0 <= info["y"] - run["bottom"] <= 40  # right under the button
        assert not covered(page, "#generate-info") and not covered(page, "#generate-seed [data-testid='block-info']")
        assert server.store.renders == renders and _error_marks(page) == []  # nothing rendered, nothing marked

        page.get_by_text("Mix styles: blend up to four styles").click()
        page.locator("#mix-style-2 input").click()
        page.locator("#mix-style-2").get_by_role("option", name=re.compile("for inversion")).click()
        page.locator("#mix-run").click()
        wait_status(page, "mix-status", "Not saved: Only styles of one generator mix")
        message = page.locator("#mix-style-2 .validation-error")
        message.wait_for(timeout=20_000)
        assert "Only styles of one generator mix" in message.inner_text()
        assert not covered(page, "#mix-style-2 .validation-error") and not covered(page, "#mix-status")
        label = page.locator("#mix-style-2 [data-testid='block-info']").bounding_box()
        shown = message.bounding_box()
        assert shown["y"] + shown["height"] <= label["y"] + 1  # above the row's label, not over it
        buttons, status = [box_of(page, "#mix-run"), box_of(page, "#mix-video")], box_of(page, "#mix-status")
        assert 0 <= status["y"] - max(b["bottom"] for b in buttons) <= 40  # right under the two buttons
        assert _error_marks(page) == []
    finally:
        page.close()


# ---------------------------------------------------------------------------------------------------- training
def test_training_shows_its_state_waits_in_line_and_keeps_styles_across_reloads(browser, server, tmp_path):
    first = browser.new_context(viewport=DESKTOP)  # two visitors: separate browsers (their own localStorage)
    second = browser.new_context(viewport=DESKTOP)
    try:
        page = open_page(first, server)
        page.get_by_role("tab", name="Adapt").click()  # the page opens on Generate
        page.get_by_text("Shape change").first.click()  # probes 2/3 of the rows: the rows chart has both kinds
        page.wait_for_timeout(500)  # the recipe sets its steps; ours is typed after it
        page.get_by_label("Training steps").fill("400")
        page.get_by_label("Target text").fill("Sketch")
        page.get_by_label("Target text").press("Enter")  # Enter starts training
        train = page.locator("#adapt-train")
        page.wait_for_function("() => document.querySelector('#adapt-train').disabled", timeout=LONG)
        assert "Training" in train.inner_text()  # shows that it runs, and cannot be pressed twice
        wait_status(page, "adapt-status", "Step ")
        page.locator("#adapt-preview img").wait_for(state="visible", timeout=LONG)

        other = open_page(second, server)
        other.get_by_role("tab", name="Adapt").click()
        other.get_by_label("Target text").fill("Werewolf")
        other.locator("#adapt-train").click()
        wait_status(other, "adapt-status", "Waiting in line")
        assert "number 2" in status_text(other, "adapt-status")  # in words, with its place
        assert other.locator("#adapt-train").is_disabled()

        page.wait_for_timeout(1500)  # a few steps for the chart
        # One loss term on: a single "loss" line; the rows chart tells trained from frozen rows. Both legends are
        # whole inside their charts (they were cut off below the axes).
        for chart, names in (("#adapt-losses", ["loss"]), ("#adapt-layers", ["trained", "frozen"])):
            legend = page.locator(f"{chart} .role-legend").first
            legend.wait_for(state="visible", timeout=10_000)
            labels = legend.locator(".role-legend-label text").all_text_contents()
            assert sorted(labels) == sorted(names)
            box, inner = page.locator(chart).bounding_box(), legend.bounding_box()
            assert box["y"] <= inner["y"] and inner["y"] + inner["height"] <= box["y"] + box["height"]
            assert box["x"] <= inner["x"] and inner["x"] + inner["width"] <= box["x"] + box["width"]
        assert images_without_text(page) == []
        keep_picture(page, "adapt.png", tmp_path)

        page.locator("#adapt-stop").click()
        wait_status(page, "adapt-status", "Saved the style sketch")
        status = status_text(page, "adapt-status")
        assert "Generate tab" in status and "Invert" not in status  # a 32 px tiny style cannot be inverted into
        page.wait_for_function("() => !document.querySelector('#adapt-train').disabled", timeout=10_000)
        assert train.inner_text().strip() == "Train"

        wait_status(other, "adapt-status", "Saved the style werewolf")  # its turn came by itself

        page.reload(wait_until="domcontentloaded")  # the styles survive a reload, in this browser only
        page.get_by_text("TINY MODE").first.wait_for(timeout=LONG)
        page.get_by_role("tab", name="Generate").click()
        page.locator("#generate-style input").click()
        page.get_by_role("option", name="sketch (tiny) · this session: Sketch").wait_for(timeout=20_000)
        assert page.get_by_role("option", name="werewolf (tiny) · this session: Werewolf").count() == 0
        other.reload(wait_until="domcontentloaded")
        other.get_by_text("TINY MODE").first.wait_for(timeout=LONG)
        other.get_by_role("tab", name="Generate").click()
        other.locator("#generate-style input").click()
        other.get_by_role("option", name="werewolf (tiny) · this session: Werewolf").wait_for(timeout=20_000)
        assert other.get_by_role("option", name="sketch (tiny) · this session: Sketch").count() == 0
    finally:
        first.close()
        second.close()


# ------------------------------------------------------------------------------------------------------ invert
def test_invert_shows_each_result_whole_and_captioned_beside_the_face(browser, server, tmp_path):
    page = open_page(browser, server)
    try:
        page.get_by_role("tab", name="Invert").click()
        page.locator("#invert-photo input[type=file]").set_input_files(str(ROOT / "examples" / "astronaut.jpg"))
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Invert", exact=True).click()
        result = gallery_images(page, "invert-gallery").first
        result.wait_for(state="visible", timeout=LONG)
        page.locator("#invert-aligned img").wait_for(state="visible", timeout=LONG)
        caption = page.locator("#invert-gallery").get_by_text("tiny-invert-demo (strength 1)")
        assert caption.first.is_visible()  # captioned with its style
        fit = result.evaluate("""i => { const r = i.getBoundingClientRect(), c = i.closest('button') || i.parentElement;
            const b = c.getBoundingClientRect(); const s = getComputedStyle(i);
            return {fit: s.objectFit, inside: r.left >= b.left - 1 && r.right <= b.right + 1 && r.top >= b.top - 1
                    && r.bottom <= b.bottom + 1, w: r.width}; }""")
        assert fit["fit"] == "contain" and fit["inside"] and fit["w"] >= 150  # whole, not a zoomed crop
        aligned = page.locator("#invert-aligned").bounding_box()
        gallery = page.locator("#invert-gallery").bounding_box()
        assert abs(aligned["y"] - gallery["y"]) < 5 and gallery["x"] > aligned["x"]  # beside the face
        assert images_without_text(page) == []
        keep_picture(page, "invert.png", tmp_path)
    finally:
        page.close()


def test_invert_strength_release_redraws_the_kept_codes_without_inverting_again(browser, server):
    page = open_generate(browser, server)  # the page's own first renders done
    try:
        page.get_by_role("tab", name="Invert").click()
        strength = page.get_by_label("range slider for Style strength", exact=True)
        renders = server.store.renders, server.store.inversions
        drag(page, strength, 0.9, 0.5)  # no photo yet: nothing runs, nothing is marked
        page.wait_for_timeout(1500)
        assert (server.store.renders, server.store.inversions) == renders and _error_marks(page) == []
        strength.focus()
        page.keyboard.press("End")  # back to 1
        page.locator("#invert-photo input[type=file]").set_input_files(str(ROOT / "examples" / "astronaut.jpg"))
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Invert", exact=True).click()
        gallery = page.locator("#invert-gallery")
        gallery.get_by_text("tiny-invert-demo (strength 1)").first.wait_for(timeout=LONG)
        first = gallery_images(page, "invert-gallery").first.get_attribute("src")
        inversions = server.store.inversions
        strength.focus()
        for _ in range(3):
            page.keyboard.press("ArrowLeft")
        gallery.get_by_text("tiny-invert-demo (strength 0.97)").first.wait_for(timeout=LONG)
        assert gallery_images(page, "invert-gallery").first.get_attribute("src") != first
        drag(page, strength, 0.6, 0.2)
        value = float(strength.input_value())
        gallery.get_by_text(f"tiny-invert-demo (strength {value:g})").first.wait_for(timeout=LONG)
        assert server.store.inversions == inversions  # redrawn from the kept W+ codes, not inverted again
        assert page.locator("#invert-aligned img").is_visible() and _error_marks(page) == []
    finally:
        page.close()


def test_invert_edit_row_edits_the_face_and_the_video_plays_as_mp4_and_gif(browser, server):
    page = open_page(browser, server)
    try:
        page.get_by_role("tab", name="Invert").click()
        edit = page.locator("#invert-edit input")
        edit.fill("   ")  # an empty edit: refused on its input, nothing runs
        edit.press("Enter")
        page.locator("#invert-photo input[type=file]").set_input_files(str(ROOT / "examples" / "astronaut.jpg"))
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Invert", exact=True).click()
        page.get_by_text("The edit is empty").first.wait_for(timeout=30_000)
        assert gallery_images(page, "invert-gallery").count() == 0
        edit.fill("smile")  # a preset, picked by typing
        edit.press("Enter")
        page.wait_for_function("() => document.querySelector('#invert-edit input').value === 'smile'",
                               timeout=10_000)
        assert page.get_by_label("range slider for Edit strength", exact=True).input_value() == "1.5"
        page.get_by_role("button", name="Invert", exact=True).click()
        gallery = page.locator("#invert-gallery")
        gallery.get_by_text("edited: smile +1.5").first.wait_for(timeout=LONG)  # the edited face first ...
        assert gallery.get_by_text("tiny-invert-demo (strength 1) · smile +1.5").first.is_visible()  # ... and styled
        assert gallery_images(page, "invert-gallery").count() == 2
        page.locator("#invert-reconstruction img").wait_for(state="visible", timeout=LONG)  # the plain one beside
        page.locator("#invert-make-video").click()
        video = page.locator("#invert-video video")
        video.wait_for(state="visible", timeout=LONG)  # an MP4 the page plays: 2 stops, the edit forth and back
        page.wait_for_function("() => document.querySelector('#invert-video video').duration > 2", timeout=LONG)
        assert video.evaluate("v => v.videoWidth") == 256
        gif = page.locator("#invert-gif img")
        gif.wait_for(state="visible", timeout=LONG)
        assert ".gif" in gif.get_attribute("src")  # the GIF for sharing, shown in the page
        assert images_without_text(page) == [] and _error_marks(page) == []
    finally:
        page.close()


# ------------------------------------------------------------------------------------- adapt and invert: words
def in_view(page, elem_id: str) -> bool:
    """True if the element is wholly inside the viewport (the visitor sees it without scrolling)."""
    return page.evaluate("""(id) => { const r = document.getElementById(id).getBoundingClientRect();
        return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }""", elem_id)


def words_uncovered(page, elem_id: str) -> bool:
    """True once the text of a status line is what the page shows at its start (no status mark drawn over it); the
    button's own event, refused by its validator, may mark the line as pending for a moment before that."""
    page.wait_for_function("""(id) => { const p = document.querySelector('#' + id + ' .prose');
        const r = p.getBoundingClientRect(); const hit = document.elementFromPoint(r.left + 4, r.top + 6);
        return hit !== null && p.contains(hit) && !hit.closest('[data-testid=status-tracker]'); }""", arg=elem_id,
                           timeout=10_000)
    return True


def press_at_center(page, button) -> None:
    """Scroll ``button`` to the middle of the viewport, as a visitor would to press it, and press it."""
    button.evaluate("b => b.scrollIntoView({block: 'center'})")
    button.click()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_refused_or_failed_action_says_why_beside_its_button(browser, server, viewport, tmp_path):
    """Train with an empty or a 500-character target, Invert with no photo or with no face: the words are on the
    status line under the pressed button (in view, nothing drawn over them) as well as on the input at fault, and
    nothing else changes."""
    from PIL import Image

    page = open_page(browser, server, viewport)
    try:
        page.get_by_role("tab", name="Adapt").click()
        train, target = page.locator("#adapt-train"), page.get_by_label("Target text")
        for text, words in (("", "Target text is empty: type what to adapt to, e.g. 'Witcher'"),
                            ("x" * 500, "Target text is too long for CLIP")):
            target.fill(text)
            press_at_center(page, train)
            wait_status(page, "adapt-status", f"Not started: {words}", timeout=30_000)
            page.locator("#target-text .validation-error").get_by_text(words).wait_for(timeout=10_000)  # and there
            assert in_view(page, "adapt-status") and in_view(page, "adapt-train")  # where the eyes are
            assert words_uncovered(page, "adapt-status") and _error_marks(page) == []
        assert not train.is_disabled() and not page.locator("#adapt-preview img").count()  # nothing ran
        keep_picture(page, f"adapt-refused-{viewport['width']}.png", tmp_path)

        page.get_by_role("tab", name="Invert").click()
        run = page.locator("#invert-run")
        press_at_center(page, run)  # no photo yet
        wait_status(page, "invert-status", "Not started: Upload a photo with a face first", timeout=30_000)
        assert in_view(page, "invert-status") and words_uncovered(page, "invert-status") and _error_marks(page) == []
        photo = page.locator("#invert-photo input[type=file]")
        photo.set_input_files(str(ROOT / "examples" / "astronaut.jpg"))
        page.wait_for_timeout(1500)
        press_at_center(page, run)
        wait_status(page, "invert-status", "Done in ")  # a finished run says so
        assert "the aligned face, its reconstruction and 1 style" in status_text(page, "invert-status")
        blank = tmp_path / "wall.png"
        Image.new("RGB", (320, 240), (200, 190, 180)).save(blank)
        photo.set_input_files(str(blank))
        page.wait_for_timeout(1500)
        press_at_center(page, run)
        wait_status(page, "invert-status", "Not done: No face was found in this photo")
        page.wait_for_timeout(1000)  # the event has ended (its "Error" state would show by now)
        assert in_view(page, "invert-status") and words_uncovered(page, "invert-status") and _error_marks(page) == []
        assert page.locator("#invert-aligned img").is_visible()  # the earlier results stay
        keep_picture(page, f"invert-failed-{viewport['width']}.png", tmp_path)
    finally:
        page.close()


def test_edit_strength_release_redraws_the_kept_codes_and_an_unlearned_edit_is_named(browser, server):
    """Releasing Edit strength redraws the results from the kept W+ codes, as Style strength does (no new inversion),
    and the status line says what was drawn; an edit not learned yet is not learned silently: the line says so."""
    page = open_page(browser, server)
    try:
        invert_the_astronaut_smiling(page)
        gallery = page.locator("#invert-gallery")
        gallery.get_by_text("edited: smile +1.5").first.wait_for(timeout=LONG)
        wait_status(page, "invert-status", "Done in ")
        first, inversions = gallery_images(page, "invert-gallery").first.get_attribute("src"), server.store.inversions
        strength = page.get_by_label("range slider for Edit strength", exact=True)
        strength.focus()
        for _ in range(5):  # 1.5 -> 1.0, then the keys stop: released
            page.keyboard.press("ArrowLeft")
        gallery.get_by_text("edited: smile +1", exact=True).first.wait_for(timeout=LONG)
        assert gallery.get_by_text("tiny-invert-demo (strength 1) · smile +1", exact=True).first.is_visible()
        assert gallery_images(page, "invert-gallery").first.get_attribute("src") != first
        wait_status(page, "invert-status", "no new inversion")
        assert status_text(page, "invert-status").startswith("Done in ")
        drag(page, strength, 0.5, 0.2)  # a drag: below 0, the other way
        value = float(strength.input_value())
        assert value < 0
        gallery.get_by_text(f"edited: smile {value:+g}", exact=True).first.wait_for(timeout=LONG)
        assert server.store.inversions == inversions  # redrawn from the kept codes, never inverted again

        shown = gallery_images(page, "invert-gallery").first.get_attribute("src")
        edit = page.locator("#invert-edit input")
        edit.fill("older")  # not learned yet in this app: said, not learned silently; the results stay
        edit.press("Enter")
        wait_status(page, "invert-status", "The edit 'older' is not learned yet: press Invert")
        page.wait_for_timeout(1000)
        assert gallery_images(page, "invert-gallery").first.get_attribute("src") == shown
        assert server.store.inversions == inversions and _error_marks(page) == []
    finally:
        page.close()


def test_invert_offers_the_styles_of_its_generator_and_says_why_others_are_absent(browser, server, tmp_path):
    """A style of the inversion generator (trained elsewhere, uploaded here) is offered in Invert's Styles and
    draws the photo; a style of the 32 px generator is not, and the line under Styles says why."""
    import copy

    import torch

    from nada.model_store import TINY_INVERT, ModelStore
    from nada.styles import save_style, style_from_generators

    store = ModelStore(tiny=True)
    files = []
    for source, target in ((TINY_INVERT, "Sepia"), ("tiny", "Charcoal")):
        gen = store.generator(source)
        other = copy.deepcopy(gen)
        with torch.no_grad():
            other.state_dict()["convs.1.conv.weight"].add_(0.5)
        files.append(save_style(style_from_generators(gen, other, {"source": source, "target_text": target}),
                                tmp_path / f"{target.lower()}.safetensors"))
    page = open_generate(browser, server)
    try:
        for file, name in zip(files, ("sepia", "charcoal")):
            with page.expect_file_chooser() as chooser:
                page.get_by_role("button", name=re.compile("Upload a style file")).click()
            chooser.value.set_files(str(file))
            page.wait_for_function("(name) => document.querySelector('#generate-style input').value.startsWith(name)",
                                   arg=name, timeout=LONG)
        page.get_by_role("tab", name="Invert").click()
        styles = page.locator("#invert-styles")
        assert styles.get_by_text("Styles of 'tiny-invert', the generator photos are inverted into: trained, "
                                  "uploaded, mixed or published. Styles of other generators (tiny) can't be used on "
                                  "photos.").is_visible()
        styles.locator("input").click()
        styles.get_by_role("option", name="sepia (this session: Sepia)").click()
        assert styles.get_by_role("option", name=re.compile("charcoal")).count() == 0
        page.keyboard.press("Escape")
        page.locator("#invert-photo input[type=file]").set_input_files(str(ROOT / "examples" / "astronaut.jpg"))
        page.wait_for_timeout(1500)
        page.locator("#invert-run").click()
        page.locator("#invert-gallery").get_by_text("sepia (strength 1)").first.wait_for(timeout=LONG)
        wait_status(page, "invert-status", "its reconstruction and 2 styles")
    finally:
        page.close()


def test_invert_results_fit_a_phone(browser, server, tmp_path):
    """On a phone each result takes the width with its whole caption, and no empty video boxes wait below them."""
    page = open_page(browser, server, PHONE)
    try:
        page.get_by_role("tab", name="Invert").click()
        assert page.locator("#invert-video").is_hidden() and page.locator("#invert-gif").is_hidden()
        invert_the_astronaut_smiling(page)
        gallery = page.locator("#invert-gallery")
        gallery.get_by_text("tiny-invert-demo (strength 1) · smile +1.5").first.wait_for(timeout=LONG)
        wait_status(page, "invert-status", "Done in ")
        sizes = gallery.locator(".thumbnail-item").evaluate_all("""items => items.map(b => {
            const c = b.querySelector('.caption-label'), i = b.querySelector('img').getBoundingClientRect();
            return {w: i.width, cut: c.scrollWidth > c.clientWidth + 1 || c.scrollHeight > c.clientHeight + 1}; })""")
        assert len(sizes) == 2 and all(s["w"] >= 300 and not s["cut"] for s in sizes)  # whole, one a row
        assert page.locator("#invert-video").is_hidden() and page.locator("#invert-gif").is_hidden()  # no empty box
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        keep_picture(page, "invert-phone.png", tmp_path)
    finally:
        page.close()


def test_a_recipe_says_what_it_set_and_a_run_without_probe_says_every_row_trains(browser, server, tmp_path):
    """Picking a recipe lists the fields it set beside the picker; a run that probes no rows says that every row
    trains instead of drawing an empty chart ("NaN"); a second run clears the first one's figures and file."""
    page = open_page(browser, server)
    try:
        page.get_by_role("tab", name="Adapt").click()
        page.get_by_text("Compact:").first.click()
        wait_status(page, "adapt-recipe-note", "Compact set: Training steps 250 · Learning rate 0.05 · Batch size 4")
        assert page.get_by_label("Training steps").input_value() == "250"
        page.get_by_label("Training steps").fill("8")
        page.get_by_label("Target text").fill("Sepia")
        page.locator("#adapt-train").click()
        wait_status(page, "adapt-status", "Saved the style sepia")
        assert status_text(page, "adapt-status").startswith("Done in ")
        wait_status(page, "adapt-rows-note", "every row but the coarse rows, which stay frozen, trains")
        assert page.locator("#adapt-layers").is_hidden() and page.get_by_text("NaN").count() == 0
        metrics, link = page.locator("#adapt-metrics"), page.locator("#adapt-style-file a[download]")
        assert "Measured with the CLIP models" in metrics.inner_text() and link.count() == 1
        keep_picture(page, "adapt-done.png", tmp_path)

        page.get_by_text("Shape change").first.click()  # probes 2/3 of the rows: the chart comes back
        wait_status(page, "adapt-recipe-note", "Shape change set: Training steps 151")
        page.get_by_label("Training steps").fill("5000")
        page.get_by_label("Target text").fill("Charcoal")
        page.locator("#adapt-train").click()
        wait_status(page, "adapt-status", "Step ")
        assert metrics.inner_text().strip() == "" and link.count() == 0  # the first run's figures and file are gone
        assert "trains at each step" not in status_text(page, "adapt-rows-note")
        page.locator("#adapt-layers .role-legend").first.wait_for(state="visible", timeout=LONG)
        page.locator("#adapt-stop").click()
        wait_status(page, "adapt-status", "Saved the style charcoal")
    finally:
        page.close()


# ------------------------------------------------------------------------------------------------------- phone
def test_the_page_fits_a_phone(browser, server, tmp_path):
    page = open_page(browser, server, PHONE)
    try:
        page.get_by_role("tab", name="Adapt").click()  # the page opens on Generate
        page.wait_for_timeout(1000)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
        assert not under_the_arrow(page, "adapt-source")  # the generator's name is not under the dropdown's arrow
        assert not page.locator("#adapt-preview [data-testid='block-label']").is_visible()  # no label on the image
        page.get_by_role("tab", name="Generate").click()
        gallery_images(page, "styled-gallery").nth(3).wait_for(state="visible", timeout=LONG)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        assert not under_the_arrow(page, "generate-style")  # a long style name ends in "..." before the arrow
        source = page.locator("#source-gallery").bounding_box()
        styled = page.locator("#styled-gallery").bounding_box()
        assert styled["y"] >= source["y"] + source["height"] - 1  # one under the other, each wide enough to see
        assert source["width"] >= 300
        assert images_without_text(page) == []
        keep_picture(page, "phone.png", tmp_path)
    finally:
        page.close()


# ------------------------------------------------------------------------------------------------------ errors
def _error_marks(page) -> list[str]:
    """The ids of the blocks showing Gradio's "Error" mark (its status tracker on a component whose event failed)."""
    return page.evaluate("""() => [...document.querySelectorAll('.error')]
        .filter(e => e.textContent.trim() === 'Error' && e.offsetParent !== null && !e.closest('.toast-body'))
        .filter(e => !e.classList.contains('toast-title'))
        .map(e => (e.closest('[id]') || {}).id || '?')""")


def test_errors_leave_other_outputs_and_tabs_untouched(browser, server, tmp_path):
    """A refused input shows its message on the input and changes nothing else; a failed run marks only its tab's
    status line (before: "Error" over every output the handler lists, the other tabs' style pickers included)."""
    from PIL import Image

    page = open_page(browser, server)
    try:
        page.get_by_role("tab", name="Adapt").click()  # the page opens on Generate
        page.get_by_label("Target text").fill("Photo")  # the same as the source text: refused before the run
        page.get_by_role("button", name="Train", exact=True).click()
        page.locator("#target-text").get_by_text("Source text and Target text are the same").wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        assert _error_marks(page) == []
        # The status line alone changes, to the same words (beside the button); no run started.
        assert status_text(page, "adapt-status").startswith("Not started: Source text and Target text are the same")
        assert not page.locator("#adapt-train").is_disabled()
        assert not page.locator("#adapt-preview img").count() and not page.locator("#adapt-style-file a").count()

        page.get_by_role("tab", name="Invert").click()
        photo = page.locator("#invert-photo input[type=file]")
        photo.set_input_files(str(ROOT / "examples" / "astronaut.jpg"))
        page.wait_for_timeout(1500)  # the upload shows in the page
        page.get_by_role("button", name="Invert", exact=True).click()
        aligned = page.locator("#invert-aligned img")
        aligned.wait_for(state="visible", timeout=LONG)  # an earlier result
        blank = tmp_path / "wall.png"
        Image.new("RGB", (320, 240), (200, 190, 180)).save(blank)
        photo.set_input_files(str(blank))
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Invert", exact=True).click()
        page.get_by_text("No face was found").first.wait_for(timeout=LONG)  # the toast
        wait_status(page, "invert-status", "Not done: No face was found")  # and the status line, in words
        page.wait_for_timeout(1500)
        assert _error_marks(page) == []  # no "Error" mark over the status words, the results or the pickers
        assert aligned.is_visible()  # the earlier result is still shown
        page.get_by_role("tab", name="Generate").click()
        page.wait_for_timeout(500)
        assert _error_marks(page) == []
    finally:
        page.close()


# ------------------------------------------------------------------------------------------------- mix styles
def test_mix_styles_previews_a_released_weight_saves_the_mix_and_makes_a_video(browser, server, tmp_path):
    """Mix styles: a second tiny style is uploaded, the two are picked with weights, releasing a weight previews the
    mix in the tab's pictures, Mix and save picks the new style (which renders) and offers its file, and the video
    goes through the picked styles."""
    import copy

    import torch

    from nada.model_store import ModelStore
    from nada.styles import save_style, style_from_generators

    store = ModelStore(tiny=True)
    gen = store.generator("tiny")
    other = copy.deepcopy(gen)
    with torch.no_grad():
        other.state_dict()["convs.1.conv.weight"].add_(0.5)
    style_file = save_style(style_from_generators(gen, other, {"source": "tiny", "target_text": "Sketch"}),
                            tmp_path / "sketch.safetensors")
    page = open_generate(browser, server)
    try:
        with page.expect_file_chooser() as chooser:
            page.get_by_role("button", name=re.compile("Upload a style file")).click()
        chooser.value.set_files(str(style_file))
        page.wait_for_function("() => document.querySelector('#generate-style input').value.startsWith('sketch')",
                               timeout=LONG)
        wait_status(page, "generate-info", "style sketch")  # the uploaded style is picked and drawn
        shown = styled_sources(page)

        page.get_by_text("Mix styles: blend up to four styles").click()
        for row, option in ((1, "Tiny demo style (tiny) · random, tiny mode"),
                            (2, "sketch (tiny) · this session: Sketch")):
            page.locator(f"#mix-style-{row} input").click()
            page.locator(f"#mix-style-{row}").get_by_role("option", name=option).click()
        weight = page.locator("#mix-weight-2 input[data-testid='number-input']")
        weight.fill("0.5")
        weight.press("Enter")  # typed and entered: released like a drag, the mix previewed
        wait_status(page, "generate-info", "style mix 1·tiny-demo + 0.5·sketch")
        shown = wait_new_pictures(page, shown)
        assert "not saved" in status_text(page, "generate-info")
        assert page.locator("#generate-style input").input_value().startswith("sketch")  # nothing picked or saved

        page.get_by_label("Name of the mix").fill("half sketch")
        page.get_by_role("button", name="Mix and save").click()
        wait_status(page, "mix-status", "Saved the mix half-sketch")
        page.wait_for_function("() => document.querySelector('#generate-style input').value.startsWith('half-sketch')",
                               timeout=LONG)
        wait_status(page, "generate-info", "style half-sketch")  # the picked mix renders by itself
        link = page.locator("#mix-file a[download]")  # its file, to download
        link.wait_for(timeout=10_000)
        assert link.get_attribute("download") == "half-sketch.safetensors"
        keep_picture(page, "mix.png", tmp_path, element=page.locator("#mix-styles"))
        assert _error_marks(page) == []

        page.get_by_role("button", name="Video through the picked styles").click()
        video = page.locator("#generate-video video")
        video.wait_for(state="visible", timeout=LONG)
        page.wait_for_function("() => document.querySelector('#generate-video video').duration > 4", timeout=LONG)
        assert video.evaluate("v => v.videoWidth") == 256  # a morph: one tiny frame, enlarged
        assert images_without_text(page) == []
    finally:
        page.close()


def test_your_own_generator_is_drawn_alone_and_invert_says_photos_cannot_go_into_it(browser, server, tmp_path):
    """Generate's "Your own generator": a StyleGAN2-ADA pickle (NVIDIA's fixture) is checked, picked as "None: your
    model: ... alone" and drawn; Invert's line names it as a generator photos cannot be inverted into; a pickle that
    asks for os.system is refused in a toast that names it, and the picked generator stays."""
    import pickle

    from .fixtures import fixture_path

    mine = tmp_path / "my cats.pkl"
    shutil.copyfile(fixture_path("nvidia", "sg2ada_256.pkl"), mine)
    class Calls:  # pickles as a call of os.system: what pickle.load would run
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G": Calls(), "G_ema": None}, protocol=4))
    page = open_generate(browser, server)
    try:
        button = page.get_by_role("button", name=re.compile("Your own generator")).last
        with page.expect_file_chooser() as chooser:
            button.click()
        chooser.value.set_files(str(mine))
        page.wait_for_function("() => document.querySelector('#generate-style input').value"
                               ".startsWith('None: your model: my cats.pkl')", timeout=LONG)
        wait_status(page, "generate-info", "your model: my cats.pkl")  # drawn alone, named as the person knows it
        with page.expect_file_chooser() as chooser:
            button.click()
        chooser.value.set_files(str(evil))
        page.get_by_text(re.compile("evil.pkl asks for the Python global 'posix.system'")).first.wait_for(timeout=LONG)
        assert page.locator("#generate-style input").input_value().startswith("None: your model: my cats.pkl")
        page.get_by_role("tab", name="Invert").click()
        wait_status(page, "invert-scope", "Generate's style is for your model: my cats.pkl")
        assert not (tmp_path / "ran").exists()
    finally:
        page.close()
