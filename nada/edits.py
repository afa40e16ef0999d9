"""Text-defined edits of inverted faces: one W+ offset, learned once with CLIP, then added to any codes instantly.

``learn_direction`` learns a direction ``D [n_latent, 512]`` shared by every sample: each step draws fresh latents
``w``, renders ``w`` and ``w + D`` with the (frozen) generator, and asks that the CLIP change of the images follow
the text direction from ``source_text`` to ``target_text`` (:meth:`nada.clip_loss.ClipGuide.directional`, the
paper's directional loss), that it go some way along it (the ``along`` term: the same change, not normalised, so that
the edit has a size), that ``D`` stay small (the ``size`` penalty, which keeps it from fitting the few latents it saw
and lets it carry over to codes it never saw), and, for faces when ArcFace is loaded, that the person stay the same.
``apply_edit(w_plus, D, strength)`` is ``w_plus + strength * D``: 0 changes nothing, negative goes the other way.
``EditConfig.rows`` (:mod:`nada.nets.rows`: "coarse", "medium", "fine", joined by "+", or row numbers) limits the
rows ``D`` may change, as StyleCLIP's mappers can leave the coarse, medium or fine rows alone: only those rows are
optimised, and ``D`` is exactly zero elsewhere (a smile that keeps the fine rows keeps the photo's colour and light).

Directions are cached in the weights cache (``<cache>/edits``), keyed by the source generator's fingerprint, the
prompt pair and every setting (:func:`cache_path`). An edit file (:func:`save_edit`) is a safetensors file whatever
its suffix: one tensor and JSON metadata naming the generator, so it is loaded without pickle and refused on another
generator (:func:`verify_edit`).

Cost of learning a direction (paid once per generator, prompt pair and settings; applying it is one addition). Each
step renders the batch twice (plain, without gradients; edited, with) and back-propagates to the offset only.
Measured on a shared, busy 2-core CPU (load ~8; ``torch.backends.cpu.get_cpu_capability() == "AVX512"``):
- tiny mode (256 px 16-channel inversion generator, tiny CLIP, batch 2): 0.74 s a step (8 steps: 6 s);
- real size (1024 px FFHQ architecture, ViT-B/32 architecture, random weights, batch 1): 65 s a step after a first
  step of 135 s (text directions over 79 templates, the truncation centre); the default 100 steps of batch 4 would
  take about 7 hours there: learn on a GPU.
- GPU: not measured (no GPU was lent to this task). Estimated from the training step's figure
  (``nada.app.adapt_tab.S_PER_STEP``, 0.6 s at 1024 px, batch 2, two CLIP models, itself an estimate): about 0.8 s a
  step at batch 4 with one CLIP model, so 100 steps take about 1.5 min with setup; the app asks ZeroGPU for that.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from . import __version__
from .clip_loss import ClipGuide, check_prompts
from .files import atomic_write, read_tagged_safetensors
from .nets.rows import canonical_rows, resolve_rows, rows_label
from .nets.stylegan2 import Generator, truncate
from .styles import generator_fingerprint
from .weights import cache_dir

# The face presets. Each text goes through the 79 prompt templates ("a photo of a {}."), so a short noun phrase reads
# best. Of the official notebook's six InterfaceGAN directions (age, beard, gender, hair length, pose, smile): age both
# ways, beard, hair length and smile, plus glasses; gender and pose are free text away ("face -> woman's face").
# Each names the W+ rows it may change (nada.nets.rows: coarse = rows 0-5, up to the first 32 px convolution; medium
# = 6-10, to 128 px; fine = the rest, which carry colour, lighting and skin micro-texture), as StyleCLIP's mappers
# leave groups alone; --edit NAME@ROWS, edit learn --rows and the app's Edit rows menu override them.


class Preset(NamedTuple):
    """A face preset: its texts, the W+ rows it may change, and why those rows."""

    source_text: str  # what the face shows now
    target_text: str  # what it should show
    rows: str | None  # nada.nets.rows spelling; None = every row
    why: str  # the reason for the rows, in words (``nada edit presets`` prints it)

    @property
    def pair(self) -> tuple[str, str]:
        """(source text, target text)."""
        return self.source_text, self.target_text


PRESETS: dict[str, Preset] = {
    "smile": Preset("face", "smiling face", "coarse+medium",
                    "the mouth's shape lives in the 16-64 px rows; fine rows would shift colour and lighting"),
    "older": Preset("face", "old person's face", "coarse+medium",
                    "face shape and wrinkles are coarse and medium; fine rows would re-light and re-colour the photo"),
    "younger": Preset("face", "young person's face", "coarse+medium",
                      "as older: shape and skin folds, not the photo's colour and lighting"),
    "glasses": Preset("face", "face with glasses", "coarse",
                      "glasses come with the coarse rows in StyleGAN's style mixing; the face's own medium and fine "
                      "rows then draw the frames, so its features, skin and colours stay"),
    "beard": Preset("face", "face with a beard", "coarse+medium",
                    "the jaw's outline is coarse and the beard's texture medium; fine rows would tint the whole face"),
    "long hair": Preset("face", "face with long hair", "coarse",
                        "hair length is the head's outline, a coarse style in StyleGAN's mixing; medium and fine rows "
                        "would change the hair's texture and colour and the face's features"),
}
FREE_TEXT_SOURCE = "face"  # what free text ("face with freckles") is an edit from
AS_PRESET = "preset"  # a rows choice (edit_rows, the Edit rows menu): the preset's own rows, every row for free text
MAX_STRENGTH = 3.0  # the command line and the app take strengths in [-3, 3] (1 = the learned edit)
FORMAT_KEY = "nada_edit_format"  # safetensors metadata key that marks a nada edit file
FORMAT_VERSION = 1
TENSOR_KEY = "direction"


class EditFileError(ValueError):
    """A file that should hold a nada edit does not (missing, corrupt, or another kind of file)."""


class EditMismatchError(ValueError):
    """An edit was learned on another generator than the one it is applied to."""


@dataclass(frozen=True)
class EditConfig:
    """Everything learning one direction needs besides the models (plain, immutable data; part of the cache key)."""

    source_text: str = "face"  # what the images show now
    target_text: str = "smiling face"  # what they should show after the edit
    steps: int = 100  # optimisation steps, each on fresh latents
    batch: int = 4  # latents per step
    lr: float = 0.01  # Adam learning rate on the offset
    lambda_direction: float = 1.0  # the directional CLIP loss: the change follows the text direction
    lambda_along: float = 1.0  # reward for the change's length along the text direction (gives the edit a size)
    lambda_size: float = 0.05  # penalty on the mean squared row norm of the offset (keeps it small and general)
    lambda_id: float = 0.1  # identity loss weight (faces, when ArcFace is loaded; else unused)
    truncation: float = 0.7  # training latents are truncated towards the mean, where inverted faces lie
    seed: int = 0  # the latents drawn
    clip_models: tuple[str, ...] = ("clip-vit-b32",)  # CLIP models by registry name (callers load them)
    rows: str | None = None  # W+ rows the edit may change ("coarse", "medium+fine", "0+1+2"; a list of numbers is
    #                          accepted and stored so); None = every row. Outside them the direction is exactly 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", canonical_rows(self.rows))  # one plain spelling: "coarse+medium"; bad: error

    def validate(self) -> None:
        """Raise ``ValueError`` with a readable message for settings that cannot work."""
        checks = [
            (isinstance(self.steps, int) and 1 <= self.steps <= 100_000, f"steps must be from 1 to 100000, got "
                                                                          f"{self.steps!r}"),
            (isinstance(self.batch, int) and 1 <= self.batch <= 64, f"batch must be from 1 to 64, got {self.batch!r}"),
            (math.isfinite(self.lr) and 0 < self.lr <= 1, f"lr must be in (0, 1], got {self.lr}"),
            (0.0 <= self.truncation <= 1.0, f"truncation must be in [0, 1], got {self.truncation}"),
            (all(math.isfinite(v) and v >= 0 for v in (self.lambda_direction, self.lambda_along, self.lambda_size,
                                                       self.lambda_id)), "loss weights (lambda_*) must be >= 0"),
            (self.lambda_direction + self.lambda_along > 0, "at least one CLIP term (direction or along) must be on"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg[0].upper() + msg[1:] + ".")
        canonical_rows(self.rows)  # the spelling; a generator's range is checked when learning (resolve_rows)
        check_prompts(self.source_text, self.target_text)

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable settings."""
        return dataclasses.asdict(self)


@dataclass
class EditProgress:
    """One learning step's report; the last one (``done``) carries the direction."""

    step: int
    total: int
    losses: dict[str, float]
    elapsed_s: float = 0.0
    done: bool = False
    direction: torch.Tensor | None = None  # [n_latent, 512], detached, on the CPU; on the last record


@dataclass
class Edit:
    """A learned direction and where it came from."""

    direction: torch.Tensor  # [n_latent, 512] float32, CPU
    meta: dict = field(default_factory=dict)  # source, source_fingerprint, generator_config, source_text,
    #                                           target_text, rows, config, identity, seconds, created, nada_version

    @property
    def rows(self) -> str | None:
        """The W+ rows the edit changes ("coarse+medium"); None = every row (also files saved before rows existed)."""
        return canonical_rows(self.meta.get("rows", (self.meta.get("config") or {}).get("rows")))

    @property
    def label(self) -> str:
        """"face -> smiling face" (what the edit does), with its rows unless it changes every row: "face -> smiling
        face (coarse+medium rows)"."""
        text = f"{self.meta.get('source_text', '?')} -> {self.meta.get('target_text', '?')}"
        return text if self.rows is None else f"{text} ({rows_label(self.rows)})"


# ------------------------------------------------------------------------------------------------- applying
def apply_edit(w_plus: torch.Tensor, direction: torch.Tensor, strength: float) -> torch.Tensor:
    """``w_plus + strength * direction``; ``w_plus`` ``[N, n_latent, 512]`` or ``[n_latent, 512]``, direction
    ``[n_latent, 512]``. Strength 0 returns ``w_plus`` itself; negative strengths go the other way."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise ValueError(f"The edit strength must be a finite number, got {strength!r}.")
    if direction.ndim != 2 or tuple(w_plus.shape[-2:]) != tuple(direction.shape):
        raise ValueError(f"The edit direction {list(direction.shape)} does not fit codes of shape "
                         f"{list(w_plus.shape)}: it was learned for a generator with another number of W+ rows.")
    if strength == 0:
        return w_plus
    return w_plus + float(strength) * direction.to(w_plus)


def check_strength(value: object, what: str = "The edit strength") -> float:
    """A strength from ``-MAX_STRENGTH`` to ``MAX_STRENGTH`` (0 = no edit), else a readable ``ValueError``."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number from {-MAX_STRENGTH:g} to {MAX_STRENGTH:g}, got {value!r}.") \
            from None
    if isinstance(value, bool) or not (math.isfinite(v) and -MAX_STRENGTH <= v <= MAX_STRENGTH):
        raise ValueError(f"{what} must be from {-MAX_STRENGTH:g} to {MAX_STRENGTH:g} (1 = the learned edit, "
                         f"negative = the other way), got {value!r}.")
    return v


def edit_prompts(text: str) -> tuple[str, str]:
    """(source text, target text) of an edit as a person names it: a preset ("smile"), "from -> to", or free text
    (what the face should become, from "face"). ``ValueError`` for empty, over-long or no-change text."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("The edit is empty: pick a preset (" + ", ".join(PRESETS) + ") or type what the face "
                         "should become, e.g. 'face with freckles'.")
    key = " ".join(text.split()).casefold()
    if key in PRESETS:
        return PRESETS[key].pair
    source, sep, target = text.partition("->")
    pair = (source.strip(), target.strip()) if sep else (FREE_TEXT_SOURCE, text.strip())
    if sep and not pair[0]:
        raise ValueError(f"The edit {text!r} has nothing before '->': write 'from -> to', e.g. 'face -> old face'.")
    if sep and not pair[1]:
        raise ValueError(f"The edit {text!r} has nothing after '->': write 'from -> to', e.g. 'face -> old face'.")
    try:
        return check_prompts(*pair)
    except ValueError as exc:
        raise ValueError(str(exc).replace("source and target prompts", "edit's from and to texts")
                         .replace("target prompt", "edit text").replace("source prompt", "edit's 'from' text")) \
            from None


def edit_rows(text: str, rows: str | int | Sequence[int | str] | None = AS_PRESET) -> str | None:
    """The W+ rows (one spelling, :func:`nada.nets.rows.canonical_rows`; None = every row) of the edit named ``text``
    (as :func:`edit_prompts` reads it): ``rows`` as given, or with :data:`AS_PRESET` the preset's own rows (every
    row for free text). ``ValueError`` for an unknown group or a negative row."""
    if isinstance(rows, str) and rows.strip().casefold() == AS_PRESET:
        preset = PRESETS.get(" ".join(str(text).split()).casefold())
        return preset.rows if preset is not None else None
    return canonical_rows(rows)


# ------------------------------------------------------------------------------------------------- learning
def learn_steps(generator: Generator, clip_models: Sequence[tuple[torch.nn.Module, float]], config: EditConfig,
                id_loss: torch.nn.Module | None = None, *, stop: Callable[[], bool] | None = None
                ) -> Iterator[EditProgress]:
    """Learn a direction with ``config``, one :class:`EditProgress` per step; the last (``done``) holds it.
    ``stop()`` returning True ends learning after the current step (the direction so far is returned). The generator
    is not modified (no gradient reaches its parameters)."""
    config.validate()
    n_latent, dim = generator.n_latent, generator.style_dim
    chosen = resolve_rows(config.rows, n_latent)  # a group or row this generator lacks: ValueError, before any work
    t0 = time.perf_counter()
    guide = ClipGuide(clip_models, config.source_text, config.target_text)
    ref = generator.input.input  # the generator's device and dtype
    device = ref.device
    with torch.no_grad():
        center = generator.truncation_center().to(ref)  # [1, 512]
    rows = torch.tensor(chosen, device=device)  # [R] the W+ rows the offset may change
    rng = torch.Generator(device).manual_seed(int(config.seed))
    trained = torch.zeros(len(rows), dim, device=device, dtype=ref.dtype, requires_grad=True)  # [R, 512]
    zeros = torch.zeros(n_latent, dim, device=device, dtype=ref.dtype)  # [n_latent, 512]: the rows left alone
    opt = torch.optim.Adam([trained], lr=config.lr)
    use_id = id_loss is not None and config.lambda_id > 0
    step, losses = 0, {}
    for step in range(1, config.steps + 1):
        z = torch.randn(config.batch, dim, device=device, generator=rng, dtype=ref.dtype)  # [B, 512]
        with torch.no_grad():
            w = truncate(generator.mapping(z), center, config.truncation)  # [B, 512]
            w_plus = w[:, None, :].expand(-1, n_latent, -1)  # [B, n_latent, 512]
            img_src = generator.synthesis(w_plus, noise_mode="const")  # [B, 3, H, W]
            feats_src = guide.image_features(img_src)
        direction = zeros.index_copy(0, rows, trained)  # [n_latent, 512], exactly 0 outside the chosen rows
        img_edit = generator.synthesis(w_plus + direction, noise_mode="const")  # [B, 3, H, W]
        feats_edit = guide.image_features(img_edit)
        terms: dict[str, torch.Tensor] = {}
        if config.lambda_direction > 0:
            terms["direction"] = config.lambda_direction * guide.directional(feats_edit, feats_src)
        if config.lambda_along > 0:
            terms["along"] = -config.lambda_along * along_text(guide, feats_edit, feats_src)
        if config.lambda_size > 0:
            terms["size"] = config.lambda_size * direction.pow(2).sum(dim=-1).mean()
        if use_id:
            terms["id"] = config.lambda_id * id_loss(img_edit, img_src)
        total = sum(terms.values())
        (grad,) = torch.autograd.grad(total, [trained])  # only the offset: the generator's parameters stay clean
        trained.grad = grad
        opt.step()
        losses = {k: float(v.detach()) for k, v in terms.items()} | {"total": float(total.detach())}
        if not all(math.isfinite(v) for v in losses.values()):
            raise ValueError(f"Learning the edit failed: the loss became {losses['total']} at step {step}. Try a "
                             "lower learning rate.")
        if step == config.steps or (stop is not None and stop()):
            break
        yield EditProgress(step, config.steps, losses, time.perf_counter() - t0)
    with torch.no_grad():
        direction = zeros.index_copy(0, rows, trained)  # [n_latent, 512]
    yield EditProgress(step, config.steps, losses, time.perf_counter() - t0, done=True,
                       direction=direction.detach().to("cpu", torch.float32).clone())


def along_text(guide: ClipGuide, feats_edit: list[torch.Tensor], feats_src: list[torch.Tensor]) -> torch.Tensor:
    """``sum_m w_m * mean_b <n(e_edit) - n(e_src), dt_m>``: how far the images moved along the text direction."""
    out = 0.0
    for (_, weight), d, fe, fs in zip(guide.models, guide.directions, feats_edit, feats_src, strict=True):
        delta = F.normalize(fe.float(), dim=-1) - F.normalize(fs.float(), dim=-1)  # [B, D]
        out = out + weight * (delta @ d.direction.to(delta).reshape(-1, 1)).mean()
    return out


def learn_direction(generator: Generator, clip_models: Sequence[tuple[torch.nn.Module, float]], source_text: str,
                    target_text: str, steps: int = EditConfig.steps, batch: int = EditConfig.batch, seed: int = 0,
                    id_loss: torch.nn.Module | None = None, rows: str | Sequence[int | str] | None = None,
                    **settings) -> torch.Tensor:
    """The learned direction ``[n_latent, 512]`` (CPU, float32) from ``source_text`` to ``target_text``, exactly zero
    outside ``rows`` ("coarse", "medium", "fine", several joined by "+", or a list; None = every row); ``settings``
    are other :class:`EditConfig` fields (``lr``, ``lambda_size``, ...)."""
    config = EditConfig(source_text=source_text, target_text=target_text, steps=steps, batch=batch, seed=seed,
                        rows=rows, **settings)
    records = learn_steps(generator, clip_models, config, id_loss)
    return next(rec for rec in records if rec.done).direction


# ---------------------------------------------------------------------------------------------------- files
def make_edit(direction: torch.Tensor, generator: Generator, config: EditConfig, *, source: str | None = None,
              fingerprint: str | None = None, identity: bool = False, seconds: float | None = None) -> Edit:
    """An :class:`Edit` with its metadata (the generator's fingerprint computed unless given)."""
    meta = {"source": source, "source_fingerprint": fingerprint or generator_fingerprint(generator),
            "generator_config": generator.config(), "source_text": config.source_text,
            "target_text": config.target_text, "rows": config.rows, "config": config.to_dict(),
            "identity": bool(identity),
            "seconds": seconds, "nada_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return Edit(direction.detach().to("cpu", torch.float32).contiguous(), meta)


def save_edit(edit: Edit, path: str | os.PathLike) -> Path:
    """Write ``edit`` as a safetensors file (whatever the suffix, ``.pt`` included), atomically."""
    from safetensors.torch import save_file

    header = {k: json.dumps(v) for k, v in edit.meta.items()}
    header[FORMAT_KEY] = str(FORMAT_VERSION)
    tensors = {TENSOR_KEY: edit.direction.detach().to("cpu", torch.float32).contiguous().clone()}
    return atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=header))


def load_edit(path: str | os.PathLike) -> Edit:
    """Read an edit file written by :func:`save_edit` (safetensors only: nothing executable is loaded)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EditFileError(f"Edit file '{path}' does not exist.")
    tensors, meta = read_tagged_safetensors(
        path, FORMAT_KEY, FORMAT_VERSION, EditFileError, "edit",
        unreadable="it is not a nada edit file (edit files are safetensors, whatever their suffix). Learn one with: "
                   "nada edit learn --from ... --to ... -o FILE")
    direction = tensors.get(TENSOR_KEY)
    if direction is None or direction.ndim != 2 or not direction.is_floating_point() or len(tensors) != 1:
        raise EditFileError(f"'{path}' does not hold one [n_latent, 512] '{TENSOR_KEY}' tensor; not a nada edit.")
    if not meta.get("source_fingerprint") or not isinstance(meta.get("generator_config"), dict):
        raise EditFileError(f"'{path}' lacks the generator it was learned on (source_fingerprint, generator_config).")
    return Edit(direction.float(), meta)


def verify_edit(edit: Edit, generator: Generator, source_name: str | None = None,
                fingerprint: str | None = None) -> None:
    """Raise :class:`EditMismatchError` unless ``edit`` was learned on ``generator`` (same weights and rows)."""
    mine = fingerprint or generator_fingerprint(generator)
    theirs = edit.meta.get("source_fingerprint")
    if theirs == mine and tuple(edit.direction.shape) == (generator.n_latent, generator.style_dim):
        return
    cfg = edit.meta.get("generator_config") or {}
    raise EditMismatchError(
        f"This edit ({edit.label}) was learned on the generator '{edit.meta.get('source') or 'unnamed'}' "
        f"({cfg.get('size', '?')} px, fingerprint {str(theirs)[:12]}), but the generator given is "
        f"'{source_name or 'unnamed'}' ({generator.size} px, fingerprint {mine[:12]}). An edit only works on the "
        f"generator it was learned on: learn it again for this one (nada edit learn --source {source_name or '...'}).")


# ----------------------------------------------------------------------------------------------------- cache
def edits_dir() -> Path:
    """Where learned directions are cached: ``<weights cache>/edits``."""
    return cache_dir() / "edits"


def cache_path(fingerprint: str, config: EditConfig, identity: bool) -> Path:
    """The cache file of a direction: named by its target text, keyed by generator fingerprint, prompts, settings
    (the W+ rows included) and whether the identity loss took part."""
    settings = config.to_dict()
    if settings["rows"] is None:  # every row: keyed as before rows existed, so directions cached then still serve
        del settings["rows"]
    key = json.dumps({"fingerprint": fingerprint, "config": settings, "identity": bool(identity),
                      "format": FORMAT_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    slug = re.sub(r"[^a-z0-9]+", "-", config.target_text.casefold()).strip("-")[:40] or "edit"
    return edits_dir() / f"{slug}-{digest}.safetensors"


def cached_edit(fingerprint: str, config: EditConfig, identity: bool) -> Edit | None:
    """The cached edit for these settings, or None (also for an unreadable cache file, which is then relearned)."""
    path = cache_path(fingerprint, config, identity)
    if not path.is_file():
        return None
    try:
        edit = load_edit(path)
    except EditFileError:
        return None
    return edit if edit.meta.get("source_fingerprint") == fingerprint else None


def learn_cached(generator: Generator, clip_models: Sequence[tuple[torch.nn.Module, float]], config: EditConfig,
                 id_loss: torch.nn.Module | None = None, *, source: str | None = None, fingerprint: str | None = None
                 ) -> Iterator[EditProgress]:
    """Like :func:`learn_steps`, but a direction learned before with the same generator, prompts and settings comes
    from the cache at once (a single ``done`` record), and a new one is saved there."""
    fingerprint = fingerprint or generator_fingerprint(generator)
    identity = id_loss is not None and config.lambda_id > 0
    found = cached_edit(fingerprint, config, identity)
    if found is not None:
        yield EditProgress(0, config.steps, {}, 0.0, done=True, direction=found.direction)
        return
    for rec in learn_steps(generator, clip_models, config, id_loss):
        if rec.done:
            edit = make_edit(rec.direction, generator, config, source=source, fingerprint=fingerprint,
                             identity=identity, seconds=round(rec.elapsed_s, 2))
            save_edit(edit, cache_path(fingerprint, config, identity))
        yield rec


__all__ = ["PRESETS", "Preset", "AS_PRESET", "FREE_TEXT_SOURCE", "MAX_STRENGTH", "EditConfig", "EditProgress", "Edit",
           "EditFileError", "EditMismatchError", "apply_edit", "check_strength", "edit_prompts", "edit_rows",
           "learn_steps", "learn_direction", "along_text", "make_edit", "save_edit", "load_edit", "verify_edit",
           "edits_dir", "cache_path", "cached_edit", "learn_cached"]
