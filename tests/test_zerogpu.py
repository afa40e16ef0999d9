"""The ZeroGPU process split, exercised on a CPU: every GPU task runs in a forked worker (``NADA_FORK_GPU=1``) with its
arguments and results pickled, as ``spaces`` does. Stop, the time limit and uploads during a run must survive it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from nada.app import adapt_tab, generate_tab
from nada.app.adapt_tab import AdaptGpu, style_file_step, train_style
from nada.app.generate_tab import GenerateGpu
from nada.app.training_queue import StopFlag, TrainingRuns
from nada.app.wiring import bind
from nada.app.zerogpu import GpuTaskAborted, forked, gpu_mode, on_gpu
from nada.styles import load_style, save_style
from nada.train import AdaptConfig

from . import helpers
from .helpers import PROJECT_ROOT

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (Linux, macOS)")


@pytest.fixture
def fork_gpu(monkeypatch, store) -> SimpleNamespace:
    """The Adapt and Generate tabs' GPU tasks, each call in a forked worker (``.adapt``, ``.generate``)."""
    monkeypatch.setenv("NADA_FORK_GPU", "1")
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert gpu_mode() == "fork"
    return SimpleNamespace(adapt=AdaptGpu.wrapped(store), generate=GenerateGpu.wrapped(store))


def adapt_args(**over):
    """The Adapt tab's values (``helpers.adapt_args``) without probing, with ``over``."""
    return helpers.adapt_args(**{"probe": False, **over})


def test_forked_calls_cross_pickled_and_errors_come_back_readable():
    def whoami(x):
        return os.getpid(), x * 2

    def boom():
        raise gr.Error("a readable message", title="Unusable image")

    def stream(n):
        yield from range(n)

    run = forked(whoami, lambda *a, **k: 30)
    pid, doubled = run(21)
    assert pid != os.getpid() and doubled == 42  # it ran in another process
    with pytest.raises(gr.Error, match="a readable message"):
        forked(boom, lambda *a, **k: 30)()
    assert list(forked(stream, lambda *a, **k: 30)(4)) == [0, 1, 2, 3]

    def slow():
        time.sleep(30)

    t0 = time.monotonic()
    with pytest.raises(GpuTaskAborted, match="granted 1 s"):
        forked(slow, lambda *a, **k: 1)()
    assert time.monotonic() - t0 < 10


def test_a_run_in_the_worker_stops_from_another_request_and_is_saved(store, session, fork_gpu):
    runs = TrainingRuns()
    stream = adapt_tab.adapt_stream(store, runs, session, **adapt_args(iterations=400, target_text="Zombie"),
                                    min_interval_s=0.0, gpu=fork_gpu.adapt)
    outs = []
    for out in stream:
        outs.append(out)
        if isinstance(out.preview, Image.Image) and len(outs) < 50:
            assert adapt_tab.stop_training(runs).startswith("Stopping")  # the main process's Stop handler
    style = load_style(outs[-1].style_file)
    assert 1 <= style.meta["steps"] < 400 and "stopped at step" in outs[-1].status
    assert session.names() == ["zombie"] and not runs.busy()
    assert not list(session.directory().glob(".training-*"))  # the worker's style file was taken in, not left over


def test_a_run_reaching_its_time_limit_ends_cleanly_and_keeps_the_work(store, session, fork_gpu, monkeypatch):
    monkeypatch.setattr(adapt_tab, "train_seconds", lambda *args: 16.0)  # granted 16 s: training must end by 6 s
    assert adapt_tab.train_time_limit(AdaptConfig()) == pytest.approx(6.0)
    t0 = time.monotonic()
    outs = list(adapt_tab.adapt_stream(store, TrainingRuns(), session, **adapt_args(iterations=100_000),
                                       min_interval_s=0.0, gpu=AdaptGpu.wrapped(store)))
    assert time.monotonic() - t0 < 16  # not killed: it stopped itself
    style = load_style(outs[-1].style_file)
    assert 1 <= style.meta["steps"] < 100_000 and "stopped at step" in outs[-1].status


def test_a_worker_killed_at_its_duration_loses_at_most_the_last_preview_interval(store, tmp_path):
    cfg = AdaptConfig(source_text="Photo", target_text="Sketch", iterations=100_000, layers_k=0, probe_iters=0,
                      preview_every=3)
    style_file = tmp_path / "run.safetensors"
    task = forked(bind(train_style, store), lambda *a, **k: 4)
    seen = []
    with pytest.raises(GpuTaskAborted, match="granted 4 s"):
        for upd in task("tiny", cfg, str(style_file), {"source": "tiny"}, None):
            seen.append(upd.saved_step)
    steps = style_file_step(style_file)
    # The last preview's weights are on disk: a whole preview, never older than the last step the page was told of.
    # The kill may land between a save and the update that reports it (the file is written first, so nothing is
    # lost), so the file may hold one preview interval more than the page last heard; the page reads the file.
    assert steps >= 3 and steps % 3 == 0 and max(seen) <= steps <= max(seen) + 3
    assert load_style(style_file).source == "tiny"


def test_an_upload_during_a_run_survives_it(store, session, fork_gpu, tmp_path):
    mine = save_style(store.published_style("tiny-demo"), tmp_path / "Uploaded.safetensors")
    runs = TrainingRuns()
    outs = []
    for out in adapt_tab.adapt_stream(store, runs, session, **adapt_args(iterations=6), min_interval_s=0.0,
                                      gpu=fork_gpu.adapt):
        outs.append(out)
        if len(outs) == 2:  # mid-run, another request of the same browser adds a style
            generate_tab.upload_style(store, session, str(mine), gpu=fork_gpu.generate)
    assert outs[-1].session is session and session.names() == ["uploaded", "sketch"]


def test_warnings_from_the_worker_reach_the_page(store, tmp_path):
    cfg = AdaptConfig(source_text="Photo", target_text="Sketch", iterations=1, layers_k=0, lambda_id=0.5)
    task = forked(bind(train_style, store), lambda *a, **k: 60)
    first = next(iter(task("tiny", cfg, str(tmp_path / "s.safetensors"), {}, None)))
    assert first.warnings and "needs a face generator" in first.warnings[0]


def test_uploads_are_checked_without_reading_the_generator(store, session, tmp_path, monkeypatch):
    """On ZeroGPU the main process cannot read offloaded weights: a .safetensors upload uses the fingerprint taken
    when the generator loaded."""
    from nada.styles import style as style_core  # the module whose checks (verify_source) would fingerprint

    path = save_style(store.published_style("tiny-demo"), tmp_path / "demo.safetensors")
    store.fingerprint("tiny")  # taken at load (preload, on ZeroGPU)

    def unreadable(_):
        raise RuntimeError("Cannot apply function torch.Tensor.detach on disk-offloaded Tensor")

    monkeypatch.setattr(style_core, "generator_fingerprint", unreadable)
    assert generate_tab.upload_style(store, session, str(path)).session.names() == ["demo"]


def test_stop_flag_crosses_processes(tmp_path):
    flag = StopFlag(tmp_path / "run.stop")
    seen = forked(lambda f: (f.is_set(), f.set())[0], lambda *a, **k: 30)
    assert seen(flag) is False and flag.is_set()  # the worker set it; this process sees it
    flag.clear()
    assert not flag.is_set()


def test_zero_gpu_app_starts_on_a_cpu_with_spaces_installed():
    pytest.importorskip("spaces")
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": "http://127.0.0.1:9/",
           "HF_HUB_OFFLINE": "1", "NADA_TINY": "0"}
    code = ("import app, sys; d = app.build_demo(tiny=False); "
            "print('built', sys.modules['nada.app.zerogpu'].gpu_mode(), 'spaces' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "built zero True" in out.stdout


def test_zero_gpu_defaults_fit_a_free_quota_and_the_page_says_the_cost(monkeypatch):
    assert adapt_tab.train_seconds(adapt_tab.ZERO_GPU_DEFAULT_STEPS, False, 2) <= 120  # under 2 min unauthenticated
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    line = adapt_tab.run_cost(adapt_tab.ZERO_GPU_DEFAULT_STEPS, True, ["clip-vit-b32", "clip-vit-b16"])
    assert "GPU time" in line and "3.5 min" in line and "1 min 30 s" in line  # every row: the probe is skipped
    shape = adapt_tab.run_cost(adapt_tab.ZERO_GPU_DEFAULT_STEPS, True, ["clip-vit-b32"], 0, "shape")
    assert shape != line  # the shape recipe probes: it costs more per step, one CLIP model less
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert adapt_tab.run_cost(300, True, None) == ""  # elsewhere there is no quota to speak of
    assert on_gpu(len, 5) is len


def test_threads_in_the_parent_do_not_block_a_fork():
    """The app forks from a server thread while others run (as ZeroGPU does)."""
    stop = threading.Event()
    busy = threading.Thread(target=lambda: stop.wait(30), daemon=True)
    busy.start()
    try:
        result = forked(lambda: sum(range(10)), lambda *a, **k: 30)()
        assert result == 45
    finally:
        stop.set()


def test_the_tiny_app_in_fork_mode_stops_a_run_in_the_worker_and_keeps_its_style(monkeypatch):
    """The whole app with every GPU task in a forked worker: Stop (a main-process request) reaches the run."""
    from gradio_client import Client

    from .test_app import adapt_values, cleanup_sessions, free_port, import_app

    monkeypatch.setenv("NADA_FORK_GPU", "1")
    app = import_app()
    demo = app.build_demo(tiny=True)  # the GPU tasks are wrapped here, in fork mode
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                **app.launch_kwargs())
    client = Client(demo.local_url, verbose=False)
    try:
        long_run = adapt_values(target_text="Zombie", iterations=100, probe=False)  # a long run, no probing
        job = client.submit(*long_run, api_name="/adapt")
        deadline = time.monotonic() + 90
        while not any(isinstance(o[0], str) for o in job.outputs()):  # the first preview came from the worker
            assert time.monotonic() < deadline and not job.done(), "training produced no preview"
            time.sleep(0.1)
        assert "Stopping after the current step" in client.predict(api_name="/stop")
        final = job.result(timeout=90)
        assert "stopped at step" in final[3] and final[4].endswith("zombie.safetensors")
        assert 1 <= load_style(final[4]).meta["steps"] < 100
        styled = client.predict("session:zombie", 5, 0.7, 1, 1.0, api_name="/generate")[1]  # rendered in a worker
        assert styled[0]["caption"] == "seed 5 · zombie"
    finally:
        client.close()
        demo.close()
        cleanup_sessions(demo)
