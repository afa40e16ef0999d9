"""Using a zoo folder (issue 36, part 4): ``nada generate --style DIR/<name>`` on its files, and the app serving the
folder as its gallery (nada.zoo.gallery reads it, nada.app.zoo_styles offers its finished styles). Tiny models only."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nada.app import generate_tab
from nada.app.generate_tab import GenerateGpu
from nada.app.page import display_image
from nada.app.style_menus import invert_choices, style_choices
from nada.app.thumbnails import StyleThumbnails, resize_thumbnail
from nada.app.zoo_styles import ZOO_PREFIX, ZOO_SETTING, serve_zoo
from nada.cli import main
from nada.model_store import ModelStore
from nada.render import render_seeds, to_pil
from nada.styles import apply_style, load_style, save_style, style_from_generators
from nada.tiny import TINY_INVERT
from nada.zoo.gallery import ZooError, read_zoo, zoo_style_file

from .test_app import import_app


def compact_style(generator, seed: int, source: str, target: str):
    """A compact ("modulation") style of ``generator``: random offsets on every style vector."""
    adapted = copy.deepcopy(generator)
    gen = torch.Generator().manual_seed(seed)
    adapted.set_style_offsets({f"{name}.style_offset": 0.5 * torch.randn(conv.in_ch, generator=gen)  # [in]
                               for name, conv in adapted.modulated_convs().items()})
    return style_from_generators(generator, adapted, {"source": source, "source_text": "Photo", "target_text": target,
                                                      "config": {"params": "modulation"}})


def entry(name: str, status: str = "done", **over) -> dict:
    """A zoo.json style entry as the contract writes it."""
    return {"name": name, "line": 1, "source_text": "Photo", "target_text": name.title(), "recipe": "compact",
            "overrides": {}, "seed": 0, "key": f"key-{name}", "status": status,
            "file": f"{name}.safetensors" if status == "done" else None, "seconds": 1.0, "where": "here",
            "figures": None, "error": None if status == "done" else "loss became NaN",
            "finished": "2026-12-06T00:00:00+00:00", **over}


def write_book(folder: Path, styles: list, source: str = "tiny") -> None:
    book = {"format": "nada-zoo", "version": 1, "source": source, "seeds": [0, 1], "updated": "2026-12-06T00:00:00",
            "styles": styles}
    (folder / "zoo.json").write_text(json.dumps(book))


def make_zoo(folder: Path, store: ModelStore, source: str = "tiny") -> Path:
    """A zoo folder by hand: "witcher" done, "sketch" failed (its file there all the same), a sheet."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = store.generator(source)
    save_style(compact_style(generator, 1, source, "Witcher"), folder / "witcher.safetensors")
    save_style(compact_style(generator, 2, source, "Sketch"), folder / "sketch.safetensors")
    write_book(folder, [entry("witcher"), entry("sketch", status="failed")], source)
    Image.new("RGB", (96, 64), (200, 30, 30)).save(folder / "sheet.png")
    return folder


@pytest.fixture
def store() -> ModelStore:
    """A tiny store of this test's own (serving a zoo adds styles to it)."""
    return ModelStore(tiny=True)


@pytest.fixture
def zoo(tmp_path: Path, store: ModelStore) -> Path:
    return make_zoo(tmp_path / "zoo", store)


def values(choices: list[tuple[str, str]]) -> list[str]:
    return [value for _, value in choices]


def pixels(image) -> np.ndarray:
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"))
    return np.asarray(image.convert("RGB"))


# ------------------------------------------------------------------------------------------- nada generate
def test_generate_takes_a_zoo_style_with_or_without_its_suffix_from_any_folder(zoo, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    common = ["generate", "--source", "tiny", "--seed", "3", "--device", "cpu", "-o"]
    assert main([*common, str(out / "bare.png"), "--style", str(zoo / "witcher")]) == 0
    assert main([*common, str(out / "suffix.png"), "--style", str(zoo / "witcher.safetensors")]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main([*common, str(out / "relative.png"), "--style", "../zoo/witcher"]) == 0
    assert main([*common, str(out / "blend.png"), "--style", "../zoo/witcher:1,../zoo/sketch:0"]) == 0
    bare = pixels(out / "bare.png")
    for other in ("suffix", "relative", "blend"):
        assert np.array_equal(pixels(out / f"{other}.png"), bare), other
    # The same pixels as applying the file directly.
    generator = ModelStore(tiny=True).generator("tiny")
    styled = apply_style(generator, load_style(zoo / "witcher.safetensors"), 1.0)
    with torch.no_grad():
        direct = to_pil(render_seeds(styled, [3], truncation=0.7))[0]
    assert np.array_equal(bare, pixels(direct))
    with torch.no_grad():
        plain = to_pil(render_seeds(generator, [3], truncation=0.7))[0]
    assert np.abs(bare.astype(int) - pixels(plain).astype(int)).mean() > 1  # the style shows
    capsys.readouterr()

    assert main([*common, str(out / "x.png"), "--style", "../zoo/werewolf"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: no style file 'werewolf.safetensors' in the folder 'zoo' (its styles: sketch, witcher)."
    assert main([*common, str(out / "x.png"), "--style", "../nowhere/witcher"]) == 1
    err = capsys.readouterr().err.strip()
    assert "'witcher.safetensors'" in err and "'nowhere' does not exist" in err and str(tmp_path) not in err
    assert main([*common, str(out / "x.png"), "--style", "../zoo"]) == 1
    assert "'zoo' is a folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the reader
def test_the_reader_offers_finished_styles_inside_the_folder_only(zoo):
    gallery = read_zoo(zoo)
    assert gallery.source == "tiny" and gallery.names() == ["witcher"] and gallery.unfinished == 1
    assert gallery.styles[0].file == (zoo / "witcher.safetensors").resolve()
    assert gallery.styles[0].prompt == "Photo -> Witcher"
    assert gallery.sheet == (zoo / "sheet.png").resolve() and gallery.skipped == ()


def test_names_that_would_leave_the_folder_are_refused(zoo, tmp_path, store):
    outside = tmp_path / "evil.safetensors"  # a real style file next to the zoo folder
    save_style(compact_style(store.generator("tiny"), 5, "tiny", "Evil"), outside)
    (zoo / "linked.safetensors").symlink_to(outside)  # a link out of the folder
    write_book(zoo, [entry("../evil"), entry(str(outside.with_suffix(""))),
                     entry("witcher", file="../evil.safetensors"), entry("linked"), entry("witcher")])
    gallery = read_zoo(zoo)
    assert gallery.names() == ["witcher"]  # the one sound entry
    assert len(gallery.skipped) == 4
    assert "'../evil' is not a safe style name" in gallery.skipped[0]
    assert "is not a safe style name" in gallery.skipped[1]
    assert "'../evil.safetensors' is not witcher.safetensors" in gallery.skipped[2]
    assert gallery.skipped[3] == "style 4 of zoo.json left out: the file of 'linked' leads out of the zoo folder."
    for bad in ("../evil", "/etc/passwd", "a/b", "", None, "Witcher"):
        with pytest.raises(ValueError):
            zoo_style_file(zoo, bad)


def test_corrupt_files_and_duplicates_are_left_out_with_a_line(zoo):
    (zoo / "broken.safetensors").write_bytes(b"\x00garbage" * 10)
    (zoo / "sheet.png").write_bytes(b"not a png")
    write_book(zoo, [entry("witcher"), entry("broken"), entry("witcher"), entry("absent"), "oops"])
    gallery = read_zoo(zoo)
    assert gallery.names() == ["witcher"] and gallery.sheet is None
    text = "\n".join(gallery.skipped)
    assert "'broken': broken.safetensors could not be read" in text
    assert "'witcher' comes twice" in text and "absent.safetensors is not in the zoo folder" in text
    assert "style 5 of zoo.json left out: it is not an object" in text
    assert "sheet.png left out: it is not a readable image" in text
    assert str(zoo) not in text  # files by their own names


@pytest.mark.parametrize("content, message", [
    (None, "has no zoo.json"),
    ("{not json", "zoo.json in 'zoo' is not valid JSON (line 1"),
    ('{"format": "other"}', "is not a nada zoo file"),
    ('{"format": "nada-zoo", "version": 9, "styles": []}', "format version 9"),
    ('{"format": "nada-zoo", "version": 1, "source": "tiny", "styles": {}}', "has no list of styles"),
])
def test_an_unreadable_zoo_json_is_a_clear_error(zoo, content, message):
    if content is None:
        (zoo / "zoo.json").unlink()
    else:
        (zoo / "zoo.json").write_text(content)
    with pytest.raises(ZooError, match="zoo") as caught:
        read_zoo(zoo)
    assert message in str(caught.value) and str(zoo.parent) not in str(caught.value)


# --------------------------------------------------------------------------------------------------- the app
def test_generate_offers_the_done_style_and_renders_it_as_its_file(zoo, store, session, capsys):
    assert serve_zoo(store, zoo) is not None
    assert "zoo 'zoo': 1 styles served (tiny), 1 unfinished and 0 left out." in capsys.readouterr().out
    choices = style_choices(store, session)
    assert ("witcher (tiny) · zoo: Photo -> Witcher", "zoo.witcher") in choices
    assert "zoo.sketch" not in values(choices)  # failed: not offered
    assert "zoo.witcher" not in values(invert_choices(store, session))  # another generator than Invert's

    out = generate_tab.generate(store, session, "zoo.witcher", 5, 0.7, 2, 1.0)
    generator = store.generator("tiny")
    styled = apply_style(generator, load_style(zoo / "witcher.safetensors"), 1.0)
    with torch.no_grad():
        direct = to_pil(render_seeds(styled, [5, 6], 0.7, w_avg=store.truncation_center("tiny")))
    assert [caption for _, caption in out.styled_gallery] == ["seed 5 · zoo.witcher", "seed 6 · zoo.witcher"]
    for (shown, _), image in zip(out.styled_gallery, direct):
        assert np.array_equal(pixels(shown), pixels(display_image(image)))


def test_zoo_thumbnails_join_the_gallery_and_a_replaced_file_gets_a_new_one(zoo, store, tmp_path):
    serve_zoo(store, zoo)
    thumbnails = StyleThumbnails(tmp_path / "thumbnails", size=32)
    out = generate_tab.published_gallery(store, thumbnails, gpu=GenerateGpu.direct(store))
    assert out.published_names == ["tiny-demo", "tiny-invert-demo", "zoo.witcher"]
    path, caption = out.published[-1]
    assert caption == "witcher (tiny)"
    styled = apply_style(store.generator("tiny"), load_style(zoo / "witcher.safetensors"), 1.0)
    with torch.no_grad():
        direct = to_pil(render_seeds(styled, [0], 0.7, w_avg=store.truncation_center("tiny")))[0]
    assert np.array_equal(pixels(path), pixels(resize_thumbnail(direct, 32)))
    # A retrained file (same name) gets its own thumbnail, not the old one.
    save_style(compact_style(store.generator("tiny"), 9, "tiny", "Witcher"), zoo / "witcher.safetensors")
    os.utime(zoo / "witcher.safetensors", ns=(1, 1))
    serve_zoo(store, zoo)
    again = generate_tab.published_gallery(store, thumbnails, gpu=GenerateGpu.direct(store))
    assert again.published[-1][0] != path and not np.array_equal(pixels(again.published[-1][0]), pixels(path))


def test_a_zoo_of_the_inversion_generator_reaches_the_invert_tab(tmp_path, store, session):
    make_zoo(tmp_path / "faces", store, source=TINY_INVERT)
    serve_zoo(store, tmp_path / "faces")
    assert "zoo.witcher" in values(invert_choices(store, session))


def test_a_zoo_of_a_generator_the_app_lacks_is_skipped_with_a_warning(zoo, store, capsys):
    write_book(zoo, [entry("witcher")], source="stylegan-xl")
    assert serve_zoo(store, zoo) is None
    line = capsys.readouterr().out
    assert f"warning: {ZOO_SETTING}: the zoo 'zoo' was trained from the generator 'stylegan-xl'" in line
    assert not [v for v in values(style_choices(store, None)) if v.startswith(ZOO_PREFIX)]


def test_the_app_builds_with_the_zoo_its_sheet_and_without_a_usable_one(zoo, tmp_path, monkeypatch, capsys):
    app = import_app()
    monkeypatch.setenv(ZOO_SETTING, str(zoo))  # the Space owner's setting
    demo = app.build_demo(tiny=True)
    picker = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "generate-style")
    assert "zoo.witcher" in values([tuple(c) for c in picker.choices])
    assert "zoo.sketch" not in values([tuple(c) for c in picker.choices])
    sheet = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "zoo-sheet")
    assert sheet.value is not None
    capsys.readouterr()

    (zoo / "zoo.json").write_text("{not json")  # garbled: the app still builds, and says why
    demo = app.build_demo(tiny=True)
    out = capsys.readouterr().out
    assert f"warning: {ZOO_SETTING}: zoo.json in 'zoo' is not valid JSON" in out and "starts without the zoo" in out
    assert not any(getattr(b, "elem_id", None) == "zoo-sheet" for b in demo.blocks.values())
    monkeypatch.delenv(ZOO_SETTING)
    app.build_demo(tiny=True, zoo_dir=tmp_path / "missing")  # a missing folder: the same
    assert f"warning: {ZOO_SETTING}: The zoo folder 'missing' does not exist." in capsys.readouterr().out


def test_a_zoo_file_broken_after_the_start_is_a_message_naming_it_by_its_own_name(zoo, store, session):
    import gradio as gr

    serve_zoo(store, zoo)
    (zoo / "witcher.safetensors").write_bytes(b"\x00garbage" * 10)  # replaced while the app runs
    with pytest.raises(gr.Error) as caught:
        generate_tab.generate(store, session, "zoo.witcher", 0, 0.7, 1, 1.0)
    assert "'witcher.safetensors' could not be read" in caught.value.message
    assert str(zoo) not in caught.value.message


def test_a_zoo_file_of_other_weights_is_refused_when_picked_and_gets_no_thumbnail(zoo, store, session, tmp_path,
                                                                                  capsys):
    import gradio as gr

    other = store.generator(TINY_INVERT)  # other weights, and another architecture, recorded as "tiny"
    save_style(compact_style(other, 3, "tiny", "Witcher"), zoo / "witcher.safetensors")
    serve_zoo(store, zoo)
    with pytest.raises(gr.Error) as caught:
        generate_tab.generate(store, session, "zoo.witcher", 0, 0.7, 1, 1.0)
    assert "The file witcher.safetensors does not belong to it" in caught.value.message
    out = generate_tab.published_gallery(store, StyleThumbnails(tmp_path / "t", size=32),
                                         gpu=GenerateGpu.direct(store))
    assert "zoo.witcher" not in out.published_names  # the others still have theirs
    assert out.published_names == ["tiny-demo", "tiny-invert-demo"]
    assert "warning: no thumbnail: witcher (zoo: Photo -> Witcher): no thumbnail" in capsys.readouterr().out
