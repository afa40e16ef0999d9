"""Where weights come from: a registry of named hub assets, a local cache, and safe loading.

A registry name resolves through ``huggingface_hub.hf_hub_download`` into a cache under ``checkpoints/``
(override with ``NADA_CACHE``); a local path is used as it is. ``HF_HUB_OFFLINE=1`` (or ``NADA_OFFLINE=1``)
never touches the network. Every failure is a ``WeightsUnavailableError`` or ``CheckpointError`` whose
message names the file, the repo and what to do. Nothing here runs at import time.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Asset:
    """One downloadable file: where it lives on the hub and what it is."""

    name: str  # registry key, e.g. "ffhq"
    kind: str  # "generator" | "clip" | "e4e" | "arcface" | "dlib" | "style"
    repo_id: str | None  # hub repo, None where no public mirror is known (a local path is then needed)
    filename: str  # file inside the repo
    size: int | None = None  # generator resolution
    channel_multiplier: int | None = None  # generator width multiplier
    source: str | None = None  # for styles: the registry name of the generator it was trained from
    faces: bool = False  # a face generator (identity loss and inversion make sense)
    note: str = ""  # licence / origin, shown to users
    description: str = ""  # what a user sees in menus


_SG2 = "StyleGAN2 config-f (NVIDIA Source Code License-NC), converted to the rosinality format."
_NADA = "StyleGAN-NADA published model (rinongal/StyleGAN-nada, MIT); trained from the FFHQ generator."

_ASSETS = [
    Asset("ffhq", "generator", "akhaliq/jojogan-stylegan2-ffhq-config-f", "stylegan2-ffhq-config-f.pt", 1024, 2,
          faces=True, note=_SG2 + " FFHQ faces (CC BY-NC-SA 4.0 data).", description="Faces (FFHQ, 1024)"),
    # The other NADA source models have no hub mirror we could verify; set NADA_HUB_<NAME>=org/repo:file or pass a path.
    Asset("afhq-cat", "generator", None, "afhqcat.pt", 512, 2, note=_SG2 + " AFHQ cats.",
          description="Cats (AFHQ, 512)"),
    Asset("afhq-dog", "generator", None, "afhqdog.pt", 512, 2, note=_SG2 + " AFHQ dogs.",
          description="Dogs (AFHQ, 512)"),
    Asset("car", "generator", None, "stylegan2-car-config-f.pt", 512, 2, note=_SG2 + " LSUN cars.",
          description="Cars (LSUN, 512)"),
    Asset("church", "generator", None, "stylegan2-church-config-f.pt", 256, 2, note=_SG2 + " LSUN churches.",
          description="Churches (LSUN, 256)"),
    Asset("horse", "generator", None, "stylegan2-horse-config-f.pt", 256, 2, note=_SG2 + " LSUN horses.",
          description="Horses (LSUN, 256)"),
    Asset("clip-vit-b32", "clip", "timm/vit_base_patch32_clip_224.openai", "open_clip_pytorch_model.bin",
          note="OpenAI CLIP ViT-B/32 (MIT), OpenAI key names."),
    Asset("clip-vit-b16", "clip", "timm/vit_base_patch16_clip_224.openai", "open_clip_pytorch_model.bin",
          note="OpenAI CLIP ViT-B/16 (MIT), OpenAI key names."),
    Asset("e4e-ffhq", "e4e", "public-data/e4e", "e4e_ffhq_encode.pt",
          note="encoder4editing FFHQ encoder (MIT)."),
    Asset("arcface-ir-se50", "arcface", "public-data/e4e", "model_ir_se50.pth",
          note="ArcFace IR-SE50 from TreB1eN/InsightFace_Pytorch (MIT); used by the identity loss. "
               "Hub location unverified: set NADA_HUB_ARCFACE_IR_SE50=org/repo:file if it moved."),
    Asset("dlib-landmarks", "dlib", "public-data/dlib_face_landmark_model", "shape_predictor_68_face_landmarks.dat",
          note="dlib 68-point landmark model (iBUG 300-W data; non-commercial)."),
]
_STYLES = {
    "pixar": "Pixar", "joker": "The Joker", "sketch": "Pencil sketch", "disney_princess": "Disney princess",
    "zombie": "Zombie", "white_walker": "White Walker", "werewolf": "Werewolf", "witcher": "Witcher",
    "anime": "Anime", "modigliani": "Modigliani painting", "neanderthal": "Neanderthal", "plastic": "Plastic puppet",
    "ukiyoe": "Ukiyo-e", "edvard_munch": "Edvard Munch painting", "mona_lisa": "Mona Lisa painting",
    "vintage_comics": "Vintage comics", "shrek": "Shrek", "thanos": "Thanos", "the_hulk": "The Hulk",
}
_ASSETS += [
    Asset(f"nada-{key}", "style", "rinong/stylegan-nada-models", f"{key}.pt", 1024, 2, source="ffhq",
          note=_NADA, description=f"{label} (StyleGAN-NADA)")
    for key, label in _STYLES.items()
]
REGISTRY: dict[str, Asset] = {a.name: a for a in _ASSETS}


class WeightsUnavailableError(RuntimeError):
    """Weights could not be found locally or downloaded; the message says how to provide them."""


class CheckpointError(ValueError):
    """A file exists but is not the checkpoint we expected."""


def cache_dir() -> Path:
    """The weights cache: ``$NADA_CACHE`` if set, else ``checkpoints/`` in the project."""
    return Path(os.environ.get("NADA_CACHE") or PROJECT_ROOT / "checkpoints")


def offline() -> bool:
    """True when the hub must not be contacted (``HF_HUB_OFFLINE`` or ``NADA_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "NADA_OFFLINE"))


def hub_env_var(name: str) -> str:
    """The variable that redirects a registry asset: ``NADA_HUB_<NAME>`` ("afhq-cat" -> NADA_HUB_AFHQ_CAT)."""
    return "NADA_HUB_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def hub_location(asset: Asset) -> tuple[str | None, str]:
    """(repo_id, filename) of an asset, honouring an ``NADA_HUB_<NAME>=org/repo:file`` override."""
    override = os.environ.get(hub_env_var(asset.name))
    if override:
        repo, _, fname = override.partition(":")
        return repo, fname or asset.filename
    return asset.repo_id, asset.filename


def hub_reachable(timeout: float = 3.0) -> bool:
    """Quick TCP check of the hub endpoint, so that a machine without network fails in seconds, not ~25 s.

    Skipped (assumed reachable) behind a proxy, where a direct connection says nothing."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def is_registry_name(name: str | os.PathLike) -> bool:
    """True if ``name`` is a registry key rather than a path."""
    return isinstance(name, str) and name in REGISTRY


def fetch(name: str) -> Path:
    """Local path of a registry asset, downloading it once into the cache (never while offline)."""
    if name not in REGISTRY:
        raise WeightsUnavailableError(f"Unknown weights '{name}'. Known names: {', '.join(sorted(REGISTRY))}.")
    asset = REGISTRY[name]
    repo_id, filename = hub_location(asset)
    env = hub_env_var(name)
    if repo_id is None:
        raise WeightsUnavailableError(
            f"No hub mirror is known for '{name}' ({filename}). Pass a local checkpoint path instead, "
            f"or set {env}=org/repo:file.")
    # Imported here: huggingface_hub reads HF_HUB_OFFLINE when first imported, and importing it costs ~0.5 s.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    is_offline = offline() or not hub_reachable()
    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir(), local_files_only=is_offline))
    except LocalEntryNotFoundError as exc:
        why = "offline mode is on" if is_offline else "the hub could not be reached"
        raise WeightsUnavailableError(
            f"Weights '{name}' ({repo_id}/{filename}) are not cached in {cache_dir()} and {why}. "
            f"Connect to the internet once (unset HF_HUB_OFFLINE), or pass a local file path, "
            f"or set {env}=org/repo:file.") from exc
    except Exception as exc:  # repository or file not found, auth, HTTP errors
        raise WeightsUnavailableError(
            f"Could not download '{name}' ({repo_id}/{filename}): {type(exc).__name__}: {exc}. "
            f"Pass a local file path or set {env}=org/repo:file.") from exc


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A registry name becomes a cached file; anything else must be an existing local file."""
    if is_registry_name(name_or_path):
        return fetch(str(name_or_path))
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"'{name_or_path}' is neither a registry name ({', '.join(sorted(REGISTRY))}) nor an existing file.")
    return path


def load_state_dict_file(path: str | os.PathLike) -> dict:
    """Load a ``.safetensors`` file or a torch checkpoint safely (``weights_only=True``), on the CPU."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        # argparse.Namespace is a plain attribute bag: rosinality and e4e training checkpoints keep their options in one
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: pickled code or custom classes
        raise CheckpointError(
            f"{path} is not a plain PyTorch checkpoint ({str(exc).splitlines()[0][:200]}). "
            "Only tensors and plain containers are loaded from untrusted files.") from exc
    except Exception as exc:  # zip/EOF/OS errors from truncated or non-torch files
        raise CheckpointError(
            f"{path} could not be read as a checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            "The file may be truncated (an interrupted download: delete it and fetch again) or not a "
            "PyTorch/safetensors file.") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict of tensors.")
    return obj


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
    from .stylegan2 import channels_for

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


def build_generator(sd: dict, where: str = "checkpoint"):
    """A :class:`nada.stylegan2.Generator` built to the state dict's own config and loaded strictly."""
    from .stylegan2 import Generator

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


def load_generator(name_or_path: str | os.PathLike, device: torch.device | str = "cpu"):
    """Load a generator by registry name (downloaded once, cached) or local path, eval mode, on ``device``.

    The checkpoint's ``latent_avg`` (the W mean from training), if present, is kept as ``generator.latent_avg``.
    The name "tiny" gives the tiny random generator of :mod:`nada.tiny` (offline demos and tests)."""
    if name_or_path == "tiny":  # the tiny random stand-in (offline demos and tests), see nada.tiny
        from .tiny import tiny_generator

        return tiny_generator().to(device)
    path = resolve(name_or_path)
    ckpt = load_state_dict_file(path)
    g = build_generator(generator_state_dict(ckpt, str(path)), str(path))
    avg = ckpt.get("latent_avg")
    if isinstance(avg, torch.Tensor) and avg.numel() >= g.style_dim:
        g.latent_avg = avg.float().reshape(-1, g.style_dim)[:1].clone()  # [1, 512]
    return g.to(device).eval()
