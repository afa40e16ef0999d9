"""A zoo of styles from a prompt file, end to end: :func:`run_zoo` checks everything, skips the styles already
finished with the same settings, trains the rest in batches (in this process, or as Ray tasks on a cluster), writes
each finished style and ``zoo.json`` the moment it arrives, and draws ``sheet.png`` and ``index.html`` at the end.

It is a generator of :class:`ZooEvent` records; ``nada zoo`` and ``nada.Studio.zoo`` only render them. Stopping
(``stop``, Ctrl-C closing the generator, a killed machine) loses at most the batches in flight: every finished style is
already on disk and in ``zoo.json``, and a rerun of the same command goes on from there.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import limits
from ..model_store import ModelStore
from . import cluster
from .book import ZooBook, style_file_name
from .jobs import BatchJob, BatchTick, StoreSettings, StyleResult, plan_batches
from .sheet import INDEX_NAME, SHEET_NAME, write_pictures

if TYPE_CHECKING:
    from .prompts import ZooEntry

DEFAULT_SEEDS = (0, 1, 2, 3)  # the contact sheet's columns
MAX_SHEET_SEEDS = 16  # columns of the contact sheet at most


@dataclasses.dataclass
class ZooEvent:
    """One thing that happened in a zoo run, for a front end to show."""

    kind: str  # "plan" | "skip" | "steps" | "style" | "info" | "warning" | "pictures" | "end"
    message: str = ""  # a line for people
    record: dict | None = None  # "style" (and "skip"): the style's zoo.json record
    steps: int = 0  # "steps": style-steps done since the previous "steps" event
    total_steps: int = 0  # "plan": style-steps to train in this run
    styles: int = 0  # "plan": styles to train; "end": styles finished in this run
    failed: int = 0  # "end": styles that failed in this run
    paths: tuple[Path, ...] = ()  # "pictures": sheet.png, index.html


def validate_entries(entries: Sequence[ZooEntry], source: str, store: ModelStore,
                     registry_source: str | None = None) -> None:
    """ValueError naming the line for an empty list, a duplicate or unsafe name, an unknown source or settings that
    cannot work on it; nothing loads but the registry's facts."""
    if not entries:
        raise ValueError("No styles to train: the prompt file has none.")
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.name in seen:
            raise ValueError(f"Lines {seen[entry.name]} and {entry.line} both make the style name '{entry.name}'; "
                             "give one of them another name with '| name=...'.")
        seen[entry.name] = entry.line
        style_file_name(entry.name)
    if not store.is_source(source):
        raise ValueError(f"Unknown source generator '{source}'. Choose one of: "
                         f"{', '.join(n for _, n in store.source_choices())}.")
    rows = store.generator_rows(source)
    for entry in entries:
        try:
            entry.config(registry_source if registry_source is not None else source).validate(rows)
        except ValueError as exc:
            raise ValueError(f"Line {entry.line} ('{entry.name}'): {exc}") from None


def run_zoo(entries: Sequence[ZooEntry], out: str | os.PathLike, *, source: str, styles_per_batch: int = 4,
            address: str | None = None, gpus_per_job: float | None = None, settings: StoreSettings | None = None,
            seeds: Sequence[int] = DEFAULT_SEEDS, num_cpus: int | None = None, retries: int = 3,
            registry_source: str | None = None, stop: threading.Event | None = None,
            store: ModelStore | None = None) -> Iterator[ZooEvent]:
    """Train every style of ``entries`` not yet finished in the zoo folder ``out``; yields :class:`ZooEvent`\\ s.

    ``address``: None trains here, batch after batch, without Ray; ``"local"`` starts a private Ray on this machine
    (loopback only, ``num_cpus``); ``"auto"``, ``host:port`` or ``ray://host:port`` joins a cluster. Each batch is a
    task with ``gpus_per_job`` GPUs (a fraction packs several on one GPU; default 1 when the cluster has GPUs, else
    0), retried ``retries`` times when its worker dies. ``settings``: how models load (tiny mode, device) and how
    many samples the held-out judge scores per style. ``registry_source``: the name whose published recipe values
    apply (default ``source``). ``store``: models already loaded (``nada.Studio``'s), used here instead of a new
    store made from ``settings`` (Ray tasks always load their own). Everything is checked before training starts."""
    settings = settings or StoreSettings()
    named = registry_source if registry_source is not None else source
    entries = list(entries)
    store = store or settings.store()  # shared by the batches trained here and the sheet
    validate_entries(entries, source, store, registry_source)
    seeds = [limits.seed(s, "A sheet seed") for s in seeds]
    if not 1 <= len(seeds) <= MAX_SHEET_SEEDS:
        raise ValueError(f"The contact sheet takes 1 to {MAX_SHEET_SEEDS} seeds (--seeds), got {len(seeds)}.")
    if styles_per_batch < 1:
        raise ValueError(f"--styles-per-batch must be at least 1, got {styles_per_batch}.")
    if gpus_per_job is not None and gpus_per_job < 0:
        raise ValueError(f"--gpus-per-job must be 0 or more, got {gpus_per_job:g}.")
    if address is None and gpus_per_job:
        raise ValueError("--gpus-per-job applies to Ray runs: give --address too (local, auto or ray://host:port).")
    if address == "local":
        cluster.import_ray(loopback=True)  # installed? (and kept on 127.0.0.1)
    elif address is not None:
        target = cluster.resolve_address(address)
        cluster.import_ray(loopback=cluster.is_loopback(cluster.parse_address(target)[0]))
        cluster.check_reachable(target)  # within seconds, before anything changes
    book = ZooBook.open(out, source, seeds)

    todo: list[ZooEntry] = []
    for entry in entries:
        if book.is_finished(entry, entry.key(named)):
            yield ZooEvent("skip", f"{entry.name}: already finished with these settings",
                           record=dict(book.styles[entry.name]))
        else:
            todo.append(entry)
    jobs = plan_batches(todo, source, settings, styles_per_batch, registry_source=named) if todo else []
    changed = bool(todo)
    if jobs:
        total = sum(job.steps for job in jobs)
        yield ZooEvent("plan", f"{len(todo)} style(s) to train in {len(jobs)} batch(es), {total} style-steps"
                       + (f", {len(entries) - len(todo)} already finished" if len(todo) < len(entries) else ""),
                       total_steps=total, styles=len(todo))
        counts = {"done": 0, "failed": 0}
        if address is None:
            outcome = _run_here(jobs, book, counts, store, stop)
        else:
            outcome = _run_on_ray(jobs, book, counts, address, gpus_per_job, num_cpus, retries, stop)
        yield from outcome
        yield ZooEvent("end", f"{counts['done']} finished, {counts['failed']} failed", styles=counts["done"],
                       failed=counts["failed"])
    if changed or book.reseeded or not (book.folder / SHEET_NAME).is_file() \
            or not (book.folder / INDEX_NAME).is_file():
        yield _pictures(book, source, store)


def _run_here(jobs: list[BatchJob], book: ZooBook, counts: dict, store: ModelStore, stop: threading.Event | None
              ) -> Iterator[ZooEvent]:
    """Train the batches one after another in this process, sharing one model store."""
    for job in jobs:
        if stop is not None and stop.is_set():
            return
        reported = 0
        for item in job.run(stop=stop, store=store):
            if isinstance(item, BatchTick):
                reported += item.steps
                yield ZooEvent("steps", steps=item.steps)
            else:
                yield from _record(job, item, book, counts)
        if job.steps > reported:  # failed or stopped styles: the rest of their steps count as done for the bar
            yield ZooEvent("steps", steps=job.steps - reported)


def _run_on_ray(jobs: list[BatchJob], book: ZooBook, counts: dict, address: str, gpus_per_job: float | None,
                num_cpus: int | None, retries: int, stop: threading.Event | None) -> Iterator[ZooEvent]:
    """Train the batches as Ray tasks, recording each as it finishes."""
    with cluster.ray_session(address, num_cpus=num_cpus) as session:
        gpus = gpus_per_job if gpus_per_job is not None else (1.0 if session.gpus else 0.0)
        yield ZooEvent("info", f"Ray at {session.address}: {session.cpus:g} CPUs, {session.gpus:g} GPUs; "
                                  f"{gpus:g} GPU per batch")
        for job, results, error in cluster.run_jobs(jobs, gpus_per_job=gpus, retries=retries, stop=stop):
            if results is None:
                results = [StyleResult(e.name, k, "failed", None, error, 0.0, f"ray:{session.address}")
                           for e, k in zip(job.entries, job.keys)]
            for result in results:
                yield from _record(job, result, book, counts)
            yield ZooEvent("steps", steps=job.steps)


def _record(job: BatchJob, result: StyleResult, book: ZooBook, counts: dict) -> Iterator[ZooEvent]:
    """Write one style's result into the zoo folder and say so."""
    i = job.names.index(result.name)
    entry, key = job.entries[i], job.keys[i]
    for text in result.warnings:
        yield ZooEvent("warning", f"{entry.name}: {text}")
    if result.status == "done" and result.data:
        record = book.record_done(entry, key, result.data, seconds=result.seconds, where=result.where,
                                  figures=result.figures)
        counts["done"] += 1
        yield ZooEvent("style", f"{entry.name}: done in {result.seconds:.1f} s on {result.where} -> {record['file']}",
                       record=record)
    elif result.status == "stopped":
        yield ZooEvent("warning", f"{entry.name}: {result.error}; not recorded (a rerun trains it)")
    else:
        record = book.record_failed(entry, key, result.error or "training failed", seconds=result.seconds,
                                    where=result.where)
        counts["failed"] += 1
        yield ZooEvent("style", f"{entry.name}: FAILED: {record['error']}", record=record)


def _pictures(book: ZooBook, source: str, store: ModelStore) -> ZooEvent:
    """Draw sheet.png (every finished style x the fixed seeds) and index.html."""
    generator = store.generator(source)
    paths = write_pictures(book.folder, generator, book.as_dict(), source_name=source)
    return ZooEvent("pictures", f"{len(book.finished())} style(s) on {paths[0].name}; table in {paths[1].name}",
                    paths=tuple(paths))


__all__ = ["run_zoo", "validate_entries", "ZooEvent", "DEFAULT_SEEDS", "MAX_SHEET_SEEDS"]
