"""Soak test: the app under several simulated users for minutes; nothing may fail, leak or cross sessions.

``python -m bench.soak --users 8 --minutes 5`` starts ``app.py`` in its own process on a free port (tiny models,
``NADA_TINY=1``; ``--real`` for the real-size models, whose weights must be cached) and drives it with one
``gradio_client.Client`` per user, i.e. one browser session each. Every user loops through: Generate (random seed,
a ready-made style), Invert (``examples/astronaut.jpg``), one training run stopped after its first preview (then
Generate with that style, and uploads of the style file it downloaded), and a probe of session isolation: a request
for another user's style, which must be refused. Every style name a user sees must be its own.

It reports requests served and failures per endpoint, p50/p95 latency, and the server's RSS over time, and exits 1
when a request failed, isolation broke, or RSS grew over the second half of the run (``--max-growth-mb``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut.jpg"
SESSION = "session:"


@dataclass(frozen=True)
class Mode:
    """What the simulated users ask for: tiny models, or the real ones (weights cached)."""

    tiny: bool
    generate_style: str  # a ready-made style for Generate
    invert_styles: tuple[str, ...]  # styles for Invert
    source: str  # the generator trained
    steps: int  # a training run's length (it is stopped after its first preview)

    def adapt_kwargs(self, user: int) -> dict:
        """The Adapt tab's inputs (``nada.app.adapt_tab.adapt_stream``), a target text that names the user."""
        return {"source": self.source, "source_text": "Photo", "target_text": f"Sketch u{user}",
                "iterations": self.steps, "layers_k": 0, "probe": False, "clip_names": ["clip-vit-b32"],
                "lambda_direction": 1.0, "lambda_global": 0.0, "lambda_id": 0.0, "lambda_l2": 0.0, "seed": user,
                "lr": 0.002, "batch_size": 1}


TINY = Mode(True, "tiny-demo", ("tiny-invert-demo",), "tiny", 100)
REAL = Mode(False, "none", (), "ffhq", 300)


@dataclass
class Tally:
    """Latencies and failures per endpoint, and isolation breaches; shared by the user threads."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    probes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def served(self, endpoint: str, seconds: float) -> None:
        """Record one request served in ``seconds``."""
        with self.lock:
            self.latencies.setdefault(endpoint, []).append(seconds)

    def failed(self, endpoint: str, user: int, exc: BaseException) -> None:
        """Record one failed request, with the first line of its error."""
        text = str(exc).strip().splitlines()
        with self.lock:
            self.failures.append(f"user {user} {endpoint}: {type(exc).__name__}: {text[0][:200] if text else ''}")


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(mode: Mode, port: int, log: Path) -> subprocess.Popen:
    """``python app.py`` on ``port``, its output in ``log``; returns once the page answers."""
    import httpx

    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_ANALYTICS_ENABLED": "False", "NADA_TINY": "1" if mode.tiny else "0"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/config", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the app did not answer within 180 s:\n{log.read_text()[-2000:]}")


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux ``/proc``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample_rss(pid: int, t0: float, stop: threading.Event, samples: list[tuple[float, float]],
               every_s: float = 2.0) -> None:
    """Append (seconds since ``t0``, RSS MiB) every ``every_s`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            samples.append((time.monotonic() - t0, rss_mib(pid)))
        except OSError:
            return
        stop.wait(every_s)


def foreign_styles(result, user: int) -> list[str]:
    """The session style names in a result's dropdown updates that are not this user's (empty when all are)."""
    text = json.dumps(result, default=str)
    names = set(re.findall(rf'"{SESSION}([a-z0-9_-]+)"', text))
    return sorted(n for n in names if re.search(r"u(\d+)", n) is None or re.search(r"u(\d+)", n)[1] != str(user))


class User:
    """One browser session: its own client, its own styles."""

    def __init__(self, url: str, index: int, mode: Mode, tally: Tally, known: dict[int, list[str]]) -> None:
        from gradio_client import Client

        self.client = Client(url, verbose=False)
        self.index, self.mode, self.tally, self.known = index, mode, tally, known
        self.style_file: str | None = None
        self.styles: list[str] = []  # this session's style names
        self.rng = random.Random(index)

    def call(self, endpoint: str, **kwargs):
        """One request; its latency or failure recorded; None when it failed."""
        t0 = time.perf_counter()
        try:
            result = self.client.predict(api_name=f"/{endpoint}", **kwargs)
        except Exception as exc:  # recorded: any failure of a valid request fails the soak
            self.tally.failed(endpoint, self.index, exc)
            return None
        self.tally.served(endpoint, time.perf_counter() - t0)
        return result

    def check_names(self, result) -> None:
        """Record a breach when ``result`` offers this user another session's style."""
        foreign = foreign_styles(result, self.index)
        if foreign:
            with self.tally.lock:
                self.tally.breaches.append(f"user {self.index} was offered other sessions' styles {foreign}")

    def generate(self, style: str | None = None) -> None:
        """Two images from a random seed, with ``style`` or the mode's ready-made one."""
        self.call("generate", style=style or self.mode.generate_style, seed=self.rng.randrange(2**31),
                  truncation=0.7, n_images=2, strength=1.0)

    def invert(self) -> None:
        """The example photo, in the mode's styles."""
        from gradio_client import handle_file

        self.call("invert", image=handle_file(str(PHOTO)), styles=list(self.mode.invert_styles), strength=1.0)

    def train(self) -> None:
        """One run, stopped once it shows its first preview; its style then serves Generate and uploads."""
        t0 = time.perf_counter()
        try:
            job = self.client.submit(api_name="/adapt", **self.mode.adapt_kwargs(self.index))
            while not job.done() and not any(isinstance(o[0], str) for o in job.outputs()):
                time.sleep(0.2)
            if not job.done():
                stop0 = time.perf_counter()
                self.client.predict(api_name="/stop")
                self.tally.served("stop", time.perf_counter() - stop0)
            final = job.result(timeout=600)
        except Exception as exc:  # recorded
            self.tally.failed("adapt", self.index, exc)
            return
        self.tally.served("adapt", time.perf_counter() - t0)
        self.check_names(final)
        self.style_file = final[4]
        self.styles.append(Path(final[4]).stem)
        with self.tally.lock:
            self.known.setdefault(self.index, []).append(self.styles[-1])

    def upload(self) -> None:
        """Upload the style file this user's training run gave back (a new style in the session)."""
        from gradio_client import handle_file

        result = self.call("upload_style", file=handle_file(self.style_file))
        if result is not None:
            self.check_names(result)
            self.styles.append(result[0]["value"][len(SESSION):])

    def probe(self) -> None:
        """Ask for another user's style: the server must refuse it."""
        with self.tally.lock:
            others = [(u, n) for u, names in self.known.items() if u != self.index for n in names]
        if not others:
            return
        other, name = self.rng.choice(others)
        try:
            self.client.predict(api_name="/generate", style=SESSION + name, seed=0, truncation=0.7, n_images=1,
                                strength=1.0)
        except Exception:  # refused, as it must be
            with self.tally.lock:
                self.tally.probes += 1
            return
        with self.tally.lock:
            self.tally.breaches.append(f"user {self.index} rendered user {other}'s style '{name}'")

    def run(self, deadline: float) -> None:
        """Loop over the actions until ``deadline``."""
        step = 0
        try:
            while time.monotonic() < deadline:
                action = step % 4
                if action == 0:
                    self.generate()
                elif action == 1:
                    self.invert()
                elif action == 2:
                    self.train() if self.style_file is None else self.upload()
                else:
                    self.generate(SESSION + self.styles[-1] if self.styles else None)
                    self.probe()
                step += 1
        finally:
            self.client.close()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, round(q * 100) - 1))]


def run(users: int = 8, seconds: float = 300.0, mode: Mode = TINY, max_growth_mb: float = 64.0) -> dict:
    """Start the app, run ``users`` for ``seconds``, stop it; the report (see :func:`summary`)."""
    with tempfile.TemporaryDirectory(prefix="nada-soak-") as tmp:
        port, log = free_port(), Path(tmp) / "app.log"
        proc = start_app(mode, port, log)
        url = f"http://127.0.0.1:{port}/"
        tally, known, samples, stop = Tally(), {}, [], threading.Event()
        t0 = time.monotonic()
        sampler = threading.Thread(target=sample_rss, args=(proc.pid, t0, stop, samples), daemon=True)
        sampler.start()
        try:
            crowd = [User(url, i, mode, tally, known) for i in range(users)]
            threads = [threading.Thread(target=u.run, args=(t0 + seconds,), daemon=True) for u in crowd]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=seconds + 900)
            wall = time.monotonic() - t0
        finally:
            stop.set()
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        return summary(tally, samples, users, wall, mode, max_growth_mb)


def summary(tally: Tally, samples: list[tuple[float, float]], users: int, wall: float, mode: Mode,
            max_growth_mb: float) -> dict:
    """Requests, failures, latency per endpoint, RSS over time, and the verdicts."""
    endpoints = {name: {"served": len(t), "p50_s": round(percentile(t, 0.5), 3), "p95_s": round(percentile(t, 0.95), 3)}
                 for name, t in sorted(tally.latencies.items())}
    half = [r for s, r in samples if s >= wall / 2]
    growth = (max(half[len(half) // 2:]) - min(half[: max(1, len(half) // 2)])) if len(half) >= 4 else 0.0
    rss = [(round(s), round(r)) for s, r in samples[:: max(1, len(samples) // 12)]] + \
        ([(round(samples[-1][0]), round(samples[-1][1]))] if samples else [])
    return {"users": users, "seconds": round(wall, 1), "tiny": mode.tiny, "endpoints": endpoints,
            "requests": sum(e["served"] for e in endpoints.values()), "failures": tally.failures,
            "isolation_breaches": tally.breaches, "isolation_probes": tally.probes, "rss_mib": rss,
            "rss_growth_second_half_mib": round(growth, 1), "rss_levelled": growth <= max_growth_mb,
            "ok": not tally.failures and not tally.breaches and growth <= max_growth_mb}


def print_report(report: dict) -> None:
    """The report as a table and a few lines."""
    print(f"{report['users']} users, {report['seconds']} s, {'tiny' if report['tiny'] else 'real-size'} models: "
          f"{report['requests']} requests served, {len(report['failures'])} failed")
    print(f"{'endpoint':<14}{'served':>8}{'p50 s':>9}{'p95 s':>9}")
    for name, e in report["endpoints"].items():
        print(f"{name:<14}{e['served']:>8}{e['p50_s']:>9.3f}{e['p95_s']:>9.3f}")
    print("RSS MiB over time (s, MiB): " + ", ".join(f"{s}: {r}" for s, r in report["rss_mib"]))
    print(f"RSS growth over the second half: {report['rss_growth_second_half_mib']} MiB "
          f"({'levelled' if report['rss_levelled'] else 'GROWING'})")
    print(f"isolation: {report['isolation_probes']} requests for other sessions' styles refused, "
          f"{len(report['isolation_breaches'])} breaches")
    for line in report["failures"][:20] + report["isolation_breaches"][:20]:
        print("  " + line)


def main(argv: list[str] | None = None) -> int:
    """Command line: run, print, optionally write JSON; exit 1 when a verdict fails."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8, help="simulated users, one session each (default: 8)")
    parser.add_argument("--minutes", type=float, default=5.0, help="how long they use the app (default: 5)")
    parser.add_argument("--real", action="store_true", help="real-size models (weights must be cached)")
    parser.add_argument("--max-growth-mb", type=float, default=64.0,
                        help="RSS growth allowed over the second half of the run (default: 64)")
    parser.add_argument("--json", default=None, help="also write the report here")
    args = parser.parse_args(argv)
    report = run(args.users, args.minutes * 60, REAL if args.real else TINY, args.max_growth_mb)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
