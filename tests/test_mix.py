"""The Generate tab's Mix styles (nada.app.mix), called directly on the tiny models: refused inputs change nothing,
a saved mix is the blend of its styles and a session style like a trained one, the preview draws what Generate
draws of the saved mix, and the video goes through the picked styles."""

from __future__ import annotations

import copy
import os

import av
import gradio as gr
import numpy as np
import pytest
import torch

from nada.app import generate_tab, invert_tab, mix, status_line
from nada.app.errors import InputError
from nada.app.wiring import bind, handler_inputs, validator
from nada.model_store import TINY_INVERT, ModelStore
from nada.styles import load_style, style_from_generators

from .test_app import import_app


def made_style(store: ModelStore, source: str, key_prefix: str, shift: float, target: str):
    """A weight style of ``source``: the tensors under ``key_prefix`` moved by ``shift``."""
    gen = store.generator(source)
    other = copy.deepcopy(gen)
    with torch.no_grad():
        for key, value in other.state_dict().items():
            if key.startswith(key_prefix) and key.endswith(".weight"):
                value.add_(shift)
    return style_from_generators(gen, other, {"source": source, "source_text": "Photo", "target_text": target},
                                 store.fingerprint(source))


@pytest.fixture
def sketch(store, session):
    """The session holds 'sketch', a tiny style that changes convs.1 (the demo style changes every conv)."""
    session.add("sketch", made_style(store, "tiny", "convs.1.", 0.5, "Sketch"))
    return "session:sketch"


def rows(*pairs, name=""):
    """The Mix handlers' row values: (choice, weight) pairs, padded with empty rows."""
    pairs = list(pairs) + [("none", 0.0)] * (mix.MAX_MIX - len(pairs))
    return dict(**{f"mix_style_{i}": c for i, (c, _) in enumerate(pairs, 1)},
                **{f"mix_weight_{i}": w for i, (_, w) in enumerate(pairs, 1)}, mix_name=name)


def pixels(img) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


# ------------------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("pairs, field, message", [
    ((), "mix_style_1", "Pick at least one style"),
    ((("tiny-demo", 0.0), ("session:sketch", 0.0)), "mix_weight_1", "Every picked style has weight 0"),
    ((("tiny-demo", 1.0), ("session:sketch", float("nan"))), "mix_weight_2", "finite number from -1 to 2, got nan"),
    ((("tiny-demo", float("inf")),), "mix_weight_1", "finite number from -1 to 2, got inf"),
    ((("tiny-demo", 2.5),), "mix_weight_1", "from -1 to 2, got 2.5"),
    ((("tiny-demo", "lots"),), "mix_weight_1", "must be a number"),
    ((("tiny-demo", 0.5), ("tiny-invert-demo", 0.5)), "mix_style_2", "Only styles of one generator mix"),
    ((("tiny-demo", 0.5), ("no-such-style", 0.5)), "mix_style_2", "Unknown style 'no-such-style'"),
    ((("tiny-demo", 0.5), ("none", 1.0), ("session:gone", 0.5)), "mix_style_3", "no longer in this session"),
])
def test_refused_mixes_name_their_row_and_change_nothing(store, session, sketch, pairs, field, message):
    before = session.names()
    with pytest.raises(InputError, match=message) as err:
        mix.check_mix(store, session, **rows(*pairs))
    assert err.value.field == field
    with pytest.raises(gr.Error, match=message):
        mix.mix_styles(store, session, **rows(*pairs))
    assert session.names() == before  # nothing saved, nothing dropped
    # The page runs the same check before the event: the message sits on that row's input only.
    check = bind(mix.check_mix, store)
    verdicts = validator(check)(session, *rows(*pairs).values())
    marked = [name for name, v in zip(handler_inputs(check), verdicts) if not v["is_valid"]]
    assert marked == [field]


def test_more_than_four_styles_and_an_unusable_name_are_refused(store, session, sketch):
    with pytest.raises(InputError, match="at most 4 styles, got 5"):
        mix.mix_rows(store, session, ["tiny-demo"] * 5, [0.2] * 5)
    with pytest.raises(InputError, match="no usable characters") as err:
        mix.check_mix(store, session, **rows(("tiny-demo", 1.0), name="???"))
    assert err.value.field == "mix_name"
    assert session.names() == ["sketch"]


# -------------------------------------------------------------------------------------------- the rows as they open
def test_the_rows_start_with_styles_that_mix_and_name_each_styles_generator(store, session, sketch, hub_cache):
    """The rows' first styles mix (they were two styles of different generators, which every preview refused): two
    published styles of one generator at half each; in tiny mode, which publishes one style per generator, the tiny
    demo style alone, and the box says why. Every row choice names the generator its style is for."""
    tiny = mix.opening_rows(store)
    assert tiny == [("tiny-demo", 1.0)] + [("none", 0.0)] * 3
    assert "one published style" in mix.opening_note(store) and "'tiny'" in mix.opening_note(store)
    source, refs, weights, _ = mix.check_mix(store, session, **rows(*tiny))  # mixes (reads no weights)
    assert source == "tiny" and [r.name for r in refs] == ["tiny-demo"] and weights == [1.0]
    real = ModelStore(tiny=False)  # built without weights: nothing is read here
    opening = mix.opening_rows(real)
    assert opening[:2] == [("nada-witcher", 0.5), ("nada-pixar", 0.5)] and mix.opening_note(real) == ""
    source, refs, _, name = mix.check_mix(real, None, **rows(*opening))
    assert source == "ffhq" and len(refs) == 2 and name == "nada-witcher-nada-pixar-mix"
    labels = dict((v, label) for label, v in mix.row_choices(store, session))
    assert labels["none"] == "(no style)"
    assert labels["tiny-demo"] == "Tiny demo style (tiny) · random, tiny mode"
    assert labels["tiny-invert-demo"] == "Tiny demo style for inversion (tiny-invert) · random, tiny mode"
    assert labels[sketch] == "sketch (tiny) · this session: Sketch"
    assert dict((v, label) for label, v in mix.row_choices(real, None))["nada-pixar"] == (
        "Pixar (ffhq) · StyleGAN-NADA, from text")


def test_a_refused_or_failed_mix_says_why_on_its_status_line(store, session, sketch):
    """The Mix button's status line says why a press was refused (the row shows it too) or why the run failed."""
    refusal = status_line.refusal(bind(mix.check_mix, store), label="Not saved")
    line = refusal(session, *rows(("tiny-demo", 0.5), ("tiny-invert-demo", 0.5)).values())
    assert line.startswith("**Not saved:** Only styles of one generator mix: 'tiny-invert-demo' belongs to")
    assert refusal(session, *rows(("tiny-demo", 0.5), (sketch, 0.5)).values()) == gr.skip()  # fine: nothing said

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    saved = status_line.failures_on_status(mix.mix_styles, mix.MixOutputs, "mix_status", "Not saved")
    records = []
    with pytest.raises(gr.Error, match="disk full"):
        for record in saved(store, session, **rows(("tiny-demo", 0.5), (sketch, 0.5)),
                            gpu=mix.MixGpu(save=broken, preview=broken, video=broken)):
            records.append(record)
    assert len(records) == 1 and records[0].mix_status.startswith("**Not saved:** Something went wrong")
    assert all(v == gr.skip() for v in records[0].values()[:4])  # the pickers, the session and the file stay
    assert session.names() == ["sketch"]


# ------------------------------------------------------------------------------------------------------- saving
def test_a_mix_is_the_weighted_blend_and_a_session_style_like_a_trained_one(store, session, sketch):
    demo = store.published_style("tiny-demo")
    mine = load_style(session.styles["sketch"].file)
    src = store.generator("tiny").state_dict()
    out = mix.mix_styles(store, session, **rows(("tiny-demo", 0.6), (sketch, -0.5), name="My Mix!"))
    assert session.names() == ["sketch", "my-mix"]
    assert out.generate_style.value == "session:my-mix"  # picked in Generate (its live event renders it)
    assert ("my-mix (tiny) · this session: 0.6·tiny-demo - 0.5·sketch", "session:my-mix") in out.generate_style.choices
    saved = load_style(out.mix_file)  # the download is the session's style file
    assert out.mix_file == str(session.styles["my-mix"].file) and not list(session.directory().glob(".mix-*"))
    assert saved.meta["mixed_from"] == [{"name": "tiny-demo", "weight": 0.6}, {"name": "sketch", "weight": -0.5}]
    for key in ("convs.1.conv.weight", "convs.0.conv.weight"):  # in both styles / in the demo style only
        a = demo.tensors[key].double()
        b = mine.tensors.get(key, src[key]).double()
        expected = src[key].double() + 0.6 * (a - src[key].double()) - 0.5 * (b - src[key].double())
        assert torch.allclose(saved.tensors[key].double(), expected, atol=1e-6)
        assert not torch.allclose(saved.tensors[key].double(), a)
    assert "Saved the mix **my-mix**" in out.mix_status and "Generate tab" in out.mix_status
    # Generate draws it and offers its file, like a trained style.
    gen = generate_tab.generate(store, session, "session:my-mix", 0, 0.7, 1, 1.0)
    assert str(session.styles["my-mix"].file) in gen.files


def test_weights_one_and_zero_give_the_first_style_exactly(store, session, sketch):
    mix.mix_styles(store, session, **rows((sketch, 1.0), ("tiny-demo", 0.0)))
    assert session.names() == ["sketch", "sketch-mix"]
    first, copy_ = (load_style(session.styles[name].file) for name in ("sketch", "sketch-mix"))
    assert set(copy_.tensors) == set(first.tensors)
    assert all(torch.equal(copy_.tensors[k], first.tensors[k]) for k in first.tensors)


def test_a_weight_style_and_a_compact_style_mix(store, session, sketch):
    gen = store.generator("tiny")
    compact = copy.deepcopy(gen)
    key = "convs.2.conv.style_offset"
    offset = torch.linspace(-0.2, 0.2, gen.modulated_convs()["convs.2.conv"].in_ch)  # [in]
    compact.set_style_offsets({key: offset})
    session.add("compact", style_from_generators(gen, compact, {"source": "tiny", "target_text": "Pixar",
                                                                "config": {"params": "modulation"}},
                                                 store.fingerprint("tiny")))
    assert session.styles["compact"].kind == "modulation"
    out = mix.mix_styles(store, session, **rows((sketch, 0.5), ("session:compact", 1.5)))
    saved = load_style(out.mix_file)
    assert saved.kind == "mixed" and "a weight and compact style" in out.mix_status
    assert torch.allclose(saved.tensors[key], 1.5 * offset)  # offsets blend as offsets
    src = gen.state_dict()["convs.1.conv.weight"]
    assert torch.allclose(saved.tensors["convs.1.conv.weight"], src + 0.5 * 0.5)  # half of sketch's +0.5


def test_a_mix_of_the_inversion_generator_is_offered_in_invert(store, session):
    session.add("invert-sketch", made_style(store, TINY_INVERT, "convs.1.", 0.3, "Sketch"))
    out = mix.mix_styles(store, session, **rows(("tiny-invert-demo", 0.5), ("session:invert-sketch", 0.5)))
    name = "tiny-invert-demo-invert-sketch-mix"
    assert ("session:" + name) in [v for _, v in out.invert_styles.choices]
    assert "Generate and Invert tabs" in out.mix_status
    refs, _ = invert_tab.check_invert(store, session, str(astronaut_photo()), ["session:" + name], 1.0)
    assert refs[0].file == str(session.styles[name].file)
    # The rows offer it too (for a mix of mixes).
    assert ("session:" + name) in [v for _, v in mix.refresh_rows(store, session).mix_style_3.choices]


def astronaut_photo():
    from .test_service import ASTRONAUT

    return ASTRONAUT


# ----------------------------------------------------------------------------------------------------- preview
def test_the_live_preview_draws_what_generate_draws_of_the_saved_mix(store, session, sketch):
    values = rows(("tiny-demo", 0.7), (sketch, 0.3))
    name = values.pop("mix_name")
    preview, = mix.mix_preview(store, session, **values, seed=5, truncation=0.6, n_images=2, strength=0.8)
    assert session.names() == ["sketch"]  # a preview saves nothing
    assert "not saved" in preview.info and "seeds 5–6" in preview.info
    mix.mix_styles(store, session, **values, mix_name=name)
    shown = generate_tab.generate(store, session, "session:tiny-demo-sketch-mix", 5, 0.6, 2, 0.8)
    assert len(preview.styled_gallery) == 2
    for (a, _), (b, _) in zip(preview.styled_gallery, shown.styled_gallery):
        assert np.array_equal(pixels(a), pixels(b))
    plain = generate_tab.generate(store, session, "tiny-demo", 5, 0.6, 2, 0.8)
    assert not np.array_equal(pixels(preview.styled_gallery[0][0]), pixels(plain.styled_gallery[0][0]))


# ------------------------------------------------------------------------------------------------------- video
def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def test_a_video_morphs_through_the_picked_styles_or_shows_them_side_by_side(store, session, sketch):
    values = rows(("tiny-demo", 0.0), ("none", 0.0), (sketch, 0.0))  # weights do not matter to the video
    choices = {k: v for k, v in values.items() if k.startswith("mix_style_")}
    args = dict(seed=3, truncation=0.7, n_images=2, strength=1.0)
    source, refs, plan = mix.check_mix_video(store, session, **choices, **args, mix_grid=False)
    assert [r.name for r in refs] == ["tiny-demo", "sketch"] and plan.seeds == (3, 4) and not plan.grid
    morph = decode(mix.mix_video(store, session, **choices, **args, mix_grid=False, progress=lambda *a, **k: None))
    assert len(morph) == plan.frames == 36 and morph[0].shape == (256, 256, 3)
    start = generate_tab.generate(store, session, "tiny-demo", 3, 0.7, 1, 1.0).styled_gallery[0][0]
    end = generate_tab.generate(store, session, sketch, 4, 0.7, 1, 1.0).styled_gallery[0][0]
    # H.264 is lossy: the first frame is the first style at the first seed, the last the second style at the last.
    for frame, image in ((morph[0], start), (morph[-1], end)):
        assert np.abs(frame.astype(np.int16) - pixels(image)).mean() < 6
    assert np.abs(morph[0].astype(np.int16) - pixels(end)).mean() > 10
    grid = decode(mix.mix_video(store, session, **choices, **args, mix_grid=True, progress=lambda *a, **k: None))
    assert grid[0].shape == (256, 512, 3)  # two tiles side by side
    right = generate_tab.generate(store, session, sketch, 3, 0.7, 1, 1.0).styled_gallery[0][0]
    for tile, image in ((grid[0][:, :256], start), (grid[0][:, 256:], right)):  # each style throughout, no fade
        assert np.abs(tile.astype(np.int16) - pixels(image)).mean() < 6
    with pytest.raises(gr.Error, match="Pick at least one style"):
        mix.mix_video(store, session, **{k: "none" for k in choices}, **args, mix_grid=False)


# ----------------------------------------------------------------------------------------- wiring and ZeroGPU
def test_the_page_wires_mix_styles_by_name():
    demo = import_app().build_demo(tiny=True)
    events = {f.api_name: f for f in demo.fns.values()}
    labels = [getattr(c, "label", None) for c in events["mix_styles"].inputs]
    assert labels[1:] == ["Style 1", "Style 2", "Style 3", "Style 4", "Weight 1", "Weight 2", "Weight 3", "Weight 4",
                          "Name of the mix"]
    assert [getattr(c, "label", None) for c in events["mix_styles"].outputs][1:4] == [
        "Style", "Styles", "Mixed style (.safetensors)"]
    video = events["mix_video"]
    assert [getattr(c, "label", None) for c in video.outputs] == ["Video (MP4)"]
    assert {"generate", "adapt", "invert", "stop", "upload_style", "video"} <= set(events)
    weight = next(c for c in events["mix_styles"].inputs if getattr(c, "label", "") == "Weight 1")
    live = [f for f in demo.fns.values() if weight in f.inputs and f.trigger_mode == "always_last"]
    assert len(live) == 1  # a released weight previews the mix in the tab's pictures
    assert [getattr(c, "label", None) for c in live[0].outputs] == ["Source generator", "Styled", None]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (Linux, macOS)")
def test_the_blend_runs_in_the_gpu_worker_and_reads_no_weights_here(session, monkeypatch):
    """On ZeroGPU the main process cannot read offloaded weights: the blend runs in the (forked) GPU worker and the
    page's process only loads the saved file."""
    monkeypatch.setenv("NADA_FORK_GPU", "1")
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    class Counting(ModelStore):
        reads = 0

        def generator(self, name):
            Counting.reads += 1  # counted in the process that calls it
            return super().generator(name)

    store = Counting(tiny=True)
    session.add("sketch", made_style(store, "tiny", "convs.1.", 0.5, "Sketch"))
    here = Counting.reads
    gpu = mix.MixGpu.wrapped(store)
    out = mix.mix_styles(store, session, **rows(("tiny-demo", 0.5), ("session:sketch", 0.5)), gpu=gpu)
    assert Counting.reads == here  # the generator was read in the worker only
    direct = mix.blend_refs(store, "tiny", *mix.mix_rows(store, session, ["tiny-demo", "session:sketch"],
                                                         [0.5, 0.5])[1:])
    saved = load_style(out.mix_file)
    assert set(saved.tensors) == set(direct.tensors)
    assert all(torch.allclose(saved.tensors[k], direct.tensors[k]) for k in direct.tensors)


def test_the_api_mixes_into_the_callers_session_refuses_bad_rows_and_makes_a_video():
    from gradio_client import Client
    from gradio_client.exceptions import ValidationError

    from .test_app import cleanup_sessions, free_port

    app = import_app()
    demo = app.build_demo(tiny=True)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                **app.launch_kwargs())
    client = Client(demo.local_url, verbose=False)
    try:
        with pytest.raises(ValidationError, match="mix_weight_1: Every picked style has weight 0"):
            client.predict("tiny-demo", "tiny-demo", "none", "none", 0, 0, 1, 0, "", api_name="/mix_styles")
        with pytest.raises(ValidationError, match="mix_style_2: Only styles of one generator mix"):
            client.predict("tiny-demo", "tiny-invert-demo", "none", "none", 1, 1, 0, 0, "", api_name="/mix_styles")
        style, _, file, status = client.predict("tiny-demo", "tiny-demo", "none", "none", 0.5, 0.25, 0, 0,
                                                "api mix", api_name="/mix_styles")
        assert style["value"] == "session:api-mix" and file.endswith("api-mix.safetensors")
        assert "0.5·tiny-demo + 0.25·tiny-demo" in status
        _, styled, files, _ = client.predict("session:api-mix", 0, 0.7, 1, 1.0, api_name="/generate")
        assert styled[0]["caption"] == "seed 0 · api-mix" and any(f.endswith("api-mix.safetensors") for f in files)
        out = client.predict("tiny-demo", "session:api-mix", "none", "none", 0, 0.7, 2, 1.0, True,
                             api_name="/mix_video")
        path = out["video"] if isinstance(out, dict) else out
        assert decode(path)[0].shape == (256, 512, 3)
    finally:
        client.close()
        demo.close()
        cleanup_sessions(demo)
