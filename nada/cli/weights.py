"""``python -m nada download`` (fetch and verify weights ahead of time) and ``python -m nada doctor`` (what is on this
machine and what will work, without downloading anything)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..align import load_predictor
from ..clip_models import load_clip
from ..id_loss import load_id_loss
from ..registry import APP_ASSETS, FEATURE_ASSETS, REGISTRY, Asset
from ..weights import (
    CheckpointError,
    WeightsUnavailableError,
    asset_status,
    cache_dir,
    cached_path,
    fetch,
    hub_mirrors,
    load_e4e,
    load_generator,
    offline,
)

# How each kind of asset is opened to verify it (strict loads, on the CPU).
_VERIFY: dict[str, Callable[[Path], object]] = {
    "generator": load_generator, "style": load_generator, "clip": load_clip, "e4e": load_e4e,
    "arcface": load_id_loss, "dlib": load_predictor,
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``download`` and ``doctor`` subcommands."""
    p = sub.add_parser(
        "download", help="fetch and verify weights ahead of time",
        description="Download registry weights into the cache (a Space's build step, a laptop before a flight), "
                    "check their sizes and load each one strictly, then print a table.")
    p.add_argument("names", nargs="*", metavar="NAME", help=f"registry names ({', '.join(REGISTRY)})")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true", help="every registry asset (about 5 GB)")
    group.add_argument("--app", action="store_true", help=f"what the app needs: {', '.join(APP_ASSETS)}")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the load check after download")
    p.set_defaults(run=run_download)
    d = sub.add_parser("doctor", help="what is on this machine and what will work (downloads nothing)",
                       description="Print the device and torch build, free memory, the state of every registry "
                                   "asset in the cache, and which app tabs and commands will work.")
    d.set_defaults(run=run_doctor)


@dataclass
class Row:
    """One line of the download table."""

    name: str
    file: str
    size: str
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.0f} MB" if nbytes >= 2**20 else f"{nbytes / 2**10:,.0f} KB"


def _table(rows: list[Row], headers: tuple[str, ...]) -> str:
    cells = [headers] + [(r.name, r.file, r.size, r.status) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(headers))).rstrip() for c in cells)


def download_one(name: str, verify: bool = True) -> Row:
    """Fetch one asset (from the cache when it is there), check its size, and load it strictly when ``verify``."""
    asset = REGISTRY[name]
    try:
        path = fetch(name)
        if verify:
            _VERIFY[asset.kind](path)
    except (WeightsUnavailableError, CheckpointError, OSError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Row(name, asset.filename, "", f"failed: {first}")
    return Row(name, path.name, _mb(path.stat().st_size), "ok")


def _chosen(args: argparse.Namespace) -> list[str]:
    if args.all:
        return list(REGISTRY)
    names = list(APP_ASSETS) if args.app else list(dict.fromkeys(args.names))
    if not names:
        raise ValueError("Name the weights to download (e.g. `nada download ffhq clip-vit-b32`), or use --app or "
                         "--all.")
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"Unknown weights {', '.join(unknown)}; known names: {', '.join(REGISTRY)}.")
    return names


def run_download(args: argparse.Namespace) -> int:
    """Download each chosen asset in turn (huggingface_hub shows a progress bar per file), then print the table."""
    names = _chosen(args)
    rows = []
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name}", file=sys.stderr, flush=True)
        rows.append(download_one(name, args.verify))
    print(_table(rows, ("name", "file", "size", "status")))
    failed = [r.name for r in rows if not r.ok]
    print(f"{len(rows) - len(failed)} ok, {len(failed)} failed; cache: {cache_dir()}", file=sys.stderr)
    return 1 if failed else 0


def asset_line(asset: Asset) -> Row:
    """Cache state of one asset, without network: cached (size checked) or missing, and where it would come from."""
    mirrors = hub_mirrors(asset)
    status = asset_status(asset.name)
    if status.cached:
        path = cached_path(asset.name) if mirrors else None
        return Row(asset.name, path.name if path else asset.filename, _mb(path.stat().st_size) if path else "",
                   "cached" if path else "installed")
    where = f"{mirrors[0].repo_id}/{mirrors[0].filename}" if mirrors else "no mirror"
    return Row(asset.name, where, _mb(mirrors[0].nbytes) if mirrors and mirrors[0].nbytes else "", "missing")


def _memory_lines(device: torch.device) -> list[str]:
    lines = []
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        lines.append(f"memory: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        lines.append("memory: unknown")
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        lines.append(f"GPU memory: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB")
    return lines


def run_doctor(args: argparse.Namespace) -> int:
    """Print what this machine has and what will work; never downloads. Exit 0 when the checks could run."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU only: Adapt is slow)"
    print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}), "
          f"{os.cpu_count()} CPU cores")
    print(f"device: {device}; GPU: {gpu}")
    for line in _memory_lines(device):
        print(line)
    net = "offline mode (HF_HUB_OFFLINE/NADA_OFFLINE)" if offline() else \
        f"online, hub {os.environ.get('HF_ENDPOINT', 'https://huggingface.co')} (not contacted by doctor)"
    print(f"weights cache: {cache_dir()}; {net}\n")
    rows = [asset_line(a) for a in REGISTRY.values()]
    print(_table([r for r in rows if REGISTRY[r.name].kind != "style"], ("asset", "file", "size", "state")) + "\n")
    state = {r.name: r.status for r in rows}
    for feature, needs in FEATURE_ASSETS.items():
        missing = [n for n in needs if state[n] == "missing"]
        if not missing:
            verdict = "ready"
        elif offline():
            verdict = f"will NOT work offline: missing {', '.join(missing)}"
        else:
            verdict = f"downloads {', '.join(missing)} on first use"
        print(f"{feature + ':':33} {verdict}")
    styles = sum(1 for a in REGISTRY.values() if a.kind == "style" and state[a.name] != "missing")
    print(f"{'Published styles:':33} {styles} of {sum(a.kind == 'style' for a in REGISTRY.values())} cached; "
          "the others download on first use (~130 MB each)")
    print(f"{'Tiny mode (NADA_TINY=1, --tiny):':33} ready (no weights needed)")
    print("\nnothing was downloaded; `nada download --app` fetches what the app needs")
    return 0


__all__ = ["register", "run_download", "run_doctor", "download_one", "asset_line"]
