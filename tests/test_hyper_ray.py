"""Hypernetwork training on Ray Train, on this machine only (one private Ray for the module, bound to 127.0.0.1):
two CPU workers train the same hypernetwork as one process with the same global batch; a worker killed mid-training
is replaced and the group continues from the last checkpoint; every listening socket of Ray's processes (the
training workers' process group included) is on the loopback address."""

from __future__ import annotations

import dataclasses
import os
import threading
import time

import pytest
import torch

pytest.importorskip("ray.train")

from nada.hyper import HyperConfig  # noqa: E402
from nada.hyper.ray_train import HyperJob, load_state, make_job, train_here, train_on_ray  # noqa: E402
from nada.styles import apply_style  # noqa: E402
from nada.zoo import cluster  # noqa: E402
from nada.zoo.jobs import StoreSettings  # noqa: E402
from tests.test_zoo_cluster import assert_loopback_only, ray_listening  # noqa: E402

PROMPTS = ["red", "green", "blue", "Photo -> red green", "yellow"]
CONFIG = HyperConfig(iterations=4, prompts_per_step=4, batch_size=2, lr=1e-3, clip_models=("clip-vit-b32",),
                     hidden=16, depth=1, checkpoint_every=2, mixing=0.5, seed=3)
TINY = StoreSettings(tiny=True, judge_samples=0)


@pytest.fixture(scope="module")
def local_ray():
    """One private Ray for the module: 2 CPUs (one per worker), loopback only; shut down at the end."""
    session = cluster.start_local(num_cpus=2)
    yield session
    cluster.import_ray().shutdown()


@pytest.fixture(scope="module")
def job() -> HyperJob:
    return make_job("tiny", PROMPTS, CONFIG, settings=TINY)


@pytest.fixture(scope="module")
def one_process(job, tmp_path_factory):
    """The reference: the same run in this process, without Ray (world 1, the whole global batch)."""
    folder = tmp_path_factory.mktemp("one")
    records = list(train_here(job, folder / "one.safetensors", checkpoint_file=folder / "one.ckpt.pt"))
    assert records[-1].done and records[-1].error is None and records[-1].step == CONFIG.iterations
    return records[-1].hypernet, folder


def assert_same_hypernet(a, b) -> None:
    """Same weights within float tolerance, and the same pictures for a seen and an unseen prompt."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], atol=2e-5, rtol=1e-4)  # float sums in another order
    generator, clips, _ = make_job("tiny", PROMPTS, CONFIG, settings=TINY).models()
    z = torch.randn(2, generator.style_dim, generator=torch.Generator().manual_seed(0))
    for target in ("red", "blue yellow"):  # trained on, and held out
        with torch.no_grad():
            pictures = [apply_style(generator, net.style(clips, "Photo", target))(z) for net in (a, b)]
        torch.testing.assert_close(pictures[0], pictures[1], atol=1e-4, rtol=1e-4)
        assert not torch.allclose(pictures[0], generator(z), atol=1e-3)  # the style does change the pictures


def test_two_cpu_workers_train_the_same_hypernetwork_as_one_process_on_loopback_only(local_ray, job, one_process,
                                                                                      tmp_path):
    reference, _ = one_process
    out, checkpoint = tmp_path / "two.safetensors", tmp_path / "two.ckpt.pt"
    listening, records = None, []
    for record in train_on_ray(job, out, workers=2, address="local", checkpoint_file=checkpoint):
        records.append(record)
        if record.step == 1 and listening is None:  # mid-run: the workers and their process group are up
            listening = ray_listening()
    names = {name for name, _ in listening}
    assert any("RayTrainWorker" in n for n in names), names  # the training workers' sockets were looked at
    assert_loopback_only(listening)
    last = records[-1]
    assert last.done and last.error is None and last.restarts == 0 and last.workers == 2
    assert [r.step for r in records] == [1, 2, 3, 4]
    assert out.is_file() and last.hypernet.meta["steps"] == CONFIG.iterations
    assert load_state(checkpoint)["step"] == 4  # the driver kept the last checkpoint for --resume
    assert_same_hypernet(last.hypernet, reference)


def test_a_worker_killed_mid_training_is_replaced_and_the_run_resumes_from_the_last_checkpoint(
        local_ray, job, one_process, tmp_path):
    reference, _ = one_process
    marker = tmp_path / "died-once"

    class DyingJob(HyperJob):  # defined here: Ray pickles it by value into the workers
        def train(self, *args, **kwargs):
            for record in super().train(*args, **kwargs):
                if kwargs.get("rank") == 1 and record.step == 3 and not marker.exists():
                    marker.write_text(str(os.getpid()))
                    time.sleep(5)  # Ray Train takes in reported checkpoints when it polls its workers (every 2 s)
                    os._exit(1)  # the worker process dies after step 3, as a killed machine would
                yield record

    dying = DyingJob(**{f.name: getattr(job, f.name) for f in dataclasses.fields(job)})
    out = tmp_path / "hyper.safetensors"
    records = list(train_on_ray(dying, out, workers=2, address="local", max_failures=2))
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker died, not this process
    restart = [r for r in records if r.message]
    assert len(restart) == 1 and "restarted the 2 workers from the checkpoint of step 2" in restart[0].message
    last = records[-1]
    assert last.done and last.error is None and last.step == CONFIG.iterations
    assert last.restarts == 1 and last.resumed_from == 2 and 1 <= last.lost_steps <= CONFIG.checkpoint_every
    steps = [r.step for r in records if not r.message]
    assert steps[-1] == 4 and steps.count(3) >= 1 and 2 in steps  # step 3 trained again after the restart
    assert_same_hypernet(last.hypernet, reference)  # resumed exactly: the same weights as an unbroken run
    assert_loopback_only(ray_listening())


def test_stopping_ends_every_worker_after_the_same_step_and_keeps_the_hypernetwork(local_ray, job, tmp_path):
    stop = threading.Event()
    out = tmp_path / "stopped.safetensors"
    longer = dataclasses.replace(job, config=dataclasses.replace(job.config, iterations=50))
    records = []
    for record in train_on_ray(longer, out, workers=2, address="local", stop=stop):
        records.append(record)
        if record.step >= 2:
            stop.set()  # the driver asks; rank 0 reads the flag and every rank learns it through an all-reduce
    last = records[-1]
    assert last.done and last.error is None and 2 <= last.step < 50
    assert out.is_file() and last.hypernet.meta["steps"] == last.step
