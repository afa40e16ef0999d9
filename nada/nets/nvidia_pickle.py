"""NVIDIA network pickles (``*.pkl`` of ``stylegan2-ada-pytorch`` and ``stylegan3``) read as data, never as code.

Such a file is a pickled dict (``G``, ``D``, ``G_ema``, ``augment_pipe``, ``training_set_kwargs``). Each network is a
``torch_utils.persistence`` object: ``_reconstruct_persistent_obj(meta)`` with ``meta = {type, version, module_src,
class_name, state}``, where ``state`` is the module's ``__dict__`` (``_init_kwargs``, ``_parameters``, ``_buffers``,
``_modules``, each submodule again persistent) and ``module_src`` the Python source of the module that defined it.
``pickle.load`` would import and run that source; here it is kept as bytes and never imported, compiled or run.

The unpickler below resolves only the globals such files use (:data:`ALLOWED_GLOBALS`), each to a stand-in of our own
that builds plain data: tensors from their storages (nested ``torch.save`` blobs, read with
``torch.load(weights_only=True)``), numpy scalars and numeric arrays, dicts, sets. Any other global is refused with
:class:`UnsafePickleError`, naming it, before anything is called.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"  # torch.save's old format: a pickled magic number
ARCHITECTURES = ("StyleGAN2-ADA", "StyleGAN3-T", "StyleGAN3-R")  # what describe_generator recognises ("unknown" else)
MAX_DEPTH = 64  # nesting of persistent modules (NVIDIA's networks are 4 deep)


class NetworkPickleError(ValueError):
    """The file is not a usable NVIDIA network pickle; the message says what was found, in words."""


class UnsafePickleError(NetworkPickleError):
    """The pickle asks for a Python global outside :data:`ALLOWED_GLOBALS`: loading it with ``pickle`` may run code."""


class UnsupportedNetworkError(NetworkPickleError):
    """A readable network pickle whose generator nada cannot use (none, conditional, or an unknown architecture)."""


# ------------------------------------------------------------------------------------------------ the data read
@dataclass
class NvidiaModule:
    """One persistent network (or submodule) of an NVIDIA pickle, read as data."""

    class_name: str  # meta["class_name"], e.g. "Generator"
    module_src: bytes  # the embedded source (UTF-8), never run
    init_kwargs: dict  # constructor keyword arguments as plain Python values (EasyDicts -> dict, numpy -> Python)
    state_dict: dict[str, torch.Tensor]  # flat, NVIDIA's names ("synthesis.b4.conv1.weight", "mapping.w_avg", ...):
    #                                      parameters then persistent buffers, then submodules, as state_dict() lists
    meta: dict = field(default_factory=dict, repr=False)  # the meta as read (module_src as the file's str; the
    #                                      state's submodules are NvidiaModules): what a later export writes back

    @property
    def state(self) -> dict:
        """The module's ``__dict__`` as pickled (``_parameters``, ``_buffers``, ``_modules``, attributes)."""
        return self.meta.get("state", {})

    @property
    def init_args(self) -> tuple:
        """Positional constructor arguments (``FullyConnectedLayer(512, 512)``), as plain values."""
        return tuple(plain(self.state.get("_init_args", ())))

    @property
    def submodules(self) -> dict[str, NvidiaModule]:
        """Direct submodules by attribute name ("synthesis", "mapping", "b4", "conv1", ...)."""
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if isinstance(v, NvidiaModule)}

    def attribute(self, name: str, default: Any = None) -> Any:
        """A plain attribute of the module (``img_resolution``, ``conv_clamp``, ...) as a plain value."""
        return plain(self.state.get(name, default))


@dataclass
class NetworkPickle:
    """A whole network pickle: its entries with each network as an :class:`NvidiaModule`, structure kept."""

    name: str  # the file's own name, for messages
    data: dict  # the top-level dict as read (key order kept): networks as NvidiaModule, other entries as read

    @property
    def networks(self) -> dict[str, NvidiaModule]:
        """The persistent networks by key ("G", "D", "G_ema", "augment_pipe" where present)."""
        return {k: v for k, v in self.data.items() if isinstance(v, NvidiaModule)}

    def generator(self) -> NvidiaModule:
        """``G_ema`` (the averaged generator, the one to sample), else ``G``; refused with words when neither."""
        for key in ("G_ema", "G"):
            if isinstance(self.data.get(key), NvidiaModule):
                return self.data[key]
        found = ", ".join(f"{k} ({v.class_name})" for k, v in self.networks.items()) or "no network"
        raise UnsupportedNetworkError(
            f"{self.name} holds no generator (neither G_ema nor G), only {found}: a discriminator-only or partial "
            "snapshot cannot make images. Use a pickle written by NVIDIA's training (network-snapshot-*.pkl).")


# -------------------------------------------------------------------------------------------------- stand-ins
class EasyDict(dict):
    """dnnlib's ``EasyDict`` read as a plain dict (the attribute access it adds is not needed to read data)."""


def _persistent_module(meta: Any) -> NvidiaModule:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: the meta kept as data, nothing run."""
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise NetworkPickleError("a persistent object without a meta dict and state")
    src, name = meta.get("module_src"), meta.get("class_name")
    if meta.get("type") != "class" or not isinstance(name, str) or not isinstance(src, (str, bytes)):
        raise NetworkPickleError(f"a persistent object of an unknown kind ({meta.get('type')!r})")
    state = meta["state"]
    return NvidiaModule(class_name=name, module_src=src.encode("utf-8") if isinstance(src, str) else bytes(src),
                        init_kwargs=plain(state.get("_init_kwargs") or {}), state_dict=_flat_state(state),
                        meta=dict(meta))


def _flat_state(state: dict, prefix: str = "", depth: int = 0) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` from a pickled ``__dict__``: own parameters, persistent buffers, then submodules."""
    if depth > MAX_DEPTH:
        raise NetworkPickleError("persistent modules nested too deeply")
    out: dict[str, torch.Tensor] = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for key, value in (state.get(group) or {}).items():
            if value is None or (group == "_buffers" and key in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise NetworkPickleError(f"'{prefix}{key}' is a {type(value).__name__}, not a tensor")
            out[prefix + key] = value
    for key, sub in (state.get("_modules") or {}).items():
        if isinstance(sub, NvidiaModule):
            out.update(_flat_state(sub.state, f"{prefix}{key}.", depth + 1))
        elif sub is not None:
            raise NetworkPickleError(f"submodule '{prefix}{key}' is a {type(sub).__name__}, not a persistent module")
    return out


def _load_from_bytes(blob: Any) -> torch.storage.TypedStorage:
    """Stand-in for ``torch.storage._load_from_bytes``: a nested ``torch.save`` blob read with ``weights_only``."""
    if not isinstance(blob, (bytes, bytearray)):
        raise NetworkPickleError("a tensor storage that is not bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation notes speak of torch, not of the file
            storage = torch.load(io.BytesIO(bytes(blob)), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global inside the blob
        m = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise UnsafePickleError(f"a tensor storage {_refusal(m[1] if m else '?')}") from None
    if not isinstance(storage, torch.storage.TypedStorage):
        raise NetworkPickleError(f"a tensor storage blob holds a {type(storage).__name__}, not a storage")
    return storage


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a view of ``storage``, bounds checked (no hooks run)."""
    if isinstance(storage, torch.storage.TypedStorage):
        untyped, dtype = storage._untyped_storage, storage.dtype
    else:  # what torch.storage._load_from_bytes gives for every tensor that torch pickles
        raise NetworkPickleError("a tensor over something that is not a typed storage")
    ints = (storage_offset, *size, *stride) if isinstance(size, tuple) and isinstance(stride, tuple) else None
    if ints is None or len(size) != len(stride) or not all(type(i) is int and i >= 0 for i in ints):
        raise NetworkPickleError("a tensor with a malformed offset, size or stride")
    end = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else 0
    if end * torch.empty((), dtype=dtype).element_size() > untyped.nbytes():
        raise NetworkPickleError("a tensor that points outside its storage")
    return torch.empty(0, dtype=dtype).set_(untyped, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                       state: Any = None) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_parameter`` (and ``..._with_state``): the parameter's plain tensor."""
    if not isinstance(data, torch.Tensor):
        raise NetworkPickleError("a parameter without a tensor")
    return data


_NUMERIC_DTYPE = re.compile(r"(b1|[iu][1248]|f[248]|c(8|16)|bool|u?int(8|16|32|64)|float(16|32|64)|complex(64|128))")


def _np_dtype(name: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """Stand-in for ``numpy.dtype``: numeric dtypes only (an object dtype would carry pickled objects)."""
    if not isinstance(name, str) or not _NUMERIC_DTYPE.fullmatch(name):
        raise NetworkPickleError(f"a numpy dtype other than a plain number ({name!r})")
    return np.dtype(name)


def _np_scalar(dtype: Any, data: Any = None) -> np.generic:
    """Stand-in for numpy's ``multiarray.scalar``: a numeric scalar from its bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise NetworkPickleError("a malformed numpy scalar")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


class _NdarrayName:
    """What ``numpy.ndarray`` resolves to: a name for :func:`_np_reconstruct`, not callable by a pickle."""

    def __new__(cls, *args, **kwargs):
        raise NetworkPickleError("numpy.ndarray called directly")


def _np_reconstruct(cls: Any, shape: Any = (0,), typecode: Any = b"b") -> np.ndarray:
    """Stand-in for numpy's ``multiarray._reconstruct``: an empty array that the pickle's BUILD fills (numeric only:
    its dtype comes from :func:`_np_dtype`)."""
    if cls is not _NdarrayName:
        raise NetworkPickleError("numpy array reconstruction of another class")
    return np.ndarray((0,), dtype=np.uint8)


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles use for bytes: latin-1 text to bytes only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise NetworkPickleError("an _codecs.encode call other than latin-1 bytes")
    return text.encode("latin-1")


# Every global an NVIDIA network pickle uses, each mapped to a stand-in above (or a plain container type).
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_module,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,  # protocol 2 and 3 pickles (Python 3.7) build sets by a call
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): _np_dtype,
    ("numpy", "ndarray"): _NdarrayName,
    ("numpy._core.multiarray", "scalar"): _np_scalar,  # numpy >= 2
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,  # numpy < 2
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
}


def _refusal(global_name: str) -> str:
    """Why a global is refused, in words (after the file's name)."""
    return (f"asks for the Python global '{global_name}', which an NVIDIA network pickle never needs: the file may "
            "run code when a program loads it with pickle. nada reads network pickles as data and refused it; "
            "nothing in the file was run.")


class _Reader(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: IO[bytes], name: str):
        super().__init__(file)
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        stand_in = ALLOWED_GLOBALS.get((module, name))
        if stand_in is None:
            raise UnsafePickleError(f"{self.name} {_refusal(f'{module}.{name}')}")
        return stand_in

    def persistent_load(self, pid: Any) -> Any:
        raise NetworkPickleError(f"{self.name} uses pickle persistent ids, which network pickles do not.")


# ---------------------------------------------------------------------------------------------------- reading
def _name_of(path_or_file: str | os.PathLike | IO[bytes]) -> str:
    """The file's own name for messages (never a folder path)."""
    if isinstance(path_or_file, (str, os.PathLike)):
        return Path(path_or_file).name
    name = getattr(path_or_file, "name", None)
    return Path(name).name if isinstance(name, str) and name else "the file"


def _sniff(head: bytes, name: str) -> None:
    """Refuse, in words, files that are not pickles at all (checked on the first bytes)."""
    if head.startswith(ZIP_MAGIC) or head.startswith(LEGACY_TORCH_MAGIC):
        raise NetworkPickleError(
            f"{name} is a PyTorch checkpoint written by torch.save, not an NVIDIA network pickle. If it holds a "
            "generator's state dict (rosinality's layout, 'g_ema'), give it a .pt name to load it as one.")
    if not head:
        raise NetworkPickleError(f"{name} is empty.")
    if not head.startswith(b"\x80") or len(head) < 2 or not 2 <= head[1] <= 5:
        raise NetworkPickleError(
            f"{name} is not a network pickle: it does not start like a pickle (protocol 2 to 5). nada reads NVIDIA "
            "network pickles (StyleGAN2-ADA, StyleGAN3 *.pkl), .pt and .safetensors files.")


def read_network_pickle(path_or_file: str | os.PathLike | IO[bytes]) -> NetworkPickle:
    """Read an NVIDIA network pickle (a path or a binary file) as data: every entry, networks as
    :class:`NvidiaModule`. Raises :class:`NetworkPickleError` (a ``ValueError``) subclasses with words."""
    name = _name_of(path_or_file)
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "rb") as f:
            return _read(f, name)
    return _read(path_or_file, name)


def _read(f: IO[bytes], name: str) -> NetworkPickle:
    start = f.tell() if f.seekable() else None
    head = f.read(64)
    _sniff(head, name)
    if start is not None:
        f.seek(start)
    else:
        f = io.BufferedReader(_Prefixed(head, f))  # type: ignore[arg-type]
    try:
        data = _Reader(f, name).load()
    except NetworkPickleError as exc:
        message = str(exc)
        if not message.startswith(name):
            message = f"{name} is not a usable network pickle: {message}."
        raise type(exc)(message) from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError, MemoryError, UnicodeDecodeError) as exc:
        why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise NetworkPickleError(
            f"{name} could not be read to its end ({why}): the file is truncated or damaged (an interrupted "
            "download or copy). Fetch or copy it again.") from None
    if not isinstance(data, dict) or not any(isinstance(v, NvidiaModule) for v in data.values()):
        what = f"a dict of {sorted(map(str, data))[:6]}" if isinstance(data, dict) else f"a {type(data).__name__}"
        raise UnsupportedNetworkError(
            f"{name} holds {what}, not an NVIDIA network pickle (a dict with G, D, G_ema, augment_pipe).")
    return NetworkPickle(name=name, data=data)


class _Prefixed(io.RawIOBase):
    """A non-seekable stream with its first bytes (already read) put back in front."""

    def __init__(self, head: bytes, rest: IO[bytes]):
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


# ------------------------------------------------------------------------------------------- what a file holds
@dataclass(frozen=True)
class GeneratorInfo:
    """What a generator pickle holds, in a few fields."""

    architecture: str  # "StyleGAN2-ADA", "StyleGAN3-T", "StyleGAN3-R" or "unknown"
    class_name: str  # the network's class name in the file
    resolution: int | None  # output size in pixels
    num_ws: int | None  # W+ rows
    z_dim: int | None
    w_dim: int | None
    c_dim: int  # label size; > 0 = class-conditional

    @property
    def conditional(self) -> bool:
        """True for a class-conditional generator (it needs a label)."""
        return self.c_dim > 0

    def summary(self) -> str:
        """One line: "a StyleGAN2-ADA generator, 256 px, 14 W+ rows, unconditional"."""
        kind = f"a {self.architecture} generator" if self.architecture != "unknown" else \
            f"a generator of an unknown architecture (class '{self.class_name}')"
        size = f"{self.resolution} px" if self.resolution else "size unknown"
        rows = f"{self.num_ws} W+ rows" if self.num_ws else "W+ rows unknown"
        cond = f"class-conditional ({self.c_dim} labels)" if self.conditional else "unconditional"
        return f"{kind}, {size}, {rows}, {cond}"


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def describe_generator(module: NvidiaModule) -> GeneratorInfo:
    """Recognise a generator network by its class and structure: StyleGAN2-ADA (``synthesis.b4``...), StyleGAN3-T
    or -R (``synthesis.input`` and ``L0_...`` layers; R has 1x1 convolutions and radial filters), else "unknown"."""
    kw = module.init_kwargs
    synthesis, mapping = module.submodules.get("synthesis"), module.submodules.get("mapping")
    arch = "unknown"
    if module.class_name == "Generator" and synthesis is not None and mapping is not None:
        layers = synthesis.submodules
        if "b4" in layers and "synthesis.b4.const" in module.state_dict:
            arch = "StyleGAN2-ADA"
        elif "input" in layers and any(re.fullmatch(r"L\d+_\d+_\d+", k) for k in layers):
            first = next((v for k, v in module.state_dict.items() if re.fullmatch(r"synthesis\.L0_\w+\.weight", k)),
                         None)
            radial = bool(kw.get("use_radial_filters")) or any(
                bool(v.attribute("down_radial")) for v in layers.values())
            one_by_one = kw.get("conv_kernel") == 1 or (first is not None and first.shape[-1] == 1)
            arch = "StyleGAN3-R" if radial or one_by_one else "StyleGAN3-T"
    return GeneratorInfo(
        architecture=arch, class_name=module.class_name,
        resolution=_int_or_none(module.attribute("img_resolution", kw.get("img_resolution"))),
        num_ws=_int_or_none(module.attribute("num_ws", getattr(synthesis, "state", {}).get("num_ws"))),
        z_dim=_int_or_none(module.attribute("z_dim", kw.get("z_dim"))),
        w_dim=_int_or_none(module.attribute("w_dim", kw.get("w_dim"))),
        c_dim=_int_or_none(module.attribute("c_dim", kw.get("c_dim"))) or 0)


def read_generator(path_or_file: str | os.PathLike | IO[bytes]) -> NvidiaModule:
    """The generator of a network pickle (``G_ema``, else ``G``), checked: refused with words when the file holds
    none, when it is class-conditional, or when its architecture is not StyleGAN2-ADA or StyleGAN3 (T, R)."""
    net = read_network_pickle(path_or_file)
    module = net.generator()
    info = describe_generator(module)
    if info.architecture == "unknown":
        raise UnsupportedNetworkError(
            f"{net.name} holds {info.summary()}, which nada does not know: it reads StyleGAN2-ADA and StyleGAN3 "
            "(T and R) network pickles made with NVIDIA's stylegan2-ada-pytorch and stylegan3 code.")
    if info.conditional:
        raise UnsupportedNetworkError(
            f"{net.name} holds {info.summary()}: its images depend on a class label, which nada has no way to give. "
            "Use an unconditional generator (c_dim 0).")
    return module


def plain(value: Any, depth: int = 0) -> Any:
    """A plain Python copy of a value read from a pickle: EasyDicts and OrderedDicts -> dict, numpy scalars ->
    Python numbers, numpy arrays -> lists; tensors and persistent modules are kept as they are."""
    if depth > MAX_DEPTH:
        raise NetworkPickleError("values nested too deeply")
    if isinstance(value, dict):
        return {k: plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v, depth + 1) for v in value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = ["NvidiaModule", "NetworkPickle", "GeneratorInfo", "NetworkPickleError", "UnsafePickleError",
           "UnsupportedNetworkError", "ALLOWED_GLOBALS", "read_network_pickle", "read_generator",
           "describe_generator", "plain"]
