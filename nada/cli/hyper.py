"""``python -m nada hyper train PROMPTS --out hyper.safetensors``: train a hypernetwork over a prompt list (in this
process, or data-parallel on Ray Train with ``--address``); ``python -m nada hyper style SOURCE TARGET --hyper FILE
--out STYLE``: turn a prompt into a compact style with it, in one forward pass. Parsing and printing only: the work
lives in :mod:`nada.hyper`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
import time
from pathlib import Path

from ..clip_models import JUDGE_CLIP
from ..hyper import HyperConfig, Hypernet
from ..hyper.instant import hypernet_source, hypernet_style
from ..hyper.prompt_file import read_prompt_file
from ..hyper.ray_train import check_output, checkpoint_path, load_state, make_job, train_here, train_on_ray
from ..model_store import ModelStore
from ..styles import save_style
from ..styles.style_file import STYLE_SUFFIX
from ..tiny import TINY_NAME
from ..zoo.cluster import check_reachable, parse_address, resolve_address
from ..zoo.jobs import StoreSettings
from .args import CliError, check_writable, count, iterations, learning_rate, positive_int, seed

RAY_ONLY = ("workers", "gpus", "storage", "num_cpus", "max_failures")  # flags that mean nothing without --address


def _names(text: str) -> tuple[str, ...]:
    """Comma-separated registry names, at least one."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one name, e.g. clip-vit-b32,clip-vit-b16")
    return names


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``hyper`` subcommand (``hyper train``, ``hyper style``)."""
    p = sub.add_parser(
        "hyper", help="instant styles: train a hypernetwork over a prompt list, or make a style with one",
        description="A hypernetwork maps a prompt's CLIP text direction to a compact style in one forward pass. "
                    "'hyper train' trains one for a source generator over a prompt list; 'hyper style' makes a style "
                    "file with it.")
    commands = p.add_subparsers(dest="hyper_command", required=True, metavar="{train,style}")
    _register_train(commands)
    _register_style(commands)


def _register_train(commands: argparse._SubParsersAction) -> None:
    d = HyperConfig()
    t = commands.add_parser(
        "train", help="train a hypernetwork over a prompt list",
        description="Train a hypernetwork over PROMPTS (one prompt a line: 'target' or 'source -> target'; blank "
                    "lines and lines starting with '#' are skipped). One process by default; with --address, "
                    "data-parallel on Ray Train workers. Every --checkpoint-every steps the resumable state goes to "
                    "OUT's name with .ckpt.pt (hyper.ckpt.pt beside hyper.safetensors); --resume continues from it.")
    t.add_argument("prompts", metavar="PROMPTS", help="text file: one prompt a line")
    t.add_argument("-o", "--out", required=True, metavar="FILE", help="the hypernetwork file (.safetensors)")
    t.add_argument("--source", default="ffhq", help="generator: registry name or .pt/.pkl path (default: ffhq)")
    t.add_argument("--source-text", default="Photo", metavar="TEXT",
                   help="source text of lines that give only a target (default: Photo)")
    t.add_argument("--held-out", default=None, metavar="FILE",
                   help="prompts never trained on, scored every --eval-every steps by the judge")
    t.add_argument("--iterations", type=iterations, default=None, metavar="N", help=f"steps (default: {d.iterations})")
    t.add_argument("--prompts-per-step", type=positive_int, default=None, metavar="K",
                   help=f"prompts in each step's global batch (default: {d.prompts_per_step})")
    t.add_argument("--batch-size", type=positive_int, default=None, metavar="B",
                   help=f"latents per prompt (default: {d.batch_size})")
    t.add_argument("--lr", type=learning_rate, default=None, help=f"learning rate (default: {d.lr:g})")
    t.add_argument("--clip-models", type=_names, default=None, metavar="NAMES",
                   help=f"CLIP models of the losses and the input (default: {','.join(d.clip_models)})")
    t.add_argument("--hidden", type=positive_int, default=None, metavar="N",
                   help=f"width of the hypernetwork's MLP (default: {d.hidden})")
    t.add_argument("--checkpoint-every", type=count, default=None, metavar="N",
                   help=f"steps between checkpoints; 0 = none (default: {d.checkpoint_every})")
    t.add_argument("--eval-every", type=count, default=None, metavar="N",
                   help="steps between held-out evaluations; 0 = none (default: 100 with --held-out, else 0)")
    t.add_argument("--eval-samples", type=positive_int, default=None, metavar="N",
                   help=f"images per held-out prompt in an evaluation (default: {d.eval_samples})")
    t.add_argument("--judge", type=_names, default=(JUDGE_CLIP,), metavar="NAMES",
                   help=f"CLIP models that score the held-out prompts (default: {JUDGE_CLIP})")
    t.add_argument("--seed", type=seed, default=None, help=f"the run's random streams (default: {d.seed})")
    t.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint beside --out (its settings; --iterations may grow)")
    t.add_argument("--address", default=None,
                   help="train on Ray Train: auto (the cluster this machine belongs to), ray://host:port, "
                        "host:port, or local (a private Ray here, loopback only); default: one process, no Ray")
    t.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="Ray Train workers; each trains 1/N of every step's prompts (default: 2)")
    t.add_argument("--gpus", action="store_true", help="one GPU per Ray worker (NCCL); default: CPUs (gloo)")
    t.add_argument("--storage", default=None, metavar="PATH",
                   help="Ray Train's checkpoint storage: a folder all machines share, or a cloud URI (default: a "
                        "temporary folder on this machine, enough for a one-machine cluster)")
    t.add_argument("--num-cpus", type=positive_int, default=None, metavar="N",
                   help="CPUs of the private Ray that --address local starts (default: all)")
    t.add_argument("--max-failures", type=count, default=None, metavar="N",
                   help="times the workers are restarted from the last checkpoint after one fails (default: 3)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N, one process (default: auto)")
    t.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny random models, for tests
    t.set_defaults(run=run_train)


def _register_style(commands: argparse._SubParsersAction) -> None:
    s = commands.add_parser(
        "style", help="make a compact style from a prompt with a hypernetwork (no training)",
        description="Write the compact style a hypernetwork gives for SOURCE_TEXT -> TARGET_TEXT; render it with "
                    "'nada generate --style FILE'.")
    s.add_argument("source_text", metavar="SOURCE_TEXT", help="what the source generator makes, e.g. Photo")
    s.add_argument("target_text", metavar="TARGET_TEXT", help="the new domain, e.g. 'Pixar character'")
    s.add_argument("--hyper", required=True, metavar="FILE", help="the hypernetwork file (.safetensors)")
    s.add_argument("-o", "--out", required=True, metavar="FILE", help="the style file (.safetensors)")
    s.add_argument("--source", default=None,
                   help="generator: registry name or .pt/.pkl path (default: the one the hypernetwork records)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    s.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny random models, for tests
    s.set_defaults(run=run_style)


# ------------------------------------------------------------------------------------------------ train
def _config(args: argparse.Namespace, tiny: bool, resumed: dict | None) -> HyperConfig:
    """The run's settings: the checkpoint's when resuming, else the defaults; then the flags given."""
    config = HyperConfig.from_dict(resumed["config"]) if resumed is not None else HyperConfig()
    given = {"iterations": args.iterations, "prompts_per_step": args.prompts_per_step, "batch_size": args.batch_size,
             "lr": args.lr, "hidden": args.hidden, "clip_models": args.clip_models,
             "checkpoint_every": args.checkpoint_every, "eval_every": args.eval_every,
             "eval_samples": args.eval_samples, "seed": args.seed}
    changes = {k: v for k, v in given.items() if v is not None}
    if resumed is None and tiny and args.clip_models is None:
        changes["clip_models"] = config.clip_models[:1]  # tiny mode has one (tiny) CLIP model, whatever the names
    if resumed is None and args.eval_every is None and args.held_out is not None:
        changes["eval_every"] = min(100, changes.get("iterations", config.iterations))
    config = dataclasses.replace(config, **changes)
    config.validate()
    return config


def _check_ray_flags(args: argparse.Namespace) -> None:
    """Ray-only flags need --address; a malformed address is refused before anything starts."""
    if args.address is None:
        used = [f"--{name.replace('_', '-')}" for name in RAY_ONLY if getattr(args, name) not in (None, False)]
        if used:
            raise CliError(f"{', '.join(used)}: only for training on Ray; add --address local (a private Ray on this "
                           "machine) or the cluster's address (auto, ray://host:port); without --address training "
                           "runs here.")
    elif args.address not in ("auto", "local"):
        parse_address(args.address)  # ValueError: "... is not a Ray address"


def run_train(args: argparse.Namespace) -> int:
    """Check every input, train, render progress; exit 1 when training failed, 130 on Ctrl-C."""
    tiny = args.tiny or args.source == TINY_NAME
    source = TINY_NAME if tiny else str(args.source)
    _check_ray_flags(args)
    prompts = read_prompt_file(args.prompts, source_text=args.source_text)
    held = read_prompt_file(args.held_out, "held-out list", args.source_text) if args.held_out else []
    out = check_output(args.out)
    ckpt = checkpoint_path(out)
    resumed = None
    if args.resume:
        resumed = load_state(ckpt)
    elif ckpt.exists():
        raise CliError(f"{ckpt.name} holds the checkpoint of an earlier run: add --resume to continue it, or delete "
                       "it to start afresh. Nothing was started.")
    config = _config(args, tiny, resumed)
    settings = StoreSettings(tiny=tiny, device=None if tiny else args.device, judges=tuple(args.judge),
                             judge_samples=config.eval_samples)
    job = make_job(source, prompts, config, held, settings)
    if args.address not in (None, "local"):
        check_reachable(resolve_address(args.address))  # a ClusterError within seconds, before anything prints
    stop = threading.Event()
    if args.address is None:
        where = "in this process"
        records = train_here(job, out, resume=resumed, checkpoint_file=ckpt, stop=stop)
    else:
        workers = args.workers or 2
        where = f"on {workers} Ray Train workers ({args.address})"
        records = train_on_ray(job, out, workers=workers, address=args.address, use_gpu=args.gpus, resume=resumed,
                               checkpoint_file=ckpt, storage=args.storage, num_cpus=args.num_cpus,
                               max_failures=3 if args.max_failures is None else args.max_failures, stop=stop)
    start = int(resumed["step"]) if resumed is not None else 0
    print(f"training a hypernetwork for {source} over {len(prompts)} prompts {where}: steps {start + 1} to "
          f"{config.iterations}, {config.prompts_per_step} prompts x {config.batch_size} latents a step",
          file=sys.stderr)
    return _render(records, out, ckpt, start, config, time.perf_counter())


def _render(records, out: Path, ckpt: Path, start: int, config: HyperConfig, t0: float) -> int:
    """Print the records under a progress bar; the exit code."""
    from tqdm import tqdm  # third-party, only the progress bar needs it

    bar = tqdm(total=config.iterations, initial=start, unit="step", file=sys.stderr, dynamic_ncols=True)
    last = None
    try:
        for record in records:
            last = record
            if getattr(record, "message", None):
                bar.write(record.message, file=sys.stderr)
            if record.step != bar.n:
                bar.update(record.step - bar.n)
            if record.losses:
                bar.set_postfix(loss=f"{record.losses.get('total', float('nan')):.4f}", refresh=False)
            if record.figures:
                mean = ", ".join(f"{k} {v:.3f}" for k, v in record.figures.get("mean", {}).items())
                bar.write(f"step {record.step}: held-out {mean}", file=sys.stderr)
    except KeyboardInterrupt:
        records.close()
        bar.close()
        where = f"the checkpoint {ckpt.name}" if ckpt.exists() else "no checkpoint yet"
        print(f"interrupted: {where}; run the same command with --resume to go on", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if last is None or last.error:
        kept = f"; the last checkpoint is {ckpt.name} (--resume)" if ckpt.exists() else ""
        print(f"error: {last.error if last is not None else 'training produced nothing'}{kept}", file=sys.stderr)
        return 1
    extra = f", {last.restarts} restarts ({last.lost_steps} steps trained again)" if getattr(last, "restarts", 0) \
        else ""
    print(f"wrote {out} ({last.step} steps in {time.perf_counter() - t0:.1f} s{extra})")
    return 0


# ------------------------------------------------------------------------------------------------ style
def run_style(args: argparse.Namespace) -> int:
    """Load the hypernetwork and its models, write the style; exit 0."""
    out = Path(args.out)
    if out.suffix != STYLE_SUFFIX:
        raise CliError(f"a style file name ends in {STYLE_SUFFIX}, got '{out.name}'.")
    check_writable(out, "style file")
    source = TINY_NAME if args.tiny else str(args.source or hypernet_source(args.hyper) or "")
    if not source:
        Hypernet.load(args.hyper)  # HypernetMismatchError naming the file for anything but a hypernetwork
        raise CliError(f"'{Path(args.hyper).name}' records no source generator: give --source.")
    tiny = source == TINY_NAME
    store = ModelStore(tiny=tiny, device=None if tiny else args.device, local_files=True)
    t0 = time.perf_counter()
    style = hypernet_style(store, source, args.hyper, args.source_text, args.target_text)  # refused for another
    seconds = time.perf_counter() - t0  # generator, naming the file; the models' loading included
    save_style(style, out)
    print(f"wrote {out} ('{style.meta['source_text']}' -> '{style.meta['target_text']}' in {seconds:.2f} s; render "
          f"it with: nada generate --source {source} --style {out})")
    return 0


__all__ = ["register", "run_train", "run_style"]
