"""Ray glue for the zoo: start a private Ray on this machine bound to the loopback address, or connect to a cluster
(failing within seconds when its address does not answer), and run :class:`~nada.zoo.jobs.BatchJob`\\ s as Ray tasks
with fractional GPUs, collecting each as it finishes. A task whose worker dies (a killed process, a lost machine) is
retried by Ray (``max_retries``); a batch's own failures come back as failed styles, never as exceptions.

Ray is an optional dependency (``pip install nada[cluster]``): it is imported inside these functions only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType

from .jobs import BatchJob, StyleResult, run_job

LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 3.0  # an address that does not answer within this is reported, never waited on
WAIT_S = 1.0  # how often a wait for finished jobs looks at the stop flag
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps 127.0.0.1 instead of the machine's address


class ClusterError(ConnectionError):
    """Ray is missing, or a cluster cannot be reached or cannot run the jobs; the message says what to do."""


def import_ray(loopback: bool = False) -> ModuleType:
    """``ray``, or ClusterError saying how to install it. ``loopback``: keep Ray on 127.0.0.1 (a Ray started here
    binds its servers there, and a loopback address is not swapped for the machine's own): :data:`LOOPBACK_ENV` is
    set to "0" before the import, and, when Ray was imported before (by a notebook, a test), the flag Ray set from
    it at that first import is set the same way (measured in tests/test_zoo_cluster.py, which imports Ray first)."""
    if loopback:
        os.environ[LOOPBACK_ENV] = "0"
    try:
        import ray
        from ray._private import ray_constants
    except ImportError:
        raise ClusterError("Ray is not installed: pip install nada[cluster] (or pip install ray==2.60.0). Without "
                           "--address the zoo runs on this machine and needs no Ray.") from None
    if loopback and getattr(ray_constants, "ENABLE_RAY_CLUSTER", False):
        ray_constants.ENABLE_RAY_CLUSTER = False
    return ray


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of ``host:port`` or ``ray://host:port``; ValueError for anything else."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{address}' is not a Ray address: give auto, local, host:port or ray://host:port.")
    return host, int(port)


def resolve_address(address: str) -> str:
    """The ``host:port`` (or ``ray://host:port``) that ``address`` names; ``"auto"``: ``RAY_ADDRESS`` or the Ray
    started on this machine with ``ray start`` (as written there: a loopback address stays one). ClusterError when
    ``auto`` finds none."""
    if address != "auto":
        parse_address(address)
        return address
    import_ray()
    from ray._private.services import get_ray_address_from_environment  # how ray.init itself reads "auto"

    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        found = None
    if not found:
        raise ClusterError("--address auto found no running Ray cluster on this machine (none started with "
                           f"`ray start --head --node-ip-address={LOOPBACK}`, and RAY_ADDRESS is not set). Start "
                           "one, or give ray://host:port, or leave --address out to run here without Ray.")
    parse_address(found)
    return found


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """ClusterError within ``timeout`` seconds when nothing accepts a connection at ``address`` (Ray itself would
    keep retrying for a minute)."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        raise ClusterError(f"The Ray cluster at {address} does not answer ({why} after trying for at most "
                           f"{timeout:g} s). Is the head node running (`ray start --head`), and is the address and "
                           "port right? Nothing was started.") from None


@dataclasses.dataclass
class RaySession:
    """A Ray connection in use by the zoo: where it is, and whether this process started it (and stops it)."""

    address: str  # "local" for a Ray started here, else the address connected to
    started_here: bool  # this process started Ray (and shuts it down at the end)
    gpus: float  # GPUs in the cluster when connected
    cpus: float  # CPUs in the cluster when connected


def start_local(num_cpus: int | None = None, num_gpus: int | None = None) -> RaySession:
    """Start a private Ray on this machine, every socket bound to 127.0.0.1 (no dashboard). Already running in this
    process: that one is used."""
    ray = import_ray(loopback=True)
    if ray.is_initialized():
        return _session(ray, "local", started_here=False)
    ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, num_cpus=num_cpus, num_gpus=num_gpus,
             configure_logging=False, log_to_driver=False)
    return _session(ray, "local", started_here=True)


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S) -> RaySession:
    """Connect to the Ray cluster at ``address`` (``auto``, ``host:port`` or ``ray://host:port``), after checking it
    answers (ClusterError within ``timeout`` seconds otherwise)."""
    target = resolve_address(address)
    ray = import_ray(loopback=is_loopback(parse_address(target)[0]))
    if target.startswith("ray://"):
        from ray._private.utils import get_ray_client_dependency_error

        if get_ray_client_dependency_error() is not None:
            raise ClusterError(f"{target} is a Ray Client address, and Ray's client is not installed here: pip "
                               "install 'ray[client]==2.60.0'; or, on a machine of the cluster, give the head's "
                               "host:port (or auto).")
    check_reachable(target, timeout)
    if ray.is_initialized():
        return _session(ray, target, started_here=False)
    _token_auth_if_available()
    try:
        ray.init(address=target, configure_logging=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else repr(exc)
        raise ClusterError(f"Could not join the Ray cluster at {target}: {first}. A cluster with token "
                           "authentication (Ray's default) needs its token here: RAY_AUTH_TOKEN, or the file "
                           "~/.ray/auth_token (`ray get-auth-token`).") from None
    return _session(ray, target, started_here=True)


def _token_auth_if_available() -> None:
    """Use token authentication when a token is at hand and RAY_AUTH_MODE says nothing, as ``ray start`` does
    (Ray 2.60 starts clusters with tokens by default; ``ray.init(address=...)`` alone does not send one)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: its own defaults apply
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _session(ray: ModuleType, address: str, started_here: bool) -> RaySession:
    resources = ray.cluster_resources()
    return RaySession(address, started_here, float(resources.get("GPU", 0)), float(resources.get("CPU", 0)))


@contextlib.contextmanager
def ray_session(address: str, *, num_cpus: int | None = None, num_gpus: int | None = None,
                timeout: float = CONNECT_TIMEOUT_S) -> Iterator[RaySession]:
    """A Ray session for the zoo: ``address="local"`` starts a private loopback-only Ray here (``num_cpus``,
    ``num_gpus``), anything else connects (:func:`connect`). Ray is shut down at the end if it was started here."""
    session = start_local(num_cpus, num_gpus) if address == "local" else connect(address, timeout)
    try:
        yield session
    finally:
        if session.started_here:
            import_ray().shutdown()


def _ray_job(job: BatchJob) -> list[StyleResult]:
    """The Ray task: :func:`nada.zoo.jobs.run_job`, its results marked with the node they ran on."""
    import ray

    return run_job(job, where=f"ray:{ray.util.get_node_ip_address()}")


def run_jobs(jobs: Sequence[BatchJob], *, gpus_per_job: float = 0.0, cpus_per_job: float = 1.0,
             retries: int = 3, stop: threading.Event | None = None
             ) -> Iterator[tuple[BatchJob, list[StyleResult] | None, str | None]]:
    """Submit every job as a Ray task (``gpus_per_job`` may be a fraction: 0.25 packs four jobs on a GPU) and yield
    ``(job, results, None)`` as each finishes, or ``(job, None, message)`` for a job Ray gave up on (its worker died
    more than ``retries`` times). Jobs still running when the caller stops iterating, or ``stop`` is set, are
    cancelled."""
    ray = import_ray()
    if gpus_per_job > 0 and not ray.cluster_resources().get("GPU", 0):
        raise ClusterError(f"--gpus-per-job {gpus_per_job:g} asks for GPUs, but the Ray cluster has none; use "
                           "--gpus-per-job 0 to train on CPUs.")
    task = ray.remote(_ray_job).options(num_gpus=gpus_per_job, num_cpus=cpus_per_job, max_retries=retries,
                                        retry_exceptions=False, name="nada-zoo-batch")
    by_ref = {task.remote(job): job for job in jobs}
    pending = list(by_ref)
    try:
        while pending and not (stop is not None and stop.is_set()):
            ready, pending = ray.wait(pending, num_returns=1, timeout=WAIT_S)
            for ref in ready:
                try:
                    yield by_ref[ref], ray.get(ref), None
                except ray.exceptions.RayError as exc:
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    yield by_ref[ref], None, f"the batch's Ray task failed after {retries} retries: {first}"
    finally:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)


__all__ = ["ClusterError", "RaySession", "import_ray", "is_loopback", "parse_address", "resolve_address",
           "check_reachable", "start_local", "connect", "ray_session", "run_jobs", "LOOPBACK", "CONNECT_TIMEOUT_S"]
