"""The zoo's pictures (nada.zoo.sheet): rows rendered one style at a time, the captioned contact sheet, sheet.png
written atomically, and index.html (self-contained, every prompt escaped), opened in Chromium from disk.

``NADA_UPDATE_SCREENSHOT=1`` also writes the docs' picture of the page (``docs/zoo_index.png``), as
tests/test_browser.py does for the app's."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nada.render import render_seeds, to_pil
from nada.styles import StyleMismatchError, save_style, style_from_generators
from nada.zoo.sheet import (
    CELL,
    INDEX_NAME,
    SHEET_NAME,
    caption_height,
    contact_sheet,
    fit,
    index_html,
    render_rows,
    shorten,
    write_index,
    write_pictures,
    write_sheet,
)

from .helpers import make_tiny_generator

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2]
HOSTILE = "<script>alert('zoo')</script> & \"quotes\""


def compact_style(source, seed: int, target: str):
    """A compact ("style_delta") style of ``source`` with random offsets, as the zoo saves them."""
    styled = copy.deepcopy(source)
    gen = torch.Generator().manual_seed(seed)
    styled.set_style_offsets({f"{n}.style_delta": torch.randn(m.in_ch, generator=gen)
                              for n, m in styled.modulated_convs().items()})
    return style_from_generators(source, styled, {"source": "tiny", "source_text": "Photo", "target_text": target})


@pytest.fixture(scope="module")
def source():
    return make_tiny_generator()


@pytest.fixture(scope="module")
def rows(source, tmp_path_factory):
    """The source row and two styles' rows (one given as a Style, one as a file read when its turn comes)."""
    path = save_style(compact_style(source, 2, "Sketch"), tmp_path_factory.mktemp("zoo") / "sketch.safetensors")
    styles = [(f"Photo -> {HOSTILE}", compact_style(source, 1, HOSTILE)), ("Photo -> Sketch", path)]
    return render_rows(source, styles, SEEDS, truncation=0.7, cell=CELL, source_name="tiny")


def book(names=("joker", "sketch")) -> dict:
    """zoo.json's content for two styles: one done (hostile prompt, figures), one failed."""
    done = {"name": names[0], "line": 1, "source_text": "Photo", "target_text": HOSTILE, "recipe": "compact",
            "overrides": {"iterations": 3, "clip_models": ["clip-vit-b32"]}, "seed": 0, "key": "abc",
            "status": "done", "file": f"{names[0]}.safetensors", "seconds": 12.34, "where": "host-a",
            "figures": {"s_dir": 0.1234, "clip_target_source": 0.2, "clip_target_adapted": 0.31,
                        "diversity_source": 0.5, "diversity_adapted": 0.45, "judged_by": "judged by ViT-L/14"},
            "error": None, "finished": "2026-12-06T22:00:00+00:00"}
    failed = {**done, "name": names[1], "line": 2, "target_text": "Sketch", "status": "failed", "file": None,
              "seed": 7, "where": "ray:127.0.0.1", "figures": None, "error": "The loss is not finite <img src=x>"}
    return {"format": "nada-zoo", "version": 1, "source": "tiny", "seeds": SEEDS,
            "updated": "2026-12-06T22:00:00+00:00", "styles": [done, failed]}


# ---------------------------------------------------------------------------------------------- rows and sheet
def test_rows_are_the_source_then_each_style_for_the_fixed_seeds(source, rows):
    assert [caption for caption, _ in rows] == ["Source", f"Photo -> {HOSTILE}", "Photo -> Sketch"]
    assert all(len(images) == len(SEEDS) and all(i.size == (CELL, CELL) for i in images) for _, images in rows)
    with torch.no_grad():
        expected = to_pil(render_seeds(source, SEEDS, 0.7, w_avg=source.truncation_center()))
    assert np.array_equal(np.asarray(rows[0][1][1]), np.asarray(fit(expected[1], CELL)))
    source_row = np.stack([np.asarray(i, dtype=np.float32) for i in rows[0][1]])
    for _, images in rows[1:]:
        styled = np.stack([np.asarray(i, dtype=np.float32) for i in images])
        assert np.abs(styled - source_row).mean() > 5  # the style changed the pictures
    assert not source.style_offsets()  # the source generator is untouched


def test_the_sheet_has_a_captioned_row_per_style_and_a_column_per_seed(rows):
    sheet = contact_sheet(rows, cell=CELL)
    strip = caption_height(CELL)
    assert sheet.size == (len(SEEDS) * CELL, len(rows) * (CELL + strip))
    pixels = np.asarray(sheet)
    for i, (_, images) in enumerate(rows):
        top = i * (CELL + strip)
        caption = pixels[top:top + strip]
        dark = (caption.min(axis=2) < 100).sum()
        assert dark > 30, f"row {i}: no caption drawn"  # text on the white strip
        assert (caption[:, -20:] > 250).all()  # short captions leave the strip's end white
        assert np.array_equal(pixels[top + strip:top + strip + CELL, CELL:2 * CELL], np.asarray(images[1]))
    longer = [(f"{caption} {'and more words ' * 30}", images) for caption, images in rows]
    drawn = np.asarray(contact_sheet(longer, cell=CELL))[:caption_height(CELL)]
    assert (drawn[:, -20:].min(axis=2) < 100).any()  # a long caption fills the width (shortened, see below)


def test_a_short_row_is_padded_and_widths_follow_the_longest_row(rows):
    sheet = contact_sheet([rows[0], ("one picture", rows[1][1][:1])], cell=32)
    assert sheet.size == (len(SEEDS) * 32, 2 * (32 + caption_height(32)))
    padded = np.asarray(sheet)[-32:, 32:]
    assert (padded == 200).all()
    with pytest.raises(ValueError, match="at least one row"):
        contact_sheet([])


def test_long_captions_are_shortened_to_fit():
    from PIL import ImageFont
    font = ImageFont.load_default(size=14)
    text = "Photo -> " + "a painting in the style of someone rather famous " * 5
    short = shorten(text, 300, font)
    assert short.endswith("...") and text.startswith(short[:-3]) and font.getlength(short) <= 300
    assert shorten("Photo ->   Sketch", 300, font) == "Photo -> Sketch"


def test_a_style_of_another_generator_is_refused(source):
    other = make_tiny_generator(size=64)
    with pytest.raises(StyleMismatchError):
        render_rows(source, [("other", compact_style(other, 0, "Other"))], SEEDS)
    with pytest.raises(ValueError, match="at least one seed"):
        render_rows(source, [], [])


# ---------------------------------------------------------------------------------------------- files
def test_write_sheet_replaces_the_file_atomically(tmp_path, rows):
    sheet = contact_sheet(rows, cell=32)
    (tmp_path / SHEET_NAME).write_bytes(b"old")
    path = write_sheet(tmp_path, sheet)
    assert path == tmp_path / SHEET_NAME
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(sheet))
    assert sorted(p.name for p in tmp_path.iterdir()) == [SHEET_NAME]  # no temp file left behind


def test_index_escapes_prompts_lists_every_style_and_shows_the_sheet(tmp_path):
    path = write_index(tmp_path, book())
    page = path.read_text(encoding="utf-8")
    assert path.name == INDEX_NAME and sorted(p.name for p in tmp_path.iterdir()) == [INDEX_NAME]
    assert f'src="{SHEET_NAME}"' in page
    assert "<script" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(&#x27;zoo&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    assert "The loss is not finite &lt;img src=x&gt;" in page
    assert page.count("<tr class=") == 2 and '<a href="joker.safetensors">joker</a>' in page
    for text in ("sketch", "failed", "done", "12.3", "ray:127.0.0.1", "S_dir 0.123", "0.200 &rarr; 0.310",
                 "iterations=3 clip_models=clip-vit-b32", "judged by ViT-L/14"):
        assert text in page, text
    assert "http://" not in page and "https://" not in page and "//" not in page.replace("<!DOCTYPE", "")


def test_index_links_only_safe_file_names(tmp_path):
    hostile = book()
    hostile["styles"][0]["file"] = "../../etc/passwd.safetensors"
    hostile["styles"][1]["file"] = "javascript:alert(1)"
    page = index_html(hostile)
    assert "<a " not in page and "passwd" not in page and "javascript" not in page
    assert index_html({"styles": "not a list"}).count("<tr class=") == 0


def test_write_pictures_draws_the_done_styles_of_a_book(tmp_path, source):
    zoo = book(names=("joker", "sketch"))
    zoo["styles"].append({**zoo["styles"][0], "name": "gone", "file": "gone.safetensors"})  # done, file missing
    zoo["styles"].append({**zoo["styles"][0], "name": "escape", "file": "../joker.safetensors"})  # never read
    save_style(compact_style(source, 1, HOSTILE), tmp_path / "joker.safetensors")
    sheet_path, index_path = write_pictures(tmp_path, source, zoo, cell=32, source_name="tiny")
    sheet = Image.open(sheet_path)
    assert sheet.size == (len(SEEDS) * 32, 2 * (32 + caption_height(32)))  # the source and the one style on disk
    assert index_path.read_text(encoding="utf-8").count("<tr class=") == 4
    expected = contact_sheet(render_rows(source, [("x", tmp_path / "joker.safetensors")], SEEDS, cell=32), cell=32)
    strip = caption_height(32)
    assert np.array_equal(np.asarray(sheet.convert("RGB"))[-32:], np.asarray(expected)[-32:])
    assert np.asarray(sheet.convert("RGB"))[-32 - strip:-32].min() < 100  # its caption


# ---------------------------------------------------------------------------------------------- in a browser
@pytest.mark.browser
def test_index_opens_from_disk_in_a_browser(tmp_path, rows):
    chromium = Path("/usr/bin/chromium")
    if not chromium.is_file():
        pytest.skip(f"{chromium} not found (Debian: apt-get install -y chromium; CI installs .ci/apt.txt)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    zoo = tmp_path / "zoo"
    write_sheet(zoo, contact_sheet(rows, cell=CELL))
    write_index(zoo, book())
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium),
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            alerts: list[str] = []
            page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
            page.goto((zoo / INDEX_NAME).as_uri(), wait_until="load")
            width = page.evaluate("() => document.querySelector('img').naturalWidth")
            assert width == len(SEEDS) * CELL  # sheet.png loaded from beside the page
            table = page.evaluate("() => [...document.querySelectorAll('tbody tr')].map(r => r.innerText)")
            assert len(table) == 2 and table[0].startswith("joker") and table[1].startswith("sketch")
            assert HOSTILE in table[0] and "failed" in table[1] and not alerts
            shot = tmp_path / "zoo_index.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("NADA_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "zoo_index.png")
