"""Full generator checkpoints (``.pt``, ``{"g_ema": ...}``) as styles: imported by diffing against the source, exported
whole for tools that expect full StyleGAN2 files."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..files import atomic_write
from ..nets.stylegan2 import Generator
from ..weights import (
    NVIDIA_SETTINGS,
    REGISTRY,
    CheckpointError,
    generator_config,
    generator_state_dict,
    load_state_dict_file,
    resolve,
)
from .style import Style, StyleMismatchError, _arch_mismatch, _make_style, apply_style


def export_style_pt(source: Generator, style: Style, path: str | os.PathLike, strength: float = 1.0) -> Path:
    """Write the styled generator (``strength``: 0 = source, 1 = the style) as a rosinality checkpoint
    ``{"g_ema": state_dict}`` (plus the source's ``latent_avg`` when it has one), for tools that expect full
    StyleGAN2 files. Style offsets are folded into the affine layers (:meth:`Generator.fold_style_offsets`): same
    images up to float rounding. A generator read from an NVIDIA pickle keeps the settings rosinality's layout has no
    place for in ``"nvidia_settings"`` (see :func:`rosinality_notes`), so that nada reloads it exactly."""
    if not isinstance(source, Generator):
        raise StyleMismatchError(f"A {type(source).__name__} has no rosinality StyleGAN2 layout (.pt); export it to "
                                 "an NVIDIA network pickle (.pkl) instead.")
    styled = apply_style(source, style, strength).fold_style_offsets()
    ckpt: dict = {"g_ema": {k: v.detach().to("cpu").clone() for k, v in styled.state_dict().items()}}
    if getattr(source, "latent_avg", None) is not None:
        ckpt["latent_avg"] = source.latent_avg.detach().to("cpu").reshape(-1).clone()  # [512]
    settings = {k: source.config()[k] for k in NVIDIA_SETTINGS if k in source.config()}
    if settings:
        ckpt["nvidia_settings"] = settings
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))
    return path


def rosinality_notes(source: Generator) -> list[str]:
    """What rosinality's own StyleGAN2 code would do otherwise with a ``.pt`` of ``source`` (one sentence per
    setting of NVIDIA's it lacks); empty for a rosinality generator."""
    cfg, notes = source.config(), []
    if "channel_base" in cfg:
        notes.append(f"its channels per resolution ({source.channels}) follow NVIDIA's channel_base "
                     f"{cfg['channel_base']}, which rosinality's Generator cannot build")
    if "conv_clamp" in cfg:
        notes.append(f"rosinality's code does not clamp layer outputs to +-{cfg['conv_clamp']:g} as NVIDIA's does: "
                     "its images differ wherever an activation passes that")
    if "mapping_lr" in cfg:
        notes.append(f"rosinality's code needs lr_mlp={cfg['mapping_lr']:g} for its mapping network")
    return notes


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
