"""``python -m bench``: run benchmark cases, each in a fresh process (so peak memory is per case), print a table
and optionally write JSON ``{case: {"median_s": ..., "peak_mib": ...}}``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import torch

from nada.runtime import configure_torch, tune_allocator

from .common import peak_mib, summary, time_call
from .registry import all_cases, default_cases


def run_one(name: str, device_name: str, repeat: int, threads: int | None) -> dict:
    """Run one case in this process and return its figures."""
    if threads:
        torch.set_num_threads(threads)
    tune_allocator()  # as the CLI and the app do; NADA_NO_MALLOC_TUNING=1 measures the untuned allocator
    device = torch.device(device_name)
    tf32 = configure_torch()  # as the CLI and the app do: TF32 only with NADA_TF32=1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    setup = all_cases()[name]
    fn = setup(device)
    extra = {}
    if isinstance(fn, tuple):  # (callable, callable returning extra figures)
        fn, extra_fn = fn
    else:
        extra_fn = None
    times = time_call(fn, device, repeat=repeat, warmup=1)
    out = {**summary(times), "peak_mib": round(peak_mib(device), 1)}
    if device.type == "cuda":  # the allocator's reserve (what nvidia-smi sees, less the context) and the TF32 switch
        out.update(peak_reserved_mib=round(torch.cuda.max_memory_reserved(device) / 2**20, 1), tf32=tf32)
    if extra_fn is not None:
        extra = extra_fn()
    return {**out, **extra}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """A one-line description of where the numbers came from: the device, and the CPU's capability (AVX2 and
    AVX-512 machines differ by up to 2x here), cores, threads and torch version."""
    cpu = f"{cpu_model()}, CPU capability {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores, " \
          f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    return f"{torch.cuda.get_device_name(0)}; {cpu}" if torch.cuda.is_available() else cpu


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # subprocess.run kills its child on the way out


def main(argv: list[str] | None = None) -> int:
    cases = all_cases()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cases", default=",".join(default_cases()),
                   help="comma-separated subset of: " + ", ".join(cases) + " (default: all but "
                        + ", ".join(n for n in cases if n not in default_cases()) + ")")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per case (median reported)")
    p.add_argument("--quick", action="store_true", help="one timed run per case")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--case-timeout", type=float, default=None, help="seconds per case (its process is killed after)")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run a single case, print JSON
    args = p.parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.device, repeat, args.threads)), flush=True)
        return 0
    signal.signal(signal.SIGTERM, _terminated)  # a time limit's SIGTERM also ends the running case's process
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [n for n in names if n not in cases]
    if unknown:
        p.error(f"unknown cases {unknown}; known: {', '.join(cases)}")
    results: dict = {}
    print(f"machine: {machine()}, device {args.device}", flush=True)

    def write_json() -> None:  # after every case, so a run cut short still leaves the cases it finished
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"machine": machine(), "device": args.device, "cases": results},
                                                  indent=1))

    for name in names:
        cmd = [sys.executable, "-m", "bench", "--one", name, "--device", args.device, "--repeat", str(repeat)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                                  timeout=args.case_timeout)
        except subprocess.TimeoutExpired:
            results[name] = {"error": f"timed out after {args.case_timeout:g} s"}
            print(f"{name:<20} ERROR {results[name]['error']}", flush=True)
            write_json()
            continue
        except KeyboardInterrupt:  # Ctrl-C or a time limit's SIGTERM: the case's process is gone; report the rest
            results[name] = {"error": "interrupted"}
            print(f"{name:<20} ERROR interrupted", flush=True)
            write_json()
            break
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            results[name] = {"error": tail[0][:300]}
        else:
            results[name] = json.loads(line[len("RESULT "):])
        r = results[name]
        print(f"{name:<20} " + (f"{r['median_s']:9.3f} s  {r['peak_mib']:9.0f} MiB" if "error" not in r
                                  else "ERROR " + r["error"]), flush=True)
        write_json()
    print(f"\nmachine: {machine()}, device {args.device}")
    print(f"{'case':<20} {'median s':>10} {'min s':>9} {'peak MiB':>10}  extra")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<20} ERROR {r['error']}")
            continue
        extra = {k: v for k, v in r.items() if k not in {"median_s", "min_s", "max_s", "n", "peak_mib"}}
        print(f"{name:<20} {r['median_s']:10.3f} {r['min_s']:9.3f} {r['peak_mib']:10.0f}  "
              + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items()))
    write_json()
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
