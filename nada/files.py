"""Safe file writing (atomic, with the permissions any new file gets) and reading nada's tagged safetensors files."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from . import __version__


def current_umask() -> int:
    """The process's file-creation mask: from ``/proc`` on Linux, else by setting it and putting it back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):  # no /proc (not Linux): read it the portable way below
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then move it into place (never a half file). The file
    gets the permissions any new file gets (``0o666`` less the umask), not the temp file's private ``0o600``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_tagged_safetensors(path: Path, format_key: str, format_version: int, error: type[Exception], what: str,
                            unreadable: str, untagged: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, JSON metadata) of a nada safetensors file (``what``: "style", "edit") whose header marks it with
    ``format_key`` at a version up to ``format_version``; else ``error`` with a readable message (``unreadable``:
    what to say of a file safetensors cannot read, ``untagged``: advice for another safetensors file). Nothing
    executable is loaded."""
    from safetensors import safe_open  # third-party, only reading nada files needs it

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers and truncated files
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise error(f"'{path}' could not be read as a safetensors file ({type(exc).__name__}: {first}); "
                    f"{unreadable}") from exc
    version = header.get(format_key)
    if version is None:
        raise error(f"'{path}' is a safetensors file but not a nada {what} (no '{format_key}' metadata)"
                    + (f"; {untagged}" if untagged else "."))
    if not version.isdigit() or int(version) > format_version:
        raise error(f"'{path}' is a nada {what} of format {version!r}; this nada ({__version__}) reads format "
                    f"{format_version}. Update nada.")
    try:
        meta = {k: json.loads(v) for k, v in header.items() if k != format_key}
    except json.JSONDecodeError as exc:
        raise error(f"'{path}' has corrupt {what} metadata ({exc}).") from exc
    return tensors, meta


__all__ = ["atomic_write", "current_umask", "read_tagged_safetensors"]
