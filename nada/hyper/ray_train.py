"""Running :func:`nada.hyper.train_hypernet` for the CLI: in this process (:func:`train_here`, the default), or
data-parallel on Ray Train (:func:`train_on_ray`). Both are generators of progress records, write the finished
hypernetwork atomically to ``out``, and keep the latest resumable state in a checkpoint file beside it
(:func:`checkpoint_path`), which ``resume`` (``--resume``) continues from in either mode.

On Ray, every worker loads the models itself (a :class:`HyperJob` is plain data), draws the same global batch and
trains its slice (``rank::world``); gradients are summed with one ``torch.distributed`` all-reduce per step (gloo on
CPUs, NCCL on GPUs), so the workers together take the steps one process takes with the whole global batch. Rank 0
reports a Ray Train checkpoint every ``config.checkpoint_every`` steps; when a worker dies, Ray Train restarts the
group (``FailureConfig(max_failures)``) and every worker continues from the last checkpoint, so at most
``checkpoint_every`` steps are trained again. Progress, checkpoints and the final hypernetwork come back to the driver
through a Ray queue (no shared disk needed, except Ray Train's own ``storage`` on a multi-machine cluster).

Loopback: a Ray started here (``address="local"``) or one at a loopback address binds 127.0.0.1 only
(:mod:`nada.zoo.cluster`). There the workers' process group is built on a file store, because torch's TCP store (what
``TorchTrainer`` uses) listens on every interface; gloo/NCCL are pointed at the loopback interface. On any other
cluster ``TorchTrainer`` sets the group up itself.

Ray is optional (``pip install nada[cluster]``): it is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import atomic_write
from ..zoo import cluster
from ..zoo.jobs import StoreSettings
from .config import HyperConfig, HyperProgress
from .loop import prompt_pairs, train_hypernet
from .net import Hypernet

STATE_FILE = "state.pt"  # the resumable state inside a Ray Train checkpoint folder
CHECKPOINT_SUFFIX = ".ckpt.pt"  # hyper.safetensors -> hyper.ckpt.pt beside it
POLL_S = 0.5  # how often the driver looks at the stop flag while waiting for progress
STOP_WAIT_S = 30.0  # how long a stopped run may take to end its step before Ray is left to shut it down


@dataclasses.dataclass
class RayProgress(HyperProgress):
    """A :class:`HyperProgress` of a Ray run, with what the cluster did (restarts after a worker failed)."""

    workers: int = 1  # training workers
    restarts: int = 0  # times the worker group was restarted after a failure
    resumed_from: int | None = None  # the checkpoint step the latest (re)start continued from
    lost_steps: int = 0  # steps trained again after restarts, in all
    message: str | None = None  # a line worth printing (a restart), on records that carry no new step


@dataclasses.dataclass(frozen=True)
class HyperJob:
    """One hypernetwork training run as plain data (picklable to Ray workers): what to load and what to train."""

    source: str  # the generator: registry name, "tiny", or a local checkpoint path
    prompts: tuple[tuple[str, str], ...]  # (source text, target text) pairs
    config: HyperConfig
    held_out: tuple[tuple[str, str], ...] = ()
    settings: StoreSettings = StoreSettings()  # how models load (tiny, device) and the held-out judges

    def models(self) -> tuple[Any, list, list | None]:
        """(generator, CLIP models for ``config.clip_models``, judge CLIP models or None), loaded by a fresh store."""
        store = self.settings.store()
        generator = store.generator(self.source)
        clips = store.clips(list(self.config.clip_models))
        judging = self.held_out and self.config.eval_every > 0
        judge = store.clips(list(self.settings.judges)) if judging else None
        return generator, clips, judge

    def train(self, generator, clips, judge, **kwargs) -> Iterator[HyperProgress]:
        """:func:`nada.hyper.train_hypernet` of this job (``kwargs``: resume, stop, rank, world, sync_grads,
        checkpoint)."""
        return train_hypernet(generator, clips, self.prompts, self.config, held_out=self.held_out, judge=judge,
                              source=self.source, **kwargs)


def make_job(source: str, prompts, config: HyperConfig, held_out=(), settings: StoreSettings | None = None
             ) -> HyperJob:
    """A checked :class:`HyperJob` (``ValueError`` for bad settings, an empty list or a bad prompt); ``settings``
    default: real models (:class:`~nada.zoo.jobs.StoreSettings`)."""
    config.validate()
    settings = settings if settings is not None else StoreSettings()
    held = tuple(prompt_pairs(held_out, "held-out list")) if held_out else ()
    return HyperJob(str(source), tuple(prompt_pairs(prompts)), config, held, settings)


# ------------------------------------------------------------------------------------------- state files
def checkpoint_path(out: str | os.PathLike) -> Path:
    """Where a run writing ``out`` keeps its resumable state: ``hyper.safetensors`` -> ``hyper.ckpt.pt``."""
    out = Path(out)
    return out.with_name(out.name.removesuffix(".safetensors") + CHECKPOINT_SUFFIX)


def state_bytes(state: dict) -> bytes:
    """A training state (:func:`train_hypernet`'s ``checkpoint``) as bytes (``torch.save``)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load_state(source: str | os.PathLike | bytes, name: str | None = None) -> dict:
    """A training state from a checkpoint file or its bytes, read with ``weights_only=True`` (tensors and plain
    data only: nothing executable); ``ValueError`` naming the file when it is not one."""
    name = name or (Path(source).name if not isinstance(source, bytes) else "checkpoint")
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"No checkpoint {name} to resume from: --resume continues a run that wrote one (every "
                         "checkpoint_every steps) beside its output.") from None
    except Exception as exc:  # noqa: BLE001 (torch raises many types for a foreign or truncated file)
        raise ValueError(f"{name} is not a hypernetwork checkpoint of this nada ({type(exc).__name__}).") from None
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{name} is not a hypernetwork checkpoint of this nada.")
    return state


def _write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` into ``path`` atomically (never a half file)."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def check_output(out: str | os.PathLike) -> Path:
    """``out`` once it is a ``.safetensors`` name in a folder where files can be created (made if missing);
    ``ValueError``/``OSError`` naming it otherwise. Called before anything trains."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"A hypernetwork file name must end in .safetensors, got '{out.name}'.")
    if out.is_dir():
        raise ValueError(f"'{out.name}' is a folder; give a file name ending in .safetensors.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(f"Cannot write '{out.name}' in its folder ({exc.strerror or exc}); nothing was started.") \
            from None
    return out


# ---------------------------------------------------------------------------------------- one process
def train_here(job: HyperJob, out: str | os.PathLike, *, resume: dict | None = None,
               checkpoint_file: str | os.PathLike | None = None, stop: threading.Event | None = None
               ) -> Iterator[HyperProgress]:
    """Train ``job`` in this process: yields :func:`train_hypernet`'s records; the state goes to ``checkpoint_file``
    every ``checkpoint_every`` steps, and the hypernetwork (unless the run failed) to ``out``, before the last record
    is yielded."""
    out = check_output(out)
    generator, clips, judge = job.models()

    def keep(state: dict, step: int) -> None:
        _write_bytes(checkpoint_file, state_bytes(state))

    for record in job.train(generator, clips, judge, resume=resume, stop=stop,
                            checkpoint=keep if checkpoint_file is not None else None):
        if record.done and record.error is None and record.hypernet is not None:
            record.hypernet.save(out)
        yield record


# ---------------------------------------------------------------------------------------------- on Ray
def train_on_ray(job: HyperJob, out: str | os.PathLike, *, workers: int = 2, address: str = "local",
                 use_gpu: bool = False, resume: dict | None = None, checkpoint_file: str | os.PathLike | None = None,
                 storage: str | None = None, num_cpus: int | None = None, max_failures: int = 3,
                 stop: threading.Event | None = None, timeout: float = cluster.CONNECT_TIMEOUT_S
                 ) -> Iterator[RayProgress]:
    """Train ``job`` data-parallel on ``workers`` Ray Train workers: ``address`` "local" (a private Ray here,
    loopback only; ``num_cpus``), "auto", ``host:port`` or ``ray://host:port`` (:func:`nada.zoo.cluster.connect`:
    ClusterError within ``timeout`` seconds when it does not answer). Yields a :class:`RayProgress` per step (from
    rank 0), one per restart (``message``), and a last one with ``done`` and ``.hypernet`` (also saved to ``out``)
    or ``error``. ``storage``: Ray Train's checkpoint storage (default: a temporary folder here; a multi-machine
    cluster needs a folder all machines share, or a cloud URI). ``max_failures``: restarts allowed."""
    out = check_output(out)
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}.")
    if max_failures < 0:
        raise ValueError(f"max_failures must be 0 or more, got {max_failures}.")
    if use_gpu and job.settings.device in (None, "cpu"):
        job = dataclasses.replace(job, settings=dataclasses.replace(job.settings, device="cuda"))
    local_cpus = (num_cpus or max(os.cpu_count() or 1, workers)) if address == "local" else None
    with cluster.ray_session(address, num_cpus=local_cpus, timeout=timeout) as session:
        train = _train_api()
        _check_resources(session, workers, use_gpu)
        loopback = session.address == "local" or cluster.is_loopback(cluster.parse_address(session.address)[0])
        own_storage = storage is None
        storage_path = storage or tempfile.mkdtemp(prefix="nada-hyper-ray-")
        try:
            yield from _run(train, job, out, workers, use_gpu, loopback, resume, checkpoint_file, storage_path,
                            max_failures, stop, warn_storage=own_storage and not loopback)
        finally:
            if own_storage:
                shutil.rmtree(storage_path, ignore_errors=True)


def _train_api() -> Any:
    """``ray.train`` (Ray Train V2, the default of Ray 2.60), or ClusterError saying how to get it."""
    try:
        import ray.train
        from ray.train.v2._internal.constants import is_v2_enabled
    except ImportError:
        raise cluster.ClusterError("Ray Train is not installed: pip install nada[cluster] (or pip install "
                                   "'ray[train]==2.60.0'). Without --address, nada hyper train needs no Ray.") from None
    if not is_v2_enabled():
        raise cluster.ClusterError("nada hyper train uses Ray Train V2: unset RAY_TRAIN_V2_ENABLED (or set it to 1).")
    return ray.train


def _check_resources(session: cluster.RaySession, workers: int, use_gpu: bool) -> None:
    """ClusterError when the cluster cannot place ``workers`` workers (one CPU each, or one GPU each)."""
    if use_gpu and session.gpus < workers:
        raise cluster.ClusterError(f"{workers} GPU workers asked for, but the Ray cluster has {session.gpus:g} GPUs; "
                                   "use fewer --workers, or leave out --gpus to train on CPUs.")
    if session.cpus < workers:
        raise cluster.ClusterError(f"{workers} workers asked for, but the Ray cluster has {session.cpus:g} CPUs; "
                                   "use fewer --workers.")


class _StopFlag:
    """A Ray actor (made in :func:`_run`): the driver sets it, rank 0 reads it."""

    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        self.value = True

    def is_set(self) -> bool:
        return self.value


def _run(train: Any, job: HyperJob, out: Path, workers: int, use_gpu: bool, loopback: bool, resume: dict | None,
         checkpoint_file: str | os.PathLike | None, storage: str, max_failures: int,
         stop: threading.Event | None, warn_storage: bool) -> Iterator[RayProgress]:
    """Start the trainer in a thread and turn what rank 0 sends into records (see :func:`train_on_ray`)."""
    import ray
    from ray.util.queue import Empty, Queue

    total = job.config.iterations
    if warn_storage:
        yield RayProgress(0, total, {}, workers=workers, message=f"warning: Ray Train keeps checkpoints in {storage} "
                          "on this machine; on a multi-machine cluster give --storage a folder all machines share")
    queue = Queue(actor_options={"num_cpus": 0})
    flag = ray.remote(num_cpus=0)(_StopFlag).remote()
    loop_config = {"job": job, "queue": queue, "flag": flag, "use_gpu": use_gpu,
                   "resume": ray.put(resume) if resume is not None else None,
                   "group_dir": storage if loopback else None}
    run_config = train.RunConfig(name=f"nada-hyper-{uuid.uuid4().hex[:8]}", storage_path=storage,
                                 failure_config=train.FailureConfig(max_failures=max_failures),
                                 checkpoint_config=train.CheckpointConfig(num_to_keep=2))
    scaling = train.ScalingConfig(num_workers=workers, use_gpu=use_gpu)
    if loopback:  # our own file-store process group (module docstring); the base class of TorchTrainer
        from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

        trainer = DataParallelTrainer(_worker_loop, train_loop_config=loop_config, scaling_config=scaling,
                                      run_config=run_config)
    else:
        from ray.train.torch import TorchConfig, TorchTrainer

        trainer = TorchTrainer(_worker_loop, train_loop_config=loop_config, scaling_config=scaling,
                               run_config=run_config, torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"))
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # noqa: BLE001 (reported as the run's error)
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="nada-hyper-fit", daemon=True)
    thread.start()
    starts = restarts = lost = last_step = 0
    resumed_from: int | None = None
    final: RayProgress | None = None
    asked_stop = False
    try:
        while True:
            if stop is not None and stop.is_set() and not asked_stop:
                flag.set.remote()
                asked_stop = True
            try:
                kind, payload = queue.get(timeout=POLL_S)
            except Empty:
                if thread.is_alive() or not queue.empty():
                    continue
                break
            if kind == "start":
                starts += 1
                resumed_from = int(payload)
                if starts > 1:
                    restarts += 1
                    lost += max(last_step - resumed_from, 0)
                    yield RayProgress(resumed_from, total, {}, workers=workers, restarts=restarts,
                                      resumed_from=resumed_from, lost_steps=lost,
                                      message=f"a worker failed at step {last_step}: Ray Train restarted the "
                                              f"{workers} workers from the checkpoint of step {resumed_from} "
                                              f"(restart {restarts} of at most {max_failures})")
                last_step = resumed_from
            elif kind == "checkpoint" and checkpoint_file is not None:
                _write_bytes(checkpoint_file, payload[1])
            elif kind in ("step", "done"):
                last_step = int(payload["step"])
                record = RayProgress(payload["step"], total, payload["losses"], payload["figures"],
                                     elapsed_s=payload["elapsed_s"], done=kind == "done", error=payload["error"],
                                     workers=workers, restarts=restarts, resumed_from=resumed_from, lost_steps=lost)
                if kind == "step":
                    yield record
                else:
                    if payload["error"] is None and payload["hypernet"] is not None:
                        _write_bytes(out, payload["hypernet"])
                        record.hypernet = Hypernet.load(out)
                    final = record
    finally:
        if thread.is_alive():  # the consumer stopped early: ask the workers to end, give them a moment
            flag.set.remote()
            thread.join(STOP_WAIT_S)
    thread.join()
    if final is not None:
        yield final
        return
    error = outcome.get("error")
    first = (str(error).strip().splitlines() or [type(error).__name__])[0] if error is not None else \
        "the workers ended without a result"
    yield RayProgress(last_step, total, {}, done=True, workers=workers, restarts=restarts, resumed_from=resumed_from,
                      lost_steps=lost, error=f"Ray training failed after {restarts} restarts: {first}")


# --------------------------------------------------------------------------------- on each Ray worker
def _worker_loop(cfg: dict) -> None:
    """The Ray Train loop of one worker: load the models, continue from Ray's latest checkpoint (or ``resume``),
    train this rank's slice, report checkpoints; rank 0 sends progress and the result to the driver's queue."""
    import ray
    import ray.train
    import torch.distributed as dist

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    job: HyperJob = cfg["job"]
    queue = cfg["queue"]
    own_group = cfg["group_dir"] is not None
    if own_group:
        _init_loopback_group(rank, world, cfg["group_dir"], cfg["use_gpu"])
    try:
        generator, clips, judge = job.models()
        resume = _ray_checkpoint_state(ray.train)
        if resume is None and cfg["resume"] is not None:
            resume = ray.get(cfg["resume"])
        if rank == 0:
            queue.put(("start", int(resume["step"]) if resume is not None else 0))

        def checkpoint(state: dict, step: int) -> None:
            data = state_bytes(state) if rank == 0 else None
            with tempfile.TemporaryDirectory(prefix="nada-hyper-ckpt-") as tmp:
                if data is not None:
                    (Path(tmp) / STATE_FILE).write_bytes(data)
                    ray.train.report({"step": step}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
                else:
                    ray.train.report({"step": step})
            if data is not None:
                queue.put(("checkpoint", (step, data)))

        stop = _GroupStop(cfg["flag"], rank, generator.device)
        for record in job.train(generator, clips, judge, resume=resume, stop=stop, rank=rank, world=world,
                                sync_grads=_all_reduce_sum, checkpoint=checkpoint):
            if rank != 0:
                continue
            payload = {"step": record.step, "losses": dict(record.losses), "figures": record.figures,
                       "elapsed_s": record.elapsed_s, "error": record.error}
            if record.done:
                ok = record.error is None and record.hypernet is not None
                payload["hypernet"] = _hypernet_bytes(record.hypernet) if ok else None
            queue.put(("done" if record.done else "step", payload))
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def _init_loopback_group(rank: int, world: int, folder: str, use_gpu: bool) -> None:
    """The workers' process group on a file store in ``folder`` (one file per group start, its name agreed through
    Ray), gloo/NCCL on the loopback interface: no socket outside 127.0.0.1."""
    import torch.distributed as dist
    from ray.train.collective import broadcast_from_rank_zero

    token = broadcast_from_rank_zero(uuid.uuid4().hex if rank == 0 else None)
    interface = _loopback_interface()
    if interface is not None:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", interface)
    store = dist.FileStore(str(Path(folder) / f"group-{token}"), world)
    dist.init_process_group("nccl" if use_gpu else "gloo", store=store, rank=rank, world_size=world)


def _loopback_interface() -> str | None:
    """The loopback network interface's name ("lo" on Linux, "lo0" on macOS), or None."""
    with contextlib.suppress(OSError):
        return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), None)
    return None


def _ray_checkpoint_state(train: Any) -> dict | None:
    """The state of Ray Train's latest checkpoint of this run (after a restart), or None."""
    found = train.get_checkpoint()
    if found is None:
        return None
    with found.as_directory() as folder:
        return load_state(Path(folder) / STATE_FILE)


def _all_reduce_sum(net: nn.Module) -> None:
    """Sum every ``.grad`` of ``net`` over the workers, in one all-reduce of the flattened gradients."""
    import torch.distributed as dist

    grads = [p.grad for p in net.parameters()]
    flat = torch.cat([g.reshape(-1) for g in grads])  # [sum of sizes]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


class _GroupStop:
    """``stop`` for :func:`train_hypernet` on a worker: rank 0 reads the driver's flag and every rank gets its answer
    through an all-reduce, so all ranks stop after the same step (each rank calls ``is_set`` at the same points)."""

    def __init__(self, flag: Any, rank: int, device: torch.device) -> None:
        self.flag, self.rank, self.device = flag, rank, device

    def is_set(self) -> bool:
        import ray
        import torch.distributed as dist

        mine = float(self.rank == 0 and ray.get(self.flag.is_set.remote()))
        value = torch.tensor([mine], device=self.device)  # [1]
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)


def _hypernet_bytes(net: Hypernet) -> bytes:
    """The hypernetwork's ``.safetensors`` file as bytes."""
    with tempfile.TemporaryDirectory(prefix="nada-hyper-") as tmp:
        return net.save(Path(tmp) / "hypernet.safetensors").read_bytes()


__all__ = ["HyperJob", "RayProgress", "make_job", "train_here", "train_on_ray", "checkpoint_path", "load_state",
           "state_bytes", "check_output", "STATE_FILE", "CHECKPOINT_SUFFIX"]
