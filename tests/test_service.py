"""The app's handlers called directly (no server): tiny models, real values checked."""

from __future__ import annotations

import os
import re
import threading
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from nada import weights
from nada.app import adapt_tab, generate_tab, invert_tab, page, status_line, style_menus
from nada.app.errors import InputError, user_errors
from nada.app.page import header_markdown, photo_input, tab_notice
from nada.app.sessions import SessionStyles
from nada.app.style_menus import NO_STYLE
from nada.app.training_queue import TrainingBusyError, TrainingRuns
from nada.app.wiring import KEEP, bind, handler_inputs, validator, wire
from nada.app.zerogpu import on_gpu
from nada.invert import render_codes
from nada.model_store import TINY_INVERT, ModelStore
from nada.styles import export_style_pt, load_style, save_style, style_from_generators
from nada.tiny import tiny_generator

from .helpers import adapt_args

ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def run_adapt(store, runs, session, **over):
    """Consume a training stream -> list of output tuples."""
    return list(adapt_tab.adapt_stream(store, runs, session, **adapt_args(**over), min_interval_s=0.0))


# ------------------------------------------------------------------------------------------------- the store
def test_store_is_lazy_and_loads_each_model_once(store):
    fresh = ModelStore(tiny=True)
    assert fresh.loaded() == []  # nothing at construction
    g1, g2 = fresh.generator("tiny"), fresh.generator("tiny")
    assert g1 is g2 and fresh.loaded() == ["generator:tiny"]
    with pytest.raises(ValueError, match="Unknown source generator 'ffhq'"):
        fresh.generator("ffhq")  # tiny mode offers tiny generators only


def test_store_concurrent_first_use_loads_once():
    fresh = ModelStore(tiny=True)
    calls = []

    def slow_loader():
        calls.append(1)
        time.sleep(0.2)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(fresh._get("x", slow_loader))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1


def test_tiny_demo_styles_fit_their_generators(store):
    for name, (_, source) in store.published().items():
        style = store.published_style(name)
        assert style.source == source
        keys = set(style.tensors)
        assert keys and all(k.startswith(("conv1.conv.", "convs.")) for k in keys)
    assert store.published_choices(TINY_INVERT) == [("Tiny demo style for inversion (random, tiny mode)",
                                                     "tiny-invert-demo")]


# --------------------------------------------------------------------------------------------------- generate
def test_generate_source_and_styled_change_with_seed_and_truncation(store, session):
    out = generate_tab.generate(store, session, "tiny-demo", 3, 0.7, 2, 1.0)
    source, styled, files, info = out.source_gallery, out.styled_gallery, out.files, out.info
    assert [c for _, c in source] == ["seed 3 · source (tiny)", "seed 4 · source (tiny)"]
    assert [c for _, c in styled] == ["seed 3 · tiny-demo", "seed 4 · tiny-demo"]
    (src3, src4), (sty3, _) = [pixels(im) for im, _ in source], [pixels(im) for im, _ in styled]
    assert src3.shape == (256, 256, 3)  # 32 px tiny images enlarged for display
    assert np.abs(src3 - sty3).mean() > 5  # the style changes the picture
    assert np.abs(src3 - src4).mean() > 5  # so does the seed
    again = generate_tab.generate(store, session, "tiny-demo", 3, 0.7, 1, 1.0).source_gallery
    assert np.array_equal(pixels(again[0][0]), src3)  # and the same seed gives the same image
    trunc = generate_tab.generate(store, session, "tiny-demo", 3, 0.2, 1, 1.0).source_gallery
    assert np.abs(pixels(trunc[0][0]) - src3).mean() > 2  # truncation matters
    with zipfile.ZipFile(files[0]) as zf:
        assert sorted(zf.namelist()) == ["seed0003-source.png", "seed0003-styled.png", "seed0004-source.png",
                                         "seed0004-styled.png"]
        assert Image.open(zf.open("seed0003-source.png")).size == (32, 32)  # downloads keep the real size
    assert "tiny-demo" in info


def test_generate_strength_zero_is_the_source_and_no_style_is_source_only(store, session):
    out = generate_tab.generate(store, session, "tiny-demo", 7, 0.7, 1, 0.0)
    source, styled = out.source_gallery, out.styled_gallery
    assert np.array_equal(pixels(source[0][0]), pixels(styled[0][0]))
    out = generate_tab.generate(store, session, NO_STYLE, 7, 0.7, 3, 1.0)
    plain, none, files = out.source_gallery, out.styled_gallery, out.files
    assert len(plain) == 3 and none == [] and np.array_equal(pixels(plain[0][0]), pixels(source[0][0]))
    with zipfile.ZipFile(files[0]) as zf:
        assert len(zf.namelist()) == 3


@pytest.mark.parametrize("args, message", [
    (("tiny-demo", -1, 0.7, 1, 1.0), "seed must be a whole number"),
    (("tiny-demo", 1.5, 0.7, 1, 1.0), "seed must be a whole number from 0 to 4294967295, got 1.5"),
    (("tiny-demo", 2**32, 0.7, 1, 1.0), "seed must be a whole number from 0 to 4294967295"),
    (("tiny-demo", 0, 1.5, 1, 1.0), "Truncation must be from 0 to 1"),
    (("tiny-demo", 0, 0.7, 0, 1.0), "Number of images must be from 1 to 8"),
    (("tiny-demo", 0, 0.7, 1, -0.1), "Style strength must be from 0 to 1"),
    (("nada-pixar", 0, 0.7, 1, 1.0), "Unknown style 'nada-pixar'"),
    (("session:gone", 0, 0.7, 1, 1.0), "no longer in this session"),
])
def test_generate_bad_input_is_a_readable_error(store, session, args, message):
    with pytest.raises(gr.Error, match=message):
        generate_tab.generate(store, session, *args)


# ------------------------------------------------------------------------------------------------------ adapt
def test_adapt_streams_previews_and_keeps_a_style_generate_can_use(store, session):
    runs = TrainingRuns()
    outs = run_adapt(store, runs, session, iterations=3, recipe="shape")  # probes 2/3 of the rows, mixes
    previews = [o.preview for o in outs if isinstance(o.preview, Image.Image)]
    assert len(previews) >= 2 and previews[0].size == (4 * 128, 2 * 128)  # source row over adapted row, enlarged
    assert not np.array_equal(pixels(previews[0]), pixels(previews[-1]))  # training moves the adapted row
    last = outs[-1]
    losses, bars, status, style_file = last.losses, last.layers, last.status, last.style_file
    sess, gen_dd, inv_dd = last.session, last.generate_style, last.invert_styles
    assert set(losses["term"]) == {"loss"} and losses["step"].max() == 3  # one term on: one line, not two
    assert list(bars["row"]) == [f"w{i}" for i in range(8)] and (bars["trains"] == "trained").sum() == 5  # 2/3 of 8
    assert "| Target score: CLIP similarity to the target text |" in last.metrics  # the figures once training ends
    assert "Measured with the CLIP models it trained against" in last.metrics  # and who judged them
    assert "finished" in status and "sketch" in status
    assert "Generate tab" in status and "Invert" not in status  # a 32 px tiny style does not fit the inversion model
    assert last.train.interactive is True and last.train.value == "Train"
    assert sess is session and session.names() == ["sketch"]
    style = load_style(style_file)
    assert style.source == "tiny" and style.meta["target_text"] == "Sketch" and style.meta["steps"] == 3
    assert gen_dd.value == "session:sketch"
    assert ("sketch (tiny) · this session: Sketch", "session:sketch") in gen_dd.choices  # named with its generator
    assert all(v != "session:sketch" for _, v in inv_dd.choices)  # a 32 px style does not fit the inversion model
    assert not runs.busy()
    out = generate_tab.generate(store, session, "session:sketch", 0, 0.7, 1, 1.0)
    source, styled, files = out.source_gallery, out.styled_gallery, out.files
    assert len(styled) == 1 and files[1] == style_file  # the style file is offered for download
    assert np.abs(pixels(source[0][0]) - pixels(styled[0][0])).mean() > 0.5


def test_adapt_stop_keeps_the_steps_trained_so_far(store, session):
    runs = TrainingRuns()
    stream = adapt_tab.adapt_stream(store, runs, session,
                                    **adapt_args(iterations=50, target_text="Zombie", probe=False), min_interval_s=0.0)
    outs = []
    for out in stream:
        outs.append(out)
        if isinstance(out.preview, Image.Image):
            assert runs.stop("local")  # the session that pressed Stop is the one training
    style = load_style(outs[-1].style_file)
    assert 1 <= style.meta["steps"] < 50 and "stopped at step" in outs[-1].status
    assert not runs.stop("local")  # nothing left to stop


def test_a_run_starts_on_a_clean_slate_and_a_run_without_probe_says_every_row_trains(store, session):
    runs = TrainingRuns()
    outs = run_adapt(store, runs, session, iterations=2, recipe="compact")  # no probe, the coarse rows frozen
    start = next(o for o in outs if o.status == "Loading the models...")
    assert start.preview is None and start.losses is None and start.metrics == "" and start.style_file is None
    expected = adapt_tab.EVERY_ROW.format(rows="every row but the coarse rows, which stay frozen,")
    assert start.layers.visible is False and start.rows_note == expected  # no empty "NaN" chart
    assert all(o.layers is KEEP for o in outs[outs.index(start) + 1:-1])  # never an empty chart
    last = outs[-1]
    assert last.layers.visible is False and "which stay frozen, trains at each step" in last.rows_note
    paper = run_adapt(store, runs, session, iterations=1, recipe="paper")  # every row, nothing frozen
    assert "no probe runs with these settings: every row trains at each step" in paper[-1].rows_note
    assert last.status.startswith("Done in ") and "Training finished (2/2 steps)" in last.status
    assert "photos take styles of 'tiny-invert' only" in last.status  # why Invert does not offer it
    probed = run_adapt(store, runs, session, iterations=2, recipe="shape")  # 2/3 of the rows: the chart shows
    start = next(o for o in probed if o.status == "Loading the models...")
    assert start.layers.visible is True and start.rows_note == adapt_tab.PROBED_ROWS
    assert list(probed[-1].layers["trains"]).count("trained") == 5


def test_a_recipe_pick_says_which_fields_it_set():
    note = adapt_tab.recipe_settings("compact").recipe_note
    assert note.startswith("**Compact** set: Training steps 250 · Learning rate 0.05 · Batch size 4 · Style mixing "
                           "0.9 · Keep variety 0.25 · ")
    assert "W+ rows: no probe (every convolution)" in note and "coarse rows frozen" in note
    assert "trains the style offsets only" in note
    assert "W+ rows: the 2/3 the probe picks" in adapt_tab.recipe_settings("shape").recipe_note
    diverse = adapt_tab.recipe_settings("diverse").recipe_note
    assert "Keep variety 0.25 " in diverse and "ToRGB layers train too" in diverse
    assert "W+ rows: no probe" in adapt_tab.recipe_settings("notebook").recipe_note


ADAPT_REFUSALS = [  # (values, the input the message belongs to, the message)
    ({"target_text": ""}, "target_text", "Target text is empty: type what to adapt to, e.g. 'Witcher'"),
    ({"target_text": "photo"}, "target_text", "Source text and Target text are the same"),
    ({"source_text": " "}, "source_text", "Source text is empty"),
    ({"target_text": "witcher " * 70}, "target_text", "Target text is too long for CLIP"),
    ({"iterations": 0}, "iterations", r"Training steps must be a whole number from 1 to 100000, got 0\."),
    ({"iterations": 100_001}, "iterations", "from 1 to 100000, got 100001"),  # refused, not clamped
    ({"iterations": 2.5}, "iterations", "whole number from 1 to 100000, got 2.5"),
    ({"lambda_direction": 0.0}, "lambda_direction", "At least one CLIP loss"),
    ({"lambda_l2": -1}, "lambda_l2", "loss weight must be from 0 to 2"),
    ({"source": "ffhq"}, "source", "Choose a source generator"),
    ({"lr": "fast"}, "lr", "learning rate must be a number above 0 and at most 0.1"),
    ({"lr": 1000}, "lr", "learning rate must be above 0 and at most 0.1 .*got 1000"),
    ({"lr": 0}, "lr", "learning rate must be above 0"),
    ({"seed": 1.5}, "seed", "seed must be a whole number from 0 to 4294967295, got 1.5"),
    ({"seed": -1}, "seed", "seed must be a whole number"),
    ({"layers_k": 9}, "layers_k", r"W\+ rows trained per step must be a whole number from 0 to 8, got 9"),  # no clamp
    ({"batch_size": 0}, "batch_size", "Batch size must be a whole number from 1 to 8"),
]


@pytest.mark.parametrize("over, field, message", ADAPT_REFUSALS)
def test_adapt_bad_input_is_a_readable_error(store, session, over, field, message):
    with pytest.raises(gr.Error, match=message):
        run_adapt(store, TrainingRuns(), session, **over)
    assert len(session) == 0
    with pytest.raises(InputError, match=message) as err:  # what the page's validator shows on the input
        adapt_tab.check_adapt(store, session, **adapt_args(**over))
    assert err.value.field == field


def test_adapt_waits_in_line_while_another_run_trains_and_starts_by_itself(store, session):
    runs = TrainingRuns()
    stream = adapt_tab.adapt_stream(store, runs, session, **adapt_args(iterations=1), min_interval_s=0.0)
    with runs.slot("someone-else", total=300):
        first = next(stream)
        assert "Waiting in line: 1 training run is ahead of yours (you are **number 2**)" in first.status
        assert first.train.interactive is False and first.train.value == "Training…"  # cannot be pressed twice
        assert first.preview is KEEP and first.losses is KEEP  # earlier results stay until the run makes new ones
        assert runs.involves("local") and runs.is_waiting("local")
        with pytest.raises(gr.Error, match="already waiting"):  # a second Train (or Enter) of this session
            run_adapt(store, runs, session)
    rest = list(stream)  # the slot is free: the run starts by itself
    assert "Saved the style" in rest[-1].status and rest[-1].train.interactive is True
    assert not runs.involves("local")


def test_the_loss_chart_has_one_line_per_term_or_a_single_loss_line():
    assert adapt_tab.loss_rows(1, {"direction": 0.5, "total": 0.5}) == [{"step": 1, "loss": 0.5, "term": "loss"}]
    rows = adapt_tab.loss_rows(3, {"direction": 0.5, "global": 0.25, "total": 0.75})
    assert [(r["term"], r["loss"]) for r in rows] == [("directional CLIP", 0.5), ("global CLIP", 0.25), ("total", 0.75)]
    assert adapt_tab.loss_rows(4, {}) == []  # a step that failed before its losses


def test_stop_takes_a_waiting_run_out_of_the_line(store, session):
    runs = TrainingRuns()
    stream = adapt_tab.adapt_stream(store, runs, session, **adapt_args(), min_interval_s=0.0)
    with runs.slot("someone-else", total=300):
        assert "Waiting in line" in next(stream).status
        assert adapt_tab.stop_training(runs) == "Leaving the line..."
        rest = list(stream)
    assert rest[-1].status == "Left the line before training started; nothing was trained."
    assert rest[-1].train.interactive is True and len(session) == 0


def test_training_runs_stale_run_loses_the_slot():
    runs = TrainingRuns(stale_after_s=0.05)
    with runs.slot("a") as old:
        time.sleep(0.1)
        with runs.slot("b") as new:  # a's page was abandoned: b takes over and a is told to stop
            assert old.stop_event.is_set() and not new.stop_event.is_set()
        with pytest.raises(TrainingBusyError):
            with runs.slot("c"):
                with runs.slot("d"):
                    pass


# ----------------------------------------------------------------------------------------------------- upload
def test_upload_safetensors_and_pt_styles(store, session, tmp_path):
    demo = store.published_style("tiny-demo")
    path = save_style(demo, tmp_path / "My Style!.safetensors")
    out = generate_tab.upload_style(store, session, str(path))
    gen_dd, sess = out.generate_style, out.session
    assert sess.names() == ["my-style"] and gen_dd.value == "session:my-style"
    pt = export_style_pt(store.generator("tiny"), demo, tmp_path / "full.pt")
    gen_dd = generate_tab.upload_style(store, session, str(pt)).generate_style
    assert gen_dd.value == "session:full" and set(load_style(session.styles["full"].file).tensors) == set(demo.tensors)
    a = generate_tab.generate(store, session, "session:my-style", 1, 0.7, 1, 1.0).styled_gallery
    b = generate_tab.generate(store, session, "session:full", 1, 0.7, 1, 1.0).styled_gallery
    assert np.array_equal(pixels(a[0][0]), pixels(b[0][0]))  # the same style either way


def test_upload_bad_files_are_readable_errors(store, session, tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(gr.Error, match="is not a style file"):
        generate_tab.upload_style(store, session, str(txt))
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"not really")
    with pytest.raises(gr.Error, match="could not be read as a safetensors file"):
        generate_tab.upload_style(store, session, str(fake))
    other = tiny_generator(seed=5)  # a style trained on another generator that is also called "tiny"
    adapted = tiny_generator(seed=6)
    foreign = save_style(style_from_generators(other, adapted, {"source": "tiny"}), tmp_path / "other.safetensors")
    with pytest.raises(gr.Error, match="trained on the source generator"):
        generate_tab.upload_style(store, session, str(foreign))
    with pytest.raises(gr.Error, match="Choose a style file"):
        generate_tab.upload_style(store, session, None)
    assert len(session) == 0


# ----------------------------------------------------------------------------------------------------- invert
def test_invert_astronaut_gives_aligned_reconstruction_and_styles(store, session):
    if not ASTRONAUT.is_file():
        pytest.skip("examples/astronaut.jpg is missing")
    out = invert_tab.invert_photo(store, session, str(ASTRONAUT), ["tiny-invert-demo"], 1.0)
    aligned, recon, gallery = out.aligned, out.reconstruction, out.gallery
    assert aligned.size == (256, 256) and recon.size == (256, 256)
    a = pixels(aligned)
    assert 60 < a.mean() < 200 and a.std() > 20  # a real photo crop, not a blank
    assert len(gallery) == 1 and gallery[0][1] == "tiny-invert-demo (strength 1)"
    assert np.abs(pixels(gallery[0][0]) - pixels(recon)).mean() > 2  # the style changes the reconstruction
    out = invert_tab.invert_photo(store, session, str(ASTRONAUT), ["tiny-invert-demo"], 0.0)
    recon0, g0 = out.reconstruction, out.gallery
    assert np.array_equal(pixels(g0[0][0]), pixels(recon0))  # strength 0 = the reconstruction


def test_a_new_strength_redraws_the_kept_inversion_without_inverting_again(store, session, monkeypatch):
    if not ASTRONAUT.is_file():
        pytest.skip("examples/astronaut.jpg is missing")
    photo, styles = str(ASTRONAUT), ["tiny-invert-demo"]
    untouched = invert_tab.restyle_photo(store, session, photo, styles, 0.5)  # not inverted yet: results unchanged
    assert untouched.gallery is KEEP and "not inverted yet: press **Invert**" in untouched.status
    inverted = invert_tab.invert_photo(store, session, photo, styles, 1.0)
    assert inverted.status.startswith("Done in ") and "its reconstruction and 1 style" in inverted.status
    codes, edit = session.inversion(invert_tab.photo_key(photo))
    assert codes.shape == (1, 14, 512) and codes.device.type == "cpu" and edit == ""  # small, kept for this session
    with monkeypatch.context() as m:  # neither the face finder nor the encoder runs again
        m.setattr(store, "e4e", lambda: pytest.fail("inverted again"))
        m.setattr(store, "aligner", lambda: pytest.fail("aligned again"))
        redrawn = invert_tab.restyle_photo(store, session, photo, styles, 0.5)
        gallery = redrawn.gallery
        same_bytes = invert_tab.restyle_photo(store, session, ASTRONAUT.read_bytes(), styles, 0.25).gallery  # pasted
    assert redrawn.status.startswith("Done in ") and "no new inversion" in redrawn.status
    reference = invert_tab.invert_photo(store, session, photo, styles, 0.5).gallery  # the reference path: all again
    assert [c for _, c in gallery] == ["tiny-invert-demo (strength 0.5)"] == [c for _, c in reference]
    assert np.array_equal(pixels(gallery[0][0]), pixels(reference[0][0]))
    assert same_bytes[0][1] == "tiny-invert-demo (strength 0.25)"
    assert np.abs(pixels(same_bytes[0][0]) - pixels(gallery[0][0])).mean() > 1  # the strength matters
    other = ASTRONAUT.read_bytes() + b"\0"  # another photo in the input, not inverted: nothing changes
    assert invert_tab.restyle_photo(store, session, other, styles, 0.5).gallery is KEEP
    assert invert_tab.restyle_duration({"refs": [1, 2]}) < invert_tab.invert_duration({"refs": [1, 2]})
    monkeypatch.setattr(invert_tab, "learned_direction", lambda store, pair, rows=None: None)  # an edit not learned yet
    not_learned = invert_tab.restyle_photo(store, session, photo, styles, 0.5, "smile", 1.0)  # is not learned here
    assert not_learned.gallery is KEEP and "The edit 'smile' is not learned yet: press **Invert**" in \
        not_learned.status
    direction = torch.zeros(14, 512)
    direction[0, :8] = 0.5
    monkeypatch.setattr(invert_tab, "learned_direction", lambda store, pair, rows=None: direction)  # as if cached
    with monkeypatch.context() as m:  # a new edit strength: the kept codes edited and redrawn, nothing inverted
        m.setattr(store, "e4e", lambda: pytest.fail("inverted again"))
        edited = invert_tab.restyle_photo(store, session, photo, styles, 0.5, "smile", 1.0).gallery
        stronger = invert_tab.restyle_photo(store, session, photo, styles, 0.5, "smile", 2.0).gallery
    assert [c for _, c in edited] == ["edited: smile +1", "tiny-invert-demo (strength 0.5) · smile +1"]
    assert [c for _, c in stronger] == ["edited: smile +2", "tiny-invert-demo (strength 0.5) · smile +2"]
    face = render_codes(store.generator(store.invert_source()), codes + direction)  # the source generator's face
    source_drawn = invert_tab.styled_gallery([(face, None)], 1.0)[0][0]
    assert np.array_equal(pixels(edited[0][0]), pixels(source_drawn))
    assert np.abs(pixels(stronger[0][0]) - pixels(edited[0][0])).mean() > 0.5  # the edit strength matters
    assert np.array_equal(pixels(invert_tab.restyle_photo(store, session, photo, styles, 0.5, "smile", 0.0)
                                 .gallery[1][0]), pixels(gallery[0][0]))  # edit strength 0: the unedited codes
    nothing = invert_tab.restyle_photo(store, session, photo, [], 0.5)  # no style, no edit: nothing to draw
    assert nothing.gallery == [] and "no style or edit picked" in nothing.status


def test_the_strength_redraw_is_one_gpu_task_whose_codes_cross_to_a_forked_worker(store, session, monkeypatch):
    if not hasattr(os, "fork"):
        pytest.skip("needs fork (Linux, macOS)")
    monkeypatch.setenv("NADA_FORK_GPU", "1")  # as on ZeroGPU: the redraw runs in a worker, arguments pickled
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    gpu = invert_tab.InvertGpu.wrapped(store)
    codes = store.generator(store.invert_source()).mean_latent(64).unsqueeze(1).repeat(1, 14, 1)  # [1, 14, 512]
    session.keep_inversion(invert_tab.photo_key(str(ASTRONAUT)), codes)
    forked = invert_tab.restyle_photo(store, session, str(ASTRONAUT), ["tiny-invert-demo"], 0.5, gpu=gpu).gallery
    direct = invert_tab.restyle_photo(store, session, str(ASTRONAUT), ["tiny-invert-demo"], 0.5).gallery
    assert [c for _, c in forked] == ["tiny-invert-demo (strength 0.5)"]
    assert np.array_equal(pixels(forked[0][0]), pixels(direct[0][0]))


def untimed(info: str) -> str:
    """A status line without its render time ("**Done** in 0.1 s: ..." -> "**Done** in ? s: ...")."""
    return re.sub(r"in [0-9.]+ s:", "in ? s:", info)


def test_live_generate_is_generate_and_first_says_what_a_cpu_render_costs(store, session, monkeypatch):
    from types import SimpleNamespace

    records = list(generate_tab.generate_live(store, session, "tiny-demo", 3, 0.5, 2, 0.5))
    direct = generate_tab.generate(store, session, "tiny-demo", 3, 0.5, 2, 0.5)
    assert len(records) == 1 and untimed(records[0].info) == untimed(direct.info)  # tiny: quick, nothing announced
    assert re.match(r"\*\*Done\*\* in \d+\.\d s: 2 images in each column\. Source generator \*\*tiny\*\*", direct.info)
    assert all(np.array_equal(pixels(a), pixels(b)) for (a, _), (b, _) in zip(records[0].styled_gallery,
                                                                               direct.styled_gallery))
    cpu, gpu = SimpleNamespace(tiny=False, device=torch.device("cpu")), SimpleNamespace(tiny=False,
                                                                                        device=torch.device("cuda"))
    assert generate_tab.cpu_render_notice(cpu, 8) == "Rendering 8 images on the CPU: about 12 s (1.5 s an image)..."
    assert generate_tab.cpu_render_notice(gpu, 8) == ""
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    assert generate_tab.cpu_render_notice(cpu, 8) == ""  # a ZeroGPU Space renders on the GPU
    monkeypatch.delenv("SPACES_ZERO_GPU")
    seen = []
    monkeypatch.setattr(generate_tab, "cpu_render_notice", lambda store, images: seen.append(images) or "Rendering...")
    first, last = generate_tab.generate_live(store, session, "tiny-demo", 3, 0.5, 2, 0.5)
    assert seen == [4]  # 2 seeds, source and styled
    assert first.values()[:3] == (gr.skip(),) * 3 and first.info == "Rendering..."  # the pictures stay meanwhile
    assert untimed(last.info) == untimed(direct.info)
    _, source_only = generate_tab.generate_live(store, session, "none", 3, 0.5, 2, 0.5)
    assert seen == [4, 2] and source_only.styled_gallery == []  # no style: the source images only


def test_generate_says_a_refusal_or_a_failure_on_its_status_line(store, session):
    """Beside the Generate button: a refused press says why (the input at fault shows it too), a failed run says why
    (and still raises, for the page's notice and API clients); typed text is shown as typed, never as Markdown."""
    refusal = status_line.refusal(bind(generate_tab.check_generate, store), label="Not rendered")
    assert handler_inputs(refusal) == ["session", "style", "seed", "truncation", "n_images", "strength"]
    assert refusal(session, "tiny-demo", 1.5, 0.7, 4, 1.0) == (
        "**Not rendered:** The seed must be a whole number from 0 to 4294967295, got 1.5.")
    assert refusal(session, "no_such *style*", 0, 0.7, 4, 1.0) == (
        "**Not rendered:** Unknown style 'no\\_such \\*style\\*'.")
    assert refusal(session, "tiny-demo", 0, 0.7, 4, 1.0) == gr.skip()  # accepted: the button's event reports

    def broken(*args, **kwargs):
        raise RuntimeError("the <GPU> is on fire")

    rendered = status_line.failures_on_status(generate_tab.generate, generate_tab.GenerateOutputs, "info",
                                              "Not rendered")
    failing = generate_tab.GenerateGpu(render=broken, video=broken, thumbnails=broken, import_pt=broken)
    records = []
    with pytest.raises(gr.Error, match="on fire"):
        for record in rendered(store, session, "tiny-demo", 0, 0.7, 1, 1.0, gpu=failing):
            records.append(record)
    assert len(records) == 1 and records[0].values()[:3] == (gr.skip(),) * 3  # the earlier pictures stay
    assert records[0].info.startswith("**Not rendered:** Something went wrong (RuntimeError: the &lt;GPU&gt; is on")
    fine = list(rendered(store, session, "tiny-demo", 0, 0.7, 1, 1.0))
    assert len(fine) == 1 and fine[0].info.startswith("**Done** in ")


def test_the_style_pickers_name_each_styles_generator(store, session):
    """Generate's style picker names the generator of every style (only styles of one generator mix, and each draws
    its own generator's pictures); Invert's lists only the styles of its generator, so its labels need not."""
    session.add("sketch", store.published_style("tiny-demo"))
    labels = [label for label, _ in style_menus.style_choices(store, session)]
    assert labels == ["None: the source generator alone (tiny)", "sketch (tiny) · this session: tiny demo",
                      "Tiny demo style (tiny) · random, tiny mode",
                      "Tiny demo style for inversion (tiny-invert) · random, tiny mode"]
    assert style_menus.invert_choices(store, session) == [("Tiny demo style for inversion (random, tiny mode)",
                                                           "tiny-invert-demo")]
    assert style_menus.published_label("Witcher (StyleGAN-NADA, from text)", "ffhq") == (
        "Witcher (ffhq) · StyleGAN-NADA, from text")
    assert style_menus.published_label("Plain", "car") == "Plain (car)"
    assert generate_tab.thumbnail_label("Witcher (StyleGAN-NADA, from text)", "ffhq") == "Witcher (ffhq)"


def test_invert_bad_inputs_are_readable_errors(store, session, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 300), (120, 130, 140)).save(blank)
    with pytest.raises(gr.Error, match="No face was found"):
        invert_tab.invert_photo(store, session, str(blank), [], 1.0)
    with pytest.raises(gr.Error, match="Upload a photo"):
        invert_tab.invert_photo(store, session, None, [], 1.0)
    junk = tmp_path / "photo.jpg"
    junk.write_bytes(b"this is not a jpeg")
    with pytest.raises(gr.Error, match="not an image"):
        invert_tab.invert_photo(store, session, str(junk), [], 1.0)
    run_adapt(store, TrainingRuns(), session, iterations=1)  # a 32 px style: not for the inversion generator
    with pytest.raises(gr.Error, match="inversion works with the 'tiny-invert'"):
        invert_tab.invert_photo(store, session, str(blank), ["session:sketch"], 1.0)


# ------------------------------------------------------------------------------------------------ plumbing
def test_user_errors_explain_oom_and_unexpected_failures():
    @user_errors
    def oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    @user_errors
    def boom():
        raise KeyError("x")
        yield

    with pytest.raises(gr.Error, match="ran out of memory.*single CLIP model"):
        oom()
    with pytest.raises(gr.Error, match="Something went wrong \\(KeyError"):
        list(boom())


def test_bind_keeps_streaming_and_request_injection():
    import inspect
    import typing

    runs = TrainingRuns()
    stop = bind(adapt_tab.stop_training, runs)
    hints = typing.get_type_hints(stop)
    assert list(inspect.signature(stop).parameters) == ["request"] and hints["request"] == gr.Request | None
    stream = bind(adapt_tab.adapt_stream, ModelStore(tiny=True), runs)
    assert inspect.isgeneratorfunction(stream)
    assert list(inspect.signature(stream).parameters)[:2] == ["session", "source"]
    assert on_gpu(stop, 30) is stop  # no `spaces` package here: unchanged


def test_a_session_keeps_the_codes_of_its_last_inverted_photo_only():
    import copy

    s = SessionStyles()
    codes = torch.randn(1, 14, 512, requires_grad=True)  # [1, n_latent, 512]
    s.keep_inversion("photo-a", codes)
    assert s.inversion("photo-b") is None
    kept, edit = s.inversion("photo-a")
    assert torch.equal(kept, codes.detach()) and not kept.requires_grad and edit == ""
    s.keep_inversion("photo-b", torch.zeros(1, 14, 512), "smile +1")
    assert s.inversion("photo-a") is None  # one photo kept per session
    assert float(s.inversion("photo-b")[0].abs().sum()) == 0.0 and s.inversion("photo-b")[1] == "smile +1"
    assert copy.deepcopy(s).inversion("photo-b") is not None  # gr.State's copy of a page's store keeps it
    s.cleanup()
    assert s.inversion("photo-b") is None


def test_session_styles_caps_and_cleanup(store):
    demo = store.published_style("tiny-demo")
    s = SessionStyles(max_count=2)
    kept = [s.add(s.unique_name("Witcher"), demo)[0] for _ in range(2)]
    assert s.names() == ["witcher", "witcher-2"]
    _, dropped = s.add(s.unique_name("Witcher"), demo)
    assert dropped == ["witcher"] and not kept[0].file.exists() and s.names() == ["witcher-2", "witcher-3"]
    tiny_cap = SessionStyles(max_mb=1e-4)
    with pytest.raises(ValueError, match="more than a session may keep"):
        tiny_cap.add("x", demo)
    one_and_a_half = SessionStyles(max_mb=1.5 * kept[1].nbytes / 2**20)  # the cap counts the styles' files
    one_and_a_half.add("a", demo)
    assert one_and_a_half.add("b", demo)[1] == ["a"] and one_and_a_half.names() == ["b"]
    one_and_a_half.cleanup()
    folder = s.directory()
    s.cleanup()
    assert not folder.exists() and len(s) == 0


def test_offline_real_mode_names_missing_weights(hub_cache, session):
    real = ModelStore(tiny=False, device="cpu")
    notice = tab_notice(real, "adapt")
    assert "`ffhq`" in notice and "`clip-vit-b32`" in notice and "offline mode is on" in notice
    assert "`e4e-ffhq`" in tab_notice(real, "invert")
    assert "TINY MODE" not in header_markdown(real) and "TINY MODE" in header_markdown(
        ModelStore(tiny=True))
    with pytest.raises(gr.Error, match="Weights 'ffhq'.*not cached in the app's weights cache") as err:
        generate_tab.generate(real, session, NO_STYLE, 0, 0.7, 1, 1.0)
    cache = str(weights.cache_dir())
    assert cache not in err.value.message and cache not in notice  # the page names no server folder
    assert real.loaded() == []  # the failure is not cached: a later call retries


# ------------------------------------ the error paths: uploads named by their own names, advice for the page
def test_upload_errors_name_the_file_and_what_to_pick_in_the_page(store, session, tmp_path):
    """Messages name an upload by its own name (never the server's temp path) and say what to do in the page."""
    upload_dir = tmp_path / "gradio" / "0123abcd"  # where Gradio keeps an upload
    upload_dir.mkdir(parents=True)
    other, adapted = tiny_generator(seed=5), tiny_generator(seed=6)
    foreign = save_style(style_from_generators(other, adapted, {"source": "tiny"}), upload_dir / "other.safetensors")
    fake = upload_dir / "fake.safetensors"
    fake.write_bytes(b"not really")
    unrelated = upload_dir / "unrelated.pt"
    torch.save({"g_ema": tiny_generator(seed=7).state_dict()}, unrelated)
    for path, message in [(foreign, "This style was trained on the source generator 'tiny'"),
                          (fake, "'fake.safetensors' could not be read as a safetensors file"),
                          (unrelated, "'unrelated.pt' is not a style of this source generator: its mapping network")]:
        with pytest.raises(gr.Error, match=message) as err:
            generate_tab.upload_style(store, session, str(path))
        text = str(err.value.message)
        assert str(tmp_path) not in text and "0123abcd" not in text, text
        assert "--source" not in text  # no command-line flags in the page
    with pytest.raises(gr.Error, match="pick the source generator in the Adapt tab") as err:
        generate_tab.upload_style(store, session, str(foreign))
    assert "this page offers 'Tiny random (32 px" in err.value.message
    assert len(session) == 0


def test_input_checks_name_the_input_and_read_no_weights(store, session, tmp_path):
    fresh = ModelStore(tiny=True)
    renamed = tmp_path / "selfie.jpg"
    renamed.write_text("text, not a photo")
    for check, args, field, message in [
            (generate_tab.check_generate, ("tiny-demo", 1.5, 0.7, 8, 1.0), "seed", "got 1.5"),
            (generate_tab.check_generate, ("session:gone", 0, 0.7, 1, 1.0), "style", "no longer in this session"),
            (generate_tab.check_generate, ("tiny-demo", 0, 0.7, 2.5, 1.0), "n_images", "whole number from 1 to 8"),
            (invert_tab.check_invert, (None, [], 1.0), "image", "Upload a photo"),
            (invert_tab.check_invert, (str(renamed), [], 1.0), "image", "'selfie.jpg' is not an image"),
            (invert_tab.check_invert, (str(renamed.with_name("gone.jpg")), [], 1.0), "image", "could not be found"),
            (invert_tab.check_invert, (str(ASTRONAUT), ["tiny-demo"], 1.0), "styles",
             "belongs to the 'tiny' generator"),
            (invert_tab.check_invert, (str(ASTRONAUT), [], 2.0), "strength", "Style strength must be from 0 to 1")]:
        with pytest.raises(InputError, match=message) as err:
            check(fresh, session, *args)
        assert err.value.field == field and str(tmp_path) not in str(err.value)
    assert fresh.loaded() == []  # cheap enough to run before every event
    ref, seed, truncation, n, strength = generate_tab.check_generate(fresh, session, "tiny-demo", 3.0, 0.5, 2, 1)
    assert (ref.name, seed, truncation, n, strength) == ("tiny-demo", 3, 0.5, 2, 1.0) and type(seed) is int


def test_validator_puts_the_message_on_the_input_it_names(store, session):
    validate = validator(bind(generate_tab.check_generate, store))
    verdicts = validate(session, "tiny-demo", 1.5, 0.7, 1, 1.0)
    assert [v["is_valid"] for v in verdicts] == [True, True, False, True, True, True]
    assert "got 1.5" in verdicts[2]["message"] and all(v["__type__"] == "validate" for v in verdicts)
    assert all(v["is_valid"] for v in validate(session, "tiny-demo", 2, 0.7, 1, 1.0))
    with pytest.raises(ValueError, match="takes"):  # a check must take exactly the handler's inputs
        wire(lambda *a, **k: None, bind(generate_tab.generate, store), {}, None,
                     check=bind(invert_tab.check_invert, store))


def test_a_webcam_or_pasted_photo_as_a_data_url_reaches_the_handler_as_bytes(store, session):
    import base64
    import io

    from gradio.data_classes import ImageData

    buf = io.BytesIO()
    Image.open(ASTRONAUT).save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    photo = photo_input()
    data = photo.preprocess(ImageData(url=url))
    assert data == buf.getvalue()
    assert photo.get_block_name() == "image"  # the page shows the ordinary image input
    assert not list(Path(page.__file__).parent.glob("*.pyi"))  # no stub written beside the app's modules
    assert photo.preprocess(ImageData(path=str(ASTRONAUT))) == str(ASTRONAUT)  # an upload: its path, not decoded
    out = invert_tab.invert_photo(store, session, data, [], 1.0)
    assert out.aligned.size == (256, 256)


def test_real_models_refuse_a_run_longer_than_the_app_allows(hub_cache, session):
    real = ModelStore(tiny=False, device="cpu")
    args = adapt_args(source="ffhq", clip_names=["clip-vit-b32"])
    assert adapt_tab.check_adapt(real, session, **{**args, "iterations": 1000}).iterations == 1000
    with pytest.raises(InputError, match="Training steps must be a whole number from 1 to 1000, got 5000"):
        adapt_tab.check_adapt(real, session, **{**args, "iterations": 5000})  # the page's box used to clamp it
    assert real.loaded() == []
