"""NVIDIA network pickles written back (``nada export``): the original file's structure with new generator weights.

The file read by :mod:`.nvidia_pickle` is written again entry by entry, in its order and with its pickle protocol:
each network is the same persistent object (``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with the
file's own ``module_src``, class name, version and state: init arguments, attributes, hooks, submodules), ``D``,
``augment_pipe`` and the other entries as they were. Only the tensors of the generator networks (``G_ema`` and ``G``)
change, each to the value given under its NVIDIA name, in the file's dtype and shape. Parameters are written as
NVIDIA's snapshots hold them (``torch._utils._rebuild_parameter``, not requiring grad) and every tensor as
``torch._utils._rebuild_tensor_v2`` over a storage pickled with ``torch.storage._load_from_bytes`` (a nested legacy
``torch.save`` blob, as torch pickles storages).

Nothing of nada goes into the file: every global is written by name from :data:`WRITTEN_GLOBALS` (the names NVIDIA's
files use), never looked up, and the finished file is scanned before it is moved into place. The embedded source is
copied as the file held it and never run; NVIDIA's tools run it when they load the file, as with every such pickle.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import warnings
from typing import IO, Any

import numpy as np
import torch

from .nvidia_pickle import EasyDict, NetworkPickle, NetworkPickleError, NvidiaModule
from .nvidia_sg2 import nvidia_state_dict
from .stylegan2 import Generator

GENERATOR_KEYS = ("G_ema", "G")  # the networks that carry the new weights (those present in the file)


class ExportError(NetworkPickleError):
    """The new weights do not fit the file's generator, or the file cannot be written back; the message says why."""


class _Global:
    """A global of NVIDIA's files, written by its name (``module``, ``name``) and never resolved here."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # the pickler wants reduce functions callable
        raise TypeError(f"{self.module}.{self.name} is a name to write, not a function to call")

    def __repr__(self) -> str:
        return f"{self.module}.{self.name}"


PERSISTENT = _Global("torch_utils.persistence", "_reconstruct_persistent_obj")
EASY_DICT = _Global("dnnlib.util", "EasyDict")
ORDERED_DICT = _Global("collections", "OrderedDict")
REBUILD_PARAMETER = _Global("torch._utils", "_rebuild_parameter")
REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
LOAD_FROM_BYTES = _Global("torch.storage", "_load_from_bytes")
NP_DTYPE, NP_NDARRAY = _Global("numpy", "dtype"), _Global("numpy", "ndarray")
NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")  # numpy < 2 and >= 2 spell its helpers so
# Every global an exported file may name: the ones above, numpy's helpers in either spelling, and what the pickle
# protocols 2 and 3 themselves use for sets and bytes.
WRITTEN_GLOBALS = frozenset(
    {(g.module, g.name) for g in (PERSISTENT, EASY_DICT, ORDERED_DICT, REBUILD_PARAMETER, REBUILD_TENSOR,
                                  LOAD_FROM_BYTES, NP_DTYPE, NP_NDARRAY)}
    | {(m, n) for m in NUMPY_MODULES for n in ("scalar", "_reconstruct")}
    | {("builtins", "set"), ("builtins", "frozenset"), ("_codecs", "encode")})


# ------------------------------------------------------------------------------------------ the new weights
def generator_nvidia_state(generator: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A generator's tensors under NVIDIA's names: the one place that knows each network. A network that has them
    already gives its own (a ``nvidia_state_dict()`` method, or ``nvidia_names = True`` and its ``state_dict()``);
    our StyleGAN2 :class:`Generator` is converted by :func:`.nvidia_sg2.nvidia_state_dict`."""
    own = getattr(generator, "nvidia_state_dict", None)
    if callable(own):
        return dict(own())
    if getattr(generator, "nvidia_names", False):
        return dict(generator.state_dict())
    if isinstance(generator, Generator):
        return nvidia_state_dict(generator)
    raise ExportError(f"a {type(generator).__name__} has no NVIDIA layout to write (nada writes StyleGAN2 and "
                      "networks that keep NVIDIA's names)")


# ----------------------------------------------------------------------------------- the tree, rewritten
class _Rewriter:
    """Copies of the file's persistent modules with their tensors as parameters and buffers again; the generator
    networks take their tensors from ``new`` (NVIDIA names -> values), checked against the file's."""

    def __init__(self, new: dict[str, torch.Tensor], name: str):
        self.new, self.name = new, name
        self.used: set[str] = set()
        self.done: dict[int, NvidiaModule] = {}  # id of a module read -> its copy (shared objects stay shared)

    def module(self, module: NvidiaModule, styled: bool, prefix: str = "") -> NvidiaModule:
        key = (id(module), styled)
        if key not in self.done:
            state = module.state
            out = dict(state)
            out["_parameters"] = self._tensors(state.get("_parameters"), prefix, styled, parameters=True)
            out["_buffers"] = self._tensors(state.get("_buffers"), prefix, styled, parameters=False,
                                            skip=state.get("_non_persistent_buffers_set") or set())
            subs = state.get("_modules")
            if subs is not None:
                out["_modules"] = _like(subs, ((k, self.module(v, styled, f"{prefix}{k}.") if isinstance(
                    v, NvidiaModule) else v) for k, v in subs.items()))
            meta = {**module.meta, "state": out}
            self.done[key] = NvidiaModule(module.class_name, module.module_src, module.init_kwargs,
                                          module.state_dict, meta)
        return self.done[key]

    def _tensors(self, group: Any, prefix: str, styled: bool, parameters: bool, skip: Any = ()) -> Any:
        if group is None:
            return None
        items = []
        for k, old in group.items():
            value = old
            if styled and old is not None and k not in skip and prefix + k in self.new:
                value = self._checked(prefix + k, old)
            elif styled and parameters and old is not None:
                raise ExportError(f"the new weights of {self.name}'s generator lack its parameter '{prefix}{k}'")
            if parameters and value is not None:
                value = torch.nn.Parameter(value, requires_grad=False)  # as NVIDIA's snapshots hold them
            items.append((k, value))
        return _like(group, items)

    def _checked(self, key: str, old: torch.Tensor) -> torch.Tensor:
        value = self.new[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(old.shape):
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ExportError(f"the new '{key}' is {shape}, where {self.name}'s generator has {list(old.shape)}")
        value = value.detach().to("cpu", old.dtype)
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ExportError(f"the new '{key}' holds NaN or infinite values")
        self.used.add(key)
        return value.contiguous().clone()


def _like(container: Any, items: Any) -> Any:
    """A container of ``container``'s own type (dict, OrderedDict, EasyDict) holding ``items``."""
    return type(container)(items) if isinstance(container, (collections.OrderedDict, EasyDict)) else dict(items)


def rewritten_data(net: NetworkPickle, new: dict[str, torch.Tensor],
                   networks: tuple[str, ...] = GENERATOR_KEYS) -> dict:
    """The file's top-level entries, in order, with each generator network in ``networks`` carrying ``new``
    (NVIDIA names -> tensors: every parameter; a buffer not given keeps the file's value) and every other network as
    it was. Refused with :class:`ExportError` when a name, shape or parameter does not fit."""
    present = [k for k in networks if isinstance(net.data.get(k), NvidiaModule)]
    if not present:
        raise ExportError(f"{net.name} holds none of the networks {', '.join(networks)} to write")
    keys = [list(net.data[k].state_dict) for k in present]
    if any(k != keys[0] for k in keys[1:]):
        raise ExportError(f"{net.name}'s networks {' and '.join(present)} have different tensors; nada writes one set "
                          "of weights into both")
    rewriter = _Rewriter(new, net.name)
    out = {k: rewriter.module(v, k in present) if isinstance(v, NvidiaModule) else v for k, v in net.data.items()}
    unknown = sorted(set(new) - rewriter.used)
    if unknown:
        raise ExportError(f"{net.name}'s generator has no tensors named {unknown[:4]}"
                          + (f" (and {len(unknown) - 4} more)" if len(unknown) > 4 else ""))
    return out


# ---------------------------------------------------------------------------------------------- pickling
class _Writer(pickle._Pickler):  # the Python pickler: its dispatch table takes our writers of named globals
    """Writes the data tree read from a network pickle under NVIDIA's global names."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: IO[bytes], protocol: int, numpy_module: str):
        super().__init__(file, protocol=protocol, fix_imports=False)  # Python 3's names ("builtins.set")
        self.scalar, self.reconstruct = _Global(numpy_module, "scalar"), _Global(numpy_module, "_reconstruct")
        self.storages: dict[tuple, _Storage] = {}  # one blob per storage, as the file shared them

    def save_named_global(self, obj: _Global) -> None:
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def save_easy_dict(self, obj: EasyDict) -> None:
        """``dnnlib.util.EasyDict`` as pickle writes a dict subclass: NEWOBJ, then its items."""
        self.save(EASY_DICT)
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self._batch_setitems(iter(obj.items()))

    dispatch[_Global] = save_named_global
    dispatch[EasyDict] = save_easy_dict

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) in self.dispatch:  # named globals, EasyDicts and plain values: the dispatch table writes them
            return NotImplemented
        if isinstance(obj, NvidiaModule):
            return PERSISTENT, (obj.meta,)
        if isinstance(obj, torch.nn.Parameter):
            return REBUILD_PARAMETER, (obj.data, False, collections.OrderedDict())
        if isinstance(obj, torch.Tensor):
            return self._tensor(obj)
        if isinstance(obj, _Storage):
            return LOAD_FROM_BYTES, (obj.blob(),)
        if isinstance(obj, collections.OrderedDict):
            return ORDERED_DICT, (), None, None, iter(obj.items())
        if isinstance(obj, np.dtype):
            _, args, state = obj.__reduce__()
            return NP_DTYPE, args, state
        if isinstance(obj, np.generic):
            return self.scalar, obj.__reduce__()[1]
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise ExportError("a numpy array of Python objects, which network pickles do not hold")
            _, (_, shape, typecode), state = obj.__reduce__()
            return self.reconstruct, (NP_NDARRAY, shape, typecode), state
        if type(obj).__module__.split(".")[0] in ("nada", "torch", "numpy"):
            raise ExportError(f"a {type(obj).__module__}.{type(obj).__qualname__} value, which network pickles "
                              "do not hold")
        return NotImplemented

    def _tensor(self, t: torch.Tensor) -> tuple:
        if t.device.type != "cpu" or t.layout != torch.strided or t.is_conj() or t.is_neg() or t.requires_grad:
            raise ExportError("a tensor that is not a plain CPU tensor")
        untyped = t.untyped_storage()
        key = (untyped.data_ptr(), untyped.nbytes(), t.dtype) if untyped.data_ptr() else (id(t),)
        storage = self.storages.setdefault(key, _Storage(untyped, t.dtype))
        return REBUILD_TENSOR, (storage, t.storage_offset(), tuple(t.shape), t.stride(), False,
                                collections.OrderedDict())


class _Storage:
    """A tensor storage, written as torch pickles one: ``_load_from_bytes(<legacy torch.save blob>)``."""

    def __init__(self, untyped: torch.UntypedStorage, dtype: torch.dtype):
        self.untyped, self.dtype = untyped, dtype

    def blob(self) -> bytes:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation notes
            typed = torch.storage.TypedStorage(wrap_storage=self.untyped, dtype=self.dtype, _internal=True)
            buf = io.BytesIO()
            torch.save(typed, buf, _use_new_zipfile_serialization=False)
        return buf.getvalue()


def _numpy_module(net: NetworkPickle) -> str:
    """How the file spelled numpy's helpers (numpy < 2 or >= 2), so that the same numpy reads it back."""
    return next((m for m in NUMPY_MODULES if any(g[0] == m for g in net.globals)), NUMPY_MODULES[0])


def dump_network_pickle(data: dict, file: IO[bytes], net: NetworkPickle) -> None:
    """Pickle ``data`` (from :func:`rewritten_data`) into ``file`` with ``net``'s protocol and numpy spelling."""
    _Writer(file, max(2, net.protocol), _numpy_module(net)).dump(data)


# ----------------------------------------------------------------------------------------------- checking
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
_GETS, _PUTS = {"GET", "BINGET", "LONG_BINGET"}, {"PUT", "BINPUT", "LONG_BINPUT"}


def pickle_globals(file: IO[bytes]) -> set[tuple[str, str]]:
    """Every (module, name) global one pickle names, read off its opcodes with ``pickletools.genops`` (nothing is
    loaded); a ``STACK_GLOBAL`` whose names are not plain strings counts as ``("?", "?")``."""
    found: set[tuple[str, str]] = set()
    memo: dict[int, Any] = {}
    last: list[Any] = [None, None]  # the two values pushed most recently (strings, else None)
    for op, arg, _ in pickletools.genops(file):
        name = op.name
        if name == "GLOBAL" or name == "INST":
            module, _, attr = str(arg).partition(" ")
            found.add((module, attr))
            value = None
        elif name == "STACK_GLOBAL":
            pair = tuple(last[-2:])
            found.add(pair if all(isinstance(x, str) for x in pair) else ("?", "?"))
            value = None
        elif name in _STRINGS:
            value = arg
        elif name in _GETS:
            value = memo.get(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = last[-1]
            continue
        elif name in _PUTS:
            memo[arg] = last[-1]
            continue
        elif name == "FRAME":
            continue
        else:
            value = None
        last = [last[-1], value]
    return found


def write_network_pickle(net: NetworkPickle, new: dict[str, torch.Tensor], path: str | os.PathLike,
                         networks: tuple[str, ...] = GENERATOR_KEYS) -> None:
    """Write ``net`` to ``path`` with its generator networks carrying ``new`` (see :func:`rewritten_data`), then
    scan the file: a global outside :data:`WRITTEN_GLOBALS` is refused. Give it a temporary path and move the file
    into place after (the networks package has no atomic writer of its own)."""
    data = rewritten_data(net, new, networks)
    with open(path, "wb") as f:
        dump_network_pickle(data, f, net)
    with open(path, "rb") as f:
        foreign = sorted(pickle_globals(f) - WRITTEN_GLOBALS)
    if foreign:
        raise ExportError(f"the written pickle names {['.'.join(g) for g in foreign][:4]}, which NVIDIA's files "
                          "never do")


def differing(net: NetworkPickle, new: dict[str, torch.Tensor]) -> list[str]:
    """The names in ``new`` whose values are not the file's generator's (``G_ema``, else ``G``), in its dtype."""
    sd = net.generator().state_dict
    return [k for k, v in new.items() if k not in sd or tuple(v.shape) != tuple(sd[k].shape)
            or not torch.equal(v.detach().to("cpu", sd[k].dtype), sd[k])]


__all__ = ["ExportError", "WRITTEN_GLOBALS", "generator_nvidia_state", "rewritten_data", "dump_network_pickle",
           "write_network_pickle", "pickle_globals", "differing"]
