"""Full generator checkpoints (``.pt``, ``{"g_ema": ...}``) as styles: imported by diffing against the source, exported
whole for tools that expect full StyleGAN2 files."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..files import atomic_write
from ..nets.stylegan2 import Generator
from ..weights import REGISTRY, CheckpointError, generator_config, generator_state_dict, load_state_dict_file, resolve
from .style import Style, StyleMismatchError, _arch_mismatch, _make_style, apply_style


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
