"""Where the reference fixtures are, and what a test does when one is missing.

The reference fixtures (outputs of the public reference implementations on synthesized weights) live outside the
repository, in ``shared/fixtures`` beside the checkout (``<project root>/../shared/fixtures``). The environment
variable ``NADA_FIXTURES`` points elsewhere (a folder with the same layout: ``stylegan2/``, ``e4e/``, ``align/``, ...).

A test asks for each file it needs with :func:`fixture_path`. A missing file skips the test locally, with the path
and the reason; under CI (the ``CI`` environment variable set and non-empty, as CI services do) it fails the test
instead, naming the path, so a checkout without the fixtures can never pass by skipping every equality test.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from .helpers import PROJECT_ROOT

ENV_VAR = "NADA_FIXTURES"


def fixtures_root() -> Path:
    """The fixture folder: ``$NADA_FIXTURES`` if set, else ``shared/fixtures`` beside the checkout."""
    override = os.environ.get(ENV_VAR)
    return Path(override).expanduser() if override else PROJECT_ROOT.parent / "shared" / "fixtures"


def fixture_path(*parts: str) -> Path:
    """``fixtures_root() / parts...`` when it exists; otherwise fail the test under CI, else skip it."""
    path = fixtures_root().joinpath(*parts)
    if path.exists():
        return path
    where = f"set {ENV_VAR} to the fixture folder, or put shared/fixtures beside the checkout"
    if os.environ.get("CI"):
        pytest.fail(f"reference fixture missing: {path} (CI is set, so this fails instead of skipping; {where})",
                    pytrace=False)
    pytest.skip(f"reference fixture missing: {path} ({where})")


def load_synth_weights() -> ModuleType:
    """The fixture weight rule (``synth_weights.py`` in the fixture folder): ``synth_state_dict(manifest, seed)``."""
    spec = importlib.util.spec_from_file_location("synth_weights", fixture_path("synth_weights.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
