"""Shared test fixtures: tiny random models, the reference-fixture folder, offline hub settings."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the network in tests

from nada import tiny  # noqa: E402
from nada.stylegan2 import Generator  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = PROJECT_ROOT.parent / "shared" / "fixtures"


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
def fixtures_dir() -> Path:
    """``../shared/fixtures``, or a skip with the reason when it is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"reference fixtures not found at {FIXTURES} (they live in ../shared/fixtures beside the checkout)")
    return FIXTURES


def load_synth_weights():
    """The fixture weight rule (``../shared/fixtures/synth_weights.py``): ``synth_state_dict(manifest, seed)``."""
    spec = importlib.util.spec_from_file_location("synth_weights", FIXTURES / "synth_weights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def synth(fixtures_dir: Path):
    """The fixture weight rule: ``synth.synth_state_dict(manifest, seed)``."""
    return load_synth_weights()


def make_tiny_generator(seed: int = 0, **overrides) -> Generator:
    """A tiny random StyleGAN2 (32 px, 16 channels) with non-trivial weights, in eval mode."""
    return tiny.tiny_generator(seed, **overrides)


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


def put_in_hub_cache(cache: Path, repo_id: str, filename: str, payload: bytes, revision: str = "main") -> Path:
    """Lay a file out exactly as huggingface_hub caches it (``models--org--name/snapshots/<sha>/file``)."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / revision).write_text(sha)
    target = repo_dir / "snapshots" / sha / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)
    return target


make_tiny_clip = tiny.tiny_clip


@pytest.fixture(scope="session")
def tiny_clip():
    return make_tiny_clip()
