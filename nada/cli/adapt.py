"""``python -m nada adapt``: train a style from two prompts, show a progress bar, save the style (also on Ctrl-C and
SIGTERM, and to a fallback file when the output cannot be written)."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..clip_models import DEFAULT_CLIPS
from ..model_store import ModelStore
from ..style_trainer import StyleTrainer
from ..styles import export_style_pt, safe_style_name, save_style, style_path, styles_dir
from ..target_images import load_target_images
from ..tiny import TINY_NAME
from ..train import RECIPES, AdaptConfig
from .args import check_writable, iterations, learning_rate, parse_seeds, seed

DEFAULT_CLIP = ",".join(DEFAULT_CLIPS)  # "clip-vit-b32,clip-vit-b16"


def _rows(text: str) -> int | float:
    """``--layers-k``: a number of W+ rows (``12``) or a fraction of them (``0.67``, ``2/3``)."""
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        value = float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of rows or a fraction such as 2/3") from None
    return int(value) if value.is_integer() and value >= 1 or value == 0 else value


_TYPES = {"layers_k": _rows, "probe_micro_batch": int, "time_limit_s": float,  # fields whose default is None
          "lr": learning_rate, "iterations": iterations, "seed": seed}  # range-checked
# given by their own arguments
_NOT_FLAGS = {"source_text", "target_text", "preview_seeds", "clip_models", "target_images"}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``adapt`` subcommand: a recipe, one flag per :class:`AdaptConfig` field on top of it, models, output."""
    p = sub.add_parser(
        "adapt", help="adapt a generator to a text prompt and save the style",
        description="Adapt a copy of a generator from SOURCE text to TARGET text with CLIP guidance "
                    "(StyleGAN-NADA) and save the result as a style file. Settings come from --recipe; any flag "
                    "below overrides the recipe's value.")
    p.add_argument("--source", default="ffhq", help="generator: registry name or .pt/.pkl path (default: ffhq)")
    p.add_argument("--from", dest="source_text", required=True, metavar="TEXT", help='source text, e.g. "Photo"')
    p.add_argument("--to", dest="target_text", default="", metavar="TEXT",
                   help='target text, e.g. "Witcher" (optional with --to-images)')
    p.add_argument("--to-images", dest="target_images", nargs="+", default=(), metavar="PICTURE",
                   help="image-guided: 1-16 target pictures (a painting, frames of a cartoon); with --to as well, "
                        "the text and picture directions are averaged")
    p.add_argument("--recipe", default="paper", choices=list(RECIPES),
                   help="; ".join(f"{n}: {r.description}" for n, r in RECIPES.items()) + " (default: paper)")
    defaults = AdaptConfig()
    for f in dataclasses.fields(AdaptConfig):
        if f.name in _NOT_FLAGS:
            continue
        flag, default = "--" + f.name.replace("_", "-"), getattr(defaults, f.name)
        shown = f"(paper recipe: {default})"
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=shown)
        else:
            p.add_argument(flag, type=_TYPES.get(f.name, type(default)), default=argparse.SUPPRESS, help=shown)
    p.add_argument("--preview-seeds", default="0,1,2,3", help="seeds shown in previews (default: 0,1,2,3)")
    p.add_argument("--clip-models", default=None,
                   help=f"comma-separated CLIP models: names or paths (default: the recipe's, paper: {DEFAULT_CLIP})")
    p.add_argument("--clip-weights", default=None, help="comma-separated weights, one per model (default: all 1)")
    p.add_argument("--arcface", default="arcface-ir-se50", help="identity-loss weights: name or path")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("-o", "--out", default=None,
                   help="style file to write (.safetensors); default: checkpoints/styles/<target>.safetensors")
    p.add_argument("--export-pt", default=None, help="also write a full rosinality {'g_ema'} .pt here")
    p.add_argument("--preview-dir", default=None, help="write preview grids here (step0050.png, ...)")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny random models, for tests
    p.set_defaults(run=run_adapt)


def config_from_args(args: argparse.Namespace) -> AdaptConfig:
    """The :class:`AdaptConfig` described by parsed arguments: the recipe, then every flag given."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(AdaptConfig)
             if f.name not in _NOT_FLAGS and hasattr(args, f.name)}
    clips = {"clip_models": tuple(n.strip() for n in args.clip_models.split(",") if n.strip())} \
        if args.clip_models else {}
    if not args.target_text and not args.target_images:
        raise ValueError("Say what to adapt to: --to TEXT, or --to-images PICTURE ... (or both).")
    pictures = tuple(load_target_images(args.target_images)) if args.target_images else ()  # checked before loading
    return AdaptConfig.from_recipe(args.recipe, source_text=args.source_text, target_text=args.target_text,
                                   preview_seeds=tuple(parse_seeds(args.preview_seeds)), target_images=pictures,
                                   **given, **clips)


def trainer_for(args: argparse.Namespace, config: AdaptConfig, stop: threading.Event) -> StyleTrainer:
    """The run the arguments describe, its models loaded (``--tiny``: the tiny generator and CLIP)."""
    store = ModelStore(tiny=args.tiny, device=args.device, arcface_source=args.arcface, local_files=True)
    weights = [float(w) for w in args.clip_weights.split(",")] if args.clip_weights else None
    source = TINY_NAME if args.tiny else str(args.source)
    return StyleTrainer(store, source, config, clip_weights=weights, stop=stop)


class _StopOnSigterm:
    """While active, SIGTERM (a container stop, a job scheduler) asks training to stop after the current step, as
    the app's Stop does, so the steps trained so far are saved; a second SIGTERM interrupts at once, like Ctrl-C."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received = True
        self.stop.set()
        print("\nSIGTERM: stopping after the current step; the steps trained so far will be saved", file=sys.stderr)

    def __enter__(self) -> _StopOnSigterm:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def fallback_paths(out: Path) -> list[Path]:
    """Where a style goes when ``out`` cannot be written: the saved-styles folder, then the temp folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folders = [styles_dir(), Path(tempfile.gettempdir()) / "nada-styles"]
    return [f / f"{out.stem}-{stamp}{out.suffix}" for f in folders if f.resolve() != out.parent.resolve()]


def save_with_fallback(style, out: Path) -> tuple[Path, str | None]:
    """(where the style was saved, None) or, when ``out`` cannot be written, (a fallback file, why ``out`` failed):
    the trained work is never lost to a full disk or a folder that became read-only during training."""
    try:
        return save_style(style, out), None
    except OSError as exc:
        reason = f"{exc.strerror or exc}"
        for path in fallback_paths(out):
            try:
                return save_style(style, path), reason
            except OSError:
                continue
        raise


def run_adapt(args: argparse.Namespace) -> int:
    """Train, render progress, save the style; Ctrl-C and SIGTERM save what was trained so far. Every output is
    checked to be writable before anything loads."""
    from tqdm import tqdm  # third-party, only the progress bar needs it

    config = config_from_args(args)
    config.validate()
    out = Path(args.out) if args.out else style_path(safe_style_name(config.target_text or "image-style"))
    if out.suffix != ".safetensors":
        raise ValueError(f"The style file must end in .safetensors, got '{out}'.")
    check_writable(out, "style file")
    if args.export_pt:
        check_writable(Path(args.export_pt), "--export-pt file")
    preview_dir = Path(args.preview_dir) if args.preview_dir else None
    if preview_dir:
        check_writable(preview_dir / "step0000.png", "preview folder")
    stop = threading.Event()
    trainer = trainer_for(args, config, stop)
    for text in trainer.warnings:
        print(f"warning: {text}", file=sys.stderr)
    last = None
    interrupted = False
    bar = None
    with _StopOnSigterm(stop) as sigterm:
        it = trainer.run(style_every=0)
        try:
            for rec in it:
                last = rec
                bar = bar or tqdm(total=config.iterations, unit="step", file=sys.stderr, dynamic_ncols=True)
                bar.update(rec.step - bar.n)
                bar.set_postfix({k: f"{v:.4f}" for k, v in rec.losses.items()})
                if rec.preview is not None and preview_dir:
                    rec.preview.save(preview_dir / f"step{rec.step:04d}.png")
        except KeyboardInterrupt:
            interrupted = True
            it.close()
        finally:
            if bar is not None:
                bar.close()
    code = 143 if sigterm.received else 130  # 128 + the signal's number, as shells report it
    if last is None or last.generator is None or last.step == 0:
        print("error: stopped before the first step finished; nothing to save", file=sys.stderr)
        return code if interrupted or sigterm.received else 1
    style = last.style or trainer.style(last)  # an interrupted run's last record has none yet
    saved, failure = save_with_fallback(style, out)
    print(saved)
    if failure:
        print(f"error: could not write '{out}' ({failure}); the style was saved to '{saved}' instead", file=sys.stderr)
    if args.export_pt:
        try:
            print(export_style_pt(trainer.generator, style, args.export_pt))
        except OSError as exc:
            print(f"error: could not write '{args.export_pt}' ({exc.strerror or exc}); the style itself is in "
                  f"'{saved}' (python -m nada adapt --export-pt needs a writable place)", file=sys.stderr)
            failure = failure or str(exc)
    if last.error:
        print(f"error: {last.error} The style was saved from step {last.step}.", file=sys.stderr)
        return 1
    if interrupted or sigterm.received:
        why = "SIGTERM" if sigterm.received else "interrupted"
        print(f"{why}: saved the {last.step} steps trained so far", file=sys.stderr)
        return code
    return 1 if failure else 0
