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

import collections
import dataclasses
import io
import os
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch

from . import weights
from .weights import is_torchscript_archive

DEFAULT_CLIPS = ("clip-vit-b32", "clip-vit-b16")  # the paper's pair: what adaptation uses unless told otherwise
JUDGE_CLIP = "clip-vit-l14"  # the held-out judge of `nada evaluate`: no recipe trains against it

# User-facing names -> registry names. OpenAI's own spellings are accepted as aliases.
CLIP_NAMES: Mapping[str, str] = MappingProxyType({
    "clip-vit-b32": "clip-vit-b32",
    "clip-vit-b16": "clip-vit-b16",
    "clip-vit-l14": "clip-vit-l14",
    "ViT-B/32": "clip-vit-b32",
    "ViT-B/16": "clip-vit-b16",
    "ViT-L/14": "clip-vit-l14",
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

    ``source``: ``"clip-vit-b32"`` / ``"clip-vit-b16"`` / ``"clip-vit-l14"`` (or ``"ViT-B/32"``, ...), fetched through
    :func:`nada.weights.fetch`; a local file (``open_clip_pytorch_model.bin``, a state-dict ``.pt``/``.pth``,
    ``.safetensors``, or an OpenAI TorchScript ``.pt`` read as data, see :func:`read_clip_file`); or a state dict.
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


def read_clip_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a CLIP checkpoint file, read on the CPU; nothing stored in the file runs.

    State-dict files go through :func:`nada.weights.load_state_dict_file` (safetensors, or ``torch.load`` with
    ``weights_only=True``). TorchScript archives (OpenAI's original ``.pt`` files) hold code as well as weights:
    they are never loaded with ``torch.jit.load``; :func:`read_torchscript_tensors` reads their tensors as data.
    """
    path = Path(path)
    if is_torchscript_archive(path):
        return read_torchscript_tensors(path)
    return weights.load_state_dict_file(path)


# ------------------------------------------------------------------------------------ TorchScript as data
# A TorchScript archive's ``data.pkl`` is a pickle of the module tree: each module an object of a ``__torch__.*``
# class whose state is a dict of attributes (tensors, submodules, flags), each tensor rebuilt from a storage file
# ``data/<key>`` beside it. The reader below allows only the few names such a pickle uses, builds every
# ``__torch__`` object as an inert attribute holder (its scripted ``__setstate__``, if any, is code and never runs)
# and refuses any other name, so a file that asks for Python code is an error, not an execution.
_STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                   "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool}
_PASS_THROUGH = {"build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "restore_type_tag"}


class _ScriptObject:
    """Stands for a ``__torch__`` object: keeps the state it is given and does nothing else."""

    def __init__(self, *args: object) -> None:
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


@dataclasses.dataclass(frozen=True)
class _StorageType:
    """Stands for a ``torch.*Storage`` class: only its element type is used."""

    dtype: torch.dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_: object) -> torch.Tensor:
    """A tensor view of a storage (what ``torch._utils._rebuild_tensor_v2`` describes), checked to stay inside it."""
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0
    if offset < 0 or extent > storage.numel() or any(s < 0 for s in stride):
        raise weights.CheckpointError("a tensor in the TorchScript archive points outside its storage.")
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


def _pass_through(value: object, *_: object) -> object:
    """What TorchScript's list builders and type tags amount to when read as data: the value itself."""
    return value


class _TorchScriptUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` allowing data-building names only (see the comment above)."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, little_endian: bool) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.little_endian = archive, prefix, little_endian
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> object:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in _PASS_THROUGH:
            return _pass_through
        raise pickle.UnpicklingError(f"GLOBAL {module}.{name}")

    def persistent_load(self, pid: object) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:80]}")
        dtype, key = pid[1].dtype, str(pid[2])
        if key not in self.storages:
            raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
            flat = torch.frombuffer(raw, dtype=torch.uint8).view(dtype) if raw else torch.empty(0, dtype=dtype)
            self.storages[key] = flat if self.little_endian else _byteswapped(flat)
        return self.storages[key]


def _byteswapped(flat: torch.Tensor) -> torch.Tensor:
    """A big-endian storage in this machine's (little-endian) byte order."""
    width = flat.element_size()
    raw = flat.view(torch.uint8).reshape(-1, width).flip(1).contiguous()
    return raw.view(flat.dtype).reshape(-1)


def _flatten(obj: object, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    """``out[dotted.name] = tensor`` for every tensor attribute of a module tree (what ``state_dict()`` lists)."""
    if depth > 64:
        raise weights.CheckpointError("the TorchScript module tree is nested too deeply.")
    state = obj.state if isinstance(obj, _ScriptObject) else obj
    if not isinstance(state, dict):
        return
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + str(name)] = value
        elif isinstance(value, (_ScriptObject, dict)):
            _flatten(value, f"{prefix}{name}.", out, depth + 1)


def read_torchscript_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive by dotted name, read as data (``torch.jit.load`` and the
    archive's code are never used); ``CheckpointError`` when the archive asks for anything but tensors."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if not pickles:
                raise weights.CheckpointError(f"{path} is a TorchScript archive without data.pkl.")
            prefix = pickles[0].split("/", 1)[0]
            order = f"{prefix}/byteorder"
            little = archive.read(order).strip() != b"big" if order in archive.namelist() else True
            root = _TorchScriptUnpickler(archive.read(pickles[0]), archive, prefix, little).load()
    except pickle.UnpicklingError as exc:
        raise weights.CheckpointError(
            f"{path} is a TorchScript archive that asks for more than tensors ({str(exc)[:120]}); nada never runs "
            f"code stored in a file. {weights.ACCEPTED_FORMATS}") from None
    except (zipfile.BadZipFile, KeyError, EOFError, ValueError, TypeError, RuntimeError, OSError) as exc:
        raise weights.CheckpointError(
            f"{path} looks like a TorchScript archive but its tensors could not be read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}).") from exc
    tensors: dict[str, torch.Tensor] = {}
    _flatten(root, "", tensors)
    return tensors


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
