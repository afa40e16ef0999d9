"""``python -m nada evaluate STYLE``: score a style against its source (see :mod:`nada.metrics`), print a table.

The judge is a held-out CLIP (:data:`~nada.clip_models.JUDGE_CLIP`, ViT-L/14) that no recipe trains against; the
table says when the chosen judges include a model the style trained against, and flags the identity figure of a run
that used the identity loss."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..clip_loss import check_prompts
from ..clip_models import JUDGE_CLIP, load_clip
from ..id_loss import load_id_loss
from ..metrics import LABELS, PROTOCOL, evaluate, judged_by
from ..model_store import load_source
from ..runtime import pick_device
from ..styles import STYLE_SUFFIX, StyleFileError, apply_style_file, load_style, safe_style_name, style_path
from ..tiny import TINY_NAME, tiny_clip
from ..weights import REGISTRY, CheckpointError, WeightsUnavailableError
from .args import CliError, positive_int, seed, unit_float

DEFAULT_CLIP = JUDGE_CLIP


def _images(text: str) -> int:
    """An image count >= 2 (diversity needs pairs)."""
    v = positive_int(text)
    if v < 2:
        raise argparse.ArgumentTypeError(f"{v} images are too few: at least 2 are needed (diversity compares pairs)")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = sub.add_parser(
        "evaluate", help="score a style: CLIP direction score, target score, diversity, identity",
        description="Render the same seeded images from the source generator and from the styled one "
                    f"({PROTOCOL}), and report the CLIP direction score (s_dir: does the change follow the text?), "
                    "the target score (CLIP similarity to the target text), the diversity in CLIP space and, for "
                    "faces, the identity (ArcFace similarity). The judge is a held-out CLIP, "
                    f"{JUDGE_CLIP} (ViT-L/14), that no recipe trains against. These are not the paper's tables, "
                    "which measure inverted CelebA-HQ photos.")
    p.add_argument("style", metavar="STYLE",
                   help="a style: .safetensors file, saved style name, published name (nada-pixar) or a "
                        "StyleGAN-NADA .pt")
    p.add_argument("--source", default=None,
                   help="generator: registry name or .pt/.pkl path (default: the style's recorded source, else ffhq)")
    p.add_argument("--from", dest="source_text", default=None, metavar="TEXT",
                   help="source text (default: the one the style recorded)")
    p.add_argument("--to", dest="target_text", default=None, metavar="TEXT",
                   help="target text (default: the one the style recorded)")
    p.add_argument("--n", type=_images, default=64, help="images to render (default: 64)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the latents and noise (default: 0)")
    p.add_argument("--truncation", type=unit_float, default=0.7, help="truncation psi in [0, 1] (default: 0.7)")
    p.add_argument("--batch", type=positive_int, default=8, help="images per forward pass (default: 8)")
    p.add_argument("--clip-models", default=DEFAULT_CLIP,
                   help=f"comma-separated CLIP models: names or paths (default: {DEFAULT_CLIP}, held out: no recipe "
                        "trains against it; clip-vit-b32,clip-vit-b16 are the training pair)")
    p.add_argument("--clip-weights", default=None, help="comma-separated weights, one per model (default: all 1)")
    p.add_argument("--arcface", default="arcface-ir-se50", help="identity model weights: name or path")
    p.add_argument("--id", action=argparse.BooleanOptionalAction, default=None,
                   help="identity similarity (default: on for face generators, skipped if ArcFace is unavailable)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # tiny random models, for tests
    p.set_defaults(run=run_evaluate)


def style_meta(name: str) -> dict:
    """What a style records (source, prompts), read without loading any generator: published styles give their
    source only; ``.pt`` files nothing. Resolves names as :func:`nada.styles.load_any_style` does."""
    asset = REGISTRY.get(name)
    if asset is not None:
        return {"source": asset.source, "published": True} if asset.kind == "style" else {}
    path = Path(name).expanduser()
    if not path.is_file():
        try:
            slug_ok = safe_style_name(name) == name
        except ValueError:
            slug_ok = False
        if slug_ok and style_path(name).is_file():
            path = style_path(name)
        else:
            raise StyleFileError(f"Style '{name}' not found: it is not a file, a saved style or a published style "
                                 "(nada-<name>, see `python -m nada doctor`).")
    return dict(load_style(path).meta) if path.suffix == STYLE_SUFFIX else {}


def _prompts(args: argparse.Namespace, meta: dict) -> tuple[str, str]:
    """(source text, target text) from the flags, else from the style's metadata; CliError when unknown."""
    source_text = args.source_text or meta.get("source_text")
    target_text = args.target_text or meta.get("target_text")
    if not source_text or not target_text:
        missing = " and ".join(f for f, v in (("--from", source_text), ("--to", target_text)) if not v)
        why = "published styles record no prompts" if meta.get("published") else "it records no prompts"
        raise CliError(f"The style '{args.style}' needs {missing}: {why} (e.g. --from Photo --to Pixar).")
    return check_prompts(source_text, target_text)


def _clips(args: argparse.Namespace, device) -> list:
    """[(CLIP model, weight)] from --clip-models / --clip-weights (the tiny CLIP with --tiny)."""
    if args.tiny:
        return [(tiny_clip().to(device), 1.0)]
    names = [n.strip() for n in args.clip_models.split(",") if n.strip()]
    if not names:
        raise CliError("No CLIP model named: give --clip-models, e.g. clip-vit-b32.")
    weights = [float(w) for w in args.clip_weights.split(",")] if args.clip_weights else [1.0] * len(names)
    if len(weights) != len(names):
        raise CliError(f"{len(names)} CLIP models but {len(weights)} weights.")
    return [(load_clip(n, device), w) for n, w in zip(names, weights) if w > 0]


def _id_loss(args: argparse.Namespace, source_name: str, device):
    """The identity model, or None: on by default for face generators; when ArcFace cannot load, a warning (an
    explicit --id fails instead)."""
    asset = REGISTRY.get(source_name)
    wanted = args.id if args.id is not None else bool(asset is not None and asset.faces)
    if not wanted:
        return None
    try:
        return load_id_loss(args.arcface, device)
    except (WeightsUnavailableError, CheckpointError) as exc:
        if args.id:
            raise
        print(f"warning: identity similarity skipped: {str(exc).splitlines()[0] if str(exc) else exc!r}",
              file=sys.stderr)
        return None


def table(result: dict) -> str:
    """The results as a small text table: metric, source, adapted; with the judge and flags when known."""
    def num(v) -> str:
        return "-" if v is None else f"{v:.4f}"
    rows = [("metric", "source", "adapted"),
            (f"{LABELS['clip_target']} (CLIP similarity to the target text)", num(result["clip_target_source"]),
             num(result["clip_target_adapted"])),
            (f"{LABELS['diversity']} (mean CLIP distance)", num(result["diversity_source"]),
             num(result["diversity_adapted"])),
            (f"{LABELS['s_dir']} (s_dir)", "-", num(result["s_dir"]))]
    if "id" in result:
        flag = " [trained with the identity loss]" if result.get("id_trained") else ""
        rows.append((f"{LABELS['id']} (ArcFace similarity){flag}", "-", num(result["id"])))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{result['source_text']!r} -> {result['target_text']!r}: {result['n']} images, seed {result['seed']}, "
             f"truncation {result['truncation']:g}"]
    if result.get("judged_by"):
        lines.append(result["judged_by"])
    lines += [f"{r[0].ljust(widths[0])}  {r[1].rjust(widths[1])}  {r[2].rjust(widths[2])}" for r in rows]
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    """Resolve the style, its source and prompts; load the models; evaluate; print (and write) the results."""
    meta = style_meta(args.style)
    source_text, target_text = _prompts(args, meta)  # before any weights load
    source_name = TINY_NAME if args.tiny else str(args.source or meta.get("source") or "ffhq")
    device = pick_device(args.device)
    source = load_source(source_name, device)
    adapted = apply_style_file(source, args.style, strength=1.0, source_name=source_name)
    clips = _clips(args, device)
    id_loss = _id_loss(args, source_name, device)
    result = evaluate(source, adapted, clips, source_text, target_text, n=args.n, seed=args.seed, id_loss=id_loss,
                      truncation=args.truncation, batch=args.batch)
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    trained_with = list(config["clip_models"]) if config.get("clip_models") else None
    judges = ["tiny CLIP"] if args.tiny else [n.strip() for n in args.clip_models.split(",") if n.strip()]
    result = {**result, "style": str(args.style), "source": source_name, "clip_models": judges,
              "judged_by": judged_by(judges, trained_with),
              "id_trained": float(config.get("lambda_id") or 0) > 0}
    print(table(result))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(out)
    return 0
