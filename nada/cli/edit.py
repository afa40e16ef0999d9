"""``python -m nada edit learn``: learn a text-defined edit direction once and save it as an edit file.

``nada edit learn --from "face" --to "smiling face" -o smile.pt`` (or ``--preset smile``). The file is safetensors
whatever its suffix (``.pt`` included): one ``[n_latent, 512]`` tensor and metadata naming the generator, so that
``nada invert --edit smile.pt:1.5`` loads it without pickle and refuses it on another generator. ``--tiny`` learns on
the tiny inversion generator (``invert --tiny``'s) with a tiny random CLIP, for tests and offline demos.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from ..clip_models import load_clip
from ..edits import PRESETS, EditConfig, edit_prompts, learn_steps, make_edit, save_edit
from ..id_loss import load_id_loss
from ..invert import tiny_inversion_models
from ..model_store import load_source
from ..runtime import pick_device
from ..tiny import TINY_INVERT, tiny_clip
from ..weights import REGISTRY, WeightsUnavailableError
from .args import CliError, check_writable, positive_int, seed

TINY_STEPS = 8  # --tiny: a few steps of the tiny models (seconds)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``edit`` subcommand (with ``learn`` and ``presets``)."""
    p = sub.add_parser("edit", help="learn a text-defined face edit (smile, older, glasses, ...)",
                       description="Learn edit directions for inverted photos from two texts with CLIP; apply them "
                                   "with `nada invert --edit FILE:STRENGTH`.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    learn = actions.add_parser(
        "learn", help="learn one edit direction and save it",
        description="Learn one W+ offset, shared by all faces, whose image change follows the CLIP direction from "
                    "--from to --to; write it as an edit file (safetensors, whatever the suffix).")
    learn.add_argument("--preset", choices=list(PRESETS), default=None, help="a face preset instead of --from/--to")
    learn.add_argument("--from", dest="source_text", default=None, help='what the faces show now (e.g. "face")')
    learn.add_argument("--to", dest="target_text", default=None, help='what they should show (e.g. "smiling face")')
    learn.add_argument("-o", "--out", required=True, help="the edit file to write (e.g. smile.pt or smile.safetensors)")
    learn.add_argument("--source", default="ffhq", help="generator: registry name or .pt/.pkl path (default: ffhq)")
    learn.add_argument("--steps", type=positive_int, default=None,
                       help=f"learning steps (default: {EditConfig.steps}; {TINY_STEPS} with --tiny)")
    learn.add_argument("--batch", type=positive_int, default=EditConfig.batch,
                       help=f"latents per step (default: {EditConfig.batch})")
    learn.add_argument("--seed", type=seed, default=0, help="seed of the latents (default: 0)")
    learn.add_argument("--clip", default=",".join(EditConfig.clip_models),
                       help="CLIP models, comma-separated (default: clip-vit-b32)")
    learn.add_argument("--no-id", dest="identity", action="store_false",
                       help="without the identity (ArcFace) loss, which face generators use when it is available")
    learn.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    learn.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    learn.set_defaults(run=run_learn)
    presets = actions.add_parser("presets", help="list the face presets and their texts")
    presets.set_defaults(run=run_presets)


def edit_config(args: argparse.Namespace) -> EditConfig:
    """The settings of ``edit learn``'s arguments, checked (before anything loads)."""
    if args.preset and (args.source_text or args.target_text):
        raise CliError("give either --preset or --from/--to, not both")
    if args.preset:
        source_text, target_text = PRESETS[args.preset]
    elif args.target_text is None:
        raise CliError("say what to learn: --preset NAME, or --to TEXT (with --from TEXT, default 'face')")
    else:
        source_text, target_text = edit_prompts(f"{args.source_text or 'face'} -> {args.target_text}")
    clips = tuple(c.strip() for c in args.clip.split(",") if c.strip())
    if not clips:
        raise CliError("--clip names no CLIP model")
    steps = args.steps or (TINY_STEPS if args.tiny else EditConfig.steps)
    config = EditConfig(source_text=source_text, target_text=target_text, steps=steps, batch=args.batch,
                        seed=args.seed, clip_models=("tiny",) if args.tiny else clips)
    config.validate()
    return config


def load_edit_models(source: str, config: EditConfig, device: torch.device, tiny: bool, identity: bool = True
                     ) -> tuple[torch.nn.Module, str, list[tuple[torch.nn.Module, float]], torch.nn.Module | None]:
    """(generator, its source name, CLIP models, identity loss or None) for learning an edit."""
    if tiny:
        return tiny_inversion_models(device=device)[2], TINY_INVERT, [(tiny_clip().to(device), 1.0)], None
    generator = load_source(source, device)
    clips = [(load_clip(name, device), 1.0) for name in config.clip_models]
    id_loss = None
    asset = REGISTRY.get(str(source))
    if identity and asset is not None and asset.faces:
        try:
            id_loss = load_id_loss("arcface-ir-se50", device)
        except WeightsUnavailableError as exc:
            print(f"warning: learning without the identity loss: {exc}", file=sys.stderr)
    return generator, str(source), clips, id_loss


def learn_with_bar(generator, clips: Sequence[tuple[torch.nn.Module, float]], config: EditConfig, id_loss, label: str):
    """The last :class:`~nada.edits.EditProgress` of learning ``config``, with a progress bar on stderr."""
    from tqdm import tqdm

    last = None
    with tqdm(total=config.steps, unit="step", file=sys.stderr, dynamic_ncols=True,
              desc=f"learning the edit '{label}'") as bar:
        for rec in learn_steps(generator, clips, config, id_loss):
            bar.update(rec.step - bar.n)
            if rec.losses:
                bar.set_postfix(loss=f"{rec.losses['total']:.4f}")
            last = rec
    return last


def run_learn(args: argparse.Namespace) -> int:
    """Check the texts and the output, load the models, learn, write the edit file, print its path and cost."""
    config = edit_config(args)
    out = check_writable(args.out, "edit file")
    device = pick_device(args.device)
    generator, source_name, clips, id_loss = load_edit_models(args.source, config, device, args.tiny, args.identity)
    last = learn_with_bar(generator, clips, config, id_loss, config.target_text)
    edit = make_edit(last.direction, generator, config, source=source_name, identity=id_loss is not None,
                     seconds=round(last.elapsed_s, 2))
    save_edit(edit, out)
    print(f"learned '{config.source_text}' -> '{config.target_text}' in {last.step} steps, {last.elapsed_s:.1f} s "
          f"(safetensors file)", file=sys.stderr)
    print(out)
    return 0


def run_presets(args: argparse.Namespace) -> int:
    """Print each preset and its prompt pair."""
    for name, (source_text, target_text) in PRESETS.items():
        print(f"{name}: {source_text} -> {target_text}")
    return 0


__all__ = ["register", "edit_config", "load_edit_models", "learn_with_bar", "run_learn", "run_presets", "TINY_STEPS"]
