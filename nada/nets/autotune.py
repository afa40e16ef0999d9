"""Choose each CPU convolution path by timing it, as cuDNN's benchmark mode does on GPUs.

The first time a convolution shape is met, a :class:`ConvTuner` times every candidate path (plain, Winograd, the layout
and phase variants of ``nada.nets.ops``) and keeps the fastest for that shape. A call without gradients races the
candidates on its own input (the whole batch: a race on one sample chose paths that were 1.2x slower at batch 4 on
AVX-512) and returns the winner's output, so tuning costs only the losers' time. Calls that need gradients (training,
the layer probe) keep the fixed choices unless ``gradients=True``: their trials (forward and backward of a copy of the
input) cost about one training step at 256 px on an AVX2 core even at batch 1, and bought ~2% there, and trials on crops
of the map, which cost less, ranked the paths differently (cache behaviour changes with size) and made the probe 1.4x
slower (measured in bench/README.md, "Measure, then choose"). Choices are kept in memory, and optionally in a JSON file
keyed by CPU capability, torch threads (the cores it uses) and torch version. Every candidate computes the same
function, so a choice changes speed and float rounding only. ``NADA_AUTOTUNE=0`` turns timing off: the tuner then runs
the fixed choice written beside each call (the crossovers measured on AVX-512).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

AUTOTUNE_ENV = "NADA_AUTOTUNE"  # "0" (or false/no/off): fixed choices, no timing
CACHE_ENV = "NADA_AUTOTUNE_CACHE"  # a JSON file path: choices kept across processes (off when unset)
CLOSE = 1.1  # paths first timed within this factor of the fastest are timed again (a wrong pick among paths
#              further apart than this is unlikely; one this close costs little)
MIN_TRIAL_MACS = 1 << 28  # smaller convolutions (one sample's multiply-adds) take the fixed choice: they run in a
#                           few milliseconds, where timing is noisy and costs more than any path could save
ConvPath = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def autotune_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """False when ``NADA_AUTOTUNE`` is 0/false/no/off; on otherwise (the default)."""
    value = (os.environ if environ is None else environ).get(AUTOTUNE_ENV, "").strip().lower()
    return value not in ("0", "false", "no", "off")


def machine_key() -> str:
    """What a cached choice is valid for: CPU capability, torch threads and torch version."""
    return f"{torch.backends.cpu.get_cpu_capability()}|{torch.get_num_threads()} threads|torch {torch.__version__}"


class ConvTuner:
    """Per-shape choice of a convolution path, timed on first use (thread-safe; copies of a model share it)."""

    def __init__(self, enabled: bool | None = None, cache_path: str | os.PathLike | None = None,
                 min_macs: int = MIN_TRIAL_MACS, rerun_below_s: float = 0.02, gradients: bool = False) -> None:
        self.enabled = autotune_enabled() if enabled is None else bool(enabled)
        if cache_path is None:
            cache_path = os.environ.get(CACHE_ENV) or None
        self.cache_path = Path(cache_path) if cache_path else None
        self.min_macs = int(min_macs)
        self.rerun_below_s = float(rerun_below_s)  # a run this short is repeated (its first includes kernel set-up)
        self.gradients = bool(gradients)  # also time calls that need gradients (off: their fixed choices; see above)
        self.choices: dict[str, str] = {}  # key -> path name
        self.timings: dict[str, dict[str, float]] = {}  # key -> {path: seconds}, this process's timings
        self.seconds = 0.0  # wall time tuning added in this process (the time beyond one run of the chosen path)
        self._lock = threading.Lock()
        self._load()

    def __deepcopy__(self, memo: dict) -> ConvTuner:
        return self  # a cache, not model state: deep copies of a generator keep using (and filling) this one

    def __getstate__(self) -> dict:  # picklable (a generator sent to another process): the lock stays behind
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ choosing
    def run(self, op: str, x: torch.Tensor, weight: torch.Tensor, paths: Mapping[str, ConvPath],
            fixed: str) -> torch.Tensor:
        """``op`` of ``x`` [N, C, H, W] and ``weight`` by the path chosen for this shape: ``fixed`` (one of
        ``paths``) when timing is off, one path applies, the tensors are not float32 on the CPU or the work is tiny
        (``min_macs``); else the fastest, timed on the first call of the shape."""
        if not self.enabled or len(paths) < 2 or x.device.type != "cpu" or x.dtype != torch.float32 \
                or macs(x, weight) < self.min_macs:
            return paths[fixed](x, weight)
        grads = (torch.is_grad_enabled() and x.requires_grad, torch.is_grad_enabled() and weight.requires_grad)
        if any(grads) and not self.gradients:
            return paths[fixed](x, weight)
        key = trial_key(op, x, weight, grads, paths)
        choice = self.choices.get(key)
        if choice in paths:
            return paths[choice](x, weight)
        with self._lock:
            choice = self.choices.get(key)
            if choice in paths:
                return paths[choice](x, weight)
            start = time.perf_counter()
            if any(grads):
                timings, out = self._trial(x, weight, grads, paths), None
            else:
                timings, out = self._race(x, weight, paths)
            choice = min(timings, key=timings.get)
            self.seconds += time.perf_counter() - start - (timings[choice] if out is not None else 0.0)
            self.timings[key], self.choices[key] = timings, choice
            self._save()
        return paths[choice](x, weight) if out is None else out

    def _timed(self, fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
        """(seconds, output) of ``fn``: its best of two runs when the first is short, else the first."""
        start = time.perf_counter()
        out = fn()
        took = time.perf_counter() - start
        if took < self.rerun_below_s:
            start = time.perf_counter()
            out = fn()
            took = min(took, time.perf_counter() - start)
        return took, out

    def _time_all(self, paths: Mapping[str, Callable[[], torch.Tensor]]) -> tuple[dict[str, float], torch.Tensor]:
        """(seconds by path, the fastest one's output); paths within ``CLOSE`` of the fastest run once more (a
        first run also pays for fresh memory pages and kernel set-up, which a close call must not decide)."""
        timings: dict[str, float] = {}
        outs: dict[str, torch.Tensor] = {}
        for name, fn in paths.items():
            timings[name], outs[name] = self._timed(fn)
            best = min(timings, key=timings.get)
            outs = {best: outs[best]}  # keep one output alive at a time
        close = [n for n, t in timings.items() if t <= CLOSE * min(timings.values())]
        for name in close if len(close) > 1 else ():
            start = time.perf_counter()
            out = paths[name]()
            took = time.perf_counter() - start
            if took < timings[name]:
                timings[name] = took
                if took <= min(timings.values()):
                    outs = {name: out}
        best = min(timings, key=timings.get)
        return timings, outs.get(best)

    def _race(self, x: torch.Tensor, weight: torch.Tensor,
              paths: Mapping[str, ConvPath]) -> tuple[dict[str, float], torch.Tensor]:
        """Run every path on the call's own input (no gradients): (seconds by path, the fastest one's output)."""
        return self._time_all({name: (lambda path=path: path(x, weight)) for name, path in paths.items()})

    def _trial(self, x: torch.Tensor, weight: torch.Tensor, grads: tuple[bool, bool],
               paths: Mapping[str, ConvPath]) -> dict[str, float]:
        """Seconds of forward and backward of each path on a copy of ``x`` (same layout), with the gradients the
        real call needs."""
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
            else torch.contiguous_format
        xt = x.detach().clone(memory_format=fmt).requires_grad_(grads[0])  # [N, C, H, W]
        wt = weight.detach().clone().requires_grad_(grads[1])
        grad_out: list[torch.Tensor] = []

        def step(path: ConvPath) -> torch.Tensor:
            out = path(xt, wt)
            if not grad_out or grad_out[0].shape != out.shape:
                grad_out[:] = [torch.randn_like(out)]
            out.backward(grad_out[0])
            xt.grad = wt.grad = None
            return out

        with torch.enable_grad(), torch.autocast("cpu", enabled=False):
            return self._time_all({name: (lambda path=path: step(path)) for name, path in paths.items()})[0]

    # -------------------------------------------------------------------------------------------- reporting
    def report(self) -> dict:
        """What the tuner did in this process: on/off, shapes chosen, seconds spent timing, choices by path."""
        return {"enabled": self.enabled, "shapes": len(self.choices), "tuned": len(self.timings),
                "seconds": round(self.seconds, 4), "paths": dict(Counter(self.choices.values()))}

    # ------------------------------------------------------------------------------------------ disk cache
    def _load(self) -> None:
        """Read choices made earlier on this kind of machine (a missing, foreign or unreadable file is ignored)."""
        if self.cache_path is None or not self.cache_path.is_file():
            return
        try:
            data = json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("machine") == machine_key() and isinstance(data.get("choices"), dict):
            self.choices.update({str(k): str(v) for k, v in data["choices"].items()})

    def _save(self) -> None:
        """Write every choice to the cache file (atomically; a read-only place only loses the cache)."""
        if self.cache_path is None:
            return
        tmp = self.cache_path.with_name(self.cache_path.name + f".{os.getpid()}.tmp")
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"machine": machine_key(), "choices": self.choices}, indent=1, sort_keys=True))
            os.replace(tmp, self.cache_path)
        except OSError:
            tmp.unlink(missing_ok=True)


def trial_key(op: str, x: torch.Tensor, weight: torch.Tensor, grads: tuple[bool, bool],
              paths: Mapping[str, ConvPath]) -> str:
    """The cache key of one decision: op, input shape (batch included: the fastest path changes with it) and layout,
    weight shape, gradients, candidates."""
    layout = "cl" if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else "nchw"
    grad = "x" * grads[0] + "w" * grads[1] or "nograd"
    return f"{op}|{tuple(x.shape)}|{layout}|{tuple(weight.shape)}|{grad}|{','.join(sorted(paths))}"


def macs(x: torch.Tensor, weight: torch.Tensor) -> int:
    """Multiply-adds of one sample's convolution, roughly: input pixels times the weight's size."""
    return x.shape[-2] * x.shape[-1] * weight.numel()

