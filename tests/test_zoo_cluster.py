"""The zoo on Ray, on this machine only: one private Ray per module, bound to 127.0.0.1 (checked socket by socket); a
batch whose worker is killed mid-batch is retried and every style lands in the folder once; an address that does not
answer fails within seconds; a missing Ray says how to install it."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import time

import psutil
import pytest

pytest.importorskip("ray")

from nada.zoo import cluster  # noqa: E402
from nada.zoo import jobs as zoo_jobs  # noqa: E402
from nada.zoo.book import ZOO_FILE  # noqa: E402
from nada.zoo.jobs import StoreSettings  # noqa: E402
from nada.zoo.prompts import parse_prompts  # noqa: E402
from nada.zoo.runner import run_zoo  # noqa: E402

TINY = StoreSettings(tiny=True, judge_samples=2)
PROMPTS = "Sketch | iterations=2\nPhoto -> Pixar | iterations=2 seed=3\nJoker | iterations=2\n"


@pytest.fixture(scope="module")
def local_ray():
    """One private Ray for the module: 2 CPUs, loopback only; shut down at the end."""
    session = cluster.start_local(num_cpus=2)
    yield session
    cluster.import_ray().shutdown()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_listening() -> list[tuple[str, object]]:
    """(process name, local address) of every listening TCP socket of the Ray processes this one started."""
    listening = []
    for proc in psutil.Process().children(recursive=True):
        try:
            name, command = proc.name(), " ".join(proc.cmdline())
            if not (name.startswith("ray::") or name in ("gcs_server", "raylet") or "/ray/" in command):
                continue  # a child of another test (a browser, a server): not Ray's
            listening += [(name, c.laddr) for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return listening


def assert_loopback_only(listening) -> None:
    for name, laddr in listening:
        address = ipaddress.ip_address(laddr.ip)
        address = getattr(address, "ipv4_mapped", None) or address  # "::ffff:127.0.0.1" is 127.0.0.1 on a v6 socket
        assert str(address) == "127.0.0.1", (name, laddr)


def test_local_ray_listens_on_the_loopback_address_only(local_ray):
    assert local_ray.started_here and local_ray.cpus == 2
    listening = ray_listening()
    names = {name for name, _ in listening}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names), names
    assert_loopback_only(listening)  # Ray was imported before start_local (importorskip): it still binds 127.0.0.1


def test_a_worker_killed_mid_batch_is_retried_and_every_style_lands_once(local_ray, tmp_path, monkeypatch):
    marker = tmp_path / "died-once"

    class DyingJob(zoo_jobs.BatchJob):  # defined here: Ray pickles it by value into the worker
        def run(self, **kwargs):
            for item in super().run(**kwargs):
                if self.index == 0 and isinstance(item, zoo_jobs.BatchTick) and not marker.exists():
                    marker.write_text(str(os.getpid()))
                    os._exit(1)  # the worker process dies after its first step, as a killed machine would
                yield item

    monkeypatch.setattr(zoo_jobs, "BatchJob", DyingJob)
    out = tmp_path / "zoo"
    events = list(run_zoo(parse_prompts(PROMPTS, source="tiny"), out, source="tiny", settings=TINY, seeds=(0,),
                          address="local", styles_per_batch=2, retries=2))
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker died, not this process
    done = [e.record for e in events if e.kind == "style"]
    assert sorted(r["name"] for r in done) == ["joker", "pixar", "sketch"]
    assert all(r["status"] == "done" and r["where"] == "ray:127.0.0.1" for r in done)
    book = json.loads((out / ZOO_FILE).read_text())
    assert sorted(s["name"] for s in book["styles"]) == ["joker", "pixar", "sketch"]  # each once
    assert all(s["status"] == "done" for s in book["styles"])
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["joker.safetensors", "pixar.safetensors",
                                                                 "sketch.safetensors"]
    assert sum(e.steps for e in events if e.kind == "steps") == 6
    assert_loopback_only(ray_listening())  # the workers that ran the batches too


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_that_does_not_answer_fails_within_seconds(tmp_path, scheme):
    address = f"{scheme}127.0.0.1:{unused_port()}"
    t0 = time.monotonic()
    with pytest.raises(cluster.ClusterError, match=f"The Ray cluster at {address} does not answer"):
        list(run_zoo(parse_prompts(PROMPTS, source="tiny"), tmp_path / "zoo", source="tiny", settings=TINY,
                     address=address))
    assert time.monotonic() - t0 < 5
    assert not (tmp_path / "zoo").exists()  # nothing was written


def test_auto_reads_the_address_as_written_and_reports_one_that_does_not_answer(tmp_path, monkeypatch):
    port = unused_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    assert cluster.resolve_address("auto") == f"127.0.0.1:{port}"  # not swapped for the machine's own address
    assert cluster.is_loopback("127.0.0.1") and cluster.is_loopback("localhost") and cluster.is_loopback("::1")
    assert not cluster.is_loopback("10.0.0.5") and not cluster.is_loopback("head.example")
    t0 = time.monotonic()
    with pytest.raises(cluster.ClusterError, match=f"127.0.0.1:{port} does not answer"):
        list(run_zoo(parse_prompts(PROMPTS, source="tiny"), tmp_path / "zoo", source="tiny", settings=TINY,
                     address="auto"))
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("address", ["nowhere", "ray://host", "host:99999"])
def test_malformed_addresses_are_refused(address):
    with pytest.raises(ValueError, match="is not a Ray address"):
        cluster.parse_address(address)


def test_without_ray_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    with pytest.raises(cluster.ClusterError, match=r"pip install nada\[cluster\]"):
        cluster.import_ray()
