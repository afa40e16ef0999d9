"""``python -m nada zoo PROMPTS --out DIR``: train a style per line of a prompt file, on this machine or as Ray tasks
on a cluster; print a line per finished style under an overall progress bar with the time left."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..clip_models import JUDGE_CLIP
from ..tiny import TINY_NAME
from ..train import RECIPES
from ..zoo.jobs import StoreSettings
from ..zoo.prompts import read_prompts
from ..zoo.runner import DEFAULT_SEEDS, run_zoo
from .args import iterations, parse_seeds, positive_int, whole_number


def _fraction(text: str) -> float:
    """``--gpus-per-job``: a number >= 0 (0.25 packs four batches on one GPU)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number such as 1, 0.5 or 0.25") from None
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value:g} GPUs per batch is outside 0 to 64")
    return value


def _samples(text: str) -> int:
    """``--judge-samples``: 0 (no figures) or at least 2 (diversity compares pairs)."""
    value = whole_number(text)
    if value != 0 and not 2 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{value} samples: give 0 (no figures) or 2 to 1024")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``zoo`` subcommand."""
    p = sub.add_parser(
        "zoo", help="train many styles from a prompt file (batched; optionally on a Ray cluster)",
        description="Train one style per line of PROMPTS ('target', or 'source -> target', optionally followed by "
                    "'| recipe=compact seed=3 iterations=100 ...'). Compact styles with the same step count train "
                    "together in batches. Each finished style is written at once to DIR/<name>.safetensors and "
                    "recorded in DIR/zoo.json (prompt, recipe, seed, seconds, where it ran, the held-out judge's "
                    "figures, any error); DIR/sheet.png and DIR/index.html show them all at the end. Rerunning the "
                    "same command skips the styles already finished with the same settings.")
    p.add_argument("prompts", metavar="PROMPTS", help="text file: one style per line")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="zoo folder (made if missing)")
    p.add_argument("--source", default="ffhq", help="generator: registry name or .pt/.pkl path (default: ffhq)")
    p.add_argument("--source-text", default="Photo", metavar="TEXT",
                   help="source text of lines that give only a target (default: Photo)")
    p.add_argument("--recipe", default="compact", choices=list(RECIPES),
                   help="recipe of lines that name none (default: compact)")
    p.add_argument("--iterations", type=iterations, default=None, metavar="N",
                   help="training steps of lines that set none (default: the recipe's)")
    p.add_argument("--styles-per-batch", type=positive_int, default=4, metavar="N",
                   help="compact styles trained together in one batch (default: 4)")
    p.add_argument("--address", default=None,
                   help="run the batches as Ray tasks: auto (the cluster this machine belongs to), ray://host:port, "
                        "host:port, or local (a private Ray on this machine, loopback only); default: no Ray, "
                        "batch after batch here")
    p.add_argument("--gpus-per-job", type=_fraction, default=None, metavar="F",
                   help="GPUs per Ray task: 0.25 packs four batches on a GPU (default: 1 when the cluster has GPUs, "
                        "else 0)")
    p.add_argument("--num-cpus", type=positive_int, default=None, metavar="N",
                   help="CPUs of the private Ray that --address local starts (default: all)")
    p.add_argument("--retries", type=int, default=3, metavar="N",
                   help="times a Ray task whose worker died is retried (default: 3)")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                   help="seeds of the contact sheet's columns (default: 0,1,2,3)")
    p.add_argument("--judge-samples", type=_samples, default=8, metavar="N",
                   help=f"samples the held-out judge ({JUDGE_CLIP}) scores per style; 0 for no figures (default: 8)")
    p.add_argument("--judge", default=JUDGE_CLIP, help=f"comma-separated judge CLIP models (default: {JUDGE_CLIP})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny random models, for tests
    p.set_defaults(run=run_zoo_command)


def run_zoo_command(args: argparse.Namespace) -> int:
    """Read the prompt file, run the zoo, render its events; exit 1 when a style failed, 130 on Ctrl-C."""
    from tqdm import tqdm  # third-party, only the progress bar needs it

    seeds = parse_seeds(args.seeds)
    source = TINY_NAME if args.tiny else str(args.source)
    if args.retries < 0:
        raise ValueError(f"--retries must be 0 or more, got {args.retries}.")
    entries = read_prompts(Path(args.prompts), source_text=args.source_text, recipe=args.recipe, source=source)
    if args.iterations is not None:
        entries = [e if "iterations" in e.overrides else
                   dataclasses.replace(e, override_items={**e.overrides, "iterations": args.iterations})
                   for e in entries]
    judges = tuple(n.strip() for n in args.judge.split(",") if n.strip())
    settings = StoreSettings(tiny=args.tiny, device=None if args.tiny else args.device, judges=judges or (JUDGE_CLIP,),
                             judge_samples=args.judge_samples)
    events = run_zoo(entries, args.out, source=source, styles_per_batch=args.styles_per_batch, address=args.address,
                     gpus_per_job=args.gpus_per_job, settings=settings, seeds=seeds, num_cpus=args.num_cpus,
                     retries=args.retries)
    bar, failed = None, 0
    try:
        for event in events:
            if event.kind == "plan":
                print(event.message, file=sys.stderr)
                bar = tqdm(total=event.total_steps, unit="step", file=sys.stderr, dynamic_ncols=True)
            elif event.kind == "steps" and bar is not None:
                bar.update(event.steps)
            elif event.kind in ("style", "skip", "pictures", "end"):
                failed += event.kind == "style" and event.record is not None and event.record["status"] == "failed"
                (bar.write if bar is not None else print)(event.message)
            elif event.kind in ("warning", "info"):
                text = ("warning: " if event.kind == "warning" else "") + event.message
                if bar is not None:
                    bar.write(text, file=sys.stderr)
                else:
                    print(text, file=sys.stderr)
    except KeyboardInterrupt:
        events.close()
        if bar is not None:
            bar.close()
        print(f"interrupted: the styles finished so far are in {args.out} and its zoo.json; run the same command "
              "again to go on", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    return 1 if failed else 0


__all__ = ["register", "run_zoo_command"]
