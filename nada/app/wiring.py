"""Wiring handlers to the page by name: a handler's parameters name the components it reads, the fields of its
:class:`Outputs` record those it updates (:func:`wire`, :func:`wire_live`).

Nothing here knows about StyleGAN: :func:`bind` fixes a handler's first arguments (the model store, the training line)
while keeping it looking like the original to Gradio (streaming, ``gr.Request`` injection); :func:`validator` runs a
handler's input check before the event, the message on the input it names (:class:`~nada.app.errors.InputError`).
:class:`BoundTasks` binds a tab's GPU tasks to the store, wrapped for ZeroGPU (:mod:`nada.app.zerogpu`) or not.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import gradio as gr

from .errors import InputError, user_errors
from .zerogpu import on_gpu


def bind(fn: Callable, *deps: Any, **kw_deps: Any) -> Callable:
    """``fn`` with its first arguments fixed to ``deps`` (models, run registry) and keyword arguments to ``kw_deps``,
    as Gradio needs it: a generator function stays one (streaming), and the remaining parameters and type hints
    (``gr.Request``) stay visible."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            yield from fn(*deps, *args, **kw_deps, **kwargs)
    else:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*deps, *args, **kw_deps, **kwargs)
    wrapper.__signature__ = inspect.signature(functools.partial(fn, *deps, **kw_deps))
    return wrapper


_Bound = TypeVar("_Bound", bound="BoundTasks")


class BoundTasks:
    """A tab's GPU tasks (module-level functions of the model store and small picklable arguments, as ZeroGPU needs)
    bound to the store, one field per task in the order of :meth:`tasks` (``(function, duration)`` pairs; a duration
    takes the task's arguments by name). :meth:`wrapped` runs them as ZeroGPU tasks (or in a forked worker with
    ``NADA_FORK_GPU=1``), :meth:`direct` in this process. Subclasses are frozen dataclasses."""

    @classmethod
    def tasks(cls) -> tuple[tuple[Callable, Any], ...]:
        """``(function of the store, duration)`` per field, in field order."""
        raise NotImplementedError

    @classmethod
    def direct(cls: type[_Bound], store: Any) -> _Bound:
        """In this process (tests, CPU machines, dedicated GPUs)."""
        return cls(*(user_errors(bind(fn, store)) for fn, _ in cls.tasks()))

    @classmethod
    def wrapped(cls: type[_Bound], store: Any) -> _Bound:
        """As GPU tasks; build once per app (``spaces`` registers each wrapped function when it is wrapped)."""
        return cls(*(on_gpu(user_errors(bind(fn, store)), duration) for fn, duration in cls.tasks()))


class _Keep:
    """The value of an output that stays as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


@dataclasses.dataclass
class Outputs:
    """Base of a handler's named outputs: one field per component it may update, named like the component in the
    app. A field left at :data:`KEEP` leaves its component as it is. Adding an output is adding a field."""

    @classmethod
    def names(cls) -> list[str]:
        """The field names, in the order the components are wired."""
        return [f.name for f in dataclasses.fields(cls)]

    def values(self) -> tuple:
        """The values in wiring order, ``gr.skip()`` for each field left at :data:`KEEP`."""
        return tuple(gr.skip() if v is KEEP else v for v in (getattr(self, n) for n in self.names()))


def handler_inputs(fn: Callable) -> list[str]:
    """The parameters Gradio fills from components: the positional parameters of ``fn`` before its ``request``
    (``gr.Request``) or event data (``gr.SelectData``), which Gradio fills itself; what comes after them and
    keyword-only parameters keep their defaults. A ``gr.Progress()`` default also ends them (Gradio fills it)."""
    names = []
    for name, p in inspect.signature(fn).parameters.items():
        if name == "request" or any(k in str(p.annotation) for k in ("Request", "SelectData", "EventData")):
            break
        if isinstance(p.default, gr.Progress):
            break
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            names.append(name)
    return names


def _components(names: list[str], components: Mapping[str, Any], what: str, fn: Callable) -> list[Any]:
    missing = [n for n in names if n not in components]
    if missing:
        raise KeyError(f"{getattr(fn, '__name__', fn)}: no component named {missing} for its {what}; "
                       f"known names: {sorted(components)}")
    return [components[n] for n in names]


def _emit(fn: Callable, outputs: type[Outputs] | str | None) -> Callable:
    """``fn`` with each :class:`Outputs` record it returns or yields turned into the tuple Gradio expects."""
    if outputs is None or isinstance(outputs, str):
        return fn

    def convert(record: Any) -> tuple:
        if not isinstance(record, outputs):
            raise TypeError(f"{getattr(fn, '__name__', fn)} returned {type(record).__name__}, not "
                            f"{outputs.__name__}")
        return record.values()

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            for record in fn(*args, **kwargs):
                yield convert(record)
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return convert(fn(*args, **kwargs))
    return wrapper


def validator(check: Callable, allow_blank: bool = False) -> Callable:
    """A Gradio ``validator`` from ``check``, a function taking a handler's inputs that raises :class:`InputError`:
    one ``gr.validate`` per input, the message on the input the error names. Gradio runs it before the event is
    queued; when an input is invalid the handler never runs, the page shows the message on that input and no output
    changes (an API client gets ``gradio_client.exceptions.ValidationError`` with the message). Any other exception
    passes validation: the handler meets it again and reports it as a ``gr.Error``. ``allow_blank``: inputs with a
    blank value (:func:`is_blank`: a number being retyped, no photo yet) pass unchecked (live events, :func:`wire_live`,
    whose handler then does nothing)."""
    names = handler_inputs(check)

    @functools.wraps(check)
    def validate(*values: Any) -> list[dict]:
        if allow_blank and any(is_blank(v) for v in values):
            return [gr.validate(True, "") for _ in names]
        try:
            check(*values)
        except InputError as exc:
            field = exc.field if exc.field in names else names[-1]  # the page shows it as text: no escaping
            return [gr.validate(name != field, str(exc) if name == field else "") for name in names]
        except Exception:  # noqa: BLE001 - not a validation verdict; the handler turns it into a readable error
            pass
        return [gr.validate(True, "") for _ in names]

    return validate


def wire(trigger: Callable, fn: Callable, components: Mapping[str, Any], outputs: type[Outputs] | str | None,
         check: Callable | None = None, progress_on: list[str] | None = None, **event_kwargs: Any) -> Any:
    """Connect ``fn`` to an event listener (``button.click``) by name: its inputs are the components named like its
    parameters (:func:`handler_inputs`), its outputs those named like the fields of ``outputs`` (an
    :class:`Outputs` class; a single name for a handler returning one plain value). ``check`` (same parameters as
    ``fn``) validates the inputs before the event runs (:func:`validator`); ``progress_on`` names the components that
    show progress and a failure (default: every output). ``KeyError`` on a name that ``components`` lacks, and
    ``ValueError`` when ``check`` takes other inputs than ``fn``, before anything is wired."""
    if check is not None:
        if handler_inputs(check) != handler_inputs(fn):
            raise ValueError(f"{getattr(check, '__name__', check)} takes {handler_inputs(check)}, but "
                             f"{getattr(fn, '__name__', fn)} takes {handler_inputs(fn)}")
        event_kwargs["validator"] = validator(check)
    inputs = _components(handler_inputs(fn), components, "inputs", fn)
    names = [outputs] if isinstance(outputs, str) else outputs.names() if outputs else []
    targets = _components(names, components, "outputs", fn)
    if progress_on is not None:
        event_kwargs["show_progress_on"] = _components(progress_on, components, "progress", fn)
    return trigger(_emit(fn, outputs), inputs, targets if outputs else None, **event_kwargs)


def is_blank(value: Any) -> bool:
    """True for an input with no value yet: None, or text of spaces only (an emptied number box, no photo)."""
    return value is None or (isinstance(value, (str, bytes)) and not value.strip())


LIVE_EVENTS = {gr.Slider: "release", gr.Number: "change", gr.Dropdown: "change", gr.Checkbox: "change",
               gr.Radio: "change", gr.CheckboxGroup: "change"}  # the event that ends a change of each kind of control


def live_triggers(controls: list[Any]) -> list[Callable]:
    """The event after which each control's new value is final: a slider's ``release`` (the mouse or a finger let go;
    keys and a typed number: the page's script, ``nada/app/page.js``), the ``change`` of a number (typed, or set by a
    button such as a dice), of a dropdown (picked, or set by another event) and of a checkbox or radio."""
    events = []
    for control in controls:
        kind = next((k for k in LIVE_EVENTS if isinstance(control, k)), None)
        if kind is None:
            raise TypeError(f"no live event for a {type(control).__name__}; known: "
                            f"{', '.join(k.__name__ for k in LIVE_EVENTS)}")
        events.append(getattr(control, LIVE_EVENTS[kind]))
    return events


def _unless_blank(fn: Callable, outputs: type[Outputs] | str | None) -> Callable:
    """``fn`` that leaves every output as it is when one of its inputs is blank (:func:`is_blank`)."""
    n = len(handler_inputs(fn))

    def untouched() -> Any:
        if outputs is None or isinstance(outputs, str):
            return gr.skip()
        return outputs(**dict.fromkeys(outputs.names(), KEEP))

    def blank(args: tuple, kwargs: dict) -> bool:
        return any(is_blank(v) for v in args[:n]) or any(is_blank(kwargs[k]) for k in handler_inputs(fn)
                                                         if k in kwargs)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            if blank(args, kwargs):
                yield untouched()
                return
            yield from fn(*args, **kwargs)
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return untouched() if blank(args, kwargs) else fn(*args, **kwargs)
    return wrapper


def wire_live(controls: list[Any], fn: Callable, components: Mapping[str, Any], outputs: type[Outputs] | str | None,
              check: Callable | None = None, progress_on: list[str] | None = None, **event_kwargs: Any) -> Any:
    """Re-run ``fn`` (wired by name as in :func:`wire`) when any of ``controls`` settles (:func:`live_triggers`), with
    no button. One event for all of them, ``trigger_mode="always_last"``: a change made while ``fn`` runs waits for
    it, and of several waiting changes only the newest runs (dragging a slider queues one render, not ten). Not an
    API endpoint. A blank input (a number being retyped, no photo yet) runs nothing and marks nothing; another
    refused value gets ``check``'s message on its input, as the button's event does."""
    if check is not None:
        if handler_inputs(check) != handler_inputs(fn):
            raise ValueError(f"{getattr(check, '__name__', check)} takes {handler_inputs(check)}, but "
                             f"{getattr(fn, '__name__', fn)} takes {handler_inputs(fn)}")
        event_kwargs["validator"] = validator(check, allow_blank=True)
    event_kwargs.setdefault("api_name", False)
    event_kwargs.setdefault("trigger_mode", "always_last")
    return wire(functools.partial(gr.on, live_triggers(controls)), _unless_blank(fn, outputs), components, outputs,
                progress_on=progress_on, **event_kwargs)

