"""The benchmark harness itself: a cheap case end to end, JSON output with the documented case names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.registry import all_cases

from .helpers import PROJECT_ROOT

DOCUMENTED = ["gen1024_b1", "gen1024_b4", "gen256_b8", "gen1024_fwdbwd_b2", "gen_sg3t_256", "gen_sg3t_1024",
              "adapt256_probe", "adapt256_noprobe", "adapt1024_probe", "e4e_enc", "e4e_encdec", "align"]


def test_every_documented_case_is_registered():
    assert set(DOCUMENTED) <= set(all_cases())


def test_bench_runs_a_case_and_writes_json(tmp_path):
    pytest.importorskip("dlib")
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--cases", "align", "--quick", "--json", str(out)],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())["cases"]["align"]
    assert result["median_s"] > 0 and result["peak_mib"] > 0 and result["n"] == 1
    assert "align" in proc.stdout and "machine:" in proc.stdout


def test_unknown_case_is_refused():
    proc = subprocess.run([sys.executable, "-m", "bench", "--cases", "nope"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 2 and "unknown cases" in proc.stderr


def test_the_profile_times_every_synthesis_block(tiny_generator):
    """bench.profile's per-layer map: one median per block (conv1, each conv, each ToRGB), all positive."""
    import torch

    from bench.profile import layer_seconds

    z = torch.randn(2, tiny_generator.style_dim)
    seconds = layer_seconds(tiny_generator, z, repeat=2)
    expected = {"conv1"} | {f"convs.{i}" for i in range(len(tiny_generator.convs))} | \
        {f"to_rgbs.{i}" for i in range(len(tiny_generator.to_rgbs))}
    assert set(seconds) == expected and all(s > 0 for s in seconds.values())
