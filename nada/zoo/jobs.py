"""The zoo's unit of work: a batch of styles trained together, by one function that runs in this process or as a
Ray task on any machine of a cluster.

A :class:`BatchJob` is plain data (the source generator's name, the prompt file's entries, how to load models), so it
pickles to a worker. :func:`train_batch` loads the models once, trains the batch with :func:`nada.zoo.adapt_many`
and yields a :class:`StyleResult` per style as it finishes: the style file's bytes (compact styles are small, so the
driver writes every file and a cluster needs no shared disk), or the error, with the seconds, the machine and the
held-out judge's figures. :func:`plan_batches` groups the entries: only configs that agree on what one batch must
share train together; "weights" styles go one per batch.
"""

from __future__ import annotations

import dataclasses
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clip_models import JUDGE_CLIP
from ..model_store import ModelStore
from ..style_trainer import StyleTrainer
from ..styles import save_style
from ..train import AdaptConfig
from .batch import SHARED, adapt_many

if TYPE_CHECKING:
    from .prompts import ZooEntry

BATCH_FIELDS = SHARED  # AdaptConfig fields every config of one batch must share (adapt_many refuses a mix)


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    """How a worker loads the models (a :class:`~nada.model_store.ModelStore`), and how it judges the results."""

    tiny: bool = False  # tiny random models (tests, demos): no weights needed
    device: str | None = None  # "cuda", "cpu", "auto"; None: the store's default (tiny: the CPU; NADA_DEVICE)
    arcface: str = "arcface-ir-se50"  # identity-loss weights: registry name or path
    judges: tuple[str, ...] = (JUDGE_CLIP,)  # CLIP models that judge each finished style (held out from training)
    judge_samples: int = 8  # samples per style for nada.metrics.evaluate; 0 = no figures

    def store(self) -> ModelStore:
        """A fresh model store with these settings (local checkpoint files allowed as sources, as on the CLI)."""
        return ModelStore(tiny=self.tiny, device=self.device, arcface_source=self.arcface, local_files=True)


@dataclasses.dataclass(frozen=True)
class BatchJob:
    """Styles trained together in one batch: plain data, picklable to a Ray worker."""

    index: int  # the batch's number in the run (0-based), for progress lines
    source: str  # the source generator: registry name, "tiny", or a local checkpoint path
    entries: tuple[ZooEntry, ...]  # the styles, in prompt-file order
    configs: tuple[AdaptConfig, ...]  # their settings (entry.config(source)), one per entry
    keys: tuple[str, ...]  # their keys (entry.key(source)), one per entry
    settings: StoreSettings = StoreSettings()

    @property
    def names(self) -> list[str]:
        """The style names of the batch."""
        return [e.name for e in self.entries]

    @property
    def steps(self) -> int:
        """Style-steps the batch trains (the sum of its styles' iterations)."""
        return sum(c.iterations for c in self.configs)

    def run(self, where: str | None = None, stop: threading.Event | None = None, store: ModelStore | None = None
            ) -> Iterator[BatchTick | StyleResult]:
        """Train the batch: :func:`train_batch` of this job."""
        return train_batch(self, where=where, stop=stop, store=store)


@dataclasses.dataclass
class BatchTick:
    """Training moved on: ``steps`` style-steps done since the previous tick (for an overall progress bar)."""

    index: int  # the batch
    steps: int


@dataclasses.dataclass
class StyleResult:
    """One style of a batch, finished: its file's bytes, or why it failed."""

    name: str
    key: str
    status: str  # "done", "failed", or "stopped" (asked to stop before its last step; not recorded)
    data: bytes | None  # the style as a .safetensors file (status "done")
    error: str | None  # the message (status "failed")
    seconds: float  # from the batch's start to this style's end (model loading included)
    where: str  # the machine: host name, or "ray:<node ip>"
    figures: dict | None = None  # nada.metrics.Evaluation.as_dict() by the judge, when measured
    steps: int = 0  # steps trained
    warnings: tuple[str, ...] = ()  # settings turned off (e.g. the identity loss), a judge that could not load


def batch_signature(config: AdaptConfig) -> tuple:
    """What configs must share to train in one batch (:data:`BATCH_FIELDS`)."""
    return tuple(getattr(config, f) for f in BATCH_FIELDS)


def plan_batches(entries: Sequence[ZooEntry], source: str, settings: StoreSettings, styles_per_batch: int = 4,
                 registry_source: str | None = None) -> list[BatchJob]:
    """The entries grouped into batches of at most ``styles_per_batch`` styles whose configs agree on
    :data:`BATCH_FIELDS` (in prompt-file order within a group); "weights" styles one per batch. ``registry_source``:
    the name whose published recipe values apply (default ``source``)."""
    if styles_per_batch < 1:
        raise ValueError(f"styles_per_batch must be at least 1, got {styles_per_batch}.")
    named = registry_source if registry_source is not None else source
    groups: dict[tuple, list[tuple[ZooEntry, AdaptConfig, str]]] = {}
    for entry in entries:
        config = entry.config(named)
        group = ("weights", entry.name) if config.params == "weights" else batch_signature(config)
        groups.setdefault(group, []).append((entry, config, entry.key(named)))
    jobs: list[BatchJob] = []
    for members in groups.values():
        for start in range(0, len(members), styles_per_batch):
            chunk = members[start:start + styles_per_batch]
            jobs.append(BatchJob(len(jobs), source, tuple(m[0] for m in chunk), tuple(m[1] for m in chunk),
                                 tuple(m[2] for m in chunk), settings))
    return jobs


def style_bytes(style: Any) -> bytes:
    """A style as the bytes of its ``.safetensors`` file (:func:`nada.styles.save_style`)."""
    with tempfile.TemporaryDirectory(prefix="nada-zoo-") as tmp:
        path = save_style(style, Path(tmp) / "style.safetensors")
        return path.read_bytes()


def train_batch(job: BatchJob, where: str | None = None, stop: threading.Event | None = None,
                store: ModelStore | None = None) -> Iterator[BatchTick | StyleResult]:
    """Load the models once, train the job's styles together, and yield a :class:`BatchTick` as steps complete and
    a :class:`StyleResult` as each style finishes (every style of the job gets exactly one). A failure of the whole
    batch (models that cannot load, running out of memory) becomes a failed result for each style not yet done.
    ``where``: the machine's name for the results (default: the host name); ``store``: a model store to share with
    other batches of this process (default: a new one, from the job's settings)."""
    where = where or socket.gethostname()
    t0 = time.perf_counter()
    finished: set[int] = set()
    try:
        store = store or job.settings.store()
        trainers = [StyleTrainer(store, job.source, config, stop=stop) for config in job.configs]
        id_loss = next((t.id_loss for t in trainers if t.id_loss is not None), None)
        steps = adapt_many(trainers[0].generator, trainers[0].clips, [t.config for t in trainers], id_loss, stop=stop)
        last = [0] * len(trainers)  # each style's step reported so far
        try:
            for records in steps:
                moved = 0
                for i, record in enumerate(records):
                    if record is not None:
                        moved += max(record.step - last[i], 0)
                        last[i] = max(record.step, last[i])
                if moved:
                    yield BatchTick(job.index, moved)
                for i, record in enumerate(records):
                    if record is not None and record.done and i not in finished:
                        finished.add(i)
                        yield _result(job, i, trainers[i], record, where, t0, stop)
        finally:
            steps.close()
    except Exception as exc:  # noqa: BLE001 (one batch's failure must not end the zoo: it is recorded per style)
        message = str(exc) if isinstance(exc, ValueError) and str(exc) else f"{type(exc).__name__}: {exc}"
        for i, entry in enumerate(job.entries):
            if i not in finished:
                finished.add(i)
                yield StyleResult(entry.name, job.keys[i], "failed", None, message, time.perf_counter() - t0, where)


def _result(job: BatchJob, i: int, trainer: StyleTrainer, record, where: str, t0: float,
            stop: threading.Event | None) -> StyleResult:
    """The result of style ``i`` from its last training record: the file's bytes and the judge's figures, the error,
    or "stopped" (asked to stop before its last step: nothing to keep, it trains again next time)."""
    entry, key = job.entries[i], job.keys[i]
    if not record.error and record.step < trainer.config.iterations and stop is not None and stop.is_set():
        return StyleResult(entry.name, key, "stopped", None, f"stopped at step {record.step}",
                           time.perf_counter() - t0, where, steps=record.step)
    if record.error or record.step == 0:
        return StyleResult(entry.name, key, "failed", None, record.error or "stopped before the first step",
                           time.perf_counter() - t0, where, steps=record.step, warnings=tuple(trainer.warnings))
    data = style_bytes(trainer.style(record))
    figures, warnings = None, list(trainer.warnings)
    if job.settings.judge_samples >= 2 and trainer.config.target_text.strip():
        try:
            figures = trainer.evaluate(record, job.settings.judge_samples, judges=job.settings.judges).as_dict()
        except Exception as exc:  # noqa: BLE001 (a judge that cannot load costs the figures, never the style)
            warnings.append(f"no figures for '{entry.name}': {str(exc).splitlines()[0] if str(exc) else exc!r}")
    return StyleResult(entry.name, key, "done", data, None, time.perf_counter() - t0, where, figures,
                       steps=record.step, warnings=tuple(warnings))


def run_job(job: BatchJob, where: str | None = None) -> list[StyleResult]:
    """The job's results as a list (what a Ray task returns): :meth:`BatchJob.run` without the ticks."""
    return [r for r in job.run(where=where) if isinstance(r, StyleResult)]


__all__ = ["BatchJob", "BatchTick", "StyleResult", "StoreSettings", "plan_batches", "train_batch", "run_job",
           "batch_signature", "style_bytes", "BATCH_FIELDS"]
