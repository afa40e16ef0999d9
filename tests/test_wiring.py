"""The app and its handlers agree by name: inputs from parameter names, outputs from the fields of Outputs records."""

from __future__ import annotations

import dataclasses
from typing import Any

import gradio as gr
import pytest

from nada.app import adapt_tab
from nada.app.errors import InputError
from nada.app.training_queue import TrainingRuns
from nada.app.wiring import KEEP, Outputs, bind, handler_inputs, wire, wire_live

from .test_app import import_app


def _event(demo: gr.Blocks, api_name: str):
    fns = [f for f in demo.fns.values() if f.api_name == api_name]
    assert len(fns) == 1, api_name
    return fns[0]


def _labels(components) -> list[str | None]:
    return [getattr(c, "label", None) for c in components]


@pytest.fixture(scope="module")
def demo() -> gr.Blocks:
    return import_app().build_demo(tiny=True)


def test_adapt_inputs_follow_the_handler_parameters(demo):
    handler = bind(adapt_tab.adapt_stream, object(), TrainingRuns())
    assert handler_inputs(handler) == [
        "session", "source", "source_text", "target_text", "iterations", "layers_k", "probe", "clip_names",
        "lambda_direction", "lambda_global", "lambda_id", "lambda_l2", "seed", "lr", "batch_size", "recipe", "mixing",
        "target_pictures", "lambda_indomain"]
    adapt = _event(demo, "adapt")
    assert _labels(adapt.inputs)[1:] == [
        "Source generator", "Source text", "Target text", "Training steps", "W+ rows trained per step",
        "Choose the rows by probing", "CLIP models", "Directional loss weight", "Global loss weight",
        "Identity loss weight (faces)", "L2 loss weight", "Seed", "Learning rate", "Batch size", "Recipe",
        "Style mixing", "1 to 16 pictures", "Keep variety (in-domain loss weight)"]
    assert isinstance(adapt.inputs[0], gr.State)
    assert _labels(adapt.outputs) == ["Preview (fixed seeds)", "Losses", "Probed W+ rows", None,
                                      "Trained style (.safetensors)", None, "Style", "Styles", None,
                                      None, None]  # + the line under the rows chart (no probe: every row trains)
    assert isinstance(adapt.outputs[-1], gr.Button) and adapt.outputs[-1].value == "Train"


def test_every_tab_is_wired_by_name(demo):
    generate = _event(demo, "generate")
    assert _labels(generate.inputs)[1:] == ["Style", "Seed", "Truncation", "Images", "Style strength (0 = source)"]
    assert _labels(generate.outputs) == ["Source generator", "Styled", "Downloads: images (zip) and the style file",
                                         None]
    invert = _event(demo, "invert")
    assert _labels(invert.inputs)[1:] == ["Photo with a face", "Styles", "Style strength", "Edit", "Edit strength",
                                          "Edit rows"]
    assert _labels(invert.outputs) == ["Aligned face", "Reconstruction (e4e)", "In each style", None]  # + status
    upload = _event(demo, "upload_style")
    assert _labels(upload.outputs)[:2] == ["Style", "Styles"] and isinstance(upload.outputs[2], gr.State)
    assert _labels(_event(demo, "random_seed").outputs) == ["Seed"]


def _by_handler(demo: gr.Blocks, name: str):
    fns = [f for f in demo.fns.values() if getattr(f.fn, "__name__", None) == name]
    assert len(fns) == 1, name
    return fns[0]


def _triggers(demo: gr.Blocks, fn) -> set[tuple[str | None, str]]:
    return {(getattr(demo.blocks[i], "label", None), event) for i, event in fn.targets}


def test_released_controls_re_render_through_one_private_event(demo):
    """Generate re-renders when a slider is released, the seed changes or a style is picked: one event with the
    button's inputs, outputs and checks, "always_last" (a newer change supersedes one waiting), no API endpoint."""
    generate, live = _event(demo, "generate"), _by_handler(demo, "generate_live")
    assert _triggers(demo, live) == {("Truncation", "release"), ("Style strength (0 = source)", "release"),
                                     ("Images", "release"), ("Seed", "change"), ("Style", "change")}
    assert live.trigger_mode == "always_last" and live.api_visibility == "private"
    assert live.inputs == generate.inputs and live.outputs == generate.outputs
    assert live.validator is not None and live.concurrency_id == generate.concurrency_id  # shared render slots
    restyle, invert = _by_handler(demo, "restyle_photo"), _event(demo, "invert")
    assert _triggers(demo, restyle) == {("Style strength", "release"), ("Edit strength", "release"),
                                        ("Edit", "change"), ("Edit rows", "change"), ("Styles", "change")}
    assert restyle.trigger_mode == "always_last" and restyle.api_visibility == "private"
    assert restyle.inputs == invert.inputs and _labels(restyle.outputs) == ["In each style", None]  # + status
    public = {f.api_name for f in demo.fns.values() if f.api_visibility == "public"}
    assert {"generate", "adapt", "invert", "stop", "upload_style", "video"} <= public


def test_a_live_event_skips_blank_inputs_and_checks_the_others():
    calls = []

    def double(a: float, b: float) -> _Two:
        calls.append((a, b))
        return _Two(total=a * b, note="done")

    def check(a: float, b: float) -> None:
        if a < 0:
            raise InputError("a", "a must not be negative")

    with gr.Blocks() as demo:
        a, b, total, note = gr.Number(label="a"), gr.Slider(label="b"), gr.Number(), gr.Markdown()
        wire_live([a, b], double, {"a": a, "b": b, "total": total, "note": note}, _Two, check=check)
        with pytest.raises(TypeError, match="no live event for a Button"):
            wire_live([gr.Button()], double, {"a": a, "b": b, "total": total, "note": note}, _Two)
    fn = _by_handler(demo, "double")
    assert _triggers(demo, fn) == {("a", "change"), ("b", "release")} and fn.trigger_mode == "always_last"
    assert fn.fn(None, 2.0) == (gr.skip(), gr.skip()) and fn.fn("  ", 2.0) == (gr.skip(), gr.skip())
    assert calls == []  # a number being retyped runs nothing
    assert fn.fn(3.0, 2.0) == (6.0, "done") and calls == [(3.0, 2.0)]
    assert all(v["is_valid"] for v in fn.validator(None, 2.0))  # blank: no message either
    assert [v["is_valid"] for v in fn.validator(-1.0, 2.0)] == [False, True]


def test_unset_outputs_are_left_as_they_are():
    values = adapt_tab.AdaptOutputs(status="Loading").values()
    assert len(values) == len(adapt_tab.AdaptOutputs.names()) == 11
    assert values[adapt_tab.AdaptOutputs.names().index("status")] == "Loading"
    assert sum(v == gr.skip() for v in values) == 10


@dataclasses.dataclass
class _Two(Outputs):
    total: Any = KEEP
    note: Any = KEEP


def _add(a: float, b: float, request: gr.Request | None = None) -> _Two:
    return _Two(total=a + b)


def test_a_missing_or_unknown_name_fails_before_wiring():
    with gr.Blocks():
        a, b, total = gr.Number(label="a"), gr.Number(label="b"), gr.Number(label="total")
        button = gr.Button()
        with pytest.raises(KeyError, match=r"_add: no component named \['b'\] for its inputs"):
            wire(button.click, _add, {"a": a, "total": total, "note": total}, _Two)
        with pytest.raises(KeyError, match=r"no component named \['note'\] for its outputs"):
            wire(button.click, _add, {"a": a, "b": b, "total": total}, _Two)
        event = wire(button.click, _add, {"a": a, "b": b, "total": total, "note": gr.Markdown()}, _Two)
    assert event is not None


def test_adding_an_output_is_one_field():
    """A field added to a record is wired to the component of that name: no positional list to keep in step."""
    @dataclasses.dataclass
    class _Three(_Two):
        echo: Any = KEEP

    def handler(a: float) -> _Three:
        return _Three(total=a, echo=f"got {a}")

    with gr.Blocks() as demo:
        a, total, note, echo = gr.Number(), gr.Number(), gr.Markdown(), gr.Textbox()
        button = gr.Button()
        wire(button.click, handler, {"a": a, "total": total, "note": note, "echo": echo}, _Three, api_name="h")
    fn = _event(demo, "h")
    assert fn.outputs == [total, note, echo]
    assert fn.fn(2.0) == (2.0, gr.skip(), "got 2.0")


def test_a_handler_must_return_its_record():
    def positional(a: float):
        return a, "note"

    with gr.Blocks() as demo:
        a, total, note = gr.Number(), gr.Number(), gr.Markdown()
        wire(gr.Button().click, positional, {"a": a, "total": total, "note": note}, _Two, api_name="p")
    with pytest.raises(TypeError, match="positional returned tuple, not _Two"):
        _event(demo, "p").fn(1.0)


def test_a_refusal_and_a_failure_are_said_on_the_status_line():
    """The words of a refused input also go to the status line (nothing else changes); a failure while running is
    written there before the error is raised as before."""
    from nada.app.status_line import done_in, failures_on_status, refusal

    def check(a: float, b: float) -> None:
        if a < 0:
            raise InputError("b", "B must be positive")
        if a > 9:
            raise RuntimeError("not a refusal")

    refused = refusal(check, {"b": "in Advanced settings"})
    assert handler_inputs(refused) == ["a", "b"] and refused.__name__ == "refused_check"
    assert refused(-1.0, 2.0) == "**Not started:** B must be positive (in Advanced settings)"
    assert refused(1.0, 2.0) == gr.skip() and refused(10.0, 2.0) == gr.skip()  # the action's event reports those

    def run(a: float, b: float) -> _Two:
        if a < 0:
            raise ValueError("no face in it")
        return _Two(total=a * b, note="done")

    shown = failures_on_status(run, _Two, "note")
    assert handler_inputs(shown) == ["a", "b"] and shown.__name__ == "run"
    assert [r.total for r in shown(2.0, 3.0)] == [6.0]
    stream = shown(-1.0, 3.0)
    first = next(stream)
    assert first.note == "**Not done:** no face in it" and first.total is KEEP  # the status alone, the rest stays
    with pytest.raises(gr.Error, match="no face in it"):
        next(stream)
    assert done_in(0.42) == "Done in 0.4 s" and done_in(125) == "Done in 2 min 05 s"
