"""Where a Generate or a training step spends its time on this CPU: per synthesis layer and per operator.

``python -m bench.profile [--size 1024] [--batch 1] [--repeat 3]`` prints the CPU capability, then the median
seconds of each synthesis block (forward hooks on ``conv1``, ``convs.i`` and ``to_rgbs.i``) and the operators with
the most self CPU time (``torch.profiler``). ``--step`` profiles one no-probe adaptation step instead (the
``adapt<size>_noprobe`` benchmark case: batch 2, ViT-B/32 + ViT-B/16): its phase split and its operators by input
shape, which tells CLIP's matrix products from the generator's convolutions. The generator convolves as the app's
does (per-shape timed paths, ``nada.nets.autotune``; ``NADA_AUTOTUNE=0`` for the fixed ones). To see what an AVX2
machine runs, start it with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` (ATen and oneDNN then dispatch their
AVX2 kernels; the capability line says which). Random weights, nothing downloaded; a map, not a benchmark case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict

import torch

from nada.model_store import serving_impl
from nada.nets.stylegan2 import Generator
from nada.runtime import tune_allocator


def layer_seconds(g: Generator, z: torch.Tensor, repeat: int) -> dict[str, float]:
    """Median wall seconds of each synthesis block over ``repeat`` no-grad generations (after one warm-up)."""
    times: dict[str, list[float]] = defaultdict(list)
    started: dict[str, float] = {}
    hooks = []
    blocks = {n: m for n, m in g.named_modules() if n == "conv1" or n.count(".") == 1 and
              n.split(".")[0] in ("convs", "to_rgbs")}
    for name, module in blocks.items():
        hooks.append(module.register_forward_pre_hook(lambda m, a, name=name: started.__setitem__(name,
                                                                                                 time.perf_counter())))
        hooks.append(module.register_forward_hook(lambda m, a, o, name=name: times[name].append(
            time.perf_counter() - started[name])))
    try:
        with torch.no_grad():
            for _ in range(repeat + 1):
                g(z, truncation=0.7, w_avg=torch.zeros(1, g.style_dim))
    finally:
        for h in hooks:
            h.remove()
    return {name: statistics.median(ts[1:]) for name, ts in times.items()}  # the warm-up call dropped


def profile_step(size: int, repeat: int) -> None:
    """Phase split (median of ``repeat`` steps after a warm-up) and top operators of one no-probe step."""
    from .adapt import adapt_case

    run, extra = adapt_case(size, probe=False)(torch.device("cpu"))
    for _ in range(repeat + 1):
        run()
    print("step phases (s): " + ", ".join(f"{k} {v:.3f}" for k, v in extra().items()))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=30,
                                                             max_name_column_width=32, max_shapes_column_width=72))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--step", action="store_true", help="profile a no-probe adaptation step at --size")
    args = parser.parse_args()
    tune_allocator()
    torch.manual_seed(0)
    env = {k: os.environ.get(k, "-") for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "NADA_AUTOTUNE")}
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()} ({', '.join(f'{k}={v}' for k, v in env.items())})"
          f", torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size} px, "
          f"{'a no-probe step' if args.step else f'batch {args.batch}'}")
    if args.step:
        profile_step(args.size, args.repeat)
        return
    g = serving_impl(Generator(args.size).eval().requires_grad_(False), "cpu")
    z = torch.randn(args.batch, 512)
    per_layer = layer_seconds(g, z, args.repeat)
    total = sum(per_layer.values())
    print(f"synthesis blocks: {total:.3f} s in all (tuning, in the warm-up call: {g.conv_tuner.report()})")
    for name, s in sorted(per_layer.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {name:<12} {s:7.3f} s  {100 * s / total:5.1f}%")
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        g(z, truncation=0.7, w_avg=torch.zeros(1, 512))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
