"""Plain helpers the tests import: the project root, tiny random models, a hub cache laid out by hand.

(pytest fixtures and hooks live in ``conftest.py``; reference-fixture files are found with ``tests/fixtures.py``.)
"""

from __future__ import annotations

from pathlib import Path

from nada import tiny
from nada.stylegan2 import Generator

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def make_tiny_generator(seed: int = 0, **overrides) -> Generator:
    """A tiny random StyleGAN2 (32 px, 16 channels) with non-trivial weights, in eval mode."""
    return tiny.tiny_generator(seed, **overrides)


make_tiny_clip = tiny.tiny_clip  # a tiny random OpenAI-architecture CLIP, frozen


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
