"""``python -m bench.rehearsal``: the real app, end to end, against a local hub serving real-size random weights.

What a Space does on its first day, rehearsed on this machine: a local stand-in for the Hugging Face hub
(:mod:`bench.local_hub`) serves files of the real architectures and byte sizes with random weights
(:mod:`bench.hub_files` at full size: the 1024 px FFHQ generator with ``latent_avg``, the e4e encoder file (1.2 GB),
CLIP ViT-B/32 and ViT-B/16 (the safetensors files the registry prefers), IR-SE50, the dlib landmark model, and the
published style ``nada-pixar`` padded to the registry's byte size). Then:

1. ``python -m nada download ...`` fills an empty weights cache from it (timed; sizes checked),
2. ``python app.py`` starts in a subprocess (``GRADIO_SERVER_PORT`` a free port, the environment from ``hub_env``),
3. ``gradio_client`` drives it: Generate (no style, then ``nada-pixar``), Invert (the example photo, no style, then
   ``nada-pixar``), a short Adapt with the identity loss on, and an upload of the style ``.pt`` file,

timing each call (wall seconds, as a client sees them) and sampling the app's resident memory (``/proc``: the app
process and any worker processes it forks; ``VmHWM`` of the app process is its own peak) and, on CUDA, the GPU
memory ``nvidia-smi`` reports for it. The table and ``--json PATH`` also give the ``nada.memory`` estimate of an
adaptation step at 1024 px and what both say about a CPU Space (2 vCPU, 16 GB) and a 16 GB GPU.

Inputs are passed by the handlers' parameter names (``app.py`` wires components by name), so a reordering of the
app's inputs does not break the rehearsal. ``--workdir DIR`` keeps the built files (a rerun reuses them; the weights
cache is emptied each run unless ``--keep-cache``). Adapt defaults to 3 steps without probing: at 1024 px a probed
step takes ~40 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.jpg"
STYLE = "nada-pixar"
# What the rehearsal serves: (registry name, first mirror only). The app asks for the first mirror of each.
ASSETS = ("ffhq", STYLE, "e4e-ffhq", "clip-vit-b32", "clip-vit-b16", "arcface-ir-se50", "dlib-landmarks")
GIB = 2**30
CPU_SPACE_RAM = 16 * 10**9  # "CPU basic" Space: 2 vCPU, 16 GB RAM
GPU_16GB = 16 * 10**9  # a 16 GB GPU (T4 class); the CUDA context and allocator slack take ~1 GiB of it
CUDA_OVERHEAD = 1 * GIB


# ------------------------------------------------------------------------------------------------- files, hub
def build_files(hub_root: Path, small: bool = False, quiet: bool = False) -> float:
    """Write the files under ``hub_root`` (skipping those already there at the right size); seconds. ``small``: the
    test suite's small files (the published style still padded to its recorded size), to check the script itself."""
    from nada.registry import REGISTRY

    from .hub_files import populate, published_nbytes
    from .local_hub import LocalHub

    t0 = time.perf_counter()
    layout = LocalHub(hub_root)  # not started: only its folder layout is used here
    done = hub_root / ".complete"
    built = set(done.read_text().split("\n")) if done.is_file() else set()
    for name in ASSETS:
        asset = REGISTRY[name]
        mirror = asset.mirrors[0]
        entry = (asset.kind, mirror.repo_id, mirror.filename)
        key = f"{mirror.repo_id}/{mirror.filename}"
        path = layout.path(mirror.repo_id, mirror.filename)
        want = published_nbytes(mirror.repo_id, mirror.filename)
        if key in built and path.is_file() and (want is None or path.stat().st_size == want):
            continue
        t1 = time.perf_counter()
        populate(layout, [entry], small=small, match_sizes=True)
        built.add(key)
        done.write_text("\n".join(sorted(built)))
        if not quiet:
            print(f"  built {key}: {path.stat().st_size / 2**20:,.0f} MiB in {time.perf_counter() - t1:.1f} s",
                  flush=True)
    return time.perf_counter() - t0


def serve(hub_root: Path):
    """A started LocalHub serving every file under ``hub_root`` (ETags computed now)."""
    from nada.registry import REGISTRY

    from .local_hub import LocalHub

    hub = LocalHub(hub_root)
    for name in ASSETS:
        mirror = REGISTRY[name].mirrors[0]
        hub.add(mirror.repo_id, mirror.filename, hub.path(mirror.repo_id, mirror.filename))
    return hub.start()


def _die_with_parent() -> None:
    """In the app's process, before exec: ask Linux to send it SIGTERM when the rehearsal dies (even by SIGKILL),
    so a rehearsal cut short by a time limit never leaves the app holding the port and the GPU."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -------------------------------------------------------------------------------------------------- memory
def _status_kib(pid: int, field_name: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``/proc/<pid>/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                pass
    return out


def gpu_mib_by_pid() -> dict[int, float]:
    """{pid: MiB} of the processes ``nvidia-smi`` lists on the GPU (empty without nvidia-smi)."""
    if not shutil.which("nvidia-smi"):
        return {}
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[int, float] = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            try:
                found[int(parts[0])] = float(parts[1])
            except ValueError:
                pass
    return found


class Sampler:
    """Samples the resident memory of a process tree (and its GPU memory) in a thread; per-call peaks."""

    def __init__(self, pid: int, period_s: float = 0.1, gpu: bool = False) -> None:
        self.pid, self.period_s, self.gpu = pid, period_s, gpu
        self.window_rss = 0  # KiB, since the last reset
        self.window_gpu = 0.0  # MiB, since the last reset
        self.max_gpu = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._last_gpu = 0.0

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self.window_rss, self.window_gpu = 0, 0.0

    def _run(self) -> None:
        last_gpu_poll = 0.0
        while not self._stop.is_set():
            pids = process_tree(self.pid)
            rss = sum(_status_kib(p, "VmRSS") for p in pids)
            if self.gpu and time.monotonic() - last_gpu_poll > 1.0:
                last_gpu_poll = time.monotonic()
                by_pid = gpu_mib_by_pid()
                mine = [by_pid[p] for p in pids if p in by_pid]
                # in a container nvidia-smi may show host pids: then all compute processes are counted
                self._last_gpu = sum(mine) if mine else sum(by_pid.values())
            with self._lock:
                self.window_rss = max(self.window_rss, rss)
                self.window_gpu = max(self.window_gpu, self._last_gpu)
                self.max_gpu = max(self.max_gpu, self._last_gpu)
            self._stop.wait(self.period_s)

    def hwm_mib(self) -> float:
        """Peak resident memory of the app process itself so far (``VmHWM``), MiB."""
        return _status_kib(self.pid, "VmHWM") / 1024


# --------------------------------------------------------------------------------------------------- calls
@dataclass
class Call:
    """One rehearsed API call and what it cost."""

    label: str
    api: str
    kwargs: dict
    check: object = None  # callable(result) -> str note, raising on a wrong result
    seconds: float = 0.0
    rss_peak_mib: float = 0.0  # peak resident memory of the app's process tree during the call (sampled)
    hwm_mib: float = 0.0  # VmHWM of the app process after the call (its peak so far)
    gpu_peak_mib: float | None = None
    ok: bool = False
    note: str = ""
    extra: dict = field(default_factory=dict)


def _images(gallery) -> int:
    return len(gallery or [])


def check_generate(n: int, styled: bool):
    def check(result) -> str:
        source, styled_gallery, files, info = result[:4]
        assert _images(source) == n, f"{_images(source)} source images, expected {n}"
        assert _images(styled_gallery) == (n if styled else 0), "styled gallery size"
        assert files, "no download files"
        return str(info)[:80]
    return check


def check_invert(n_styles: int):
    def check(result) -> str:
        aligned, reconstruction, gallery = result[:3]
        assert aligned and reconstruction, "missing aligned face or reconstruction"
        assert _images(gallery) == n_styles, f"{_images(gallery)} styled images, expected {n_styles}"
        return f"{n_styles} style(s)"
    return check


def check_adapt(result) -> str:
    status = next((r for r in result if isinstance(r, str) and "Training" in r), None)
    assert status and ("finished" in status or "stopped" in status), f"unexpected final outputs: {str(result)[:300]}"
    return status.split(".")[0]


def check_upload(result) -> str:
    text = json.dumps(result, default=str)
    assert "session:" in text, f"the uploaded style is not selected: {text[:300]}"
    return "style added"


PROBE_ROWS = 12  # W+ rows trained per step with --probe: 2/3 of 18, as the "shape" recipe (all 18: nothing to probe)


def adapt_kwargs(steps: int, probe: bool, lambda_id: float) -> dict:
    """The Adapt tab's inputs by parameter name (``nada.app.adapt_tab.adapt_stream``). Without ``probe`` every
    convolution trains (the "paper" recipe); with it the probe picks :data:`PROBE_ROWS` rows each step."""
    return {"source": "ffhq", "source_text": "Photo", "target_text": "Sketch", "iterations": steps,
            "layers_k": PROBE_ROWS if probe else 0,
            "probe": probe, "clip_names": ["clip-vit-b32", "clip-vit-b16"], "lambda_direction": 1.0,
            "lambda_global": 0.0, "lambda_id": lambda_id, "lambda_l2": 0.0, "seed": 0, "lr": 0.002, "batch_size": 2}


def plan(style_file: Path, steps: int, probe: bool) -> list[Call]:
    """The calls, in order: Generate and Invert first (so the peak before Adapt is what a CPU Space would need)."""
    from gradio_client import handle_file

    gen = {"seed": 0, "truncation": 0.7, "n_images": 1, "strength": 1.0}
    photo = handle_file(str(PHOTO))
    return [
        Call("generate (cold: loads ffhq)", "/generate", {"style": "none", **gen}, check_generate(1, False)),
        Call("generate (warm)", "/generate", {"style": "none", **gen}, check_generate(1, False)),
        Call(f"generate {STYLE} (imports it)", "/generate", {"style": STYLE, **gen}, check_generate(1, True)),
        Call(f"generate {STYLE} x4 (warm)", "/generate", {"style": STYLE, **{**gen, "n_images": 4}},
             check_generate(4, True)),
        Call("invert (cold: e4e, dlib)", "/invert", {"image": photo, "styles": [], "strength": 1.0}, check_invert(0)),
        Call(f"invert + {STYLE} (warm)", "/invert", {"image": photo, "styles": [STYLE], "strength": 1.0},
             check_invert(1)),
        Call(f"adapt {steps} steps, id loss, {'probe' if probe else 'no probe'} (cold: CLIPs, ArcFace)", "/adapt",
             adapt_kwargs(steps, probe, 0.1), check_adapt),
        Call(f"upload_style (.pt, {style_file.stat().st_size / 2**20:.0f} MiB)", "/upload_style",
             {"file": handle_file(str(style_file))}, check_upload),
    ]


def api_parameters(client) -> dict[str, list[str]]:
    """{api name: its parameter names} as the running app describes them."""
    try:
        api = client.view_api(return_format="dict", print_info=False)
    except Exception:  # an older or newer client: pass every input and let the call say what is wrong
        return {}
    return {name: [p["parameter_name"] for p in ep.get("parameters", [])]
            for name, ep in api.get("named_endpoints", {}).items()}


def run_call(client, call: Call, sampler: Sampler, timeout_s: float, retries: int = 1,
             known: dict[str, list[str]] | None = None) -> Call:
    """Submit one call, wait for its final output, and record time and memory (one retry after a failure).
    Inputs the app does not take (``known``: its parameter names) are left out and named in the note."""
    names = (known or {}).get(call.api)
    dropped = [k for k in call.kwargs if names is not None and k not in names]
    kwargs = {k: v for k, v in call.kwargs.items() if k not in dropped}
    for attempt in range(retries + 1):
        sampler.reset()
        t0 = time.perf_counter()
        try:
            job = client.submit(api_name=call.api, **kwargs)
            result = job.result(timeout=timeout_s)
            call.seconds = time.perf_counter() - t0
            call.note = call.check(result) if call.check else ""
            call.note += f" (the app takes no {', '.join(dropped)})" if dropped else ""
            call.ok = True
        except Exception as exc:  # an app error, a timeout or a wrong result: recorded, the rehearsal goes on
            call.seconds = time.perf_counter() - t0
            call.ok = False
            call.note = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        time.sleep(0.3)  # one more memory sample after the call
        call.rss_peak_mib = sampler.window_rss / 1024
        call.hwm_mib = sampler.hwm_mib()
        call.gpu_peak_mib = sampler.window_gpu if sampler.gpu else None
        if call.ok or attempt == retries:
            return call
        print(f"  {call.label}: {call.note}; retrying in 10 s", flush=True)
        time.sleep(10)
    return call


# ------------------------------------------------------------------------------------------------ estimates
def memory_estimates() -> dict:
    """``nada.memory.estimate_adapt_bytes`` at 1024 px, batch 2, probe batch 8 in micro-batches of 2, two CLIPs."""
    import torch

    from nada.memory import estimate_adapt_bytes
    from nada.nets.stylegan2 import Generator

    with torch.no_grad():
        g = Generator(1024)
    out = {}
    for bf16 in (False, True):  # the probe micro-batch (2) equals the batch: with or without the probe, the same
        nbytes = estimate_adapt_bytes(g, n_clip=2, batch_size=2, probe_batch=8, probe_micro_batch=2, bf16=bf16,
                                      clip_params=151_000_000)  # ViT-B/32 151.3M, ViT-B/16 149.6M parameters
        out[f"adapt1024_{'bf16' if bf16 else 'fp32'}_gib"] = round(nbytes / GIB, 2)
    return out


def verdicts(calls: list[Call], estimates: dict, device: str) -> dict[str, str]:
    """Plain-language fit verdicts from the measured peaks and the estimate."""
    before_adapt = [c for c in calls if c.api in ("/generate", "/invert")]
    peak = max((max(c.rss_peak_mib, c.hwm_mib) for c in before_adapt), default=0.0)
    slowest = max((c.seconds for c in before_adapt if "cold" not in c.label), default=0.0)
    ok = all(c.ok for c in before_adapt)
    out = {}
    if device == "cpu" and ok:
        fits = peak * 2**20 < 0.8 * CPU_SPACE_RAM
        out["cpu_space_generate_invert"] = (
            f"{'fits' if fits else 'does NOT fit'}: peak RSS {peak / 1024:.1f} GiB with the generator, a published "
            f"style, e4e and dlib loaded (limit 16 GB); warm calls take up to {slowest:.1f} s on "
            f"{os.cpu_count()} CPU cores, a CPU Space has 2 vCPU")
    adapt = [c for c in calls if c.api == "/adapt" and c.ok]
    for precision in ("fp32", "bf16"):
        need = estimates[f"adapt1024_{precision}_gib"] * GIB + CUDA_OVERHEAD
        out[f"gpu16_adapt1024_{precision}"] = (
            f"{'fits' if need < GPU_16GB else 'does NOT fit'} (estimate): {need / GIB:.1f} GiB with the probe "
            f"(batch 2, probe 8 in micro-batches of 2, two CLIPs, incl. ~1 GiB CUDA context) of a 16 GB "
            f"({GPU_16GB / GIB:.1f} GiB) GPU")
    if adapt and device == "cuda" and adapt[0].gpu_peak_mib:
        out["gpu_adapt_measured"] = f"measured GPU peak of the app during Adapt: {adapt[0].gpu_peak_mib / 1024:.1f} GiB"
    return out


# ----------------------------------------------------------------------------------------------------- main
def machine_line() -> str:
    try:
        from .__main__ import machine

        line = machine()
    except Exception:  # torch missing or broken: still describe the CPU
        line = f"{platform.machine()}, {os.cpu_count()} cores"
    try:
        cpu = next(x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                   if x.startswith("model name"))
        line = f"{cpu}; {line}"
    except (OSError, StopIteration):
        pass
    try:
        mem = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines()
                   if x.startswith("MemTotal:"))
        line += f", {mem / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return line


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    """Wait until the app answers on ``url`` (RuntimeError if it exits or takes longer than ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the app did not answer on {url} within {timeout_s:.0f} s")


def download(env: dict, log: Path) -> tuple[float, int]:
    """``python -m nada download`` of every served asset (no verify: the app loads them anyway)."""
    t0 = time.perf_counter()
    with log.open("a") as f:
        proc = subprocess.run([sys.executable, "-m", "nada", "download", *ASSETS, "--no-verify"], env=env, cwd=ROOT,
                              stdout=f, stderr=subprocess.STDOUT, timeout=1800)
    return time.perf_counter() - t0, proc.returncode


def print_table(report: dict) -> None:
    print(f"\nmachine: {report['machine']}; device {report['device']}; 1-min load average "
          f"{report['loadavg_start']:.1f} at the start, {report.get('loadavg_end', 0):.1f} at the end")
    print(f"build files {report['build_s']:.1f} s · download {report['download_s']:.1f} s "
          f"({report['download_gib']:.2f} GiB) · app start {report['startup_s']:.1f} s "
          f"(RSS {report['startup_rss_mib']:,.0f} MiB)")
    gpu = report["device"] == "cuda"
    print(f"{'call':<60} {'s':>7} {'peak RSS MiB':>13} {'VmHWM MiB':>10}" + (f" {'GPU MiB':>8}" if gpu else "")
          + "  result")
    for c in report["calls"]:
        print(f"{c['label']:<60} {c['seconds']:7.1f} {c['rss_peak_mib']:13,.0f} {c['hwm_mib']:10,.0f}"
              + (f" {c['gpu_peak_mib'] or 0:8,.0f}" if gpu else "") + f"  {'ok' if c['ok'] else 'FAILED'} "
              f"{c['note']}")
    print(f"app peak RSS (VmHWM): {report['app_hwm_mib']:,.0f} MiB; process tree peak {report['tree_peak_mib']:,.0f}"
          " MiB")
    for k, v in report["estimates"].items():
        print(f"estimate {k}: {v} GiB")
    for k, v in report["verdicts"].items():
        print(f"{k}: {v}")


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def save(report: dict, path: str | None) -> None:
    """Write the report so far (after every call: a rehearsal cut short keeps what it measured)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(report, indent=1))


def _call_record(c: Call) -> dict:
    return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in vars(c).items()
            if k not in ("kwargs", "check", "extra")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rehearsal", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="NADA_DEVICE for the app")
    p.add_argument("--workdir", default=None, help="keep the built files here (reused by a rerun)")
    p.add_argument("--keep-cache", action="store_true", help="reuse the weights cache of a previous run")
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument("--steps", type=int, default=3, help="Adapt steps (default 3)")
    p.add_argument("--probe", action="store_true",
                   help=f"probe layers in Adapt, training {PROBE_ROWS} of 18 rows (~40 s/step at 1024 on 2 CPU cores)")
    p.add_argument("--preload", action="store_true", help="NADA_PRELOAD=1: the app loads ffhq and the CLIPs at start")
    p.add_argument("--call-timeout", type=float, default=1200, help="seconds per call")
    p.add_argument("--small", action="store_true", help="small random files (checks the script in ~1 min)")
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]  # before this rehearsal adds its own work
    signal.signal(signal.SIGTERM, _terminated)  # `timeout` sends SIGTERM: clean up (stop the app) on the way out

    from gradio_client import Client

    from .local_hub import hub_env

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="nada-rehearsal-"))
    work.mkdir(parents=True, exist_ok=True)
    hub_root, cache, log = work / ("hub-small" if args.small else "hub"), work / "cache", work / "app.log"
    if cache.exists() and not args.keep_cache:
        shutil.rmtree(cache)
    cache.mkdir(exist_ok=True)
    log.write_text("")
    print(f"rehearsal in {work}: building {'small' if args.small else 'real-size'} files (random weights)...",
          flush=True)
    build_s = build_files(hub_root, args.small)
    hub = serve(hub_root)
    proc = sampler = None
    report: dict = {"machine": machine_line(), "device": args.device, "small_files": args.small,
                    "build_s": round(build_s, 1),
                    "adapt_steps": args.steps, "adapt_probe": args.probe, "preload": args.preload,
                    "loadavg_start": load_before}  # other work on the machine slows every figure down
    try:
        env = {**os.environ, **hub_env(hub, cache), "GRADIO_ANALYTICS_ENABLED": "False", "NADA_DEVICE": args.device,
               "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(free_port())}
        env.pop("NADA_TINY", None)
        if args.preload:
            env["NADA_PRELOAD"] = "1"
        print("downloading into an empty cache (python -m nada download)...", flush=True)
        report["download_s"], rc = download(env, log)
        report["download_gib"] = round(sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()
                                           and not f.is_symlink()) / GIB, 2)
        if rc:
            raise RuntimeError(f"`python -m nada download` failed (exit {rc}); see {log}")
        print("starting the app...", flush=True)
        t0 = time.perf_counter()
        with log.open("a") as f:
            proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        sampler = Sampler(proc.pid, gpu=args.device == "cuda").start()
        url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
        wait_ready(url, proc, 600)
        report["startup_s"] = round(time.perf_counter() - t0, 1)
        report["startup_rss_mib"] = round(sampler.hwm_mib(), 0)
        client = Client(url, verbose=False)
        known = api_parameters(client)
        calls = []
        for call in plan(hub.path("rinong/stylegan-nada-models", "pixar.pt"), args.steps, args.probe):
            print(f"  {call.label}...", flush=True)
            calls.append(run_call(client, call, sampler, args.call_timeout, known=known))
            c = calls[-1]
            print(f"    {'ok' if c.ok else 'FAILED'} {c.seconds:.1f} s, peak RSS {c.rss_peak_mib:,.0f} MiB"
                  f"{'' if c.gpu_peak_mib is None else f', GPU {c.gpu_peak_mib:,.0f} MiB'} {c.note}", flush=True)
            report["calls"] = [_call_record(c) for c in calls]
            save(report, args.json)
        client.close()
        report["loadavg_end"] = os.getloadavg()[0]
        report["app_hwm_mib"] = round(sampler.hwm_mib(), 0)
        report["tree_peak_mib"] = round(max(c.rss_peak_mib for c in calls), 0)
        if args.device == "cuda":
            report["gpu_peak_mib"] = round(sampler.max_gpu, 0)
        report["estimates"] = memory_estimates()
        report["verdicts"] = verdicts(calls, report["estimates"], args.device)
        ok = all(c.ok for c in calls)
    except (Exception, KeyboardInterrupt) as exc:  # report what was measured so far
        report["error"] = f"{type(exc).__name__}: {exc}"
        ok = False
        tail = log.read_text().strip().splitlines()[-15:] if log.is_file() else []
        print(f"rehearsal failed: {report['error']}\n" + "\n".join(tail), file=sys.stderr)
    finally:
        if sampler is not None:
            sampler.stop()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        hub.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    if "verdicts" in report:
        print_table(report)
    save(report, args.json)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
