"""Where weights come from: a registry of named hub assets, a local cache, and safe loading.

A registry name resolves through ``huggingface_hub.hf_hub_download`` into a cache under ``checkpoints/``
(``~/.cache/nada`` for an installed package; override with ``NADA_CACHE``); a local path is used as it is.
``HF_HUB_OFFLINE=1`` (or ``NADA_OFFLINE=1``) never touches the network. Every failure is a
``WeightsUnavailableError`` or ``CheckpointError`` whose message names the file, the repo and what to do. Nothing
here runs at import time. Source names that are not files (the tiny generator) are resolved by :mod:`nada.model_store`.
The loaders build the networks of :mod:`nada.nets` from files: :func:`load_generator` (StyleGAN2, from rosinality
checkpoints or NVIDIA network pickles read as data) and :func:`load_e4e` (the e4e encoder); the networks themselves
read no files.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import pickle
import re
import socket
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from .nets.e4e import Encoder4Editing
from .nets.irse import body_num_layers
from .nets.nvidia_pickle import NetworkPickleError, NvidiaModule, describe_generator, read_generator
from .nets.nvidia_sg2 import generator_from_nvidia
from .nets.stylegan2 import Generator, channels_for
from .registry import REGISTRY, Asset, Mirror

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class WeightsUnavailableError(RuntimeError):
    """Weights could not be found locally or downloaded; the message says how to provide them."""


class CheckpointError(ValueError):
    """A file exists but is not the checkpoint we expected."""


def cache_dir() -> Path:
    """The weights cache: ``$NADA_CACHE`` if set, else ``checkpoints/`` of the source checkout nada runs from, else
    (an installed package, ``pip install .``) ``$XDG_CACHE_HOME/nada`` or ``~/.cache/nada``."""
    if os.environ.get("NADA_CACHE"):
        return Path(os.environ["NADA_CACHE"])
    if (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "checkpoints").is_dir():
        return PROJECT_ROOT / "checkpoints"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nada"


def offline() -> bool:
    """True when the hub must not be contacted (``HF_HUB_OFFLINE`` or ``NADA_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "NADA_OFFLINE"))


def hub_env_var(name: str) -> str:
    """The variable that redirects a registry asset: ``NADA_HUB_<NAME>`` ("afhq-cat" -> NADA_HUB_AFHQ_CAT)."""
    return "NADA_HUB_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def hub_mirrors(asset: Asset) -> tuple[Mirror, ...]:
    """Where an asset may be downloaded from, in order: ``NADA_HUB_<NAME>=org/repo:file`` replaces the registry's
    mirrors with that one location (no size check: it may hold another file)."""
    override = os.environ.get(hub_env_var(asset.name))
    if override:
        repo, _, fname = override.partition(":")
        return (Mirror(repo.strip(), fname.strip() or asset.filename, evidence=f"${hub_env_var(asset.name)}"),)
    return asset.mirrors


def hub_location(asset: Asset) -> tuple[str | None, str]:
    """(repo_id, filename) of an asset's first mirror, honouring an ``NADA_HUB_<NAME>`` override."""
    mirrors = hub_mirrors(asset)
    return (mirrors[0].repo_id, mirrors[0].filename) if mirrors else (None, asset.filename)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Quick TCP check of the hub endpoint, so that a machine without network fails in seconds, not ~25 s.

    Skipped (assumed reachable) behind a proxy, where a direct connection says nothing."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def is_registry_name(name: str | os.PathLike) -> bool:
    """True if ``name`` is a registry key rather than a path."""
    return isinstance(name, str) and name in REGISTRY


def _where(mirror: Mirror) -> str:
    return f"{mirror.repo_id}/{mirror.filename}"


def _forget(path: Path) -> None:
    """Remove a cached file: the snapshot entry and the blob it points to, so no later run trusts it."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def _checked(path: Path, mirror: Mirror, name: str) -> Path:
    """``path`` if its size is the mirror's known size; else it is removed from the cache and ``CheckpointError``."""
    size = path.stat().st_size
    if mirror.nbytes is not None and size != mirror.nbytes:
        _forget(path)
        raise CheckpointError(
            f"The download of '{name}' ({_where(mirror)}) is {size:,} bytes, not the published {mirror.nbytes:,}: "
            "it was interrupted or the file changed. It was removed from the cache; try again.")
    return path


def cached_path(name: str) -> Path | None:
    """The cached file of a registry asset, from any of its mirrors, without touching the network (None if none)."""
    # heavy: ~0.5 s, and huggingface_hub reads HF_HUB_OFFLINE when first imported (so not at `import nada`)
    from huggingface_hub import try_to_load_from_cache

    for mirror in hub_mirrors(REGISTRY[name]):
        hit = try_to_load_from_cache(mirror.repo_id, mirror.filename, cache_dir=cache_dir())
        if isinstance(hit, str) and os.path.isfile(hit):  # sizes were checked when it was downloaded
            return Path(hit)
    return None


def fetch(name: str) -> Path:
    """Local path of a registry asset: the cached file of any mirror, else a download from the first mirror that has
    it (never while offline). Known sizes are checked; the error names every location tried."""
    if name not in REGISTRY:
        raise WeightsUnavailableError(f"Unknown weights '{name}'. Known names: {', '.join(sorted(REGISTRY))}.")
    env = hub_env_var(name)
    mirrors = hub_mirrors(REGISTRY[name])
    if not mirrors:
        raise WeightsUnavailableError(
            f"No hub mirror is known for '{name}' ({REGISTRY[name].filename or name}). Pass a local checkpoint path "
            f"instead, or set {env}=org/repo:file.")
    hit = cached_path(name)
    if hit is not None:
        return hit
    # heavy: ~0.5 s, and huggingface_hub reads HF_HUB_OFFLINE when first imported (so not at `import nada`)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    tried = ", ".join(_where(m) for m in mirrors)
    if offline():
        raise WeightsUnavailableError(
            f"Weights '{name}' ({tried}) are not cached in {cache_dir()} and offline mode is on (HF_HUB_OFFLINE or "
            f"NADA_OFFLINE). Unset it to download once, or pass a local file path, or set {env}=org/repo:file.")
    if not hub_reachable():
        raise WeightsUnavailableError(
            f"Weights '{name}' ({tried}) are not cached in {cache_dir()} and the hub "
            f"({os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}) could not be reached. Check the network "
            f"connection, or pass a local file path, or set {env}=org/repo:file.")
    failures = []
    for mirror in mirrors:
        try:
            path = Path(hf_hub_download(mirror.repo_id, mirror.filename, cache_dir=cache_dir()))
        except (EntryNotFoundError, RepositoryNotFoundError) as exc:  # not there: the next mirror may have it
            failures.append(f"{_where(mirror)}: not found ({type(exc).__name__})")
            continue
        except Exception as exc:  # network, auth, HTTP or disk errors
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            failures.append(f"{_where(mirror)}: {type(exc).__name__}: {first}")
            continue
        return _checked(path, mirror, name)
    raise WeightsUnavailableError(
        f"Could not download '{name}': " + "; ".join(failures) + f". Pass a local file path or set "
        f"{env}=org/repo:file.")


@dataclass(frozen=True)
class WeightsStatus:
    """Whether one registry asset is usable now, and what to tell a person if it is not."""

    name: str
    cached: bool  # already on disk (or provided another way): loads without network
    message: str  # empty when cached


def asset_status(name: str) -> WeightsStatus:
    """Is a registry asset on this machine? If not, what will happen and how to provide it (no network)."""
    if name == "dlib-landmarks" and importlib.util.find_spec("face_recognition_models") is not None:
        return WeightsStatus(name, True, "")  # the package ships the landmark model (see nada.align)
    if name not in REGISTRY:
        return WeightsStatus(name, False, f"'{name}' is not in the weights registry.")
    env = hub_env_var(name)
    mirrors = hub_mirrors(REGISTRY[name])
    if not mirrors:
        return WeightsStatus(name, False, f"`{name}`: no hub mirror is known; set `{env}=org/repo:file`.")
    if cached_path(name) is not None:
        return WeightsStatus(name, True, "")
    where = f"`{name}` ({_where(mirrors[0])})"
    if offline():
        return WeightsStatus(name, False, f"{where}: not cached in `{cache_dir()}` and offline mode is on. Run once "
                                          f"with network access (unset HF_HUB_OFFLINE) or set `{env}=org/repo:file`.")
    return WeightsStatus(name, False, f"{where}: downloads on first use (needs network access).")


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A registry name becomes a cached file; anything else must be an existing local file."""
    if is_registry_name(name_or_path):
        return fetch(str(name_or_path))
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"'{name_or_path}' is neither a registry name ({', '.join(sorted(REGISTRY))}) nor an existing file.")
    return path


ACCEPTED_FORMATS = ("Accepted: .safetensors files, or PyTorch files that hold only tensors and plain containers "
                    "(dicts, lists, numbers, strings), such as torch.save(model.state_dict(), path) writes.")


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True for a TorchScript zip (code and weights; OpenAI's original CLIP ``.pt`` files are these)."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except OSError:
        return False
    return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names)


def _refused_global(exc: BaseException) -> str:
    """The Python name a refused pickle asked for (``posix.system``), read off torch's message; '' if none."""
    m = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return m[1] if m else ""


def load_state_dict_file(path: str | os.PathLike) -> dict:
    """Load a ``.safetensors`` file or a torch checkpoint safely (``weights_only=True``), on the CPU.

    Only data is read: pickles that name Python code and TorchScript archives are refused (``CheckpointError``,
    whose message never suggests ``weights_only=False``), and torch's loader warnings are not passed on."""
    path = Path(path)
    if path.suffix != ".safetensors" and is_torchscript_archive(path):
        raise CheckpointError(
            f"{path} is a TorchScript archive (code and weights), not a plain checkpoint; nada never runs code "
            f"stored in a file. Convert it to a state dict where you trust it. {ACCEPTED_FORMATS}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # third-party, only .safetensors files need it

            return load_file(str(path), device="cpu")
        # argparse.Namespace is a plain attribute bag: rosinality and e4e training checkpoints keep their options in one
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's loader warnings speak of its internals, not the user's file
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: pickled code or custom classes
        name = _refused_global(exc)
        raise CheckpointError(
            f"{path} is not a plain PyTorch checkpoint: it refers to Python code or classes"
            f"{f' ({name})' if name else ''}, and nada only reads data from files. {ACCEPTED_FORMATS}") from None
    except Exception as exc:  # zip/EOF/OS errors from truncated or non-torch files
        raise CheckpointError(
            f"{path} could not be read as a checkpoint ({type(exc).__name__}: {_first_line(exc)}). "
            "The file may be truncated (an interrupted download: delete it and fetch again) or not a "
            "PyTorch/safetensors file.") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict of tensors.")
    return obj


def _first_line(exc: BaseException) -> str:
    """The first line of an error, without any advice to load the file unsafely."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    first = lines[0][:200] if lines else ""
    return "" if "weights_only" in first else first


# --------------------------------------------------------------------------------------------- generators
def generator_state_dict(ckpt: dict, where: str = "checkpoint") -> dict:
    """The generator state dict inside a checkpoint: ``g_ema`` (rosinality/NADA), else a bare state dict."""
    for key in ("g_ema", "state_dict_g_ema"):
        if isinstance(ckpt.get(key), dict):
            return ckpt[key]
    if "style.1.weight" in ckpt and "input.input" in ckpt:
        return ckpt
    raise CheckpointError(
        f"{where} holds no StyleGAN2 generator: expected a 'g_ema' entry (rosinality / StyleGAN-NADA format) or a "
        f"bare generator state dict; found keys {sorted(map(str, ckpt))[:8]}.")


def generator_config(sd: dict) -> dict:
    """Read ``size, style_dim, n_mlp, channel_multiplier, channel_max`` off a rosinality generator state dict."""
    try:
        style_dim = int(sd["style.1.weight"].shape[1])
        n_mlp = len([k for k in sd if re.fullmatch(r"style\.\d+\.weight", k)])
        n_rgb = len([k for k in sd if re.fullmatch(r"to_rgbs\.\d+\.bias", k)])
        size = 2 ** (n_rgb + 2)
        found = {4: int(sd["conv1.conv.weight"].shape[1])}
        found.update({2 ** (j + 3): int(sd[f"convs.{2 * j}.conv.weight"].shape[1]) for j in range(n_rgb)})
    except (KeyError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"Not a StyleGAN2 generator state dict: key {exc} is missing or malformed.") from exc
    if not 8 <= size <= 1024:
        raise CheckpointError(f"Not a StyleGAN2 generator state dict: {n_rgb} ToRGB layers means {size}px.")
    for cm in (2, 1, 4):
        if channels_for(size, cm, found[4]) == found:
            return {"size": size, "style_dim": style_dim, "n_mlp": n_mlp, "channel_multiplier": cm,
                    "channel_max": found[4]}
    raise CheckpointError(f"Channel counts per resolution {found} match no StyleGAN2 config.")


def build_generator(sd: dict, where: str = "checkpoint") -> Generator:
    """A :class:`nada.nets.stylegan2.Generator` built to the state dict's own config and loaded strictly."""
    cfg = generator_config(sd)
    g = Generator(**cfg)
    expected = g.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {list(sd[k].shape)} != {list(v.shape)}" for k, v in expected.items()
             if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else "",
                 f"wrong shapes {wrong[:3]}" if wrong else ""]
        raise CheckpointError(
            f"{where} does not match a StyleGAN2 {cfg['size']}px generator (channel multiplier "
            f"{cfg['channel_multiplier']}): " + "; ".join(p for p in parts if p) + ".")
    g.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    return g


# ------------------------------------------------------------------------------------ NVIDIA network pickles
NETWORK_PICKLE_MARK = b"torch_utils.persistence"  # what every NVIDIA network pickle names near its start


class UnsupportedGeneratorError(CheckpointError, NotImplementedError):
    """A readable generator of an architecture nada cannot run (yet); the message names it."""


def is_network_pickle(path: str | os.PathLike) -> bool:
    """True for a ``.pkl`` file, or a file of another name that starts like an NVIDIA network pickle (a pickle that
    names ``torch_utils.persistence`` in its first 64 KiB); such files are read by :func:`load_network_generator`."""
    path = Path(path)
    if path.suffix.lower() == ".pkl":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return head.startswith(b"\x80") and not head.startswith(b"\x80\x02\x8a") and NETWORK_PICKLE_MARK in head


def generator_from_network(module: NvidiaModule, name: str = "the file") -> Generator:
    """The generator of a network pickle as one of ours: StyleGAN2-ADA becomes the StyleGAN2 :class:`Generator`.

    The one dispatch point for NVIDIA architectures: StyleGAN3 (T and R) goes to ``nada.nets.stylegan3``'s
    ``from_nvidia(module)`` once that module exists; until then it is refused with words."""
    info = describe_generator(module)
    if info.architecture == "StyleGAN2-ADA":
        return generator_from_nvidia(module, name)
    if info.architecture.startswith("StyleGAN3") and importlib.util.find_spec("nada.nets.stylegan3") is not None:
        build = getattr(importlib.import_module("nada.nets.stylegan3"), "from_nvidia", None)
        if build is not None:
            return build(module)
    raise UnsupportedGeneratorError(
        f"{name} holds {info.summary()}; nada cannot run {info.architecture} networks yet. It reads StyleGAN2-ADA "
        "network pickles and rosinality StyleGAN2 checkpoints (.pt).")


def load_network_generator(path: str | os.PathLike) -> Generator:
    """The generator (``G_ema``, else ``G``) of an NVIDIA network pickle, read as data (its embedded code is never
    run), as one of ours on the CPU with the file's ``w_avg`` as the truncation centre. Every refusal is a
    ``CheckpointError`` naming the file by its own name."""
    name = Path(path).name
    try:
        return generator_from_network(read_generator(path), name)
    except NetworkPickleError as exc:
        raise CheckpointError(str(exc)) from exc
    except OSError as exc:
        raise CheckpointError(f"{name} could not be read ({type(exc).__name__}: {exc.strerror or exc}).") from exc


def load_generator(name_or_path: str | os.PathLike, device: torch.device | str = "cpu") -> Generator:
    """Load a generator by registry name (downloaded once, cached) or local path, eval mode, on ``device``.

    The checkpoint's ``latent_avg`` (the W mean from training), if present, is kept as ``generator.latent_avg``.
    NVIDIA network pickles (``*.pkl`` of StyleGAN2-ADA) are read as data (:func:`load_network_generator`).
    The tiny generator is not a file: :func:`nada.model_store.load_source` gives it for the name "tiny"."""
    path = resolve(name_or_path)
    if is_network_pickle(path):
        return load_network_generator(path).to(device).eval()
    ckpt = load_state_dict_file(path)
    g = build_generator(generator_state_dict(ckpt, str(path)), str(path))
    avg = ckpt.get("latent_avg")
    if isinstance(avg, torch.Tensor) and avg.numel() >= g.style_dim:
        g.latent_avg = avg.float().reshape(-1, g.style_dim)[:1].clone()  # [1, 512]
    return g.to(device).eval()


# ------------------------------------------------------------------------------------------- e4e encoders
class E4ECheckpointError(CheckpointError):
    """The file is not an e4e checkpoint (or not a usable one); the message says what was found."""


def _load_e4e_checkpoint(path: os.PathLike) -> dict:
    """:func:`load_state_dict_file` (which allows ``argparse.Namespace``, the ``opts`` of some forks), with its errors
    as :class:`E4ECheckpointError`."""
    try:
        return load_state_dict_file(path)
    except CheckpointError as exc:
        raise E4ECheckpointError(str(exc)) from exc


def _opts_dict(opts: object) -> dict:
    if isinstance(opts, argparse.Namespace):
        return vars(opts)
    return opts if isinstance(opts, dict) else {}


def _latent_avg(ckpt: dict, n_latent: int, where: str) -> torch.Tensor:
    """The checkpoint's ``latent_avg`` as [n_latent, 512] (a stored [512] row is repeated)."""
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is None:
        if _opts_dict(ckpt.get("opts")).get("start_from_latent_avg", True):
            raise E4ECheckpointError(
                f"{where} has no 'latent_avg' although the encoder was trained to start from it "
                "(opts.start_from_latent_avg); this checkpoint cannot be used as it is.")
        return torch.zeros(n_latent, 512)  # trained without it: the codes are used as they are
    if not isinstance(latent_avg, torch.Tensor):
        raise E4ECheckpointError(f"{where}: 'latent_avg' is a {type(latent_avg).__name__}, not a tensor.")
    if tuple(latent_avg.shape) in ((512,), (1, 512)):
        latent_avg = latent_avg.reshape(1, 512).repeat(n_latent, 1)
    if tuple(latent_avg.shape) != (n_latent, 512):
        raise E4ECheckpointError(
            f"{where}: 'latent_avg' has shape {list(latent_avg.shape)}, expected [{n_latent}, 512].")
    return latent_avg.float()


def encoder_from_checkpoint(ckpt: dict, where: str = "checkpoint") -> tuple[Encoder4Editing, torch.Tensor]:
    """Build the encoder from a loaded e4e checkpoint dict -> (encoder on CPU, latent_avg [n_latent, 512]).

    ``n_latent`` is the number of ``styles.<i>`` blocks and the body depth is read off the ``body.*`` keys.
    Only ``encoder.*`` weights are used (see :func:`load_e4e`); ``where`` names the source in error messages.
    """
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise E4ECheckpointError(f"{where}: 'state_dict' is a {type(state).__name__}, not a dict of tensors.")
    enc = {k[len("encoder."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("encoder.")}
    if not enc:
        sample = ", ".join(list(map(str, state))[:5])
        raise E4ECheckpointError(
            f"{where} is not an e4e checkpoint: it has no 'encoder.*' weights (first keys: {sample or 'none'}). "
            "Expected a file like e4e_ffhq_encode.pt from encoder4editing.")
    style_ids = sorted({int(m.group(1)) for k in enc if (m := re.match(r"styles\.(\d+)\.", k))})
    if not style_ids or style_ids != list(range(len(style_ids))):
        raise E4ECheckpointError(f"{where}: the encoder has no contiguous 'styles.<i>' blocks; not an e4e encoder.")
    n_latent = len(style_ids)
    latent_avg = _latent_avg(ckpt, n_latent, where)
    units = {k.split(".")[1] for k in enc if k.startswith("body.")}
    mode = "ir_se" if "body.0.res_layer.5.fc1.weight" in enc else "ir"
    try:
        with torch.device("meta"):  # no random init of ~270M weights: the checkpoint's tensors are assigned
            encoder = Encoder4Editing(n_latent=n_latent, num_layers=body_num_layers(len(units)), mode=mode)
        encoder.load_state_dict(enc, strict=True, assign=True)
    except (ValueError, RuntimeError) as exc:
        raise E4ECheckpointError(
            f"{where}: the encoder weights do not match the e4e architecture: {str(exc).splitlines()[0][:300]}"
        ) from exc
    return encoder.float().eval().requires_grad_(False), latent_avg


def load_e4e(
    source: str | os.PathLike = "e4e-ffhq", device: torch.device | str = "cpu"
) -> tuple[Encoder4Editing, torch.Tensor]:
    """Load an e4e checkpoint (registry name such as ``"e4e-ffhq"`` or a path) -> (encoder, latent_avg [n_latent, 512]).

    Reads ``{"state_dict": {"encoder.*", "decoder.*"}, "latent_avg", "opts"}`` with ``weights_only=True``.
    Only the ``encoder.*`` half is used: the ``decoder.*`` half is the FFHQ StyleGAN2 generator, which nada
    loads from its own registry entry, so it is ignored here. ``opts`` (a dict, or an argparse Namespace in
    some forks) is consulted only for ``start_from_latent_avg``: if that is false and no ``latent_avg`` is
    stored, zeros are returned. The encoder is frozen, in eval mode, on ``device``. Callers add
    ``latent_avg`` to the encoder's output. Errors: ``WeightsUnavailableError`` (no such file or registry
    entry, or offline without a cached copy), ``E4ECheckpointError`` (unreadable or not an e4e checkpoint).
    """
    path = resolve(source)
    encoder, latent_avg = encoder_from_checkpoint(_load_e4e_checkpoint(path), where=str(path))
    return encoder.to(device), latent_avg.to(device)
