"""All benchmark cases by name; each module contributes a ``CASES`` dict of ``setup(device) -> run()``."""

from __future__ import annotations

import importlib


def all_cases() -> dict:
    """Case name -> setup function, in the documented order (modules that do not exist yet are skipped)."""
    out: dict = {}
    for mod in ("generator", "stylegan3", "adapt", "invert", "video", "zoo", "hyper"):
        try:
            out.update(importlib.import_module(f"bench.{mod}").CASES)
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.{mod}":
                raise
    return out


def default_cases() -> list[str]:
    """The cases ``python -m bench`` runs when none are named: all but the modules' ``OPTIONAL`` ones."""
    optional: set[str] = set()
    for mod in ("generator", "stylegan3", "adapt", "invert", "video", "zoo", "hyper"):
        try:
            optional.update(getattr(importlib.import_module(f"bench.{mod}"), "OPTIONAL", ()))
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.{mod}":
                raise
    return [name for name in all_cases() if name not in optional]
