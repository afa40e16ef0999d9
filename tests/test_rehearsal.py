"""The rehearsal (the real app against a local hub, ``bench/rehearsal.py``) and the GPU check's plumbing
(``bench/gpu_check.sh``, ``bench/gpu_report.py``). The rehearsals are slow (real-size files: ~5 minutes on 2 CPU
cores; small files: ~1 minute) and skipped by default; the rest checks the scripts' wiring in about a second."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from bench.gpu_report import build_report, print_summary
from bench.registry import all_cases, default_cases

from .helpers import PROJECT_ROOT


def _rehearse(tmp_path, *extra: str) -> dict:
    out = tmp_path / "rehearsal.json"
    proc = subprocess.run([sys.executable, "-m", "bench.rehearsal", "--workdir", str(tmp_path / "work"), "--json",
                           str(out), *extra], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert [c["api"] for c in report["calls"]] == ["/generate"] * 4 + ["/invert"] * 2 + ["/adapt", "/upload_style"]
    assert all(c["ok"] for c in report["calls"]), report["calls"]
    assert report["app_hwm_mib"] > 0 and report["verdicts"] and report["estimates"]["adapt1024_fp32_gib"] > 0
    assert "app peak RSS" in proc.stdout
    return report


@pytest.mark.slow
def test_rehearsal_with_small_files(tmp_path):
    _rehearse(tmp_path, "--small")


@pytest.mark.slow
def test_rehearsal_with_real_size_files(tmp_path):
    report = _rehearse(tmp_path)
    assert report["download_gib"] > 2.5  # e4e 1.2 GB, two CLIPs ~0.6 GB each, ...


def test_gpu_check_script_parses_and_documents_itself():
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    script = PROJECT_ROOT / "bench" / "gpu_check.sh"
    assert subprocess.run([bash, "-n", str(script)]).returncode == 0
    help_text = subprocess.run([bash, str(script), "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "gpu_check.json" in help_text and "--quick" in help_text


def test_the_gpu_cases_exist_and_stay_out_of_the_default_run():
    cases = all_cases()
    for name in ("adapt1024_probe", "adapt1024_noprobe", "adapt1024_probe_bf16", "adapt1024_noprobe_bf16"):
        assert name in cases
    assert "adapt1024_probe" in default_cases() and "adapt1024_noprobe_bf16" not in default_cases()
    script = (PROJECT_ROOT / "bench" / "gpu_check.sh").read_text()
    listed = script.split("bench_args=(--cases ", 1)[1].split(")", 1)[0].split(",")
    assert set(listed) <= set(cases)  # the full run's case names are real


def test_gpu_report_merges_parts_and_sizes_zerogpu(tmp_path):
    def bench_json(s_noprobe: float, s_probe: float) -> dict:
        return {"machine": "test", "device": "cuda", "cases": {
            "adapt1024_noprobe": {"median_s": s_noprobe, "min_s": s_noprobe, "max_s": s_noprobe, "n": 3,
                                  "peak_mib": 9000.0, "peak_reserved_mib": 9500.0, "tf32": False},
            "adapt1024_probe": {"median_s": s_probe, "min_s": s_probe, "max_s": s_probe, "n": 3, "peak_mib": 9100.0},
            "adapt1024_probe_bf16": {"error": "timed out after 110 s"}}}

    (tmp_path / "adapt_tf32_off.json").write_text(json.dumps(bench_json(0.2, 0.5)))
    (tmp_path / "adapt_tf32_on.json").write_text(json.dumps(bench_json(0.1, 0.25)))
    (tmp_path / "rehearsal.json").write_text("{not json")  # a part cut short: reported as missing, no crash
    (tmp_path / "parts.tsv").write_text("adapt_tf32_off\t0\t80\nadapt_tf32_on\t0\t75\nrehearsal\t124\t240\n"
                                        "bench\tskipped\t0\n")
    report = build_report(tmp_path, app_formula=False)
    assert report["device"]["device_name"]  # "none (no CUDA device)" here
    assert report["parts"]["rehearsal"]["timed_out"] and report["parts"]["bench"]["rc"] == "skipped"
    assert report["adapt"]["adapt1024_noprobe/tf32_off"]["est_300_steps_s"] == 60.0
    assert report["adapt"]["adapt1024_probe_bf16/tf32_on"] == {"error": "timed out after 110 s"}
    z = report["zerogpu"]
    assert z["size"] == 1024 and z["noprobe"]["s_per_step"] == 0.2 and z["probe"]["300_steps_s"] == 150.0
    assert z["noprobe"]["steps_in"]["120"] == 500  # (120 s - 20 s of loading) / 0.2 s
    assert report["rehearsal"] is None and report["bench"] is None
    json.dumps(report)  # the merged file is plain JSON


def test_the_zoo_part_names_real_cases_and_its_figures_reach_the_report(tmp_path, capsys):
    script = (PROJECT_ROOT / "bench" / "gpu_check.sh").read_text()
    listed = script.split("zoo_args=(--quick --cases zoo1024", 1)[1].split(")", 1)[0]
    names = ("zoo1024" + listed).split(",")
    assert names == ["zoo1024_compact_k1", "zoo1024_compact_k8", "zoo1024_compact_k32"]
    assert set(names) <= set(all_cases()) and not set(names) & set(default_cases())
    zoo = {"machine": "test", "device": "cuda", "cases": {
        "zoo1024_compact_k1": {"median_s": 0.4, "peak_mib": 9000.0, "s_per_style_step": 0.4},
        "zoo1024_compact_k8": {"median_s": 1.6, "peak_mib": 30000.0, "s_per_style_step": 0.2},
        "zoo1024_compact_k32": {"error": "timed out after 60 s"}}}
    (tmp_path / "zoo.json").write_text(json.dumps(zoo))
    (tmp_path / "parts.tsv").write_text("zoo\t0\t100\n")
    report = build_report(tmp_path, app_formula=False)
    assert report["zoo"]["cases"]["zoo1024_compact_k8"]["s_per_style_step"] == 0.2
    print_summary(report)
    out = capsys.readouterr().out
    assert "zoo1024_compact_k8" in out and "0.200" in out and "timed out after 60 s" in out
