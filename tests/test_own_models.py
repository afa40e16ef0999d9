"""Your own generator in the app (``nada.app.own_models``), called directly (no server, tiny mode): an uploaded NVIDIA
pickle or rosinality ``.pt`` is checked before anything changes, each refusal in words naming the file by its own
name, then becomes a source of its browser session only; its styles train, render and mix like any other; Invert
says which generators take photos.

Crafted pickles come from NVIDIA's shared fixtures, changed and written back as ``tests/test_nvidia_pickle.py``
does (its ``dumps`` fixture).
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import gradio as gr
import pytest
import torch

from nada.app import adapt_tab, generate_tab, invert_tab, mix, own_models
from nada.app.errors import InputError
from nada.app.sessions import BrowserSessions, SessionStyles
from nada.app.style_menus import NO_STYLE, restore_session, style_choices
from nada.app.training_queue import TrainingRuns
from nada.model_store import OWN_PREFIX, ModelStore
from nada.nets.nvidia_pickle import NvidiaModule
from nada.weights import can_run

from .fixtures import fixture_path
from .helpers import adapt_args
from .test_nvidia_pickle import Reduces, _marker_src, _read_fixture, _with_generator, dumps  # noqa: F401 (fixture)

ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


@pytest.fixture
def sessions():
    """Two browser sessions, cleaned up after the test."""
    a, b = SessionStyles(), SessionStyles()
    yield a, b
    a.cleanup()
    b.cleanup()


def upload(tmp_path: Path, name: str, data: bytes | Path) -> Path:
    """A file as Gradio hands an upload over: its own name, in a temp folder of the server's."""
    folder = tmp_path / "gradio" / "0123abcd"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(data, Path):
        shutil.copyfile(data, path)
    else:
        path.write_bytes(data)
    return path


def refused(store: ModelStore, session: SessionStyles, path: Path, match: str) -> str:
    """The upload's refusal (a page error): it names the file by its own name, never its folder, and nothing of the
    session or the store changed."""
    before = set(store._own)
    with pytest.raises(gr.Error) as err:
        own_models.upload_generator(store, session, str(path))
    message = str(err.value.message)
    assert path.name in message and str(path.parent) not in message and "/tmp" not in message, message
    assert re.search(match, message), message
    assert session.generators == {} and set(store._own) == before
    return message


def sg2ada_upload(store: ModelStore, session: SessionStyles, tmp_path: Path, pick: str = "adapt"):
    path = upload(tmp_path, "my cats.pkl", fixture_path("nvidia", "sg2ada_256.pkl"))
    return path, own_models.upload_generator(store, session, str(path), pick=pick)


# ------------------------------------------------------------------------------------------- a source, per session
def test_an_uploaded_pickle_is_a_source_of_its_session_only(store, sessions, tmp_path):
    mine, other = sessions
    path, out = sg2ada_upload(store, mine, tmp_path)
    key = out.adapt_source.value
    label = "your model: my cats.pkl (256 px)"
    assert key.startswith(OWN_PREFIX) and (label, key) in out.adapt_source.choices
    assert (f"None: {label} alone", key) in out.generate_style.choices and out.session is mine
    kept = mine.generator(key)
    assert kept.file.is_file() and kept.file.parent.parent == mine.directory()  # the session's own copy
    assert "StyleGAN2-ADA generator, 256 px, 14 W+ rows" in kept.summary and "none of its code ran" in kept.summary
    assert "another generator" in out.invert_scope  # picked in Adapt: Invert says photos cannot go into it

    # Another session never sees it: not in its pickers, refused by every check, even with the key typed in.
    assert all(v != key for _, v in style_choices(store, other))
    for session in (other, None):
        with pytest.raises(InputError, match="not uploaded in this browser session") as err:
            adapt_tab.check_adapt(store, session, **adapt_args(source=key))
        assert err.value.field == "source"
        with pytest.raises(InputError, match="not uploaded in this browser session") as err:
            generate_tab.check_generate(store, session, key, 0, 0.7, 1, 1.0)
        assert err.value.field == "style"
    # A name typed into the page never becomes a path, nor does a forged key reach anything.
    for forged in (str(path), str(kept.file), OWN_PREFIX + "0" * 16):
        with pytest.raises(InputError):
            adapt_tab.check_adapt(store, mine, **adapt_args(source=forged))
    assert adapt_tab.check_adapt(store, mine, **adapt_args(source=key)).iterations == 4  # its rows: 14

    # Drawn alone in Generate, named as the person knows it; the key of the same weights is the same.
    shown = generate_tab.generate(store, mine, key, 0, 0.7, 2, 1.0)
    assert len(shown.source_gallery) == 2 and shown.styled_gallery == []
    assert label in shown.source_gallery[0][1] and label in shown.info and "own:" not in shown.info
    _, again = sg2ada_upload(store, other, tmp_path, pick="generate")
    assert again.generate_style.value == key and "value" not in again.adapt_source.constructor_args  # picked where
    #                                                                           it was uploaded, only offered elsewhere
    assert other.generator(key).file != kept.file  # each session keeps its own copy

    # A reload finds it again; the session's end deletes its copy.
    browsers = BrowserSessions()
    bkey, session = browsers.open(None)
    own_models.upload_generator(store, session, str(path))
    restored = restore_session(store, browsers, bkey)
    assert any(v == key for _, v in restored.adapt_source.choices)
    copy = session.generator(key).file
    browsers.close_all()
    assert not copy.exists()


def test_a_style_trained_on_an_uploaded_pickle_works_like_any_other(store, sessions, tmp_path):
    mine, _ = sessions
    _, out = sg2ada_upload(store, mine, tmp_path)
    key = out.adapt_source.value
    runs = TrainingRuns()
    outs = list(adapt_tab.adapt_stream(store, runs, mine, **adapt_args(source=key, iterations=2, probe=False),
                                       min_interval_s=0.0))
    last = outs[-1]
    assert "finished" in last.status and "photos take styles of" in last.status  # not the inversion generator
    assert mine.names() == ["sketch"] and mine.styles["sketch"].source == key
    assert any(v == "session:sketch" and "your model: my cats.pkl" in label
               for label, v in last.generate_style.choices)  # named with its generator
    shown = generate_tab.generate(store, mine, "session:sketch", 0, 0.7, 1, 1.0)
    assert len(shown.styled_gallery) == 1 and "your model: my cats.pkl" in shown.source_gallery[0][1]
    source, refs, weights, _ = mix.check_mix(store, mine, "session:sketch", "session:sketch", None, None, 0.5, 0.5,
                                             0, 0, "")
    assert source == key and len(refs) == 2  # mixes with the styles of its generator
    with pytest.raises(InputError, match="a generator, not a style"):
        mix.check_mix(store, mine, key, None, None, None, 1, 0, 0, 0, "")
    with pytest.raises(InputError, match="e4e inverts faces into the FFHQ StyleGAN2 generator"):
        invert_tab.check_invert(store, mine, str(ASTRONAUT), ["session:sketch"], 1.0)
    # The generator dropped from the session: its styles say so instead of drawing another generator.
    mine.generators.clear()
    with pytest.raises(InputError, match="no longer in this session: upload that generator again"):
        generate_tab.check_generate(store, mine, "session:sketch", 0, 0.7, 1, 1.0)


def test_a_rosinality_pt_uploads_too(store, sessions, tmp_path, tiny_generator):
    mine, _ = sessions
    path = upload(tmp_path, "tiny.pt", b"")
    torch.save({"g_ema": tiny_generator.state_dict()}, path)
    out = own_models.upload_generator(store, mine, str(path), pick="generate")
    key = out.generate_style.value
    assert mine.generator(key).summary.startswith("a StyleGAN2 generator, 32 px, 8 W+ rows")
    assert store.generator_rows(key) == 8


# ------------------------------------------------------------------------------------------------------- refusals
def test_a_2_gb_upload_is_refused_before_it_is_read(store, sessions, tmp_path, monkeypatch):
    mine, _ = sessions
    path = upload(tmp_path, "huge.pkl", b"")
    os.truncate(path, 2 * 2**30)  # sparse: 2 GB on paper, nothing on disk

    def never(*args, **kwargs):
        raise AssertionError("the file was read")
    monkeypatch.setattr(own_models, "read_generator_file", never)
    refused(store, mine, path, r"The generator file 'huge.pkl' is 2048 MB; the limit is 512 MB, and it was not read")


def test_a_pickle_that_may_run_code_is_refused_and_nothing_runs(store, sessions, tmp_path):
    mine, _ = sessions
    marker = tmp_path / "ran"
    evil = pickle.dumps({"G": Reduces(os.system, f"touch {marker}"), "G_ema": None}, protocol=4)
    refused(store, mine, upload(tmp_path, "evil.pkl", evil), "may run code.*nothing in the file was run")
    assert not marker.exists()


def test_embedded_source_never_runs(store, sessions, tmp_path, dumps):  # noqa: F811 (the fixture)
    mine, _ = sessions
    marker = tmp_path / "ran"
    net = _read_fixture()
    data = _with_generator(net, lambda meta: meta.update(module_src=_marker_src(marker) + meta["module_src"]))
    out = own_models.upload_generator(store, mine, str(upload(tmp_path, "with-code.pkl", dumps(data))))
    assert out.adapt_source.value.startswith(OWN_PREFIX) and not marker.exists()


@pytest.mark.parametrize("case, match", [
    ("conditional", r"class-conditional \(10 labels\)"),
    ("discriminator only", r"holds no generator.*only D \(Discriminator\)"),
    ("truncated", r"truncated or damaged"),
    ("unknown architecture", r"unknown architecture.*does not know"),
    ("not a network pickle", r"not an NVIDIA network pickle"),
    ("torch.save named .pkl", r"PyTorch checkpoint written by torch.save"),
    ("not a generator file", r"not a generator file: upload an NVIDIA network pickle"),
    ("empty", r"is empty"),
])
def test_bad_files_are_refused_in_words(store, sessions, tmp_path, dumps, tiny_generator, case, match):  # noqa: F811
    mine, _ = sessions
    net = _read_fixture()
    name, data = "model.pkl", b""
    if case == "conditional":
        data = dumps(_with_generator(net, lambda meta: meta["state"].update(
            c_dim=10, _init_kwargs={**meta["state"]["_init_kwargs"], "c_dim": 10})))
    elif case == "discriminator only":
        mapping = net.data["G_ema"].submodules["mapping"]
        d = NvidiaModule("Discriminator", b"", {}, {}, {**mapping.meta, "class_name": "Discriminator"})
        data = dumps({**net.data, "G": None, "G_ema": None, "D": d})
    elif case == "truncated":
        data = fixture_path("nvidia", "sg2ada_256.pkl").read_bytes()[:100_000]
    elif case == "unknown architecture":
        data = dumps(_with_generator(net, lambda meta: meta["state"].update(
            _modules={"mapping": meta["state"]["_modules"]["mapping"]})))
    elif case == "not a network pickle":
        data = pickle.dumps({"G": 1, "weights": [1, 2]}, protocol=4)
    elif case == "torch.save named .pkl":
        path = upload(tmp_path, name, b"")
        torch.save({"g_ema": tiny_generator.state_dict()}, path)
        data = path.read_bytes()
    elif case == "not a generator file":
        name, data = "notes.txt", b"hello"
    refused(store, mine, upload(tmp_path, name, data), match)


def test_stylegan3_loads_or_is_refused_in_words_until_nada_runs_it(store, sessions, tmp_path):
    mine, _ = sessions
    path = upload(tmp_path, "sg3t.pkl", fixture_path("nvidia", "sg3t_256.pkl"))
    if can_run("StyleGAN3-T"):
        out = own_models.upload_generator(store, mine, str(path))
        assert "StyleGAN3-T generator" in mine.generator(out.adapt_source.value).summary
    else:
        refused(store, mine, path, r"holds a StyleGAN3-T generator, 256 px, 16 W\+ rows.*cannot run StyleGAN3-T")


# ------------------------------------------------------------------------------------------------------- Invert
def test_invert_says_which_generators_take_photos(store, sessions, tmp_path):
    mine, _ = sessions
    plain = own_models.invert_scope(store, mine, store.invert_source(), NO_STYLE)
    assert "e4e inverts a face into" in plain and "another generator" not in plain
    _, out = sg2ada_upload(store, mine, tmp_path, pick="generate")
    key = out.generate_style.value
    said = own_models.invert_scope(store, mine, "tiny", key)
    assert "Generate's style is for your model: my cats.pkl (256 px), another generator" in said
    assert "Adapt's source is for tiny" in said  # tiny mode: the 32 px generator is not the inversion one either
    real = ModelStore(tiny=False)
    text = own_models.invert_scope(real, None, "afhq-cat", "nada-witcher")
    assert "'ffhq' (FFHQ StyleGAN2 at 1024 px) only" in text and "Cats (AFHQ, 512), another generator" in text
    assert "Generate's style" not in text  # the Witcher style is of ffhq, which takes photos
