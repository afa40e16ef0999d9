"""Loading OpenAI CLIP models (the ``clip`` package's architecture) from a registry name, a local file or a state dict.

OpenAI's download URLs are dead, so the released ViT-B/32 and ViT-B/16 weights come from the hub mirrors
``timm/vit_base_patch{32,16}_clip_224.openai`` (file ``open_clip_pytorch_model.bin``) through
:mod:`nada.weights`. Those files, ``open_clip`` state dicts of OpenAI-architecture models and OpenAI's own
``.pt`` files all use OpenAI's key names, so one builder serves them all: ``clip.model.build_model`` reads the
hyperparameters off the state dict. Every model comes back in float32, in eval mode, with
``requires_grad=False`` (gradients still flow *through* it to the images).

Note for ``open_clip`` users: OpenAI's weights need QuickGELU, i.e. open_clip's ``*-quickgelu`` configs (or
``force_quick_gelu=True``). A plain open_clip ``ViT-B-32`` uses ``nn.GELU`` and loads here without error but
computes something slightly different, because the key names cannot tell the two activations apart.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch

from . import weights

DEFAULT_CLIPS = ("clip-vit-b32", "clip-vit-b16")  # the paper's pair: what adaptation uses unless told otherwise

# User-facing names -> registry names. OpenAI's own spellings are accepted as aliases.
CLIP_NAMES: Mapping[str, str] = MappingProxyType({
    "clip-vit-b32": "clip-vit-b32",
    "clip-vit-b16": "clip-vit-b16",
    "ViT-B/32": "clip-vit-b32",
    "ViT-B/16": "clip-vit-b16",
})

# Keys every OpenAI-layout CLIP state dict has (text tower and the shared logit scale).
_TEXT_KEYS = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection", "logit_scale")
# Extra entries of OpenAI's TorchScript files; build_model drops them, so do we.
_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
# Wrappers some training scripts put around a state dict.
_WRAPPERS = ("state_dict", "model", "module")


def import_clip():
    """The ``clip`` package, imported quietly (it imports the deprecated ``pkg_resources``); not at ``import nada``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import clip  # heavy: ~2 s (it imports torchvision), so only when a CLIP model is built
    return clip


def load_clip(source: str | os.PathLike | Mapping[str, torch.Tensor],
              device: str | torch.device = "cpu") -> torch.nn.Module:
    """A float32, eval-mode, frozen ``clip.model.CLIP`` from a registry name, a file path or a state dict.

    ``source``: ``"clip-vit-b32"`` / ``"clip-vit-b16"`` (or ``"ViT-B/32"`` / ``"ViT-B/16"``), fetched through
    :func:`nada.weights.fetch`; a local file (``open_clip_pytorch_model.bin``, a state-dict ``.pt``/``.pth``,
    ``.safetensors``, or an OpenAI TorchScript ``.pt``, see :func:`read_clip_file`); or a state dict.
    Raises ``nada.weights.CheckpointError`` (a ``ValueError``) when the weights are not a CLIP.
    """
    if isinstance(source, Mapping):
        sd, where = dict(source), "the given state dict"
    else:
        path = resolve_clip_source(source)
        sd, where = read_clip_file(path), str(path)
    return build_clip(sd, where).to(device)


def resolve_clip_source(source: str | os.PathLike) -> Path:
    """A CLIP registry name or alias becomes a cached file (downloaded once); a path must exist."""
    if isinstance(source, str) and source in CLIP_NAMES:
        return weights.fetch(CLIP_NAMES[source])
    path = Path(source).expanduser()
    if not path.is_file():
        known = ", ".join(CLIP_NAMES)
        raise ValueError(
            f"Unknown CLIP model {str(source)!r}: use one of {known}, or the path of a CLIP checkpoint file.")
    return path


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True for a TorchScript zip (OpenAI's original ``ViT-B-32.pt`` files are these)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names)


def read_clip_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a CLIP checkpoint file, read on the CPU.

    State-dict files go through :func:`nada.weights.load_state_dict_file` (safetensors, or ``torch.load`` with
    ``weights_only=True``: no pickled code runs). ``torch.load`` refuses TorchScript archives in that mode, so
    those are opened with ``torch.jit.load`` and only their ``state_dict()`` is kept. TorchScript is not Python
    pickle, but it is still code stored in the file: load archives only from sources you trust, or convert them
    once to a state dict (``torch.save(torch.jit.load(p, map_location="cpu").state_dict(), q)``).
    """
    path = Path(path)
    if is_torchscript_archive(path):
        try:
            with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # a corrupt archive surfaces as various torch errors
            raise weights.CheckpointError(
                f"{path} looks like a TorchScript archive but could not be loaded "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}).") from exc
        return dict(module.state_dict())
    return weights.load_state_dict_file(path)


def normalise_clip_state_dict(sd: Mapping[str, object], where: str = "state dict") -> dict[str, torch.Tensor]:
    """Unwrap ``{"state_dict": ...}``-style containers, strip ``module.`` prefixes, drop TorchScript extras,
    and check that what is left is an OpenAI-layout CLIP; raises ``CheckpointError`` otherwise."""
    sd = dict(sd)
    for key in _WRAPPERS:  # a training checkpoint with the weights one level down
        if "text_projection" not in sd and isinstance(sd.get(key), Mapping):
            sd = dict(sd[key])
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd):  # saved from DataParallel/DDP
        sd = {k[len("module."):]: v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if k not in _EXTRA_KEYS}
    not_tensors = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    missing = [k for k in _TEXT_KEYS if k not in sd]
    vit = "visual.proj" in sd and "visual.conv1.weight" in sd
    resnet = "visual.attnpool.positional_embedding" in sd and "visual.layer1.0.conv1.weight" in sd
    if missing or not (vit or resnet) or not_tensors:
        hint = ""
        if any(str(k).startswith("text.") for k in sd):
            hint = (" Its keys start with 'text.': that is open_clip's CustomTextCLIP layout (e.g. SigLIP or "
                    "multilingual models), which the OpenAI CLIP architecture cannot load.")
        elif not_tensors:
            hint = f" Entries that are not tensors: {not_tensors[:5]}."
        raise weights.CheckpointError(
            f"{where} is not an OpenAI CLIP state dict: expected keys such as {list(_TEXT_KEYS)} and a vision tower "
            f"('visual.proj' for ViT or 'visual.attnpool.*' for ResNet); missing {missing or ['visual.*']}; "
            f"found keys {sorted(map(str, sd))[:8]}.{hint}")
    return sd


def build_clip(sd: Mapping[str, object], where: str = "state dict") -> torch.nn.Module:
    """Build a float32, eval-mode, frozen ``clip.model.CLIP`` on the CPU from an OpenAI-layout state dict.

    The head counts are not stored in a state dict: ``build_model`` assumes 64-wide attention heads, as in every
    released CLIP. Models with other head widths (the fixture's tiny CLIP has 2 text heads of 32) load without
    error but compute differently; build those with ``clip.model.CLIP(...)`` and ``load_state_dict`` instead.
    """
    clip = import_clip()

    sd = normalise_clip_state_dict(sd, where)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    try:
        # build_model reads the hyperparameters off the state dict, but converts the model to fp16 before
        # loading; loading the float32 tensors again after .float() keeps them exact (no fp16 rounding).
        model = clip.model.build_model(dict(sd)).float()
        model.load_state_dict(sd, strict=True)
    except (KeyError, AssertionError, RuntimeError, ValueError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise weights.CheckpointError(
            f"{where} has CLIP key names but does not fit the OpenAI CLIP architecture "
            f"({type(exc).__name__}: {first}).") from exc
    return model.eval().requires_grad_(False)
