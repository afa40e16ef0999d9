"""The convolution tuner: every path it may choose against the plain convolution, the choice itself (fastest,
timed once, on a small trial, with the real call's gradients), NADA_AUTOTUNE=0, the disk cache, and the generators
that use it (adaptation's copies, the served sources)."""

from __future__ import annotations

import copy
import json
import pickle
import time

import torch
import torch.nn.functional as F

from nada.model_store import load_source
from nada.nets.autotune import ConvTuner, autotune_enabled, machine_key
from nada.nets.ops import CONV3X3_PATHS, UP_PATHS, conv3x3_paths, fixed_up_path, up_paths
from nada.tiny import tiny_generator

from .helpers import synthesis_and_wplus_grad

CL = torch.channels_last


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def _grads(path, x, w, gy):
    out = path(x, w)
    return (out, *torch.autograd.grad(out, (x, w), gy))


def test_every_up_sampling_path_equals_the_transposed_convolution():
    """Output, input and weight gradients of each path against float64 conv_transpose2d, odd sizes, both layouts."""
    torch.manual_seed(0)
    for n, c, k, h, w in [(2, 256, 8, 5, 4), (1, 16, 24, 7, 9), (3, 8, 8, 1, 1)]:
        for fmt in (CL, torch.contiguous_format):
            x = torch.randn(n, c, h, w).contiguous(memory_format=fmt).requires_grad_(True)
            wt = torch.randn(c, k, 3, 3, requires_grad=True)
            ref = F.conv_transpose2d(x.double(), wt.double(), stride=2)
            gy = torch.randn(ref.shape, dtype=torch.float64)
            want = (ref, *torch.autograd.grad(ref, (x, wt), gy))
            for name in UP_PATHS:
                got = _grads(UP_PATHS[name], x, wt, gy.float())
                assert got[0].shape == ref.shape, name
                for a, b in zip(got, want):
                    assert _rel(a, b) < 1e-5, name


def test_up_sampling_candidates_leave_out_only_paths_measured_slower():
    w = torch.randn(256, 8, 3, 3, requires_grad=True)
    wide = torch.randn(2, 256, 5, 4).contiguous(memory_format=CL)
    narrow = torch.randn(2, 128, 5, 4).contiguous(memory_format=CL)
    assert set(up_paths(wide, w)) == {"transposed-contiguous-wgrad"}  # dominant from 256 channels
    assert set(up_paths(narrow, w[:128])) == {"transposed", "transposed-contiguous-wgrad", "phases"}
    assert set(up_paths(wide.contiguous(), w)) == {"transposed", "phases"}  # the fast gradient needs channels-last
    with torch.no_grad():
        assert set(up_paths(wide, w)) == {"transposed", "phases"}  # no weight gradient wanted
    for x, wt in [(wide, w), (narrow, w[:128]), (wide.contiguous(), w)]:
        assert fixed_up_path(x, wt) in up_paths(x, wt)


def test_every_3x3_path_equals_the_direct_convolution():
    torch.manual_seed(0)
    x = torch.randn(2, 96, 13, 10).contiguous(memory_format=CL).requires_grad_(True)
    w = torch.randn(100, 96, 3, 3, requires_grad=True)
    ref = F.conv2d(x.double(), w.double(), padding=1)
    gy = torch.randn(ref.shape, dtype=torch.float64)
    want = (ref, *torch.autograd.grad(ref, (x, w), gy))
    assert set(conv3x3_paths(x, w)) == {"direct", "winograd"}
    for name, path in CONV3X3_PATHS.items():
        for a, b in zip(_grads(path, x, w, gy.float()), want):
            assert _rel(a, b) < 2e-5, name
    with torch.autocast("cpu", dtype=torch.bfloat16):  # Winograd's transforms need float32
        assert set(conv3x3_paths(x, w)) == {"direct"}
    assert set(conv3x3_paths(x[:, :64], w[:64, :64])) == {"direct"}  # narrow layers: Winograd never pays


def test_fixed_choices_are_the_measured_crossovers():
    w = torch.randn(256, 8, 3, 3, requires_grad=True)
    wide = torch.randn(2, 256, 5, 4).contiguous(memory_format=CL)
    assert fixed_up_path(wide, w) == "transposed-contiguous-wgrad"
    assert fixed_up_path(wide[:, :128], w[:128]) == "transposed"  # narrow: the copies cost more
    with torch.no_grad():
        assert fixed_up_path(wide, w) == "transposed"  # no weight gradient wanted


def _slow_and_fast(calls: list[str], slow_s: float = 0.03):
    def slow(x, w):
        calls.append("slow")
        time.sleep(slow_s)
        return F.conv2d(x, w, padding=1)

    def fast(x, w):
        calls.append("fast")
        return F.conv2d(x, w, padding=1)

    return {"slow": slow, "fast": fast}


def test_tuner_keeps_the_fastest_path_and_times_each_shape_once():
    """Without gradients the paths race on the call's own input: the winner's output is returned, nothing is
    computed twice but the losers' runs; the choice is remembered per shape, whatever the batch."""
    calls: list[str] = []
    paths = _slow_and_fast(calls)
    tuner = ConvTuner(enabled=True, min_macs=0, rerun_below_s=0)
    x, w = torch.randn(2, 8, 16, 16), torch.randn(8, 8, 3, 3)  # a batch no larger than the paths: a whole race
    out = tuner.run("conv3x3", x, w, paths, fixed="slow")
    assert torch.equal(out, F.conv2d(x, w, padding=1)) and calls == ["slow", "fast"]
    assert tuner.choices == {next(iter(tuner.choices)): "fast"}
    tuner.run("conv3x3", x, w, paths, fixed="slow")
    assert calls == ["slow", "fast", "fast"]
    tuner.run("conv3x3", torch.randn(2, 8, 8, 8), w, paths, fixed="slow")
    assert len(calls) == 5  # a new shape is timed
    report = tuner.report()
    assert report["shapes"] == 2 and report["paths"] == {"fast": 2}
    assert 2 * 0.03 <= report["seconds"] < 1.0  # the tuning cost: the slow path's runs, not the winner's
    assert all(t["slow"] >= 0.03 > t["fast"] for t in tuner.timings.values())


def test_each_batch_size_is_its_own_decision():
    """The fastest path changes with the batch (a race on one sample chose slower paths for batch 4)."""
    calls: list[str] = []
    tuner = ConvTuner(enabled=True, min_macs=0, rerun_below_s=0)
    w = torch.randn(8, 8, 3, 3)
    for n in (1, 4, 4):
        out = tuner.run("conv3x3", torch.randn(n, 8, 8, 8), w, _slow_and_fast(calls), fixed="slow")
        assert out.shape[0] == n
    assert calls == ["slow", "fast", "slow", "fast", "fast"] and len(tuner.choices) == 2


def test_short_runs_and_close_calls_are_timed_twice():
    calls: list[str] = []
    tuner = ConvTuner(enabled=True, min_macs=0, rerun_below_s=1.0)
    tuner.run("conv3x3", torch.randn(1, 8, 8, 8), torch.randn(8, 8, 3, 3), _slow_and_fast(calls), fixed="slow")
    assert calls == ["slow", "slow", "fast", "fast"]  # the first run of each also sets up its kernels
    calls.clear()

    def even(name):
        return lambda x, w: calls.append(name) or time.sleep(0.15) or F.conv2d(x, w, padding=1)

    paths = {"a": even("a"), "b": even("b")}  # a close call: both are timed once more
    ConvTuner(enabled=True, min_macs=0, rerun_below_s=0).run("conv3x3", torch.randn(1, 8, 8, 8),
                                                             torch.randn(8, 8, 3, 3), paths, fixed="a")
    assert calls == ["a", "b", "a", "b"]


def test_a_call_that_needs_gradients_can_time_a_copy_with_those_gradients():
    seen = []

    def record(x, w):
        seen.append((tuple(x.shape), x.requires_grad, w.requires_grad, x.is_contiguous(memory_format=CL)))
        return F.conv2d(x, w, padding=1)

    tuner = ConvTuner(enabled=True, min_macs=0, rerun_below_s=0, gradients=True)
    x = torch.randn(8, 4, 32, 20).contiguous(memory_format=CL).requires_grad_(True)
    w = torch.randn(4, 4, 3, 3)
    out = tuner.run("conv3x3", x, w, {"a": record, "b": record}, fixed="a")  # the layer probe: input gradient only
    assert seen[:2] == [((8, 4, 32, 20), True, False, True)] * 2  # the trials: a copy, the real gradients
    assert seen[2] == ((8, 4, 32, 20), True, False, True) and out.requires_grad  # then the call itself
    (gx,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(gx, torch.autograd.grad(F.conv2d(x, w, padding=1).sum(), x)[0])
    assert x.grad is None and w.grad is None  # the trials left no gradients behind
    with torch.no_grad():
        tuner.run("conv3x3", x, w.requires_grad_(True), {"a": record, "b": record}, fixed="a")
    assert seen[-1][0] == (8, 4, 32, 20) and len(tuner.choices) == 2  # a no-grad call: its own race, whole batch


def test_calls_that_need_gradients_keep_the_fixed_choice_by_default():
    calls: list[str] = []
    paths = _slow_and_fast(calls)
    tuner = ConvTuner(enabled=True, min_macs=0, rerun_below_s=0)
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    tuner.run("conv3x3", x, torch.randn(8, 8, 3, 3), paths, fixed="slow")
    assert calls == ["slow"] and tuner.choices == {}
    with torch.no_grad():
        tuner.run("conv3x3", x, torch.randn(8, 8, 3, 3), paths, fixed="slow")
    assert calls[1:] == ["slow", "fast"] and list(tuner.choices.values()) == ["fast"]


def test_autotune_off_and_unsupported_tensors_use_the_fixed_choice(monkeypatch):
    calls: list[str] = []
    paths = _slow_and_fast(calls)
    x, w = torch.randn(1, 8, 8, 8), torch.randn(8, 8, 3, 3)
    monkeypatch.setenv("NADA_AUTOTUNE", "0")
    assert not autotune_enabled() and not ConvTuner().enabled
    ConvTuner(min_macs=0).run("conv3x3", x, w, paths, fixed="slow")
    assert calls == ["slow"]
    monkeypatch.delenv("NADA_AUTOTUNE")
    tuner = ConvTuner(min_macs=0)
    assert tuner.enabled
    tuner.run("conv3x3", x.double(), w.double(), paths, fixed="slow")
    tuner.run("conv3x3", x, w, {"slow": paths["slow"]}, fixed="slow")
    ConvTuner().run("conv3x3", x, w, paths, fixed="slow")  # too small to be worth timing
    assert calls == ["slow"] * 4 and tuner.choices == {}


def test_disk_cache_is_reused_on_the_same_machine_only(tmp_path):
    calls: list[str] = []
    paths = _slow_and_fast(calls, slow_s=0.03)
    cache = tmp_path / "tune.json"
    x, w = torch.randn(1, 8, 8, 8), torch.randn(8, 8, 3, 3)
    ConvTuner(enabled=True, cache_path=cache, min_macs=0).run("conv3x3", x, w, paths, fixed="slow")
    data = json.loads(cache.read_text())
    assert data["machine"] == machine_key() and list(data["choices"].values()) == ["fast"]
    calls.clear()
    again = ConvTuner(enabled=True, cache_path=cache, min_macs=0)
    again.run("conv3x3", x, w, paths, fixed="slow")
    assert calls == ["fast"]  # nothing re-timed
    assert again.report()["tuned"] == 0 and again.report()["seconds"] == 0
    cache.write_text(json.dumps({**data, "machine": "AVX2|64 threads|torch 0.1"}))
    calls.clear()
    ConvTuner(enabled=True, cache_path=cache, min_macs=0).run("conv3x3", x, w, paths, fixed="slow")
    assert "slow" in calls  # another machine's choices are not trusted
    cache.write_text("{not json")
    assert ConvTuner(enabled=True, cache_path=cache, min_macs=0).choices == {}  # a damaged cache is ignored


def test_auto_generator_matches_batched_and_its_copies_share_one_tuner():
    g = tiny_generator(0, size=32, channel_max=256)
    auto = g.shared_copy().set_conv_impl("auto", ConvTuner(enabled=True, min_macs=1 << 20))
    tuner = auto.conv_tuner
    assert g.conv_impl == "batched" and g.conv_tuner is None and isinstance(tuner, ConvTuner)
    assert copy.deepcopy(auto).conv_tuner is tuner and auto.shared_copy().conv_tuner is tuner
    sent = pickle.loads(pickle.dumps(auto))  # e.g. to a worker process: the choices travel, the lock is new
    assert sent.conv_impl == "auto" and sent.conv_tuner.choices == tuner.choices and sent.conv_tuner is not tuner
    wp = torch.randn(2, g.n_latent, g.style_dim)
    outs, grads = zip(*(synthesis_and_wplus_grad(gen, wp) for gen in (g, auto)), strict=True)
    assert _rel(outs[1], outs[0]) < 1e-5 and _rel(grads[1], grads[0]) < 1e-4
    with torch.no_grad():
        assert _rel(auto.synthesis(wp), outs[0]) < 1e-5
    ops = {key.split("|")[0] for key in tuner.choices}
    assert ops == {"conv3x3", "up"} and tuner.report()["seconds"] > 0  # both kinds were timed


def test_served_sources_and_adaptation_use_the_tuner_on_the_cpu(tiny_clip):
    from nada.train import AdaptConfig, adapt

    g = load_source("tiny", "cpu")
    assert g.conv_impl == "auto"
    shared = ConvTuner(enabled=True, min_macs=0)
    g2 = load_source("tiny", "cpu", tuner=shared)
    assert g2.conv_tuner is shared
    cfg = AdaptConfig(iterations=1, batch_size=2, preview_every=0)
    for _ in adapt(g2, [(tiny_clip, 1.0)], cfg):
        pass
    assert g2.conv_impl == "auto" and g2.conv_tuner is shared
    grads = {key.split("|")[4] for key in shared.choices}
    assert grads == {"nograd"}  # the frozen copy's passes were timed; the trained copy's keep the fixed choices

