"""Synthesized weight files in the exact public layouts, for the local hub (:mod:`bench.local_hub`).

Two scales: ``small=True`` (the test suite: files of a few hundred KB to a few MB, built in a fraction of a second)
and ``small=False`` (the rehearsal: the real architectures at their real byte sizes, dense random float32 weights).
Every builder is deterministic: a tensor depends only on (``seed``, builder, key), never on dict order.

Small files keep the real key sets (a strict load needs them) but shrink in two ways:
- smaller architectures where nada reads the config off the state dict: generators have 16 channels at every
  resolution (``channel_max=16``; the mapping network stays 8 x 512 so ``latent_avg`` is [512] and e4e's codes fit),
  CLIP is a 1-layer, 64-wide ViT (``build_model`` assumes 64-wide heads) stored in float16;
- *compact storage* (every tensor of more than 4096 values but the noise buffers): a tensor ``[out, ...]`` is saved
  as an overlapping strided view whose row ``o`` is ``s[o : o + fan_in]`` of one short random vector ``s``
  (``out + fan_in - 1`` values; ``torch.save`` stores only ``s``). Rows are shifted windows of an i.i.d. sequence:
  random, full rank, each value used once per row, so activations stay O(1) through deep stacks (a view with every
  stride 1 reuses values across a 3x3 kernel's taps and blew e4e's codes up to 1e11). This is what makes the
  IR-SE50 networks small (ArcFace and e4e, which nada only loads at their real size: 1.4 and 4.1 MB instead of
  175 MB and 1.2 GB). Loaders that copy into their own parameters (``load_generator``) get dense tensors; loaders
  that assign (``load_e4e`` and ``load_id_loss`` use ``assign=True``) keep the views: fine for inference (a
  convolution copies its weight to contiguous memory, e4e's forward is ~1.7x slower), but in-place updates of
  those parameters raise (an optimizer step on them would).

Full-size files that nada's registry records a byte size for (published styles, the 512/256 px generators) can be
padded to that exact size by an extra zip entry that ``torch.load`` ignores (:func:`pad_zip`, ``populate``'s
``match_sizes``), so nada's size check passes in the rehearsal.

Weight rule (imitating ``shared/fixtures/synth_weights.py``): ``N`` is a standard-normal draw; BatchNorm near
identity (``1 + 0.1 N``, running_var ``1 + 0.1 |N|``), PReLU ``0.25 + 0.01 N``, biases ``0.1 N``, modulation biases
``1 + 0.1 N``, noise strengths ``0.1 N``, noise buffers ``N``, weights that rosinality rescales at run time ``N``
(mapping weights ``N / 0.01``, as stored in real checkpoints), other weights ``N / sqrt(fan_in)``; FIR kernels are
the exact constants. CLIP uses its own initialisation (``clip.model.CLIP``).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import math
import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch

from nada.clip_models import import_clip
from nada.nets.e4e import Encoder4Editing
from nada.nets.irse import Backbone
from nada.nets.stylegan2 import Generator, channels_for
from nada.weights import build_generator

from .local_hub import LocalHub

FULL_SIZE = 1024  # real FFHQ generator resolution (and the published StyleGAN-NADA models')
SMALL_SIZE = 256  # small generators' default resolution: 14 W+ rows, what the small e4e encodes into
SMALL_CHANNELS = 16  # channel_max of small generators (every resolution has 16 channels)
COMPACT_MIN = 4096  # tensors with more elements than this are stored compactly in small files
SAFETENSORS_FILE = "open_clip_model.safetensors"
BIN_FILE = "open_clip_pytorch_model.bin"
CLIP_ARCHS = {  # clip.model.CLIP arguments of the released OpenAI ViTs (what the timm/*.openai mirrors hold)
    "ViT-B/32": {"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768,
                 "vision_patch_size": 32, "context_length": 77, "vocab_size": 49408, "transformer_width": 512,
                 "transformer_heads": 8, "transformer_layers": 12},
    "ViT-B/16": {"embed_dim": 512, "image_resolution": 224, "vision_layers": 12, "vision_width": 768,
                 "vision_patch_size": 16, "context_length": 77, "vocab_size": 49408, "transformer_width": 512,
                 "transformer_heads": 8, "transformer_layers": 12},
    "ViT-L/14": {"embed_dim": 768, "image_resolution": 224, "vision_layers": 24, "vision_width": 1024,
                 "vision_patch_size": 14, "context_length": 77, "vocab_size": 49408, "transformer_width": 768,
                 "transformer_heads": 12, "transformer_layers": 12},
}
# Small stand-ins: 64-wide (one 64-wide head, as build_model assumes), one layer, the real vocabulary and context
# (clip.tokenize needs them), 32-d embeddings; the patch size tells them apart (two patches a side).
SMALL_CLIP_ARCHS = {
    arch: {**cfg, "embed_dim": 32, "image_resolution": 2 * cfg["vision_patch_size"], "vision_layers": 1,
           "vision_width": 64, "transformer_width": 64, "transformer_heads": 1, "transformer_layers": 1}
    for arch, cfg in CLIP_ARCHS.items()
}
KINDS = ("generator", "style", "e4e", "clip", "arcface", "dlib")
_FIR = torch.tensor([1.0, 3.0, 3.0, 1.0])


# ---------------------------------------------------------------------------------------------- weight rule
def _rng(seed: int, salt: str, key: str) -> torch.Generator:
    """A generator seeded by (seed, salt, key) only."""
    return torch.Generator().manual_seed((seed % 2**31) * 2**32 + zlib.crc32(f"{salt}/{key}".encode()))


def _fir(gain: float) -> torch.Tensor:
    """The [4, 4] FIR blur kernel rosinality registers: outer([1,3,3,1]) normalised to sum ``gain``."""
    k = torch.outer(_FIR, _FIR)
    return k / k.sum() * gain


def _affine(key: str, shape: tuple[int, ...], keys: set[str], equalized: bool) -> tuple[float, float, bool]:
    """(offset, scale, absolute) of a tensor: it is ``offset + scale * N`` (``|N|`` when absolute)."""
    parent, _, name = key.rpartition(".")
    pre = parent + "." if parent else ""
    batchnorm = pre + "running_mean" in keys
    if name == "running_mean":
        return 0.0, 0.1, False
    if name == "running_var":
        return 1.0, 0.1, True
    if re.search(r"(^|\.)noises\.noise_\d+$", key):
        return 0.0, 1.0, False
    if key.endswith("noise.weight"):
        return 0.0, 0.1, False
    if key.endswith("modulation.bias"):
        return 1.0, 0.1, False
    if name == "weight" and len(shape) == 1:
        if batchnorm:
            return 1.0, 0.1, False
        if pre + "bias" not in keys:  # PReLU slopes
            return 0.25, 0.01, False
    if name == "bias":
        return 0.0, 0.1, False
    if re.search(r"(^|\.)style\.\d+\.weight$", key):  # mapping MLP: stored as N / lr_mul
        return 0.0, 100.0, False
    if equalized or re.search(r"(^|\.)(input\.input|modulation\.weight|styles\.\d+\.linear\.weight)$", key) or (
            len(shape) == 5 and key.endswith("conv.weight")):
        return 0.0, 1.0, False  # rescaled at run time (equalized learning rate)
    if len(shape) >= 2:
        return 0.0, 1.0 / math.sqrt(math.prod(shape[1:])), False
    return 1.0, 0.1, False


def _draw(shape: tuple[int, ...], rng: torch.Generator, offset: float = 0.0, scale: float = 1.0,
          absolute: bool = False, compact: bool = False) -> torch.Tensor:
    """``offset + scale * N`` of ``shape`` (``|N|`` when absolute); when ``compact``, a strided view whose row ``o``
    (all of ``t[o]``, flattened) is ``s[o : o + fan_in]`` of one random vector ``s``."""
    fan_in = math.prod(shape[1:])  # a row: one output unit's weights
    length = fan_in + shape[0] - 1 if compact else math.prod(shape)
    n = torch.randn(length, generator=rng)  # [length]
    values = offset + scale * (n.abs() if absolute else n)
    if not compact:
        return values.reshape(shape)
    strides = (1, *(math.prod(shape[k + 1:]) for k in range(1, len(shape))))  # row o = s[o : o + fan_in]
    return values.as_strided(shape, strides)


def _compactable(key: str, shape: tuple[int, ...]) -> bool:
    """Big weight tensors (not the noise buffers: stripes would show in images) are stored compactly."""
    return math.prod(shape) > COMPACT_MIN and len(shape) >= 2 and "noises." not in key


def synth_tensors(shapes: Mapping[str, tuple[int, ...]], seed: int, salt: str, compact: bool = False,
                  fixed: Mapping[str, torch.Tensor] | None = None,
                  equalized: Callable[[str], bool] | None = None) -> dict[str, torch.Tensor]:
    """Tensors for ``{key: shape}`` by the weight rule (float32; ``num_batches_tracked`` int64 zeros).

    ``fixed``: tensors used as they are (FIR kernels). ``equalized(key)``: weights rescaled at run time (drawn as
    ``N``). ``compact``: big tensors become strided views of a short random vector (see the module docstring)."""
    keys = set(shapes)
    out: dict[str, torch.Tensor] = {}
    for key, shape in shapes.items():
        shape = tuple(int(s) for s in shape)
        if fixed and key in fixed:
            out[key] = fixed[key].clone()
        elif key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.int64)
        else:
            offset, scale, absolute = _affine(key, shape, keys, bool(equalized and equalized(key)))
            out[key] = _draw(shape, _rng(seed, salt, key), offset, scale, absolute,
                             compact and _compactable(key, shape))
    return out


def state_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a module's state dict (build it on the meta device: nothing is allocated)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _emit(obj: object, dest: os.PathLike | None) -> bytes | Path:
    """``torch.save`` to bytes, written to ``dest`` (returned) when given.

    Always through a buffer: saved to a path, torch names the archive's folder after the file, so the bytes (and
    the size) would depend on the destination's name."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    if dest is None:
        return buf.getvalue()
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as f:
        f.write(buf.getbuffer())
    return Path(dest)


def pad_zip(data: bytes, nbytes: int, name: str = "archive/.padding") -> bytes:
    """A torch zip checkpoint grown to exactly ``nbytes`` by one extra stored entry that ``torch.load`` ignores
    (so a synthesized file passes a check of a published file's size). ``ValueError`` if ``data`` is too big."""
    def grown(extra: int) -> bytes:
        buf = io.BytesIO(data)
        with zipfile.ZipFile(buf, "a") as zf:
            zf.writestr(zipfile.ZipInfo(name), b"\0" * extra)
        return buf.getvalue()

    extra = nbytes - len(grown(0))
    if extra < 0:
        raise ValueError(f"the checkpoint is {len(data):,} bytes, too big to be padded to {nbytes:,}")
    out = grown(extra)
    assert len(out) == nbytes, (len(out), nbytes)
    return out


def pad_file(path: os.PathLike, nbytes: int) -> Path:
    """:func:`pad_zip` applied to a file, in place."""
    path = Path(path)
    path.write_bytes(pad_zip(path.read_bytes(), nbytes))
    return path


# ---------------------------------------------------------------------------------------------- generators
def generator_config(size: int = FULL_SIZE, channel_multiplier: int = 2, small: bool = True) -> dict:
    """``nada.nets.stylegan2.Generator`` arguments: the real config, or 16 channels everywhere when ``small``.

    Small configs read back (``nada.weights.generator_config``) with channel_multiplier 2, whatever was asked:
    with 16 channels everywhere the multiplier changes nothing."""
    cfg = {"size": size, "style_dim": 512, "n_mlp": 8, "channel_multiplier": channel_multiplier}
    return {**cfg, "channel_max": SMALL_CHANNELS} if small else {**cfg, "channel_max": 512}


def generator_state_dict(size: int = FULL_SIZE, channel_multiplier: int = 2, small: bool = True,
                         seed: int = 0) -> dict[str, torch.Tensor]:
    """A rosinality ``g_ema`` state dict (every key of ``Generator.state_dict()``, noise buffers and FIR kernels)."""
    # Built on the CPU, not the meta device (its constructor inspects the FIR kernels): ~0.8 s at 1024, 0.1 s small.
    module_sd = Generator(**generator_config(size, channel_multiplier, small)).state_dict()
    kernels = {k: v for k, v in module_sd.items() if k.endswith(".kernel")}  # the 2x upsampling blurs, exact
    return synth_tensors({k: tuple(v.shape) for k, v in module_sd.items()}, seed, "generator", compact=small,
                         fixed=kernels)


def mean_w(g_ema: Mapping[str, torch.Tensor], n: int = 4096) -> torch.Tensor:
    """The generator's mean W [512] over ``n`` seeded z (what the converter stores as ``latent_avg``)."""
    g = build_generator(dict(g_ema), "synthesized generator")
    with torch.no_grad():
        return g.mean_latent(n, seed=0).reshape(-1).clone()  # [512]


def _mean_w_samples(small: bool) -> int:
    """z samples for ``latent_avg``: 4096 at full size, 512 when small (0.1 s instead of 0.8 s on 2 cores)."""
    return 512 if small else 4096


def _adam_state(params: Mapping[str, torch.Tensor], seed: int, salt: str, compact: bool, ratio: float) -> dict:
    """A ``torch.optim.Adam.state_dict()`` as rosinality's train.py saves it (small random moments)."""
    state = {}
    for i, (key, p) in enumerate(params.items()):
        shape, squeeze = tuple(p.shape), compact and _compactable(key, tuple(p.shape))
        state[i] = {"step": torch.tensor(800000.0),
                    "exp_avg": _draw(shape, _rng(seed, salt, key + ".exp_avg"), 0.0, 1e-3, False, squeeze),
                    "exp_avg_sq": _draw(shape, _rng(seed, salt, key + ".exp_avg_sq"), 0.0, 1e-6, True, squeeze)}
    group = {"lr": 0.002 * ratio, "betas": (0.0, 0.99**ratio), "eps": 1e-8, "weight_decay": 0, "amsgrad": False,
             "maximize": False, "foreach": None, "capturable": False, "differentiable": False, "fused": None,
             "decoupled_weight_decay": False, "params": list(range(len(params)))}
    return {"state": state, "param_groups": [group]}


def discriminator_shapes(size: int, channel_multiplier: int = 2, channel_max: int = 512) -> dict[str, tuple[int, ...]]:
    """Key shapes of rosinality's ``Discriminator(size, channel_multiplier)`` state dict (ResNet with FIR blurs)."""
    ch = channels_for(size, channel_multiplier, channel_max)
    shapes: dict[str, tuple[int, ...]] = {"convs.0.0.weight": (ch[size], 3, 1, 1), "convs.0.1.bias": (ch[size],)}
    in_ch = ch[size]
    for i, res in enumerate(range(int(math.log2(size)), 2, -1), start=1):  # one ResBlock per halving, down to 4x4
        out_ch = ch[2 ** (res - 1)]
        p = f"convs.{i}."
        shapes.update({p + "conv1.0.weight": (in_ch, in_ch, 3, 3), p + "conv1.1.bias": (in_ch,),
                       p + "conv2.0.kernel": (4, 4), p + "conv2.1.weight": (out_ch, in_ch, 3, 3),
                       p + "conv2.2.bias": (out_ch,), p + "skip.0.kernel": (4, 4),
                       p + "skip.1.weight": (out_ch, in_ch, 1, 1)})
        in_ch = out_ch
    shapes.update({"final_conv.0.weight": (ch[4], in_ch + 1, 3, 3), "final_conv.1.bias": (ch[4],),
                   "final_linear.0.weight": (ch[4], ch[4] * 16), "final_linear.0.bias": (ch[4],),
                   "final_linear.1.weight": (1, ch[4]), "final_linear.1.bias": (1,)})
    return shapes


def _training_args(size: int, channel_multiplier: int) -> argparse.Namespace:
    """The ``args`` namespace rosinality's train.py stores in its checkpoints (typical FFHQ values)."""
    return argparse.Namespace(
        path="/data/ffhq_lmdb", arch="stylegan2", iter=800000, batch=16, n_sample=64, size=size, r1=10.0,
        path_regularize=2.0, path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9, ckpt=None, lr=0.002,
        channel_multiplier=channel_multiplier, wandb=False, local_rank=0, augment=False, augment_p=0.0,
        ada_target=0.6, ada_length=500000, ada_every=256, latent=512, n_mlp=8, start_iter=0, distributed=False)


def generator_checkpoint_dict(size: int = FULL_SIZE, channel_multiplier: int = 2, small: bool = True, seed: int = 0,
                              full_training: bool = False, latent_avg: bool | None = None) -> dict:
    """The checkpoint object of :func:`generator_checkpoint`."""
    g_ema = generator_state_dict(size, channel_multiplier, small, seed)
    ckpt: dict = {}
    if full_training:  # rosinality train.py: g, d, g_ema, g_optim, d_optim, args, ada_aug_p
        cfg = generator_config(size, channel_multiplier, small)
        d_shapes = discriminator_shapes(size, channel_multiplier, cfg["channel_max"])
        d = synth_tensors(d_shapes, seed, "discriminator", compact=small,
                          fixed={k: _fir(1.0) for k in d_shapes if k.endswith(".kernel")},  # downsampling blurs
                          equalized=lambda k: k.endswith("weight"))  # EqualConv2d / EqualLinear
        g_params = {k: v for k, v in g_ema.items() if not k.endswith(".kernel") and "noises." not in k}
        d_params = {k: v for k, v in d.items() if not k.endswith(".kernel")}
        g = dict(g_ema) if small else {k: v.clone() for k, v in g_ema.items()}  # small: shared storage, saved once
        ckpt.update(g=g, d=d, g_ema=g_ema,
                    g_optim=_adam_state(g_params, seed, "g_optim", small, 4 / 5),  # lazy regularization ratios
                    d_optim=_adam_state(d_params, seed, "d_optim", small, 16 / 17),
                    args=_training_args(size, channel_multiplier), ada_aug_p=0.0)
    else:
        ckpt["g_ema"] = g_ema
    if latent_avg if latent_avg is not None else not full_training:
        ckpt["latent_avg"] = mean_w(g_ema, _mean_w_samples(small))  # [512]
    return ckpt


def generator_checkpoint(size: int = FULL_SIZE, channel_multiplier: int = 2, *, small: bool = True, seed: int = 0,
                         full_training: bool = False, latent_avg: bool | None = None,
                         dest: os.PathLike | None = None) -> bytes | Path:
    """A rosinality StyleGAN2 checkpoint: ``{"g_ema", "latent_avg" [512]}`` (the converted FFHQ file's layout).

    ``full_training``: a train.py checkpoint instead: ``g`` (= ``g_ema``), ``d`` (the discriminator), ``g_ema``,
    ``g_optim`` and ``d_optim`` (Adam states), ``args`` (an ``argparse.Namespace``) and ``ada_aug_p``; no
    ``latent_avg`` unless asked. Bytes, or the path ``dest`` written."""
    return _emit(generator_checkpoint_dict(size, channel_multiplier, small, seed, full_training, latent_avg), dest)


def published_style_state_dict(size: int = FULL_SIZE, channel_multiplier: int = 2, small: bool = True,
                               seed: int = 0, style_seed: int = 1) -> dict[str, torch.Tensor]:
    """The ``g_ema`` of a StyleGAN-NADA model trained from the generator ``(size, channel_multiplier, small, seed)``:
    the same tensors except the synthesis convolutions (``conv1.*``, ``convs.*``), which are moved by ``0.1 rms N``."""
    g_ema = generator_state_dict(size, channel_multiplier, small, seed)
    for key in [k for k in g_ema if re.match(r"(conv1|convs\.\d+)\.", k) and not k.endswith(".kernel")]:
        base = g_ema[key]
        step = torch.randn(base.shape, generator=_rng(style_seed, "nada-style", key))
        g_ema[key] = base + 0.1 * base.pow(2).mean().sqrt() * step
    return g_ema


def published_style_checkpoint(size: int = FULL_SIZE, channel_multiplier: int = 2, *, small: bool = True,
                               seed: int = 0, style_seed: int = 1, dest: os.PathLike | None = None) -> bytes | Path:
    """A published StyleGAN-NADA model file: ``{"g_ema": state_dict}`` only (``rinong/stylegan-nada-models``)."""
    return _emit({"g_ema": published_style_state_dict(size, channel_multiplier, small, seed, style_seed)}, dest)


# ---------------------------------------------------------------------------------------------- e4e and ArcFace
def e4e_opts(size: int) -> dict:
    """A plausible ``opts`` dict (``vars`` of e4e's TrainOptions); the released file's values were not inspected."""
    return {
        "exp_dir": "experiments/ffhq_encode", "dataset_type": "ffhq_encode", "encoder_type": "Encoder4Editing",
        "batch_size": 8, "test_batch_size": 4, "workers": 8, "test_workers": 4, "learning_rate": 0.0001,
        "optim_name": "ranger", "train_decoder": False, "start_from_latent_avg": True, "lpips_type": "alex",
        "lpips_lambda": 0.8, "id_lambda": 0.1, "l2_lambda": 1.0, "stylegan_weights": "stylegan2-ffhq-config-f.pt",
        "stylegan_size": size, "checkpoint_path": "e4e_ffhq_encode.pt", "max_steps": 300000, "image_interval": 100,
        "board_interval": 50, "val_interval": 10000, "save_interval": 10000, "w_discriminator_lambda": 0.1,
        "w_discriminator_lr": 2e-05, "r1": 10, "d_reg_every": 16, "use_w_pool": True, "w_pool_size": 50,
        "delta_norm": 2, "delta_norm_lambda": 0.0002, "progressive_steps": [0] + list(range(20000, 360000, 20000)),
        "progressive_start": None, "progressive_step_every": 2000, "save_training_data": False,
        "sub_exp_dir": None, "keep_optimizer": False, "resume_training_from_ckpt": None,
        "update_param_list": None, "device": "cuda:0",
    }


def e4e_checkpoint_dict(size: int | None = None, small: bool = True, seed: int = 0, generator_seed: int = 0) -> dict:
    """The checkpoint object of :func:`e4e_checkpoint`."""
    size = size or (SMALL_SIZE if small else FULL_SIZE)
    n_latent = 2 * int(math.log2(size)) - 2  # 18 at 1024, 14 at 256
    with torch.device("meta"):
        shapes = state_shapes(Encoder4Editing(n_latent=n_latent))
    encoder = synth_tensors(shapes, seed, "e4e", compact=small)
    decoder = generator_state_dict(size, 2, small, generator_seed)
    state = {f"encoder.{k}": v for k, v in encoder.items()}
    state.update({f"decoder.{k}": v for k, v in decoder.items()})
    w_avg = mean_w(decoder, _mean_w_samples(small))  # [512]
    latent_avg = w_avg.reshape(1, 512).repeat(n_latent, 1)  # [n_latent, 512], as e4e saves it
    return {"state_dict": state, "latent_avg": latent_avg, "opts": e4e_opts(size)}


def e4e_checkpoint(size: int | None = None, *, small: bool = True, seed: int = 0, generator_seed: int = 0,
                   dest: os.PathLike | None = None) -> bytes | Path:
    """``e4e_ffhq_encode.pt``: ``{"state_dict": {"encoder.*", "decoder.*"}, "latent_avg" [n_latent, 512], "opts"}``.

    ``size``: the decoder's resolution (default 1024, or 256 when ``small``: the 256 px encoder with 14 styles); the
    decoder is the generator ``generator_state_dict(size, 2, small, generator_seed)`` (the one ``populate`` serves
    with the same seed) and ``latent_avg`` its mean W repeated. Small files store the encoder compactly (4.1 MB).
    Full size is ~1.2 GB (267M encoder values + the 1024 generator)."""
    return _emit(e4e_checkpoint_dict(size, small, seed, generator_seed), dest)


def arcface_state_dict(small: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """``model_ir_se50.pth``: the state dict of ``nada.nets.irse.Backbone(112, 50, "ir_se")`` (compact when small)."""
    with torch.device("meta"):
        shapes = state_shapes(Backbone(112, 50, "ir_se"))
    return synth_tensors(shapes, seed, "arcface", compact=small)


def arcface_checkpoint(*, small: bool = True, seed: int = 0, dest: os.PathLike | None = None) -> bytes | Path:
    """The IR-SE50 ArcFace file (a bare state dict, ~175 MB at full size; compact storage when ``small``)."""
    return _emit(arcface_state_dict(small, seed), dest)


# ---------------------------------------------------------------------------------------------- CLIP
def clip_arch(name: str) -> str:
    """"ViT-B/32", "ViT-B/16" or "ViT-L/14" from an arch name or a repo id such as
    ``timm/vit_base_patch16_clip_224.openai``."""
    if name in CLIP_ARCHS:
        return name
    if re.search(r"(patch14|l14|l-14|/14)", name.lower()):
        return "ViT-L/14"
    return "ViT-B/16" if re.search(r"(patch16|b16|b-16|/16)", name.lower()) else "ViT-B/32"


def clip_state_dict(arch: str = "ViT-B/32", small: bool = True, seed: int = 0,
                    dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """OpenAI-layout CLIP tensors (``visual.*``, ``token_embedding.weight``, ..., ``logit_scale``) of a randomly
    initialised ``clip.model.CLIP``: the real ViT size, or a 64-wide 1-layer model when ``small``.

    ``dtype``: float32 at full size (as the timm mirrors store it), float16 when small (halves the 49408-row
    token embedding); nada's loader returns float32 either way."""
    clip = import_clip()
    cfg = (SMALL_CLIP_ARCHS if small else CLIP_ARCHS)[clip_arch(arch)]
    with torch.random.fork_rng(devices=[]):  # CLIP's init draws from the global generator: keep it untouched
        torch.manual_seed(seed)
        model = clip.model.CLIP(**cfg)
    dtype = dtype or (torch.float16 if small else torch.float32)
    return {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}


def _write_clip(sd: Mapping[str, torch.Tensor], filename: str, dest: os.PathLike | None) -> bytes | Path:
    """One CLIP file: safetensors for ``*.safetensors``, ``torch.save`` of the state dict otherwise."""
    if filename.endswith(".safetensors"):
        from safetensors.torch import save, save_file

        if dest is None:
            return save(dict(sd))
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        save_file(dict(sd), str(dest))
        return Path(dest)
    return _emit(dict(sd), dest)


def clip_state_dict_files(arch: str = "ViT-B/32", *, small: bool = True, seed: int = 0,
                          dest_dir: os.PathLike | None = None) -> dict[str, bytes | Path]:
    """The two files of an open_clip hub repo: ``{SAFETENSORS_FILE: ..., BIN_FILE: ...}``, bytes (or paths of the
    files written into ``dest_dir``). ~605 MB each for ViT-B/32 at full size, ~6.5 MB each when small."""
    sd = clip_state_dict(arch, small, seed)
    return {name: _write_clip(sd, name, None if dest_dir is None else Path(dest_dir) / name)
            for name in (SAFETENSORS_FILE, BIN_FILE)}


# ---------------------------------------------------------------------------------------------- dlib
def dlib_predictor() -> Path:
    """The real ``shape_predictor_68_face_landmarks.dat`` (99.7 MB) shipped by ``face_recognition_models``."""
    spec = importlib.util.find_spec("face_recognition_models")  # located without importing it (pkg_resources)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "models" / "shape_predictor_68_face_landmarks.dat"
        if path.is_file():
            return path
    raise FileNotFoundError("face_recognition_models (with shape_predictor_68_face_landmarks.dat) is not installed.")


# ---------------------------------------------------------------------------------------------- hub
def published_nbytes(repo_id: str, filename: str) -> int | None:
    """The byte size nada's registry records for a hub file (``Mirror.nbytes``), or None."""
    try:
        from nada.registry import REGISTRY
    except ImportError:  # an older nada without recorded sizes
        return None
    for asset in REGISTRY.values():
        for mirror in getattr(asset, "mirrors", ()):
            if (mirror.repo_id, mirror.filename) == (repo_id, filename) and mirror.nbytes:
                return int(mirror.nbytes)
    return None


def build_file(kind: str, repo_id: str, filename: str, dest: os.PathLike, small: bool = True,
               size: int | str | None = None, seed: int = 0, nbytes: int | None = None) -> Path:
    """Write the file of one hub entry to ``dest``. ``size``: generator/style/e4e resolution (default 1024, 256
    when small), or for ``clip`` an arch name (default: read off the repo id, e.g. ``patch16`` -> ViT-B/16).

    Generators, styles and the e4e decoder all come from generator seed ``seed``, so they fit together.
    ``nbytes``: pad the file to this exact size (:func:`pad_zip`); a generator is then saved as ``{"g_ema"}``
    only, since the recorded sizes of the generators that have one leave no room for ``latent_avg``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    res = int(size) if isinstance(size, int) else (SMALL_SIZE if small else FULL_SIZE)
    if kind == "generator":
        path = generator_checkpoint(res, small=small, seed=seed, latent_avg=nbytes is None, dest=dest)
    elif kind == "style":
        path = published_style_checkpoint(res, small=small, seed=seed, style_seed=zlib.crc32(filename.encode()),
                                          dest=dest)
    elif kind == "e4e":
        path = e4e_checkpoint(res, small=small, generator_seed=seed, dest=dest)
    elif kind == "arcface":
        path = arcface_checkpoint(small=small, dest=dest)
    elif kind == "clip":
        arch = clip_arch(size if isinstance(size, str) else repo_id)
        path = _write_clip(clip_state_dict(arch, small), filename, dest)
    else:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        path = Path(shutil.copyfile(dlib_predictor(), dest))
    return pad_file(path, nbytes) if nbytes is not None else Path(path)


def populate(hub: LocalHub, entries: Iterable[tuple], small: bool = True, seed: int = 0,
             match_sizes: bool | None = None) -> list[Path]:
    """Serve a file for each ``(kind, repo_id, filename)`` or ``(kind, repo_id, filename, size)`` entry.

    ``kind``: one of :data:`KINDS`; a ``clip`` entry ending in ``.safetensors`` gets the safetensors file, any
    other name the ``torch.save`` one. ``match_sizes`` (default: at full size): files whose size nada's registry
    records (published styles, the 512/256 px generators) are padded to it, so nada's size check passes.
    Files are written in place under ``hub.root``; returns their paths."""
    match_sizes = not small if match_sizes is None else match_sizes
    paths = []
    for entry in entries:
        kind, repo_id, filename, *rest = entry
        dest = hub.path(repo_id, filename)
        nbytes = published_nbytes(repo_id, filename) if match_sizes else None
        build_file(kind, repo_id, filename, dest, small, rest[0] if rest else None, seed, nbytes)
        paths.append(hub.add(repo_id, filename, dest))
    return paths
