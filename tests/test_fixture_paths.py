"""Missing reference fixtures skip a test locally but fail it under CI, naming the path (tests/fixtures.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .fixtures import fixture_path, fixtures_root
from .helpers import PROJECT_ROOT

ONE_FIXTURE_TEST = "tests/test_stylegan2.py::test_state_dict_matches_rosinality_manifest[256_cm1]"


def test_lookup_honours_nada_fixtures(tmp_path, monkeypatch):
    (tmp_path / "stylegan2").mkdir()
    (tmp_path / "stylegan2" / "manifest.json").write_text("{}")
    monkeypatch.setenv("NADA_FIXTURES", str(tmp_path))
    assert fixtures_root() == tmp_path
    assert fixture_path("stylegan2", "manifest.json") == tmp_path / "stylegan2" / "manifest.json"
    monkeypatch.delenv("NADA_FIXTURES")
    assert fixtures_root() == PROJECT_ROOT.parent / "shared" / "fixtures"


@pytest.mark.parametrize("ci, outcome", [("1", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_fixture_fails_under_ci_and_skips_otherwise(tmp_path, monkeypatch, ci, outcome):
    monkeypatch.setenv("NADA_FIXTURES", str(tmp_path))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="reference fixture missing") as exc:
        fixture_path("stylegan2", "manifest_256_cm1.json")
    assert str(tmp_path / "stylegan2" / "manifest_256_cm1.json") in str(exc.value)


def _run_pytest_on_one_fixture_test(fixtures: Path, ci: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(NADA_FIXTURES=str(fixtures), HF_HUB_OFFLINE="1", COLUMNS="1000")
    if ci is not None:
        env["CI"] = ci
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", ONE_FIXTURE_TEST],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_real_fixture_test_fails_loudly_under_ci_and_skips_locally(tmp_path):
    empty = tmp_path / "no-fixtures"
    empty.mkdir()
    wanted = str(empty / "stylegan2" / "manifest_256_cm1.json")
    under_ci, local = _run_pytest_on_one_fixture_test(empty, "1"), _run_pytest_on_one_fixture_test(empty, None)
    out_ci, _ = under_ci.communicate(timeout=120)
    out_local, _ = local.communicate(timeout=120)
    assert under_ci.returncode == 1, out_ci
    assert "1 failed" in out_ci and f"reference fixture missing: {wanted}" in out_ci, out_ci
    assert local.returncode == 0, out_local
    assert "1 skipped" in out_local and f"reference fixture missing: {wanted}" in out_local, out_local
