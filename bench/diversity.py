"""``python -m bench.diversity``: what the in-domain loss buys and costs, recipe against recipe.

Trains the same source towards one target with "paper", "diverse", "compact" and compact + in-domain, each for the
same steps and batch, and reports per variant: the target-score gain (``clip_target_adapted - clip_target_source`` of
:func:`nada.metrics.evaluate`), the direction score ``s_dir``, the CLIP-space diversity before and after, the angle
drift (the in-domain loss itself over the evaluation images: how far their pairwise angles moved) and the mean step
time. Stand-ins (CPU, seconds): ``colour`` = the tiny generator with the colour CLIP of tests/helpers.py (an image is
its mean colour; known geometry), ``tiny`` = the tiny generator with the tiny random CLIP. The real-size step times
are the ``adapt256_diverse`` / ``adapt256_paper_b4`` / ``adapt256_compact`` cases of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from nada.clip_loss import ClipGuide, indomain_loss
from nada.metrics import evaluate
from nada.nets.stylegan2 import Generator
from nada.tiny import tiny_clip, tiny_generator
from nada.train import RECIPES, AdaptConfig, adapt

VARIANTS = {  # name -> (recipe, overrides)
    "paper": ("paper", {}),
    "diverse": ("diverse", {}),
    "compact": ("compact", {}),
    "compact+indomain": ("compact", {"lambda_indomain": RECIPES["diverse"].settings["lambda_indomain"]}),
    # the recipes as they were before they followed StyleDomain's published configs (issues 24 and 25), for a
    # comparison on the same machine: the paper's settings with s * (1 + delta) at lr 0.05 x 0.8 and the paper's
    # betas; the paper's settings plus the in-domain loss at 1.0 on a batch of 4
    "compact-before": ("paper", {"params": "modulation", "lr": 0.05 * 0.8, "betas": (0.0, 0.99 ** 0.8)}),
    "diverse-before": ("paper", {"lambda_indomain": 1.0, "batch_size": 4}),
}


def stand_in(name: str, k: float = 1.0, size: int = 32) -> tuple[Generator, torch.nn.Module]:
    """(generator, CLIP model) of a stand-in; ``k``: the colour CLIP's constant feature (smaller: colours weigh more,
    and the paper recipe collapses; 10, the tests' default, hardly does); ``size``: the tiny generator's (32: 8 W+
    rows, so a frozen coarse group leaves one convolution; 64: 10 rows, four medium ones)."""
    if name == "colour":
        from tests.helpers import ColourClip  # the stand-in the tests use (known embedding space)
        return tiny_generator(size=size), ColourClip(k=k)
    return tiny_generator(size=size), tiny_clip()


@torch.no_grad()
def angle_drift(source: Generator, adapted: Generator, clip: torch.nn.Module, source_text: str, target_text: str,
                n: int, seed: int) -> float:
    """The in-domain loss between the adapted and the source generator's features of ``n`` seeded untruncated
    images (not the training batches)."""
    guide = ClipGuide([(clip, 1.0)], source_text, target_text)
    z = torch.randn(n, source.style_dim, generator=torch.Generator().manual_seed(seed))
    w = source.mapping(z)  # [n, style_dim]
    noise = source.make_noise(n, generator=torch.Generator().manual_seed(seed + 1))
    src, ada = (guide.image_features(g.synthesis(w, noise=noise))[0] for g in (source, adapted))  # [n, D]
    return float(indomain_loss(ada, src))


def measure(generator: Generator, clip: torch.nn.Module, recipe: str, overrides: dict, *, target: str,
            steps: int | None, batch: int | None, lr_scale: float, seed: int, n: int, truncation: float) -> dict:
    """One variant's figures (see the module docstring); ``steps`` / ``batch`` None keep the recipe's own."""
    given = {k: v for k, v in (("iterations", steps), ("batch_size", batch)) if v is not None}
    cfg = AdaptConfig.from_recipe(recipe, source_text="photo", target_text=target, preview_every=0,
                                  preview_seeds=(0,), seed=seed, **{**given, **overrides})
    cfg = dataclasses.replace(cfg, lr=cfg.lr * lr_scale)
    t0 = time.perf_counter()
    last = list(adapt(generator, [(clip, 1.0)], cfg))[-1]
    step_s = (time.perf_counter() - t0) / max(last.step, 1)
    r = evaluate(generator, last.generator, [(clip, 1.0)], "photo", target, n=n, truncation=truncation)
    return {"gain": r["clip_target_adapted"] - r["clip_target_source"], "s_dir": r["s_dir"],
            "div_source": r["diversity_source"], "div_adapted": r["diversity_adapted"],
            "drift": angle_drift(generator, last.generator, clip, "photo", target, n, 123), "step_ms": 1000 * step_s,
            "lr": cfg.lr, "lambda_indomain": cfg.lambda_indomain, "steps": cfg.iterations, "batch": cfg.batch_size}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.diversity", description=__doc__.split("\n\n")[0])
    p.add_argument("--standin", choices=("colour", "tiny"), default="colour")
    p.add_argument("--k", type=float, default=1.0, help="the colour CLIP's constant feature")
    p.add_argument("--target", default="red")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--batch", type=int, default=RECIPES["diverse"].settings["batch_size"], help="every variant's")
    p.add_argument("--lr-scale", type=float, default=1.0, help="multiplies each recipe's learning rate")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds (figures averaged)")
    p.add_argument("--n", type=int, default=64, help="evaluation images")
    p.add_argument("--truncation", type=float, default=1.0, help="of the evaluation images")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--own-settings", action="store_true",
                   help="each recipe's own steps and batch (the published values) instead of --steps/--batch")
    p.add_argument("--size", type=int, default=32, choices=(32, 64), help="the tiny generator's size")
    args = p.parse_args(argv)
    if args.own_settings:
        args.steps = args.batch = None
    torch.set_num_threads(1)
    generator, clip = stand_in(args.standin, args.k, args.size)
    seeds = [int(s) for s in args.seeds.split(",")]
    which = f"colour (k={args.k:g})" if args.standin == "colour" else args.standin
    plan = "each recipe's own steps and batch" if args.own_settings else f"{args.steps} steps, batch {args.batch}"
    print(f"stand-in {which}, {args.size} px, photo -> {args.target}, {plan}, lr x{args.lr_scale:g}, seeds {seeds}, "
          f"{args.n} images at truncation {args.truncation:g}; cpu {torch.backends.cpu.get_cpu_capability()}, "
          "1 thread")
    print("| variant | steps x batch | lr | lambda_indomain | target gain | s_dir | diversity source -> adapted | "
          "angle drift | step ms |\n|---|---|---|---|---|---|---|---|---|")
    for name in args.variants.split(","):
        recipe, overrides = VARIANTS[name]
        runs = [measure(generator, clip, recipe, overrides, target=args.target, steps=args.steps, batch=args.batch,
                        lr_scale=args.lr_scale, seed=s, n=args.n, truncation=args.truncation) for s in seeds]
        m = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
        print(f"| {name} | {m['steps']:g} x {m['batch']:g} "
              f"| {m['lr']:g} | {m['lambda_indomain']:g} | {m['gain']:.3f} | {m['s_dir']:.3f} | "
              f"{m['div_source']:.4f} -> {m['div_adapted']:.4f} | {m['drift']:.5f} | {m['step_ms']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
