"""The page in a real browser: Debian's chromium driven by playwright (tiny mode). Runs Generate and takes a screenshot.

``NADA_UPDATE_SCREENSHOT=1`` also writes it to ``docs/screenshot.png`` (the README's picture).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


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


@pytest.fixture(scope="module")
def url():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import app

    demo = app.build_demo(tiny=True)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                **app.launch_kwargs())
    yield demo.local_url
    demo.close()
    from nada.sessions import SessionStyles

    for state in getattr(getattr(demo, "state_holder", None), "session_data", {}).values():  # the page's temp files
        for value in list(getattr(state, "state_data", {}).values()):
            if isinstance(value, SessionStyles):
                value.cleanup()


def test_generate_in_the_browser(browser, url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(url, wait_until="domcontentloaded", timeout=60_000)
        page.get_by_text("TINY MODE").first.wait_for(timeout=60_000)
        page.get_by_role("tab", name="Generate").click()
        page.get_by_role("button", name="Generate", exact=True).click()
        gallery = page.locator(".gallery-container img, [data-testid='gallery'] img, .grid-wrap img")
        gallery.nth(7).wait_for(state="visible", timeout=60_000)  # 4 seeds x (source, styled)
        assert gallery.count() >= 8
        page.get_by_text("Source generator").last.wait_for(timeout=30_000)
        shot = tmp_path / "screenshot.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("NADA_UPDATE_SCREENSHOT") == "1":
            (ROOT / "docs").mkdir(exist_ok=True)
            shutil.copyfile(shot, ROOT / "docs" / "screenshot.png")
    finally:
        page.close()


def _error_marks(page) -> list[str]:
    """The ids of the blocks showing Gradio's "Error" mark (its status tracker on a component whose event failed)."""
    return page.evaluate("""() => [...document.querySelectorAll('.error')]
        .filter(e => e.textContent.trim() === 'Error' && e.offsetParent !== null && !e.closest('.toast-body'))
        .filter(e => !e.classList.contains('toast-title'))
        .map(e => (e.closest('[id]') || {}).id || '?')""")


def test_errors_leave_other_outputs_and_tabs_untouched(browser, url, tmp_path):
    """A refused input shows its message on the input and changes nothing else; a failed run marks only its tab's
    status line (before: "Error" over every output the handler lists, the other tabs' style pickers included)."""
    from PIL import Image

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(url, wait_until="domcontentloaded", timeout=60_000)
        page.get_by_text("TINY MODE").first.wait_for(timeout=60_000)
        page.get_by_label("Target text").fill("Photo")  # the same as the source text: refused before the run
        page.get_by_role("button", name="Train", exact=True).click()
        page.get_by_text("The source and target prompts are the same").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        assert _error_marks(page) == []
        assert page.get_by_text("Press Train to start.").is_visible()  # the status line is as it was

        page.get_by_role("tab", name="Invert").click()
        photo = page.locator("#invert-photo input[type=file]")
        photo.set_input_files(str(ROOT / "examples" / "astronaut.jpg"))
        page.wait_for_timeout(1500)  # the upload shows in the page
        page.get_by_role("button", name="Invert", exact=True).click()
        aligned = page.locator("#invert-aligned img")
        aligned.wait_for(state="visible", timeout=60_000)  # an earlier result
        blank = tmp_path / "wall.png"
        Image.new("RGB", (320, 240), (200, 190, 180)).save(blank)
        photo.set_input_files(str(blank))
        page.wait_for_timeout(1500)
        page.get_by_role("button", name="Invert", exact=True).click()
        page.get_by_text("No face was found").first.wait_for(timeout=60_000)  # the toast
        page.wait_for_timeout(1500)
        assert _error_marks(page) == ["invert-status"]  # not the aligned face, reconstruction, gallery or pickers
        assert aligned.is_visible()  # the earlier result is still shown
        page.get_by_role("tab", name="Generate").click()
        page.wait_for_timeout(500)
        assert _error_marks(page) == []
    finally:
        page.close()
