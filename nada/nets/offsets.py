"""Compact-style offsets on the modulated layers of any of our generators (StyleGAN2 and StyleGAN3 share them): each
layer may hold a ``style_offset`` (s * (1 + offset)) and a ``style_delta`` (s + delta) of shape [in], keyed
"<module>.<form>"; set, checked, applied and folded into the affine layer here.

Several styles in one batch (``nada.zoo``): offsets of shape [K, in], one row per style, and a ``style_index`` [N]
saying which style each sample of the batch reads (sample i: row ``index[i]``). Offsets of shape [in] are one style
for every sample, the path every single-style render takes (no index, nothing gathered)."""

from __future__ import annotations

import torch
from torch import nn

OFFSET_FORMS = ("style_offset", "style_delta")  # the compact-style buffers of a modulated layer


def assign_offsets(layers: dict[str, nn.Module], offsets: dict[str, torch.Tensor] | None,
                   index: torch.Tensor | None = None) -> None:
    """Replace every offset of ``layers`` (name -> layer with ``in_ch`` and ``weight``) by ``offsets`` (moved to the
    layer's device and dtype); those not named are cleared. Offsets are [in], or [K, in] (K styles) with ``index``
    [N] (each sample's style, in [0, K)). Checked first: unknown keys, wrong shapes or a missing or bad index raise
    ``ValueError`` and nothing changes."""
    offsets = dict(offsets or {})
    example = next(iter(layers))
    styles = set()
    for key, value in offsets.items():
        name, _, form = key.rpartition(".")
        if form not in OFFSET_FORMS or name not in layers:
            raise ValueError(f"'{key}' is not a style offset of this generator (e.g. '{example}.style_offset' or "
                             f"'{example}.style_delta').")
        in_ch = layers[name].in_ch
        if value.dim() not in (1, 2) or value.shape[-1] != in_ch:
            raise ValueError(f"Style offset '{key}' must have shape [{in_ch}] (or [K, {in_ch}] for K styles), got "
                             f"{list(value.shape)}.")
        if value.dim() == 2:
            styles.add(value.shape[0])
    if len(styles) > 1:
        raise ValueError(f"Offsets for several styles must all have the same number of rows, got {sorted(styles)}.")
    if index is not None and not styles:
        raise ValueError("A per-sample style index needs offsets with one row per style ([K, in]).")
    if styles:
        k = styles.pop()
        if index is None or index.dim() != 1 or index.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"Offsets for {k} styles need an index: one integer per sample, each in [0, {k}).")
        if len(index) and not 0 <= int(index.min()) <= int(index.max()) < k:
            raise ValueError(f"Every style index must be in [0, {k}) for {k} styles.")
    if index is not None:  # moved once (a CPU index is checked above without waiting for the device)
        index = index.to(next(iter(layers.values())).weight.device, torch.long)
    for name, m in layers.items():
        for form in OFFSET_FORMS:
            value = offsets.get(f"{name}.{form}")
            setattr(m, form, None if value is None else value.to(m.weight.device, m.weight.dtype))
        m.style_index = index


def per_sample(value: torch.Tensor, index: torch.Tensor | None, n: int) -> torch.Tensor:
    """An offset as the style of a batch of ``n`` reads it: [in] as it is (every sample), [K, in] gathered by the
    per-sample ``index`` into [N, in]."""
    if value.dim() == 1:
        return value
    if index is None or index.shape[0] != n:
        got = "none" if index is None else len(index)
        raise ValueError(f"A batch of {n} samples with offsets for {value.shape[0]} styles needs a style index of {n} "
                         f"entries (Generator.set_style_offsets(offsets, index)); got {got}.")
    return value.index_select(0, index)  # [N, in]


def offset_styles(layer: nn.Module, s: torch.Tensor) -> torch.Tensor:
    """The style ``s`` [N, in] with ``layer``'s offsets applied: times ``1 + style_offset``, plus ``style_delta``,
    where set (with neither, ``s`` itself)."""
    if layer.style_offset is not None:
        s = s * (1 + per_sample(layer.style_offset, layer.style_index, s.shape[0]))
    if layer.style_delta is not None:
        s = s + per_sample(layer.style_delta, layer.style_index, s.shape[0])
    return s


@torch.no_grad()
def fold_offsets(layer: nn.Module, affine: nn.Module, bias_gain: float) -> None:
    """Fold ``layer``'s offsets into its ``affine`` (weight [in, w_dim], bias [in], used as ``bias * bias_gain``) in
    place, in float64, and clear them: weight rows times ``1 + style_offset``, bias ``bias * (1 + style_offset) +
    style_delta / bias_gain``; the layer's output stays the same up to float rounding. Offsets of several styles
    ([K, in]) cannot fold into one layer: ``ValueError``."""
    if any(v is not None and v.dim() != 1 for v in (layer.style_offset, layer.style_delta)):
        raise ValueError("Offsets of several styles ([K, in]) cannot be folded into one generator; set one style's "
                         "offsets first.")
    if layer.style_offset is not None:
        gain = 1 + layer.style_offset.detach().double()  # [in]
        affine.weight.copy_((affine.weight.double() * gain[:, None]).to(affine.weight.dtype))  # [in, w_dim]
        affine.bias.copy_((affine.bias.double() * gain).to(affine.bias.dtype))  # [in]
    if layer.style_delta is not None:
        affine.bias.copy_((affine.bias.double() + layer.style_delta.detach().double() / bias_gain)
                          .to(affine.bias.dtype))
    layer.style_offset = layer.style_delta = None
