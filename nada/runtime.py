"""Process-level tuning, applied by the entry points (CLI, app, benchmarks), never at import.

glibc's malloc serves every allocation above 32 MiB with a fresh ``mmap`` and returns it with ``munmap`` when it is
freed. A StyleGAN2 forward at 1024 px allocates many such tensors, so the kernel zero-fills fresh pages each time:
measured here, half of a 1024 px forward pass was system time. Keeping freed memory in the heap instead halves the
wall time of a forward pass; peak memory is unchanged (the memory is reused, not returned to the system).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt parameters
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})  # what turns an environment flag on


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """True when the environment variable ``name`` is 1/true/yes/on (any case, spaces ignored)."""
    return (os.environ if environ is None else environ).get(name, "").strip().lower() in TRUE_WORDS


def tiny_mode(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``NADA_TINY`` is on: tiny random models, no downloads (the app, the notebooks and ``nada.Studio()``
    read it; CI runs that way)."""
    return env_flag("NADA_TINY", environ)


def tune_allocator() -> bool:
    """Ask glibc malloc to reuse large blocks instead of mapping and unmapping them; False where not glibc or
    when ``NADA_NO_MALLOC_TUNING=1`` (the cost: the heap keeps its peak size, up to ~1.5x the untuned peak RSS)."""
    if not sys.platform.startswith("linux") or os.environ.get("NADA_NO_MALLOC_TUNING", "") not in ("", "0"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or an unusual libc: leave the allocator alone
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 2**31 - 1) == 1  # never mmap: serve large tensors from the heap
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # keep freed memory for the next step
    ok &= mallopt(_M_TOP_PAD, 256 << 20) == 1  # grow the heap in 256 MiB steps
    return bool(ok)


def configure_torch(tf32: bool | None = None) -> bool:
    """Numerics and speed settings, chosen once for every entry point (CLI, app, benchmarks): TF32 off by default
    (this torch would otherwise run cuDNN convolutions in TF32 while bf16 stays off for precision: the directional
    loss normalises small feature differences), on with ``tf32=True`` or ``NADA_TF32=1``; cuDNN autotuning on.
    Returns whether TF32 is on. A no-op for CPU-only work."""
    import torch  # kept out of module scope: importing nada.runtime must not import torch (ZeroGPU's `spaces`)

    if tf32 is None:
        tf32 = env_flag("NADA_TF32")
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)
    torch.backends.cudnn.benchmark = True  # same values, fastest algorithm per shape
    return bool(tf32)


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; otherwise the named device, checked to exist."""
    import torch  # see configure_torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device '{name}' was asked for, but no CUDA GPU is available here; use --device cpu.")
    return dev
