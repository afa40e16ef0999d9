"""The ready-made styles' gallery (nada.app.thumbnails): thumbnails rendered once, cached on disk, in registry order."""

from __future__ import annotations

import pickle
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nada.app.generate_tab import render_images, render_style_thumbnails
from nada.app.style_menus import StyleRef
from nada.app.thumbnails import THUMBNAIL_SEED, THUMBNAIL_SIZE, THUMBNAIL_TRUNCATION, StyleThumbnails, resize_thumbnail
from nada.model_store import ModelStore

from .helpers import put_in_hub_cache


class FakeStore:
    """What :meth:`StyleThumbnails.fill` reads of a store: ``tiny`` and ``published()`` (name -> (label, source))."""

    tiny = True

    def __init__(self, published: dict[str, tuple[str, str]]) -> None:
        self._published = published

    def published(self) -> dict[str, tuple[str, str]]:
        return dict(self._published)


FAKE = FakeStore({"a": ("Style A", "one"), "b": ("Style B", "two"), "c": ("Style C", "one"),
                  "d": ("Style D", "two"), "e": ("Style E", "one")})


class CountingRender:
    """A render function that paints each style a flat colour and records its calls (thread-safe)."""

    def __init__(self, fail: tuple[str, ...] = (), delay: float = 0.0) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.fail, self.delay = fail, delay
        self._lock = threading.Lock()

    def __call__(self, source: str, names: list[str], seed: int, truncation: float, size: int
                 ) -> list[Image.Image | None]:
        with self._lock:
            self.calls.append((source, list(names)))
        time.sleep(self.delay)
        return [None if n in self.fail else Image.new("RGB", (size, size), (ord(n[0]) % 256, 10, 20)) for n in names]

    def rendered(self) -> list[str]:
        return [n for _, names in self.calls for n in names]


def pixels(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture
def thumbs(tmp_path: Path) -> StyleThumbnails:
    return StyleThumbnails(tmp_path / "thumbnails", size=64)


def test_fill_renders_each_style_once_per_source_and_writes_pngs(thumbs: StyleThumbnails) -> None:
    render = CountingRender()
    assert thumbs.fill(FAKE, render, limit=10) == []
    assert render.calls == [("one", ["a", "c", "e"]), ("two", ["b", "d"])]  # one call per source, registry order
    for name in "abcde":
        assert pixels(thumbs.path(name)).shape == (64, 64, 3)
        assert pixels(thumbs.path(name))[0, 0, 0] == ord(name)
    assert not [p for p in thumbs.directory.iterdir() if not p.name.endswith(".png")]  # no temp files left

    again = CountingRender()
    assert thumbs.fill(FAKE, again, limit=10) == []
    assert again.calls == []  # all on disk: nothing is rendered twice
    assert thumbs.missing(list("abcde")) == []


def test_fill_honours_the_limit(thumbs: StyleThumbnails) -> None:
    render = CountingRender()
    thumbs.fill(FAKE, render, limit=2)
    assert render.rendered() == ["a", "b"]
    assert thumbs.missing(list("abcde")) == ["c", "d", "e"]
    thumbs.fill(FAKE, render, limit=0)
    assert len(render.calls) == 2
    thumbs.fill(FAKE, render, limit=2)
    assert render.rendered() == ["a", "b", "c", "d"]
    assert [name for _, _, name in thumbs.gallery(FAKE)] == ["a", "b", "c", "d"]


def test_concurrent_fills_render_each_thumbnail_once(thumbs: StyleThumbnails) -> None:
    render = CountingRender(delay=0.2)
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(thumbs.fill(FAKE, render, limit=10))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[], []]
    assert sorted(render.rendered()) == list("abcde")  # the second visitor waited, then found the files
    assert len(thumbs.gallery(FAKE)) == 5


def test_a_failed_style_gives_a_readable_line_and_no_file(thumbs: StyleThumbnails) -> None:
    lines = thumbs.fill(FAKE, CountingRender(fail=("c",)), limit=10)
    assert len(lines) == 1 and "Style C" in lines[0] and "no thumbnail" in lines[0]
    assert not thumbs.path("c").exists()
    assert [name for _, _, name in thumbs.gallery(FAKE)] == ["a", "b", "d", "e"]

    def broken(source, names, seed, truncation, size):
        raise RuntimeError("GPU quota exceeded")

    render = CountingRender()
    assert thumbs.fill(FAKE, render, limit=10) == [] and render.calls == []  # not retried on every page load
    thumbs.retry_after_s = 0.0  # (default: RETRY_AFTER_S, ten minutes later)
    lines = thumbs.fill(FAKE, broken, limit=10)  # a render that raises: reported, not raised
    assert lines == ["Style C: no thumbnail (GPU quota exceeded)."]
    thumbs.fill(FAKE, render, limit=10)
    assert render.rendered() == ["c"] and thumbs.path("c").is_file()


def test_a_corrupt_png_is_removed_and_rendered_again(thumbs: StyleThumbnails) -> None:
    thumbs.fill(FAKE, CountingRender(), limit=10)
    thumbs.path("b").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # e.g. a disk filled up mid-write
    Image.new("RGB", (8, 8)).save(thumbs.path("d"))  # a readable PNG of the wrong size
    assert [name for _, _, name in thumbs.gallery(FAKE)] == ["a", "c", "e"]
    assert not thumbs.path("b").exists() and not thumbs.path("d").exists()
    render = CountingRender()
    thumbs.fill(FAKE, render, limit=10)
    assert render.calls == [("two", ["b", "d"])]
    assert pixels(thumbs.path("b"))[0, 0, 0] == ord("b")


def test_names_that_are_not_safe_file_names_are_refused(thumbs: StyleThumbnails) -> None:
    assert thumbs.path("nada-van_gogh.v2").name == f"nada-van_gogh.v2-seed{THUMBNAIL_SEED}-t0.7-64.png"
    for bad in ["", ".", "..", "../x", "a/b", "a\\b", "x y", "a\nb", "é", "/etc/passwd", None]:
        with pytest.raises(ValueError):
            thumbs.path(bad)
    with pytest.raises(ValueError):
        thumbs.missing(["ok", "../../evil"])
    with pytest.raises(ValueError):
        StyleThumbnails(thumbs.directory, size=0)


def test_tiny_and_real_thumbnails_live_apart_beside_the_weights(hub_cache: Path) -> None:
    tiny, real = StyleThumbnails.beside_weights(tiny=True), StyleThumbnails.beside_weights(tiny=False)
    assert real.directory == hub_cache / "thumbnails"
    assert tiny.directory == hub_cache / "thumbnails" / "tiny"
    assert tiny.path("x") != real.path("x")
    assert (tiny.seed, tiny.truncation, tiny.size) == (THUMBNAIL_SEED, THUMBNAIL_TRUNCATION, THUMBNAIL_SIZE)


def test_real_mode_renders_styles_with_cached_weights_first(hub_cache: Path, monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    store = ModelStore(tiny=False, device="cpu")  # nothing loads: fill only reads the registry and the cache
    names = list(store.published())
    from nada.registry import REGISTRY

    late = names[-1]  # the last in registry order, but its weights are on disk
    mirror = REGISTRY[late].mirrors[0]
    put_in_hub_cache(hub_cache, mirror.repo_id, mirror.filename, b"weights")
    thumbs = StyleThumbnails.beside_weights(tiny=False)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # downloads allowed (the fake render downloads nothing)
    render = CountingRender()
    assert thumbs.fill(store, render, limit=2) == []
    assert render.rendered() == [late, names[0]]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: styles without weights are not even tried
    render = CountingRender()
    lines = thumbs.fill(store, render, limit=5)
    assert render.calls == [] and len(lines) == 1 and "offline" in lines[0]


def test_tiny_gallery_shows_the_styles_as_rendered(hub_cache: Path, store: ModelStore) -> None:
    thumbs = StyleThumbnails.beside_weights(tiny=True)
    assert thumbs.gallery(store) == []
    assert thumbs.fill(store, partial(render_style_thumbnails, store), limit=10) == []
    gallery = thumbs.gallery(store)
    assert gallery == [(str(thumbs.path(name)), label, name) for name, (label, _) in store.published().items()]

    demo = pixels(thumbs.path("tiny-demo"))  # [256, 256, 3]
    other = pixels(thumbs.path("tiny-invert-demo"))
    assert demo.shape == other.shape == (THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3)
    assert np.abs(demo.astype(int) - other.astype(int)).mean() > 5  # two styles, two pictures

    # the same picture as the Generate tab shows for this seed, enlarged with visible 8 px blocks (32 px -> 256)
    source, styled = render_images(store, "tiny", StyleRef("tiny-demo", "tiny", published="tiny-demo"),
                                   [THUMBNAIL_SEED], THUMBNAIL_TRUNCATION, 1.0)
    assert np.array_equal(demo, np.asarray(styled[0].resize((256, 256), Image.NEAREST)))
    assert np.array_equal(demo[::8, ::8], np.asarray(styled[0]))
    assert not np.array_equal(demo[::8, ::8], np.asarray(source[0]))  # the style changed the picture
    assert len(np.unique(demo.reshape(-1, 3), axis=0)) > 20  # a real image, not a flat fill


def test_render_style_thumbnails_gives_none_for_unavailable_weights(store: ModelStore,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from nada.weights import WeightsUnavailableError

    assert pickle.loads(pickle.dumps(render_style_thumbnails)) is render_style_thumbnails  # a ZeroGPU task

    def unavailable(name: str):
        raise WeightsUnavailableError(f"'{name}' is not cached")

    monkeypatch.setattr(store, "published_style", unavailable)
    assert render_style_thumbnails(store, "tiny", ["tiny-demo"], 0, 0.7, 64) == [None]
    with pytest.raises(ValueError):
        render_style_thumbnails(store, "tiny", ["tiny-invert-demo"], 0, 0.7, 64)  # another generator's style


def test_resize_thumbnail_shrinks_smoothly_and_enlarges_in_blocks() -> None:
    checker = Image.fromarray((np.indices((4, 4)).sum(0) % 2 * 255).astype(np.uint8)).convert("RGB")
    big = np.asarray(resize_thumbnail(checker, 16))
    assert set(np.unique(big)) == {0, 255}  # nearest: no blur
    small = np.asarray(resize_thumbnail(Image.fromarray(np.kron(np.asarray(checker), np.ones((8, 8, 1),
                                                                                              np.uint8))), 16))
    assert small.shape == (16, 16, 3) and len(np.unique(small)) > 2  # lanczos: filtered
