"""Compact-style offsets on the modulated layers of any of our generators (StyleGAN2 and StyleGAN3 share them): each
layer may hold a ``style_offset`` (s * (1 + offset)) and a ``style_delta`` (s + delta) of shape [in], keyed
"<module>.<form>"; set, checked and folded into the affine layer here."""

from __future__ import annotations

import torch
from torch import nn

OFFSET_FORMS = ("style_offset", "style_delta")  # the compact-style buffers of a modulated layer


def assign_offsets(layers: dict[str, nn.Module], offsets: dict[str, torch.Tensor] | None) -> None:
    """Replace every offset of ``layers`` (name -> layer with ``in_ch`` and ``weight``) by ``offsets`` (moved to the
    layer's device and dtype); those not named are cleared. Checked first: unknown keys and wrong shapes raise
    ``ValueError`` and nothing changes."""
    offsets = dict(offsets or {})
    example = next(iter(layers))
    for key, value in offsets.items():
        name, _, form = key.rpartition(".")
        if form not in OFFSET_FORMS or name not in layers:
            raise ValueError(f"'{key}' is not a style offset of this generator (e.g. '{example}.style_offset' or "
                             f"'{example}.style_delta').")
        if tuple(value.shape) != (layers[name].in_ch,):
            raise ValueError(f"Style offset '{key}' must have shape [{layers[name].in_ch}], got {list(value.shape)}.")
    for name, m in layers.items():
        for form in OFFSET_FORMS:
            value = offsets.get(f"{name}.{form}")
            setattr(m, form, None if value is None else value.to(m.weight.device, m.weight.dtype))


@torch.no_grad()
def fold_offsets(layer: nn.Module, affine: nn.Module, bias_gain: float) -> None:
    """Fold ``layer``'s offsets into its ``affine`` (weight [in, w_dim], bias [in], used as ``bias * bias_gain``) in
    place, in float64, and clear them: weight rows times ``1 + style_offset``, bias ``bias * (1 + style_offset) +
    style_delta / bias_gain``; the layer's output stays the same up to float rounding."""
    if layer.style_offset is not None:
        gain = 1 + layer.style_offset.detach().double()  # [in]
        affine.weight.copy_((affine.weight.double() * gain[:, None]).to(affine.weight.dtype))  # [in, w_dim]
        affine.bias.copy_((affine.bias.double() * gain).to(affine.bias.dtype))  # [in]
    if layer.style_delta is not None:
        affine.bias.copy_((affine.bias.double() + layer.style_delta.detach().double() / bias_gain)
                          .to(affine.bias.dtype))
    layer.style_offset = layer.style_delta = None
