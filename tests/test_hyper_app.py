"""Using a hypernetwork (issue 37, part 4): ``Studio.instant``, training that starts from an instant style, and the
Adapt tab's Instant and Refine buttons (``NADA_HYPERNET``). Tiny models; the hypernetwork trains a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

from nada import Studio
from nada.app import instant
from nada.app.errors import InputError
from nada.app.style_menus import SESSION_PREFIX
from nada.app.training_queue import TrainingRuns
from nada.hyper import HyperConfig, Hypernet, HypernetMismatchError, train_hypernet
from nada.model_store import ModelStore
from nada.studio import HYPERNET_SETTING
from nada.styles import load_style
from nada.tiny import TINY_INVERT

from .helpers import adapt_args
from .test_app import import_app

TINY = "tiny"
CONFIG = HyperConfig(iterations=4, prompts_per_step=2, batch_size=2, lr=0.05, clip_models=("tiny-clip",), hidden=16,
                     depth=1, checkpoint_every=0)


@pytest.fixture(scope="module")
def studio() -> Studio:
    return Studio(tiny=True, hypernet="")  # no setting: each test names its file


@pytest.fixture(scope="module")
def hyper_file(studio: Studio, tmp_path_factory) -> Path:
    """A hypernetwork of the tiny generator, trained 4 steps over three prompts."""
    store = studio.store
    records = list(train_hypernet(store.generator(TINY), store.clips(["tiny-clip"]), ["Sketch", "Red", "Blue"],
                                  CONFIG, source=TINY))
    assert records[-1].done and records[-1].hypernet is not None
    return records[-1].hypernet.save(tmp_path_factory.mktemp("hyper") / "hyper.safetensors")


@pytest.fixture(scope="module")
def other_file(studio: Studio, tmp_path_factory) -> Path:
    """A fresh hypernetwork of the 256 px tiny generator (another generator than ``hyper_file``'s)."""
    store = studio.store
    net = Hypernet.for_generator(store.generator(TINY_INVERT), store.clips(["tiny-clip"]), CONFIG, source=TINY_INVERT)
    return net.save(tmp_path_factory.mktemp("other") / "other.safetensors")


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def offsets(style) -> dict[str, torch.Tensor]:
    return {k: v for k, v in style.tensors.items() if k.endswith(".style_delta")}


# --------------------------------------------------------------------------------------------- Studio.instant
def test_instant_gives_a_compact_style_that_changes_the_pictures(studio, hyper_file):
    style = studio.instant("Photo", "Werewolf", hyper=hyper_file)
    assert style.kind == "style_delta" and style.source == TINY and style.meta["hypernet"] is True
    assert style.meta["source_text"] == "Photo" and style.meta["target_text"] == "Werewolf"
    assert all(v.abs().sum() > 0 for v in offsets(style).values()) and offsets(style)
    styled, plain = studio.generate([0, 1], style=style), studio.generate([0, 1], source=TINY)
    assert np.abs(pixels(styled[0]) - pixels(plain[0])).mean() > 0.5  # the style shows
    # The same prompts give the same style; other prompts another one.
    again, other = studio.instant("Photo", "Werewolf", hyper=hyper_file), studio.instant("Photo", "Blue",
                                                                                          hyper=hyper_file)
    assert all(torch.equal(again.tensors[k], v) for k, v in style.tensors.items())
    assert any(not torch.allclose(other.tensors[k], v) for k, v in style.tensors.items())


def test_instant_reads_the_setting_once_when_the_studio_is_made(hyper_file, monkeypatch):
    monkeypatch.setenv(HYPERNET_SETTING, str(hyper_file))
    made = Studio(tiny=True)
    monkeypatch.delenv(HYPERNET_SETTING)
    assert made.hypernet == str(hyper_file)
    assert made.instant("Photo", "Sketch").kind == "style_delta"


def test_instant_is_refused_on_another_generator_and_without_a_hypernetwork(studio, hyper_file, other_file):
    with pytest.raises(HypernetMismatchError, match="'hyper.safetensors' was trained for another generator"):
        studio.instant("Photo", "Werewolf", hyper=hyper_file, source=TINY_INVERT)
    assert studio.instant("Photo", "Werewolf", hyper=other_file).source == TINY_INVERT  # its own generator
    with pytest.raises(ValueError, match=f"No hypernetwork: pass hyper=.* or set {HYPERNET_SETTING}"):
        studio.instant("Photo", "Werewolf")
    with pytest.raises(FileNotFoundError, match="'missing.safetensors' does not exist") as caught:
        studio.instant("Photo", "Werewolf", hyper=hyper_file.parent / "missing.safetensors")
    assert str(hyper_file.parent) not in str(caught.value)


@pytest.mark.parametrize("source_text, target_text, words", [
    ("Photo", "   ", "target prompt is empty"),
    ("", "Sketch", "source prompt is empty"),
    ("Photo", "photo", "are the same"),
    ("Photo", "word " * 100, "too long for CLIP"),
])
def test_instant_refuses_bad_prompts_before_anything_loads(studio, source_text, target_text, words):
    with pytest.raises(ValueError, match=words):
        studio.instant(source_text, target_text, hyper="never-read.safetensors")


# ---------------------------------------------------------------------------------------- refine = train on
def test_training_starts_from_the_instant_offsets(studio, hyper_file):
    start = studio.instant("Photo", "Werewolf", hyper=hyper_file)
    records = list(studio.adapt("Photo", "Werewolf", recipe="compact", start=start, iterations=1, lr=1e-6,
                                style_every=0))  # the start style names its generator ('tiny', not the default)
    refined = records[-1].style
    assert refined.kind == "style_delta" and refined.source == TINY
    assert refined.meta["started_from"] == {"target_text": "Werewolf", "hypernet": True}
    # One step at a tiny learning rate: the instant offsets, recorded against the plain source (not zero-based).
    assert set(offsets(start)) <= set(offsets(refined))
    for key, value in offsets(start).items():
        assert torch.allclose(refined.tensors[key], value, atol=1e-4) and value.abs().max() > 1e-3
    # Without start the same run begins at zero offsets: far from the instant style.
    plain_records = list(studio.adapt("Photo", "Werewolf", recipe="compact", source=TINY, iterations=1, lr=1e-6,
                                      style_every=0))
    plain = plain_records[-1].style
    assert all(not torch.allclose(plain.tensors.get(k, torch.zeros_like(v)), v, atol=1e-4)
               for k, v in offsets(start).items())
    # The previews' source row is the plain source's pictures in both runs (the frozen copy has no offsets); the
    # adapted row differs: only the trained copy starts from the offsets.
    shown = [next(r.preview for r in run if r.preview is not None) for run in (records, plain_records)]
    (top, bottom), (plain_top, plain_bottom) = (np.split(pixels(p), 2, axis=0) for p in shown)
    assert np.array_equal(top, plain_top) and np.abs(bottom - plain_bottom).mean() > 0.5
    with pytest.raises(ValueError, match="compact style of the form it trains"):
        studio.adapt("Photo", "Werewolf", recipe="paper", source=TINY, start=start, iterations=1)


# ------------------------------------------------------------------------------------------------------ app
def adapt_button(demo, elem_id: str):
    return next((b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id), None)


def test_the_instant_button_shows_only_with_a_hypernetwork_for_the_picked_source(hyper_file, other_file,
                                                                                 monkeypatch, capsys):
    app = import_app()
    monkeypatch.delenv(HYPERNET_SETTING, raising=False)
    assert adapt_button(app.build_demo(tiny=True), "adapt-instant") is None  # no setting: no button
    monkeypatch.setenv(HYPERNET_SETTING, str(hyper_file))
    demo = app.build_demo(tiny=True)
    button = adapt_button(demo, "adapt-instant")
    assert button is not None and button.visible is True
    assert adapt_button(demo, "adapt-refine").visible is False  # until there is an instant style
    assert "hypernetwork 'hyper.safetensors': instant styles of 'tiny'." in capsys.readouterr().out
    # A hypernetwork of another generator than the picker's: the button is there, hidden.
    other = app.build_demo(tiny=True, hypernet=other_file)
    assert adapt_button(other, "adapt-instant").visible is False
    offer = instant.serve_hypernet(ModelStore(tiny=True), other_file)
    assert offer.source == TINY_INVERT
    assert instant.instant_button(offer, TINY_INVERT).visible is True
    assert instant.instant_button(offer, TINY).visible is False
    # A missing file: said in the server log, no button, the app builds.
    assert adapt_button(app.build_demo(tiny=True, hypernet=hyper_file.parent / "gone.safetensors"),
                        "adapt-instant") is None
    assert "the hypernetwork file 'gone.safetensors' does not exist" in capsys.readouterr().out


def test_instant_gives_a_session_style_and_its_pictures(hyper_file, session):
    store = ModelStore(tiny=True)
    offer = instant.serve_hypernet(store, hyper_file)
    out = instant.instant_style(store, offer, session, TINY, "Photo", " Werewolf ")
    assert session.names() == ["werewolf"] and out.instant_start == "werewolf" and out.recipe == "compact"
    kept = load_style(out.style_file)
    assert kept.kind == "style_delta" and kept.source == TINY and kept.meta["target_text"] == "Werewolf"
    assert out.generate_style.value == SESSION_PREFIX + "werewolf" and out.refine.visible is True
    assert "Instant style **werewolf**" in out.status and out.metrics == ""
    top, bottom = np.split(pixels(out.preview), 2, axis=0)  # source row over styled row
    assert np.abs(top - bottom).mean() > 0.5
    # The same style as the library's.
    direct = Studio(tiny=True, hypernet=hyper_file).instant("Photo", "Werewolf")
    assert all(torch.allclose(kept.tensors[k], v) for k, v in direct.tensors.items())


@pytest.mark.parametrize("source, target_text, field, words", [
    (TINY, "", "target_text", "Target text is empty"),
    (TINY, "photo", "target_text", "are the same"),
    (TINY, "word " * 100, "target_text", "too long for CLIP"),
    (TINY_INVERT, "Werewolf", "source", "trained for 'tiny', not 'tiny-invert'"),
])
def test_bad_prompts_are_said_beside_the_button_and_change_nothing(hyper_file, session, source, target_text,
                                                                   field, words):
    store = ModelStore(tiny=True)
    offer = instant.serve_hypernet(store, hyper_file)
    with pytest.raises(InputError, match=words) as caught:
        instant.check_instant(store, offer, session, source, "Photo", target_text)
    assert caught.value.field == field
    from nada.app.status_line import refusal
    line = refusal(lambda session, source, source_text, target_text:
                   instant.check_instant(store, offer, session, source, source_text, target_text),
                   label="No instant style")(session, source, "Photo", target_text)
    assert line.startswith("**No instant style:**") and words.split("'")[0] in line
    with pytest.raises(gr.Error):
        instant.instant_style(store, offer, session, source, "Photo", target_text)
    assert session.names() == [] and list(session.directory().iterdir()) == []  # nothing kept, no stray file


def test_refine_trains_on_from_the_instant_style(hyper_file, session):
    store = ModelStore(tiny=True)
    offer = instant.serve_hypernet(store, hyper_file)
    name = instant.instant_style(store, offer, session, TINY, "Photo", "Werewolf").instant_start
    args = adapt_args(target_text="Werewolf", iterations=1, lr=1e-6, recipe="compact", probe=False, mixing=0.9,
                      lambda_indomain=0.0)
    with pytest.raises(InputError, match="pick the Compact recipe"):
        instant.check_refine(store, session, name, **{**args, "recipe": "paper"})
    with pytest.raises(InputError, match="press Instant first"):
        instant.check_refine(store, session, "", **args)
    outs = list(instant.refine_stream(store, TrainingRuns(), session, name, **args, min_interval_s=0.0))
    assert session.names() == ["werewolf", "werewolf-2"] and "Saved the style **werewolf-2**" in outs[-1].status
    start, refined = load_style(session.styles["werewolf"].file), load_style(outs[-1].style_file)
    assert refined.meta["started_from"]["hypernet"] is True
    for key, value in offsets(start).items():
        assert torch.allclose(refined.tensors[key], value, atol=1e-4)


# ------------------------------------------------------------------------------------------------------ bench
def test_the_gpu_check_hyper_part_names_real_cases_and_its_figures_reach_the_report(tmp_path, capsys):
    from bench.gpu_report import build_report, print_summary
    from bench.registry import all_cases, default_cases

    from .helpers import PROJECT_ROOT

    script = (PROJECT_ROOT / "bench" / "gpu_check.sh").read_text()
    full = script.split("hyper_args=(--quick --cases hyper_step_1024", 1)[1].split(")", 1)[0]
    names = ("hyper_step_1024" + full).split(",")
    assert names == ["hyper_step_1024_k8", "hyper_style"] and set(names) <= set(all_cases())
    assert "hyper_step_1024_k8" not in default_cases() and {"hyper_step_256", "hyper_style"} <= set(default_cases())
    assert 'run_part hyper "$hyper_limit"' in script and '--json "$parts/hyper.json"' in script
    figures = {"machine": "test", "device": "cuda", "cases": {
        "hyper_step_1024_k8": {"median_s": 2.4, "peak_mib": 40000.0, "s_per_prompt": 0.3},
        "hyper_style": {"error": "timed out after 60 s"}}}
    (tmp_path / "hyper.json").write_text(json.dumps(figures))
    (tmp_path / "parts.tsv").write_text("hyper\t0\t100\n")
    report = build_report(tmp_path, app_formula=False)
    assert report["hyper"]["cases"]["hyper_step_1024_k8"]["s_per_prompt"] == 0.3
    print_summary(report)
    out = capsys.readouterr().out
    assert "hyper_step_1024_k8" in out and "0.300" in out and "timed out after 60 s" in out
