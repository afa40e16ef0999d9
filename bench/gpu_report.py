"""``python -m bench.gpu_report OUT.json PARTS_DIR``: merge the parts of ``bench/gpu_check.sh`` into one JSON file and
print what they mean for ZeroGPU (seconds per adaptation step at the app's defaults, and how many steps fit).

``PARTS_DIR`` holds what the script's parts wrote: ``parts.tsv`` (name, exit status, seconds per part),
``adapt_tf32_off.json`` / ``adapt_tf32_on.json`` (``python -m bench`` of the adaptation cases with ``NADA_TF32=0/1``),
``zoo.json`` (the zoo cases: K compact styles in one batched step), ``hyper.json`` (a hypernetwork step and an
instant style), ``rehearsal.json`` (``python -m bench.rehearsal``)
and ``bench.json`` (the other benchmark cases). Missing or broken
parts are reported as such; the merge itself never fails on them. Run after every part, so the JSON file is
complete up to the last part that finished.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

STEPS = 300  # the app's default training steps (the Adapt tab's slider)
LOAD_S = 20.0  # allowance for moving the models onto the GPU at the start of a ZeroGPU call
BUDGETS_S = (60, 120, 180, 300)  # ZeroGPU call durations to size the step count for


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _parts(folder: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    try:
        lines = (folder / "parts.tsv").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        cells = line.split("\t")
        if len(cells) >= 3:
            rc = int(cells[1]) if cells[1].lstrip("-").isdigit() else cells[1]
            out[cells[0]] = {"rc": rc, "seconds": float(cells[2]) if cells[2].replace(".", "").isdigit() else None,
                             "timed_out": rc in (124, 137)}
    return out


def _device() -> dict:
    """The GPU as torch and nvidia-smi see it (``none`` without CUDA)."""
    info: dict = {}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_build"] = torch.version.cuda
        if torch.cuda.is_available():
            info["device_name"] = torch.cuda.get_device_name(0)
            props = torch.cuda.get_device_properties(0)
            info["total_memory_gib"] = round(props.total_memory / 2**30, 1)
            info["capability"] = f"{props.major}.{props.minor}"
        else:
            info["device_name"] = "none (no CUDA device)"
    except Exception as exc:  # a broken torch install still gets a report
        info["torch_error"] = f"{type(exc).__name__}: {exc}"
    if shutil.which("nvidia-smi"):
        try:
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_smi"] = f"failed: {exc}"
    return info


def _duration_formula() -> str | None:
    """What the app asks ZeroGPU for, for a 300-step run (``nada.app.adapt_tab.adapt_duration``), if it can be read."""
    try:
        from nada.app.adapt_tab import adapt_duration
        from nada.train import AdaptConfig

        return f"{adapt_duration({'config': AdaptConfig(iterations=STEPS)}):.0f} s for {STEPS} steps"
    except Exception:  # the app layer may be mid-change; the figure is informative only
        return None


def adapt_table(adapt: dict[str, dict | None]) -> dict[str, dict]:
    """{"<case>/tf32_<off|on>": {s_per_step, peak_mib, est_300_steps_s}} of every adaptation case measured."""
    out: dict[str, dict] = {}
    for tf32, data in adapt.items():
        for case, r in ((data or {}).get("cases") or {}).items():
            key = f"{case}/tf32_{tf32}"
            if "error" in r:
                out[key] = {"error": r["error"]}
                continue
            out[key] = {"s_per_step": round(r["median_s"], 4), "peak_mib": r.get("peak_mib"),
                        "peak_reserved_mib": r.get("peak_reserved_mib"),
                        f"est_{STEPS}_steps_s": round(r["median_s"] * STEPS, 1)}
    return out


def zerogpu_sizing(table: dict[str, dict], app_formula: bool = True) -> dict:
    """Seconds per step at the app's defaults (fp32, TF32 off, batch 2, two CLIPs; probe on and off) and the step
    counts that fit in common ZeroGPU call durations."""
    sizes = sorted({int(m.group(1)) for k in table if (m := re.match(r"adapt(\d+)_", k))}, reverse=True)
    if not sizes:
        return {}
    size = sizes[0]  # 1024 on the GPU; the quick CPU check runs 256
    out: dict = {"size": size, "settings": "batch 2, ViT-B/32 + ViT-B/16, float32, TF32 off; noprobe: every layer "
                                           "trains (the paper recipe), probe: 8 latents pick 2/3 of the rows"}
    for probe in ("noprobe", "probe"):
        r = table.get(f"adapt{size}_{probe}/tf32_off", {})
        if "s_per_step" not in r:
            continue
        s = r["s_per_step"]
        out[probe] = {"s_per_step": s, f"{STEPS}_steps_s": round(s * STEPS, 1),
                      "steps_in": {str(b): max(int((b - LOAD_S) / s), 0) for b in BUDGETS_S}}
    formula = _duration_formula() if app_formula else None
    if formula:
        out["app_requests"] = formula
    return out


def build_report(parts_dir: Path, app_formula: bool = True) -> dict:
    adapt = {tf32: _read_json(parts_dir / f"adapt_tf32_{tf32}.json") for tf32 in ("off", "on")}
    table = adapt_table(adapt)
    report = {
        "device": _device(),
        "parts": _parts(parts_dir),
        "adapt": table,
        "zerogpu": zerogpu_sizing(table, app_formula),
        "rehearsal": _read_json(parts_dir / "rehearsal.json"),
        "bench": _read_json(parts_dir / "bench.json"),
        "zoo": _read_json(parts_dir / "zoo.json"),
        "hyper": _read_json(parts_dir / "hyper.json"),
        "adapt_raw": adapt,
    }
    return report


def print_summary(report: dict) -> None:
    dev = report["device"]
    print(f"\ndevice: {dev.get('device_name')} ({dev.get('nvidia_smi', 'no nvidia-smi')}); torch {dev.get('torch')}")
    for name, part in report["parts"].items():
        state = "ok" if part["rc"] == 0 else ("TIMED OUT" if part["timed_out"] else f"exit {part['rc']}")
        print(f"part {name:<16} {state:<10} {part['seconds'] or 0:6.0f} s")
    if report["adapt"]:
        print(f"\n{'adaptation case':<36} {'s/step':>8} {'peak MiB':>9} {STEPS:>5} steps")
        for key, r in report["adapt"].items():
            if "error" in r:
                print(f"{key:<36} ERROR {r['error']}")
            else:
                print(f"{key:<36} {r['s_per_step']:8.3f} {r['peak_mib'] or 0:9.0f} "
                      f"{r[f'est_{STEPS}_steps_s']:8.0f} s")
    z = report["zerogpu"]
    if z:
        print(f"\nZeroGPU defaults at {z['size']} px ({z['settings']}):")
        for probe in ("noprobe", "probe"):
            if probe in z:
                r = z[probe]
                fits = ", ".join(f"{n} steps in {b} s" for b, n in r["steps_in"].items())
                print(f"  {probe:<8} {r['s_per_step']:.3f} s/step -> {STEPS} steps {r[f'{STEPS}_steps_s']:.0f} s; "
                      f"after ~{LOAD_S:.0f} s of loading: {fits}")
        if "app_requests" in z:
            print(f"  the app asks ZeroGPU for {z['app_requests']} (nada.app.adapt_tab.adapt_duration)")
    cases = (report.get("zoo") or {}).get("cases") or {}
    if cases:
        print(f"\n{'zoo case':<24} {'s/step':>8} {'s/style-step':>13} {'peak MiB':>9}")
        for name, r in cases.items():
            if "median_s" in r:
                print(f"{name:<24} {r['median_s']:8.3f} {r.get('s_per_style_step', 0):13.3f} "
                      f"{r.get('peak_mib', 0):9.0f}")
            else:
                print(f"{name:<24} {r.get('error', 'failed')}")
    hyper = (report.get("hyper") or {}).get("cases") or {}
    if hyper:
        print(f"\n{'hypernetwork case':<24} {'seconds':>8} {'s/prompt':>9} {'peak MiB':>9}")
        for name, r in hyper.items():
            if "median_s" in r:
                print(f"{name:<24} {r['median_s']:8.3f} {r.get('s_per_prompt', 0):9.3f} {r.get('peak_mib', 0):9.0f}")
            else:
                print(f"{name:<24} {r.get('error', 'failed')}")
    reh = report.get("rehearsal")
    if reh and reh.get("calls"):
        print(f"\nrehearsal ({reh.get('device')}): app start {reh.get('startup_s')} s, peak RSS "
              f"{reh.get('app_hwm_mib')} MiB, GPU {reh.get('gpu_peak_mib', 'n/a')} MiB")
        for c in reh["calls"]:
            print(f"  {c['label']:<60} {c['seconds']:7.1f} s  {'ok' if c['ok'] else 'FAILED ' + c['note']}")
    elif reh and reh.get("error"):
        print(f"\nrehearsal failed: {reh['error']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_report", description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the merged JSON file to write")
    p.add_argument("parts", help="the folder the parts wrote into")
    p.add_argument("--quiet", action="store_true", help="write the JSON only")
    args = p.parse_args(argv)
    report = build_report(Path(args.parts), app_formula=not args.quiet)  # quiet: no gradio import (seconds)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    if not args.quiet:
        print_summary(report)
        print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
