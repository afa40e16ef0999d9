"""The :class:`Style` type and what is done with styles in memory: building one from a source and an adapted
generator, fingerprints of generators, checking that a style fits and belongs to a generator, applying it, blending.

A style holds the generator tensors that differ from its source and/or per-channel style offsets, with metadata that
names the source generator and its fingerprint (a hash of its tensors). Applying a style to a generator first checks
that it is the generator the style was trained from, then blends ``source + strength * (style - source)`` into a copy.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import hashlib
import math
import os
from dataclasses import dataclass, field

import torch

from .. import __version__
from ..nets.stylegan2 import Generator, channels_for

KINDS = ("weights", "modulation", "style_delta", "mixed")  # Style.kind
OFFSET_SUFFIX = ".style_offset"  # keys of "modulation" offsets (Generator.style_offsets), beside state-dict keys
DELTA_SUFFIX = ".style_delta"  # keys of "style_delta" offsets
OFFSET_KINDS = {OFFSET_SUFFIX: "modulation", DELTA_SUFFIX: "style_delta"}  # key suffix -> the kind it makes


class StyleMismatchError(ValueError):
    """A style does not belong to the generator it is applied to (other weights or another architecture)."""


@dataclass
class Style:
    """The tensors that differ from the source generator, and where they came from."""

    tensors: dict[str, torch.Tensor]  # state-dict key -> adapted value, and/or "<module>.style_offset" or
    #                                   "<module>.style_delta" -> offset [in] (CPU; float32, float16 from fp16 files)
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
        """"weights", "modulation", "style_delta" or "mixed" (see the package docstring), by the tensors held; an
        empty style (nothing trained yet) reports its recorded kind."""
        return _kind_of(self.tensors, self.meta.get("kind") or "weights")

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """The changed state-dict tensors (empty for a compact style)."""
        return {k: v for k, v in self.tensors.items() if not is_offset_key(k)}

    @property
    def offsets(self) -> dict[str, torch.Tensor]:
        """The style offsets of either form, "<module>.style_offset" / "<module>.style_delta" -> [in] (empty for a
        weight style)."""
        return {k: v for k, v in self.tensors.items() if is_offset_key(k)}


def is_offset_key(key: str) -> bool:
    """True for a style-offset key of either form ("convs.3.conv.style_offset", "convs.3.conv.style_delta"), False
    for a state-dict key."""
    return key.endswith(OFFSET_SUFFIX) or key.endswith(DELTA_SUFFIX)


def offset_module(key: str) -> str:
    """The modulated convolution a style-offset key belongs to ("convs.3.conv.style_delta" -> "convs.3.conv")."""
    return key.rpartition(".")[0]


def _kind_of(tensors: dict[str, torch.Tensor], default: str = "weights") -> str:
    """The kind of style ``tensors`` make: one form alone names it ("weights", "modulation", "style_delta"), two or
    more forms make "mixed"; ``default`` when there are none."""
    forms = {next((kind for suffix, kind in OFFSET_KINDS.items() if k.endswith(suffix)), "weights") for k in tensors}
    if len(forms) > 1:
        return "mixed"
    return forms.pop() if forms else default


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
    if isinstance(cfg, dict) and str(cfg.get("arch", "")).startswith("stylegan3"):
        arch = f"{cfg.get('size')}px, {cfg['arch'].replace('stylegan3', 'StyleGAN3')}"
    else:
        arch = f"{cfg.get('size')}px, channel multiplier {cfg.get('channel_multiplier')}" if isinstance(cfg, dict) \
            else "?"
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
    """What a generator config determines: sizes and channels per resolution (NVIDIA's ``channel_base`` rule when the
    config has one), and NVIDIA's mapping learning rate and conv clamp where set. Several configs can build the same
    network (the channel multiplier is moot when ``channel_max`` caps every layer), so configs compare by this."""
    if isinstance(cfg, dict) and str(cfg.get("arch", "")).startswith("stylegan3"):  # NVIDIA's init kwargs say it all
        return {"arch": cfg["arch"], "init_kwargs": _plain(cfg.get("init_kwargs") or {})}
    try:
        base = cfg.get("channel_base")
        channels = channels_for(int(cfg["size"]), int(cfg["channel_multiplier"]), int(cfg.get("channel_max", 512)),
                                None if base is None else int(base))
        arch = {"size": int(cfg["size"]), "style_dim": int(cfg["style_dim"]), "n_mlp": int(cfg["n_mlp"]),
                "channels": channels}
        if cfg.get("mapping_lr") not in (None, 0.01):
            arch["mapping_lr"] = float(cfg["mapping_lr"])
        if cfg.get("conv_clamp") is not None:
            arch["conv_clamp"] = float(cfg["conv_clamp"])
        return arch
    except (TypeError, KeyError, ValueError, AttributeError):
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
    with metadata completed: a weight style, a compact style ("modulation" or "style_delta", as trained with that
    ``params``: no weight differs) or, when several forms changed, a mixed one.

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
    unknown = [k for k in offsets if offset_module(k) not in convs]
    shapes = [f"{k} {list(v.shape)} vs [{convs[offset_module(k)].in_ch}]" for k, v in offsets.items()
              if k not in unknown and tuple(v.shape) != (convs[offset_module(k)].in_ch,)]
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
    1 = adapted, exactly), and each style offset ``strength * offset`` (a compact style: every weight stays the
    source's; for "style_delta", StyleDomain's ``s + alpha * delta``). ``source`` is never modified.
    ``check_source`` refuses a style from another source."""
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
    ``source + sum_i w_i (style_i - source)``, style offsets ``sum_i w_i offset_i`` per form; styles of different
    forms give a "mixed" style holding each form's sum (a "modulation" style A and a "style_delta" style B blend to
    ``s * (1 + w_A o_A) + w_B d_B``: each form stays linear in its weight, so (1, 0) is A exactly and (0, 1) B);
    published ``.pt`` styles (:func:`import_style_pt`) blend like weight styles.
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
