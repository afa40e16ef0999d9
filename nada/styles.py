"""Style files: a trained style is the set of generator tensors that differ from its source, plus metadata.

A style is saved as ``.safetensors`` (no pickled code) holding only the tensors that changed during adaptation,
with metadata that names the source generator and its fingerprint (a hash of its tensors). Applying a style to a
generator first checks that it is the generator the style was trained from, then blends
``source + strength * (style - source)`` into a copy. Full rosinality ``{"g_ema": ...}`` files (other tools, and the
published StyleGAN-NADA models) are imported by diffing them against the source, and exported the same way.

Two kinds of style (``Style.kind``, recorded as ``meta["kind"]``; files without it are "weights"):
- "weights": changed state-dict tensors (``AdaptConfig.params="weights"``, the paper; ~60 MB at 1024 px);
- "modulation": per-channel style offsets ``"<module>.style_offset"`` -> [in] (``params="modulation"``, the
  "compact" recipe; every weight unchanged, the style vector becomes ``s * (1 + offset)``; ~25 KB at 1024 px);
- "mixed": both, from :func:`blend` of a weight style with a modulation style.
Strength scales a modulation style's offsets (0: none, 1: as trained). :func:`blend` combines styles of one source.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .files import atomic_write, read_tagged_safetensors
from .files import current_umask as current_umask  # its old home: nada.styles.current_umask keeps working
from .nets.stylegan2 import Generator, channels_for
from .weights import (
    REGISTRY,
    CheckpointError,
    cache_dir,
    generator_config,
    generator_state_dict,
    load_state_dict_file,
    resolve,
)

KINDS = ("weights", "modulation", "mixed")  # Style.kind
OFFSET_SUFFIX = ".style_offset"  # keys of style offsets (Generator.style_offsets), beside state-dict keys
FORMAT_KEY = "nada_style_format"  # safetensors metadata key that marks a nada style file
FORMAT_VERSION = 1
STYLE_SUFFIX = ".safetensors"
MAX_NAME_LEN = 64
# Names Windows refuses as file names (with any extension); a slug equal to one gets a suffix.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class StyleMismatchError(ValueError):
    """A style does not belong to the generator it is applied to (other weights or another architecture)."""


class StyleFileError(CheckpointError):
    """A file that should hold a nada style does not (missing, corrupt, or another kind of file)."""


@dataclass
class Style:
    """The tensors that differ from the source generator, and where they came from."""

    tensors: dict[str, torch.Tensor]  # state-dict key -> adapted value, and/or "<module>.style_offset" -> offset
    #                                   [in] (CPU; float32, float16 from fp16 files)
    meta: dict = field(default_factory=dict)  # kind, source, source_fingerprint, source_text, target_text, config,
    #                                           layers, created, nada_version, generator_config (JSON-ready values)

    def __repr__(self) -> str:  # the default would print every tensor
        n = sum(v.numel() for v in self.tensors.values())
        return (f"Style({len(self.tensors)} tensors, {n:,} values, source={self.source!r}, "
                f"{self.meta.get('source_text')!r} -> {self.meta.get('target_text')!r})")

    @property
    def source(self) -> str | None:
        """Name of the source generator the style was trained from (as recorded)."""
        return self.meta.get("source")

    @property
    def kind(self) -> str:
        """"weights", "modulation" or "mixed" (see the module docstring), by the tensors held; an empty style
        (nothing trained yet) reports its recorded kind."""
        return _kind_of(self.tensors, self.meta.get("kind") or "weights")

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """The changed state-dict tensors (empty for a modulation style)."""
        return {k: v for k, v in self.tensors.items() if not is_offset_key(k)}

    @property
    def offsets(self) -> dict[str, torch.Tensor]:
        """The style offsets, "<module>.style_offset" -> [in] (empty for a weight style)."""
        return {k: v for k, v in self.tensors.items() if is_offset_key(k)}


def is_offset_key(key: str) -> bool:
    """True for a style-offset key ("convs.3.conv.style_offset"), False for a state-dict key."""
    return key.endswith(OFFSET_SUFFIX)


def _kind_of(tensors: dict[str, torch.Tensor], default: str = "weights") -> str:
    """The kind of style ``tensors`` make; ``default`` when there are none."""
    has_offsets = any(is_offset_key(k) for k in tensors)
    has_weights = any(not is_offset_key(k) for k in tensors)
    if has_offsets and has_weights:
        return "mixed"
    return "modulation" if has_offsets else "weights" if has_weights else default


# ------------------------------------------------------------------------------------------------ fingerprints
def generator_fingerprint(g: Generator) -> str:
    """sha256 (hex) of a generator's weights: over each state-dict tensor as float32 on the CPU, keys sorted.

    It hashes tensors, not file bytes: the same weights read from a ``.pt`` or a ``.safetensors`` file (or held on
    a GPU) give the same id. Each key name and shape is hashed with its bytes, so renames and reshapes count."""
    h = hashlib.sha256()
    sd = g.state_dict()
    for key in sorted(sd):
        t = sd[key].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{key}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).numpy())  # 1-D contiguous view: hashed without a copy
    return h.hexdigest()


def _describe(name: str | None, fingerprint: str | None, cfg: dict | None) -> str:
    arch = f"{cfg.get('size')}px, channel multiplier {cfg.get('channel_multiplier')}" if isinstance(cfg, dict) else "?"
    fp = (fingerprint or "unknown")[:12]
    return f"'{name or 'unnamed'}' (fingerprint {fp}, {arch})"


# ------------------------------------------------------------------------------------------------- metadata
_DROP = object()


def _plain(value):
    """A JSON-ready copy of ``value``: dataclasses -> dicts, paths -> str, tuples -> lists; unknown objects dropped."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value  # json writes and reads NaN/Infinity
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        out = {str(k): _plain(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _DROP}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in (sorted(value, key=str) if isinstance(value, (set, frozenset)) else value)]
        return [v for v in items if v is not _DROP]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return _DROP  # e.g. a threading.Event in a training config: not data


def _architecture(cfg: dict | None) -> dict | None:
    """What a generator config determines: sizes and channels per resolution. Several configs can build the same
    network (the channel multiplier is moot when ``channel_max`` caps every layer), so configs compare by this."""
    try:
        channels = channels_for(int(cfg["size"]), int(cfg["channel_multiplier"]), int(cfg.get("channel_max", 512)))
        return {"size": int(cfg["size"]), "style_dim": int(cfg["style_dim"]), "n_mlp": int(cfg["n_mlp"]),
                "channels": channels}
    except (TypeError, KeyError, ValueError):
        return None


def _arch_mismatch(style_keys: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> str:
    """'' if every style tensor has a same-shaped counterpart in ``target``, else what is wrong."""
    unknown = [k for k in style_keys if k not in target]
    shapes = [f"{k} {list(v.shape)} vs {list(target[k].shape)}" for k, v in style_keys.items()
              if k in target and tuple(v.shape) != tuple(target[k].shape)]
    parts = ([f"unknown tensors {unknown[:4]}"] if unknown else []) + ([f"other shapes {shapes[:3]}"] if shapes else [])
    return "; ".join(parts)


# -------------------------------------------------------------------------------------------------- building
def style_from_generators(source: Generator, adapted: Generator, meta: dict,
                          source_fingerprint: str | None = None) -> Style:
    """The tensors of ``adapted`` that differ (``torch.equal``) from ``source``, and its non-zero style offsets,
    with metadata completed: a weight style, a modulation style (trained with ``params="modulation"``: no weight
    differs) or, when both changed, a mixed one.

    ``meta`` gives ``source`` (name), ``source_text``, ``target_text``, ``config`` (dict or dataclass) and ``layers``;
    the kind, source fingerprint (``source_fingerprint`` when already known), generator config, creation date and
    nada version are filled in here. ``source`` must be a plain generator (no style offsets)."""
    if source.style_offsets():
        raise ValueError("The source generator has style offsets (it is itself styled); give the plain source.")
    if _architecture(source.config()) != _architecture(adapted.config()):
        raise StyleMismatchError(
            f"The adapted generator's architecture {adapted.config()} differs from the source's {source.config()}.")
    src_sd, adp_sd = source.state_dict(), adapted.state_dict()
    if set(src_sd) != set(adp_sd):
        raise StyleMismatchError(f"The adapted generator has other tensors than the source: "
                                 f"{sorted(set(src_sd) ^ set(adp_sd))[:5]}.")
    tensors: dict[str, torch.Tensor] = {}
    for key, s in src_sd.items():
        a = adp_sd[key].detach().to(s.device, s.dtype)
        if not torch.equal(s, a):
            tensors[key] = a.to("cpu", torch.float32).clone()
    for key, offset in adapted.style_offsets().items():
        if bool(offset.detach().ne(0).any()):  # a zero offset is the source itself
            tensors[key] = offset.detach().to("cpu", torch.float32).clone()  # [in]
    config = meta.get("config") if isinstance(meta, dict) else None
    default = getattr(config, "params", None) or (config.get("params") if isinstance(config, dict) else None)
    return _make_style(source, tensors, {**(meta or {}), "kind": _kind_of(tensors, default or "weights")},
                       source_fingerprint)


def _make_style(source: Generator, tensors: dict[str, torch.Tensor], meta: dict | None,
                source_fingerprint: str | None = None) -> Style:
    """A Style with its metadata completed: caller's fields, then fingerprint, architecture, date, version."""
    full = {"source": None, "source_text": None, "target_text": None, "config": {}, "layers": [], **_plain(meta or {})}
    full["kind"] = _kind_of(tensors, full.get("kind") or "weights")
    full.update(source_fingerprint=source_fingerprint or generator_fingerprint(source),
                generator_config=source.config(), nada_version=__version__,
                created=full.get("created") or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return Style(tensors, full)


# ----------------------------------------------------------------------------------------------- save / load
def save_style(style: Style, path: str | os.PathLike, fp16: bool = False) -> Path:
    """Write ``style`` as safetensors (atomically); metadata values are JSON strings.

    ``fp16=True`` halves the file; each weight is then rounded to float16 (relative error <= 2**-11, measured in
    tests/test_styles.py). fp32 files round-trip exactly."""
    from safetensors.torch import save_file  # third-party; looked up per call, so a test can make it fail

    path = Path(path)
    if path.suffix != STYLE_SUFFIX:
        raise ValueError(f"A style file name must end in {STYLE_SUFFIX}, got '{path.name}'.")
    dtype = torch.float16 if fp16 else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous().clone() for k, v in style.tensors.items()}
    meta = {**_plain(style.meta), "storage_dtype": "float16" if fp16 else "float32"}
    meta.pop(FORMAT_KEY, None)
    header = {k: json.dumps(v) for k, v in meta.items()}
    header[FORMAT_KEY] = str(FORMAT_VERSION)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    return path


def load_style(path: str | os.PathLike) -> Style:
    """Read a nada style (``.safetensors`` only: nothing executable is loaded); raise StyleFileError otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StyleFileError(f"Style file '{path}' does not exist.")
    if path.suffix != STYLE_SUFFIX:
        raise StyleFileError(f"'{path}' is not a nada style file ({STYLE_SUFFIX}). Full generator checkpoints "
                             "(.pt, e.g. StyleGAN-NADA models) are read with import_style_pt.")
    tensors, meta = read_tagged_safetensors(
        path, FORMAT_KEY, FORMAT_VERSION, StyleFileError, "style",
        unreadable="it may be corrupt or truncated.",
        untagged="a generator checkpoint goes to --source, not --style.")
    missing = [k for k in ("source_fingerprint", "generator_config") if not meta.get(k)]
    if missing or not isinstance(meta.get("generator_config"), dict):
        raise StyleFileError(f"'{path}' lacks the style metadata {missing or ['generator_config']}; it was not "
                             "written by nada's save_style.")
    bad = [k for k, v in tensors.items() if not v.is_floating_point()]
    if bad:
        raise StyleFileError(f"'{path}' holds non-float tensors {bad[:3]}; not a nada style.")
    if meta.get("kind", "weights") not in KINDS:
        raise StyleFileError(f"'{path}' is a nada style of kind {meta.get('kind')!r}; this nada ({__version__}) "
                             f"reads {', '.join(KINDS)}. Update nada.")
    style = Style(tensors, meta)
    meta["kind"] = style.kind  # files written before modulation styles record none: they hold weights
    return style


# ------------------------------------------------------------------------------------------------- applying
def verify_source(style: Style, source: Generator, source_name: str | None = None,
                  source_fingerprint: str | None = None, *, advice: str | None = None) -> None:
    """Raise StyleMismatchError unless ``source`` has the architecture and weights the style was trained from
    (``source_fingerprint``: the source's fingerprint when already known, so its tensors need not be read).
    ``advice`` ends the message (what to do); the default names the command line's ``--source`` flag."""
    cfg, fp = style.meta.get("generator_config"), style.meta.get("source_fingerprint")
    mine_cfg = source.config()
    arch_ok = _architecture(cfg) is not None and _architecture(cfg) == _architecture(mine_cfg)
    mine_fp = source_fingerprint or generator_fingerprint(source)
    if arch_ok and fp == mine_fp:
        return
    mine = _describe(source_name, mine_fp, mine_cfg)
    why = "another architecture" if not arch_ok else "other weights"
    raise StyleMismatchError(
        f"This style was trained on the source generator {_describe(style.source, fp, cfg)}, but the generator "
        f"given is {mine} ({why}). "
        + (advice or f"Pick the style's source generator (--source {style.source or '...'})."))


def _offset_mismatch(offsets: dict[str, torch.Tensor], source: Generator) -> str:
    """'' if every style offset names a modulated convolution of ``source`` with that many input channels."""
    convs = source.modulated_convs()
    unknown = [k for k in offsets if k.removesuffix(OFFSET_SUFFIX) not in convs]
    shapes = [f"{k} {list(v.shape)} vs [{convs[k.removesuffix(OFFSET_SUFFIX)].in_ch}]" for k, v in offsets.items()
              if k not in unknown and tuple(v.shape) != (convs[k.removesuffix(OFFSET_SUFFIX)].in_ch,)]
    parts = ([f"unknown style offsets {unknown[:4]}"] if unknown else []) + \
        ([f"other offset shapes {shapes[:3]}"] if shapes else [])
    return "; ".join(parts)


def check_style_fits(style: Style, source: Generator, source_name: str | None = None) -> None:
    """Raise StyleMismatchError unless every tensor and style offset of ``style`` has a same-shaped place in
    ``source`` (the architecture check of :func:`apply_style`; the weights are not compared)."""
    problem = "; ".join(p for p in (_arch_mismatch(style.weights, source.state_dict()),
                                    _offset_mismatch(style.offsets, source)) if p)
    if problem:
        theirs = _describe(style.source, style.meta.get("source_fingerprint"), style.meta.get("generator_config"))
        mine = _describe(source_name, None, source.config())
        raise StyleMismatchError(f"The style does not fit the generator {mine} (the style's source: {theirs}): "
                                 f"{problem}.")


def apply_style(source: Generator, style: Style, strength: float = 1.0, check_source: bool = True,
                *, source_name: str | None = None) -> Generator:
    """A styled copy of ``source``: each stored tensor becomes ``src + strength * (style - src)`` (0 = source,
    1 = adapted, exactly), and each style offset ``strength * offset`` (a modulation style: every weight stays the
    source's). ``source`` is never modified. ``check_source`` refuses a style from another source."""
    if not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"Style strength must be between 0 (source) and 1 (full style), got {strength!r}.")
    check_style_fits(style, source, source_name)
    if check_source:
        verify_source(style, source, source_name)
    styled = copy.deepcopy(source)
    new_sd = styled.state_dict()  # shares storage with ``styled``'s tensors
    with torch.no_grad():
        for key, value in style.weights.items():
            target = new_sd[key]
            # torch.lerp returns ``end`` exactly at weight 1 and ``start`` exactly at weight 0.
            target.copy_(torch.lerp(target, value.to(target.device, target.dtype), float(strength)))
        if style.offsets:
            offsets = {k: v.detach().clone() for k, v in styled.style_offsets().items()}
            for key, value in style.offsets.items():
                start = offsets.get(key, torch.zeros_like(value, dtype=torch.float32))
                offsets[key] = torch.lerp(start.to("cpu", torch.float32), value.float(), float(strength))
            styled.set_style_offsets(offsets)
    return styled


# ------------------------------------------------------------------------------------------------ blending
def _checked_pairs(pairs) -> list[tuple[Style, float]]:
    """``pairs`` as a checked list of (Style, finite float weight), all of one source; ValueError otherwise."""
    if isinstance(pairs, Style) or isinstance(pairs, (str, bytes)):
        raise ValueError("blend takes a list of (style, weight) pairs, e.g. [(pixar, 0.6), (sketch, 0.4)].")
    out: list[tuple[Style, float]] = []
    for item in list(pairs):
        if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], Style):
            raise ValueError(f"blend takes (style, weight) pairs; got {item!r}.")
        style, weight = item
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"Blend weights must be finite numbers; got {weight!r} for the style "
                             f"{style.meta.get('target_text')!r}.")
        out.append((style, float(weight)))
    if not out:
        raise ValueError("blend needs at least one (style, weight) pair.")
    first = out[0][0]
    for style, _ in out[1:]:
        same_arch = _architecture(style.meta.get("generator_config")) == \
            _architecture(first.meta.get("generator_config"))
        if not same_arch or style.meta.get("source_fingerprint") != first.meta.get("source_fingerprint"):
            a, b = ((x.source, x.meta.get("source_fingerprint"), x.meta.get("generator_config"))
                    for x in (first, style))
            raise StyleMismatchError(f"Only styles of the same source generator blend: {_describe(*a)} and "
                                     f"{_describe(*b)} differ.")
    return out


def combine_tensors(pairs: list[tuple[Style, float]], source_sd: dict[str, torch.Tensor] | None = None,
                    dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """The blend of checked ``pairs``: each weight tensor ``sum_i w_i t_i + (1 - sum_i w_i) src`` (a style without the
    tensor holds the source's there), each style offset ``sum_i w_i offset_i``; summed in ``dtype`` and returned in
    float32 on the styles' device. Zero weights are skipped, so weights (1, 0) return the first style's tensors
    exactly. ``source_sd`` (the source's state dict) is needed only where the weights of the styles holding a
    tensor do not sum to 1; ValueError when it is needed and missing."""
    keys = list(dict.fromkeys(k for s, w in pairs if w != 0 for k in s.tensors))
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        terms = [(w, s.tensors[key]) for s, w in pairs if w != 0 and key in s.tensors]
        acc = terms[0][1].to(dtype) * terms[0][0]
        for w, t in terms[1:]:
            acc = acc + t.to(dtype) * w
        rest = 1.0 - sum(w for w, _ in terms)
        if not is_offset_key(key) and (abs(rest) > 1e-9 or (rest != 0 and source_sd is not None)):
            if source_sd is None:
                raise ValueError(f"These styles change different tensors ('{key}' is in some only), so blending them "
                                 "needs the source generator: pass source=<the generator they were trained from>.")
            acc = acc + source_sd[key].detach().to(acc.device, dtype) * rest
        out[key] = acc.float()
    return out


def blend(pairs, source: Generator | None = None, *, source_fingerprint: str | None = None) -> Style:
    """Style arithmetic: ``[(style, weight), ...]`` -> one Style of the same source. Weight tensors become
    ``source + sum_i w_i (style_i - source)``, style offsets ``sum_i w_i offset_i``; a weight style and a modulation
    style give a "mixed" style; published ``.pt`` styles (:func:`import_style_pt`) blend like weight styles.
    Weights may be negative (away from a style) and need not sum to 1; weights (1, 0) give the first style's
    tensors exactly. ``source`` (the styles' source generator; checked, ``source_fingerprint`` when already known)
    is needed only when weight styles changed different tensors. Raises ValueError for non-finite weights or an
    empty list, StyleMismatchError for styles of different sources."""
    checked = _checked_pairs(pairs)
    first = checked[0][0]
    if source is not None:
        verify_source(first, source, source_fingerprint=source_fingerprint,
                      advice="Blend styles with the generator they were trained from.")
    source_sd = {k: v.detach().to("cpu") for k, v in source.state_dict().items()} if source is not None else None
    tensors = combine_tensors(checked, source_sd)
    active = [(s, w) for s, w in checked if w != 0]
    record = [{"weight": w, "kind": s.kind, "source_text": s.meta.get("source_text"),
               "target_text": s.meta.get("target_text"), "created": s.meta.get("created")} for s, w in checked]
    if len(active) == 1 and active[0][1] == 1.0:  # one style at full weight: that style, with the blend recorded
        meta = {**copy.deepcopy(active[0][0].meta), "blend": record}
    else:
        label = " ".join(f"{'-' if w < 0 else '+'} {abs(w):g}*{s.meta.get('target_text') or 'style'}"
                         for s, w in active).removeprefix("+ ")
        meta = {"source": first.source, "source_text": first.meta.get("source_text"), "target_text": label,
                "config": {}, "layers": sorted({m for s, _ in active for m in s.meta.get("layers") or []}),
                "source_fingerprint": first.meta.get("source_fingerprint"),
                "generator_config": first.meta.get("generator_config"), "nada_version": __version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "blend": record}
    meta["kind"] = _kind_of(tensors, first.kind)
    return Style(tensors, _plain(meta))


# ---------------------------------------------------------------------------------------- full .pt files
def export_style_pt(source: Generator, style: Style, path: str | os.PathLike) -> Path:
    """Write the styled generator as a rosinality checkpoint ``{"g_ema": state_dict}`` (plus the source's
    ``latent_avg`` when it has one), for tools that expect full StyleGAN2 files. Style offsets are folded into the
    affine layers (:meth:`Generator.fold_style_offsets`): same images up to float rounding."""
    styled = apply_style(source, style, 1.0).fold_style_offsets()
    ckpt: dict = {"g_ema": {k: v.detach().to("cpu").clone() for k, v in styled.state_dict().items()}}
    if getattr(source, "latent_avg", None) is not None:
        ckpt["latent_avg"] = source.latent_avg.detach().to("cpu").reshape(-1).clone()  # [512]
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))
    return path


def import_style_pt(path_or_registry_name: str | os.PathLike, source: Generator, meta: dict | None = None,
                    source_fingerprint: str | None = None) -> Style:
    """A Style from a full generator checkpoint (``{"g_ema": ...}``, e.g. a published StyleGAN-NADA model, by
    registry name or path): its tensors that differ from ``source``, which must have the same architecture and the
    same mapping network (see :func:`_check_frozen_parts`)."""
    path = resolve(path_or_registry_name)  # registry name -> hub cache; else an existing file
    sd = generator_state_dict(load_state_dict_file(path), str(path))
    label = str(path_or_registry_name)
    src_sd = source.state_dict()
    problem = _arch_mismatch(sd, src_sd) or (f"missing {sorted(set(src_sd) - set(sd))[:4]}"
                                             if set(src_sd) - set(sd) else "")
    if problem:  # keys and shapes pin the architecture down completely
        try:
            theirs = f"a {generator_config(sd)['size']}px generator"
        except CheckpointError:
            theirs = "not a StyleGAN2 generator"
        raise StyleMismatchError(
            f"'{label}' ({theirs}) does not fit the source generator ({source.config()['size']}px, channels "
            f"{source.channels}): {problem}. Use the source it was trained from.")
    tensors: dict[str, torch.Tensor] = {}
    for key, s in src_sd.items():
        s_cpu = s.detach().to("cpu", torch.float32)
        v = sd[key].detach().to("cpu", torch.float32)
        if not torch.equal(s_cpu, v):
            tensors[key] = v.clone()
    _check_frozen_parts(tensors, src_sd, label)
    asset = REGISTRY.get(str(path_or_registry_name)) if isinstance(path_or_registry_name, str) else None
    base = {"source": asset.source if asset else None, "imported_from": str(path)}
    if asset is not None:
        base.update(published=f"{asset.repo_id}/{asset.filename}", description=asset.description, note=asset.note)
    full = {**base, **(meta or {})}
    return _make_style(source, tensors, full, source_fingerprint)


FROZEN_PREFIXES = ("style.",)  # the mapping network: StyleGAN-NADA never trains it, so a style keeps it bit for bit


def _check_frozen_parts(changed: dict[str, torch.Tensor], source_sd: dict[str, torch.Tensor], label: str) -> None:
    """Refuse a full generator whose mapping network differs from the source's: it was not adapted from it.

    Adaptation (the paper's, and :mod:`nada.train`) freezes the mapping network and, by default, the ToRGB layers.
    Only the mapping network is checked: ToRGB layers may legitimately change (``AdaptConfig.train_to_rgb``, and
    other fine-tuning tools train them), while no adapted copy ever changes a mapping weight, and a separately
    trained generator of the same architecture never shares one bit for bit."""
    frozen = [k for k in source_sd if k.startswith(FROZEN_PREFIXES)]
    differ = [k for k in frozen if k in changed]
    if differ:
        raise StyleMismatchError(
            f"'{label}' is not a style of this source generator: its mapping network ({len(differ)} of {len(frozen)} "
            "style.* tensors) differs from the source's, and StyleGAN-NADA adaptation never changes the mapping "
            "network. It is most likely a separately trained StyleGAN2 generator of the same size (another dataset, "
            "or another checkpoint), not a style adapted from this source.")


# -------------------------------------------------------------------------------------------- user names
def safe_style_name(text: str) -> str:
    """A user's style name as a safe slug: lower-case ASCII ``[a-z0-9_-]``, 1..64 chars, never a path."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9_-]+", "-", ascii_text)
    slug = re.sub(r"-{2,}", "-", slug).strip("-_")[:MAX_NAME_LEN].strip("-_")
    if not slug:
        raise ValueError(f"Style name {text!r} has no usable characters: use letters, digits, '-' or '_'.")
    if slug in _RESERVED:
        slug += "-style"
    return slug


def styles_dir() -> Path:
    """Where named styles are saved: ``<weights cache>/styles``."""
    return cache_dir() / "styles"


def style_path(name: str) -> Path:
    """``styles_dir()/<safe name>.safetensors``; the name is slugged first, so it can never leave that folder."""
    root = styles_dir().resolve()
    path = (root / (safe_style_name(name) + STYLE_SUFFIX)).resolve()
    if path.parent != root:  # cannot happen for a slug; kept as a guard against future edits
        raise ValueError(f"Style name {name!r} does not stay inside {root}.")
    return path


def list_saved_styles() -> list[str]:
    """Names of the styles saved in :func:`styles_dir`, sorted."""
    root = styles_dir()
    if not root.is_dir():
        return []
    return sorted(p.stem for p in root.glob("*" + STYLE_SUFFIX) if p.is_file() and _SLUG_RE.fullmatch(p.stem))


# ----------------------------------------------------------------------------------------- name or path
def load_any_style(name_or_path: str | os.PathLike, source: Generator, source_name: str) -> Style:
    """A style from a published registry name ("nada-pixar"), a saved style name, a ``.safetensors`` style or a
    full ``.pt`` generator; checked against ``source`` (StyleMismatchError when it belongs to another)."""
    key = os.fspath(name_or_path)
    asset = REGISTRY.get(key) if isinstance(name_or_path, str) else None
    if asset is not None:
        if asset.kind != "style":
            raise StyleFileError(f"'{key}' is a {asset.kind} in the weights registry, not a style. Published styles: "
                                 f"{', '.join(n for n, a in REGISTRY.items() if a.kind == 'style')}.")
        if source_name in REGISTRY and asset.source and source_name != asset.source:
            raise StyleMismatchError(f"The published style '{key}' was trained from the '{asset.source}' generator, "
                                     f"but the source is '{source_name}'. Use --source {asset.source}.")
        return import_style_pt(key, source, {"source": asset.source})
    path = Path(key).expanduser()
    if not path.is_file() and isinstance(name_or_path, str) and _SLUG_RE.fullmatch(key) and \
            style_path(key).is_file():
        path = style_path(key)
    if not path.is_file():
        published = ", ".join(n for n, a in REGISTRY.items() if a.kind == "style")
        saved = ", ".join(list_saved_styles()) or "none"
        raise StyleFileError(f"Style '{key}' not found: it is not a file, a saved style ({saved}) or a published "
                             f"style ({published}).")
    if path.suffix == STYLE_SUFFIX:
        style = load_style(path)
        verify_source(style, source, source_name)
        return style
    if path.suffix in {".pt", ".pth", ".ckpt"}:
        return import_style_pt(path, source, {"source": source_name})
    raise StyleFileError(f"'{path}' is neither a nada style ({STYLE_SUFFIX}) nor a generator checkpoint (.pt).")


def apply_style_file(generator: Generator, name_or_path: str | os.PathLike, strength: float = 1.0,
                     source_name: str = "ffhq") -> Generator:
    """Load a style by name or path (see :func:`load_any_style`) and return a styled copy of ``generator``."""
    if not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"Style strength must be between 0 (source) and 1 (full style), got {strength!r}.")
    style = load_any_style(name_or_path, generator, str(source_name))
    return apply_style(generator, style, strength, check_source=False, source_name=str(source_name))


__all__ = [
    "Style", "StyleMismatchError", "StyleFileError", "generator_fingerprint",
    "style_from_generators", "save_style", "load_style", "verify_source", "apply_style", "export_style_pt", "blend",
    "combine_tensors", "is_offset_key", "check_style_fits", "KINDS",
    "import_style_pt", "load_any_style", "apply_style_file", "safe_style_name", "styles_dir", "style_path",
    "list_saved_styles", "atomic_write",
]
