"""Timing and memory helpers shared by the benchmark cases."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, repeat: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeat`` calls after ``warmup`` calls (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times


def peak_mib(device: torch.device) -> float:
    """Peak memory of this process so far: GPU allocator peak on CUDA, max RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def summary(times: list[float]) -> dict:
    """Median and spread of a list of timings."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def tuner_figures(g: torch.nn.Module) -> dict:
    """The tuning a generator's case paid for (in its warm-up run): seconds and shapes timed; empty without one."""
    report = g.conv_tuner.report() if g.conv_tuner is not None else None
    return {"tune_s": report["seconds"], "tuned_shapes": report["tuned"]} if report else {}
