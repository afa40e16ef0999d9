"""How often the probed layers change between consecutive steps (tiny models): the evidence behind
``probe_every``. Run: ``python -m bench.layer_changes [--steps 40] [--k 6]``."""

from __future__ import annotations

import argparse

from nada.tiny import tiny_clip, tiny_generator
from nada.train import AdaptConfig, adapt


def layer_change_rate(steps: int, k: int | None, seed: int = 0) -> tuple[float, float]:
    """(fraction of steps whose layer set differs from the previous step's, mean fraction of layers replaced)."""
    g = tiny_generator(size=64)
    cfg = AdaptConfig(source_text="photo", target_text="sketch", iterations=steps, batch_size=2, probe_batch=8,
                      layers_k=k, preview_every=0, seed=seed, lr=0.002)
    sets = [set(r.layers) for r in adapt(g, [(tiny_clip(), 1.0)], cfg)]
    pairs = list(zip(sets, sets[1:]))
    changed = sum(a != b for a, b in pairs) / len(pairs)
    replaced = sum(len(b - a) / max(len(b), 1) for a, b in pairs) / len(pairs)
    return changed, replaced


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--k", type=int, default=None, help="layers_k (default: 2/3 of n_latent)")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    for seed in range(args.seeds):
        changed, replaced = layer_change_rate(args.steps, args.k, seed)
        print(f"seed {seed}: layer set changed on {changed:.0%} of steps; {replaced:.0%} of layers replaced per step")


if __name__ == "__main__":
    main()
