"""The GPU halves of the handlers, bound to the model store (:class:`GpuCalls`), and how much GPU time each asks for.

Each duration takes the task's arguments by name (``spaces.GPU(duration=...)`` calls it with them) and estimates
seconds on a ZeroGPU slice; the training estimate also sets when a run stops itself (:func:`train_time_limit`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from ..edits import EditConfig
from ..model_store import DEFAULT_CLIPS, ModelStore
from ..train import AdaptConfig
from ..video import PhotoVideoPlan, VideoPlan
from .glue import bind, user_errors
from .gpu_tasks import (
    import_pt_style,
    invert_in_styles,
    learn_edit,
    render_images,
    render_invert_video,
    render_style_thumbnails,
    render_walk_video,
    styled_codes,
    train_style,
)
from .zerogpu import on_gpu


def video_duration(args: dict) -> float:
    """GPU seconds for a video (arguments of :func:`nada.app.gpu_tasks.render_walk_video`): ~0.3 s a frame at 1024."""
    plan = args.get("plan")
    return 20 + 0.3 * (plan.frames if isinstance(plan, VideoPlan) else 100)


def thumbnails_duration(args: dict) -> float:
    """GPU seconds for the published styles' thumbnails (:func:`nada.app.gpu_tasks.render_style_thumbnails`)."""
    return 15 + 4 * len(args.get("names") or [0])


def generate_duration(args: dict) -> float:
    """ZeroGPU seconds for rendering (arguments of :func:`nada.app.gpu_tasks.render_images`)."""
    return 15 + 3 * len(args.get("seeds") or [0])


EDIT_S_PER_STEP = 0.8  # GPU seconds per learning step at 1024 px, batch 4, ViT-B/32: an estimate (nada.edits)


def learn_edit_duration(args: dict) -> float:
    """ZeroGPU seconds for learning an edit (arguments of :func:`nada.app.gpu_tasks.learn_edit`)."""
    config = args.get("config")
    return 30 + EDIT_S_PER_STEP * (config.steps if isinstance(config, EditConfig) else EditConfig.steps)


def invert_video_duration(args: dict) -> float:
    """ZeroGPU seconds for a photo's video (arguments of :func:`nada.app.gpu_tasks.render_invert_video`)."""
    plan, refs = args.get("plan"), args.get("refs") or []
    frames = plan.frames(len(refs) + 1) if isinstance(plan, PhotoVideoPlan) else 200
    return 30 + 0.3 * frames


def invert_duration(args: dict) -> float:
    """ZeroGPU seconds for an inversion (arguments of :func:`nada.app.gpu_tasks.invert_in_styles`)."""
    return 20 + 5 * len(args.get("refs") or [])


def restyle_duration(args: dict) -> float:
    """ZeroGPU seconds for redrawing kept codes (arguments of :func:`nada.app.gpu_tasks.styled_codes`)."""
    return 10 + 3 * len(args.get("refs") or [])


GPU_SETUP_S = 30.0  # worker start, moving the models to the GPU, text directions, the first preview


S_PER_STEP = 0.6  # one step at 1024 px, batch 2, two CLIP models, no probe, on a ZeroGPU slice: an estimate until


#                   bench/gpu_check.sh measures it (probing about doubles it; one CLIP model saves about a third)
ZERO_GPU_DEFAULT_STEPS = 100  # ~90 s of GPU time: inside a free account's daily ZeroGPU quota (about 3.5 min)


MAX_GPU_S = 1800.0


def train_seconds(iterations: int, probe: bool, n_clips: int) -> float:
    """Estimated GPU seconds of a training run (setup included)."""
    per_step = S_PER_STEP * (2.0 if probe else 1.0) * (0.67 + 0.33 * max(1, n_clips) / 2)
    return min(GPU_SETUP_S + per_step * iterations, MAX_GPU_S)


def adapt_duration(args: dict) -> float:
    """GPU seconds to ask for a training run (arguments of :func:`nada.app.gpu_tasks.train_style`)."""
    config = args.get("config")
    if not isinstance(config, AdaptConfig):
        return 60 + S_PER_STEP * 300
    return train_seconds(config.iterations, config.probing(), len(args.get("clip_names") or DEFAULT_CLIPS))


def train_time_limit(config: AdaptConfig, clip_names: list[str]) -> float:
    """When training must end to leave the worker time to save and return: a margin under the granted duration."""
    granted = adapt_duration({"config": config, "clip_names": clip_names})
    return max(5.0, granted - max(10.0, 0.1 * granted))


_Bound = TypeVar("_Bound", bound="BoundTasks")


class BoundTasks:
    """GPU halves of handlers bound to the model store, one field per task in the order of :meth:`tasks`
    (``(function, duration)`` pairs). :meth:`wrapped` runs them as ZeroGPU tasks (or in a forked worker with
    ``NADA_FORK_GPU=1``); :meth:`direct` in this process."""

    @classmethod
    def tasks(cls) -> tuple[tuple[Callable, Any], ...]:
        """``(function of the store, duration)`` per field, in field order."""
        raise NotImplementedError

    @classmethod
    def direct(cls: type[_Bound], store: ModelStore) -> _Bound:
        """In this process (tests, CPU machines, dedicated GPUs)."""
        return cls(*(user_errors(bind(fn, store)) for fn, _ in cls.tasks()))

    @classmethod
    def wrapped(cls: type[_Bound], store: ModelStore) -> _Bound:
        """As GPU tasks; build once per app (``spaces`` registers each wrapped function when it is wrapped)."""
        return cls(*(on_gpu(user_errors(bind(fn, store)), duration) for fn, duration in cls.tasks()))


@dataclasses.dataclass(frozen=True)
class GpuCalls(BoundTasks):
    """The GPU halves of the handlers (:mod:`nada.app.gpu_tasks`), bound to the store."""

    render: Callable
    invert: Callable
    import_pt: Callable
    train: Callable
    video: Callable
    thumbnails: Callable
    restyle: Callable
    learn_edit: Callable
    invert_video: Callable

    @classmethod
    def tasks(cls) -> tuple[tuple[Callable, Any], ...]:
        return ((render_images, generate_duration), (invert_in_styles, invert_duration),
                (import_pt_style, 60), (train_style, adapt_duration), (render_walk_video, video_duration),
                (render_style_thumbnails, thumbnails_duration), (styled_codes, restyle_duration),
                (learn_edit, learn_edit_duration), (render_invert_video, invert_video_duration))
