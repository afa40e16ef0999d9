"""pytest hooks and fixtures: offline hub settings, tiny random models, the reference fixtures' weight rule.

Plain helpers live in ``tests/helpers.py`` (tiny models, hub cache layout, the project root) and
``tests/fixtures.py`` (where the reference fixtures are; skip locally / fail under CI when one is missing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the network in tests

from nada.app.sessions import SessionStyles  # noqa: E402
from nada.model_store import ModelStore  # noqa: E402
from nada.nets.stylegan2 import Generator  # noqa: E402

from .fixtures import load_synth_weights  # noqa: E402
from .helpers import make_tiny_clip, make_tiny_generator  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (real-size models)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get("NADA_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow (real-size model): run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def synth():
    """The fixture weight rule: ``synth.synth_state_dict(manifest, seed)`` (skip, or fail under CI, if missing)."""
    return load_synth_weights()


@pytest.fixture
def tiny_generator() -> Generator:
    return make_tiny_generator()


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights cache in a temp dir, used instead of checkpoints/."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("NADA_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture(scope="session")
def tiny_clip():
    return make_tiny_clip()


@pytest.fixture(scope="module")
def store():
    """The app's model store in tiny mode (one per test module: models load once)."""
    return ModelStore(tiny=True)


@pytest.fixture
def session():
    """A browser session's styles, cleaned up after the test."""
    s = SessionStyles()
    yield s
    s.cleanup()
