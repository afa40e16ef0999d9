"""StyleGAN3-T and StyleGAN3-R ("Alias-Free Generative Adversarial Networks", Karras et al. 2021) as a network of our
own, with NVIDIA's parameter and buffer names: ``StyleGAN3Generator.from_nvidia(init_kwargs, state_dict)`` takes a
``G_ema``'s constructor arguments and state dict (``load_state_dict(strict=True)``; filters, ``magnitude_ema`` and
``w_avg`` included) and renders NVIDIA's images.

It has the interface of our StyleGAN2 :class:`~nada.nets.stylegan2.Generator`, so training, recipes, styles and
rendering need no StyleGAN3 branch: ``mapping(z) -> w``, ``synthesis(w or W+, noise_mode, noise)``, ``forward(z,
truncation, w_avg, noise_mode)``, ``n_latent`` (16), ``truncation_center()`` (the file's ``w_avg``), the modulated
layers and their style offsets. StyleGAN3 has no noise inputs: ``noise_mode`` and ``noise`` are accepted and
ignored, and :meth:`StyleGAN3Generator.noise_buffers` is empty.

W+ row ``i`` is read by one module: row 0 by ``synthesis.input`` (its affine gives the rotation and translation of the
Fourier features), row ``i >= 1`` by the affine of synthesis layer ``i - 1`` (``synthesis.L0_36_512`` reads row 1,
..., the ToRGB layer ``synthesis.L14_1024_3`` row 15); see :meth:`StyleGAN3Generator.latent_consumers`.
"""

from __future__ import annotations

import copy
import json

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .autotune import ConvTuner
from .offsets import OFFSET_FORMS, assign_offsets, fold_offsets
from .sg3_filters import plan_synthesis
from .sg3_layers import MappingNetwork, SynthesisInput, SynthesisLayer

NOISE_MODES = ("const", "random", "none")
CONV_IMPLS = ("batched", "winograd", "auto", "grouped")  # our StyleGAN2's names; "grouped" = the reference path
SYNTHESIS_KWARGS = {  # NVIDIA's SynthesisNetwork / SynthesisLayer arguments and their defaults
    "channel_base": 32768, "channel_max": 512, "num_layers": 14, "num_critical": 2, "first_cutoff": 2,
    "first_stopband": 2 ** 2.1, "last_stopband_rel": 2 ** 0.3, "margin_size": 10, "output_scale": 0.25,
    "num_fp16_res": 4, "conv_kernel": 3, "filter_size": 6, "lrelu_upsampling": 2, "use_radial_filters": False,
    "conv_clamp": 256, "magnitude_ema_beta": 0.999}
MAPPING_KWARGS = {"num_layers": 2, "lr_multiplier": 0.01, "w_avg_beta": 0.998}
TOP_KWARGS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs"}


class SynthesisNetwork(nn.Module):
    """W+ [N, num_ws, w_dim] (or w [N, w_dim]) -> image [N, img_channels, res, res]: the Fourier input, then
    ``num_layers + 1`` synthesis layers named ``L{i}_{size}_{channels}``, the output times ``output_scale``."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, **kwargs):
        super().__init__()
        unknown = set(kwargs) - set(SYNTHESIS_KWARGS)
        if unknown:
            raise ValueError(f"Unknown StyleGAN3 synthesis arguments: {sorted(unknown)}.")
        kw = {**SYNTHESIS_KWARGS, **kwargs}
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = kw["num_layers"] + 2
        self.output_scale = kw["output_scale"]
        plan_keys = ("channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
                     "last_stopband_rel", "margin_size", "conv_kernel", "filter_size", "lrelu_upsampling",
                     "use_radial_filters")
        source, plans = plan_synthesis(img_resolution, img_channels, **{k: kw[k] for k in plan_keys})
        self.input = SynthesisInput(w_dim, **source)
        self.layer_names = [p.name for p in plans]
        for p in plans:
            setattr(self, p.name, SynthesisLayer(p, w_dim, kw["conv_clamp"], kw["magnitude_ema_beta"]))
        self.grad_checkpointing = False  # recompute each layer's activations in backward (less memory)

    def layers(self) -> list[SynthesisLayer]:
        """The synthesis layers in order (the last is ToRGB)."""
        return [getattr(self, name) for name in self.layer_names]

    def to_wplus(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, w_dim] or W+ [N, num_ws, w_dim] -> W+ [N, num_ws, w_dim] (checked)."""
        if w.ndim == 2 and w.shape[1] == self.w_dim:
            return w[:, None, :].expand(-1, self.num_ws, -1)
        if w.ndim != 3 or w.shape[1] != self.num_ws or w.shape[2] != self.w_dim:
            raise ValueError(f"Expected w [N, {self.w_dim}] or [N, {self.num_ws}, {self.w_dim}], got {list(w.shape)}.")
        return w

    def forward(self, w: torch.Tensor, noise_mode: str = "const", noise: list | None = None) -> torch.Tensor:
        """w [N, w_dim] or W+ [N, num_ws, w_dim] -> image [N, C, res, res], unclamped. ``noise_mode`` and ``noise``
        are accepted for our StyleGAN2's interface and ignored (StyleGAN3 has no noise inputs)."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}.")
        ws = self.to_wplus(w).unbind(dim=1)  # num_ws x [N, w_dim]
        x = self.input(ws[0])  # [N, C0, size0, size0]
        use_ckpt = self.grad_checkpointing and torch.is_grad_enabled()
        for layer, row in zip(self.layers(), ws[1:]):
            x = checkpoint(layer, x, row, use_reentrant=False) if use_ckpt else layer(x, row)
        return x * self.output_scale if self.output_scale != 1 else x


def _plain(value):
    """A JSON-able copy of constructor arguments (EasyDicts become dicts, numpy scalars numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    return value


class StyleGAN3Generator(nn.Module):
    """StyleGAN3 generator with NVIDIA's state-dict names and our StyleGAN2 ``Generator``'s interface."""

    nvidia_names = True  # state_dict() is NVIDIA's G_ema, name for name (what nada export writes back)

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 1024,
                 img_channels: int = 3, mapping_kwargs: dict | None = None, **synthesis_kwargs):
        super().__init__()
        if c_dim:
            raise ValueError(f"Class-conditional StyleGAN3 generators (c_dim={c_dim}) are not supported.")
        mapping_kwargs = dict(mapping_kwargs or {})
        unknown = set(mapping_kwargs) - set(MAPPING_KWARGS)
        if unknown:
            raise ValueError(f"Unknown StyleGAN3 mapping arguments: {sorted(unknown)}.")
        self.init_kwargs = _plain({"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "img_resolution": img_resolution,
                                   "img_channels": img_channels, "mapping_kwargs": mapping_kwargs, **synthesis_kwargs})
        json.dumps(self.init_kwargs)  # JSON-able, or fail here
        self.z_dim, self.w_dim, self.img_resolution = z_dim, w_dim, img_resolution
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)  # NVIDIA's order
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_kwargs.get("num_layers", MAPPING_KWARGS["num_layers"]),
                                      mapping_kwargs.get("lr_multiplier", MAPPING_KWARGS["lr_multiplier"]))
        self._impl, self._tuner = "batched", None

    @classmethod
    def from_nvidia(cls, init_kwargs: dict, state_dict: dict[str, torch.Tensor]) -> StyleGAN3Generator:
        """The network of a NVIDIA ``networks_stylegan3.Generator``: its constructor arguments (``img_resolution``
        may be missing: read off the state dict) and its flat state dict (NVIDIA's names; loaded strictly, as
        float32). Raises ``ValueError`` when they do not describe one network."""
        kwargs = _plain(dict(init_kwargs))
        unknown = set(kwargs) - TOP_KWARGS - set(SYNTHESIS_KWARGS)
        if unknown:
            raise ValueError(f"Not a StyleGAN3 generator: unknown constructor arguments {sorted(unknown)}.")
        if "img_resolution" not in kwargs:  # the size in the last layer's name, "L{idx}_{size}_{channels}"
            layers = {tuple(int(v) for v in k.split(".")[1][1:].split("_")) for k in state_dict
                      if k.startswith("synthesis.L") and k.split(".")[1][1:].replace("_", "").isdigit()}
            if not layers:
                raise ValueError("Not a StyleGAN3 generator: no synthesis layers 'synthesis.L{i}_{size}_{ch}'.")
            kwargs["img_resolution"] = max(layers)[1]
        with torch.device("meta"):
            g = cls(**kwargs)
        try:
            g.load_state_dict({k: v.detach().to(torch.float32, copy=True) for k, v in state_dict.items()}, strict=True,
                              assign=True)  # copies: the caller's tensors stay its own
        except RuntimeError as err:
            raise ValueError(f"The state dict does not fit a StyleGAN3 of these arguments: {err}") from None
        return g.eval().requires_grad_(False)

    # ------------------------------------------------------------------------------------------- description
    @property
    def size(self) -> int:
        """Image side in pixels."""
        return self.img_resolution

    @property
    def style_dim(self) -> int:
        """Width of w (512)."""
        return self.w_dim

    @property
    def n_latent(self) -> int:
        """W+ rows: 16 (the input, 14 layers and ToRGB)."""
        return self.synthesis.num_ws

    @property
    def arch(self) -> str:
        """"stylegan3-r" (radial filters, 1x1 convolutions) or "stylegan3-t"."""
        return "stylegan3-r" if self.init_kwargs.get("use_radial_filters") else "stylegan3-t"

    @property
    def device(self) -> torch.device:
        """Where the weights are (what ``generator.input.input.device`` gives for our StyleGAN2)."""
        return self.synthesis.input.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' floating-point type."""
        return self.synthesis.input.weight.dtype

    def config(self) -> dict:
        """JSON-able description: the architecture, size, W width, W+ rows and NVIDIA's constructor arguments
        (``StyleGAN3Generator(**config()["init_kwargs"])`` rebuilds it)."""
        return {"arch": self.arch, "size": self.size, "style_dim": self.style_dim, "n_latent": self.n_latent,
                "init_kwargs": copy.deepcopy(self.init_kwargs)}

    # ------------------------------------------------------------------------------------ execution settings
    @property
    def grad_checkpointing(self) -> bool:
        """Recompute each synthesis layer's activations in backward instead of storing them."""
        return self.synthesis.grad_checkpointing

    @grad_checkpointing.setter
    def grad_checkpointing(self, value: bool) -> None:
        self.synthesis.grad_checkpointing = bool(value)

    def set_conv_impl(self, impl: str, tuner: ConvTuner | None = None) -> StyleGAN3Generator:
        """Our StyleGAN2's switch: "grouped" runs the reference formulation (per-sample kernels, the literal filtered
        leaky ReLU); "batched" (default), "winograd" and "auto" the fast one, with 3x3 convolutions direct, by
        Winograd where it pays, or by the path a :class:`ConvTuner` timed fastest (``tuner``, a new one when None)."""
        if impl not in CONV_IMPLS:
            raise ValueError(f"conv impl must be one of {CONV_IMPLS}, got {impl!r}.")
        if impl == "auto" and tuner is None:
            tuner = ConvTuner()
        self._impl, self._tuner = impl, tuner
        for layer in self.synthesis.layers():
            layer.impl, layer.tuner = impl, tuner
        return self

    @property
    def conv_impl(self) -> str:
        """The current formulation (see :meth:`set_conv_impl`)."""
        return self._impl

    @property
    def conv_tuner(self) -> ConvTuner | None:
        """The "auto" impl's tuner (None under the other impls)."""
        return self._tuner

    def shared_copy(self) -> StyleGAN3Generator:
        """A new module tree on the same parameter and buffer tensors (no memory copied)."""
        memo = {id(t): t for t in (*self.parameters(), *self.buffers())}
        if self._tuner is not None:
            memo[id(self._tuner)] = self._tuner
        return copy.deepcopy(self, memo)

    # --------------------------------------------------------------------------------------- compact styles
    # Per-channel offsets on each synthesis layer's style (its affine output, ToRGB included): "<module>.style_offset"
    # (s * (1 + offset)) and "<module>.style_delta" (s + delta), as in named_buffers(); never in state_dict(). The
    # input layer's affine (rotation and translation) has none: it is not a modulated convolution.
    def modulated_convs(self, to_rgb: bool = True) -> dict[str, SynthesisLayer]:
        """Every modulated layer by module name ("synthesis.L0_36_512", ...), in order; ``to_rgb=False`` leaves out
        the ToRGB layer."""
        return {f"synthesis.{name}": layer for name, layer in zip(self.synthesis.layer_names, self.synthesis.layers())
                if to_rgb or not layer.is_torgb}

    def style_offsets(self) -> dict[str, torch.Tensor]:
        """The offsets that are set: "<module>.style_offset" / "<module>.style_delta" -> [in] (not copies)."""
        return {f"{name}.{form}": getattr(m, form) for name, m in self.modulated_convs().items()
                for form in OFFSET_FORMS if getattr(m, form) is not None}

    def set_style_offsets(self, offsets: dict[str, torch.Tensor] | None, index: torch.Tensor | None = None
                          ) -> StyleGAN3Generator:
        """Replace every style offset by ``offsets`` (moved to the layer's device and dtype); those not named are
        cleared. Several styles in one batch: offsets [K, in] and ``index`` [N], each sample's style. Checked first:
        unknown keys and wrong shapes raise ``ValueError``."""
        assign_offsets(self.modulated_convs(), offsets, index)
        return self

    @torch.no_grad()
    def fold_style_offsets(self) -> StyleGAN3Generator:
        """Fold the offsets into the affine layers, in place, and clear them: weight rows times ``1 + style_offset``,
        bias ``bias * (1 + style_offset) + style_delta / bias_gain`` (float64), so ``state_dict()`` is a plain NVIDIA
        state dict giving the same images up to float rounding."""
        for m in self.modulated_convs().values():
            fold_offsets(m, m.affine, m.affine.bias_gain)
        return self

    # ---------------------------------------------------------------------------------------------- latents
    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean of ``n`` mapped latents drawn from a seeded CPU generator -> [1, w_dim] (the file's ``w_avg`` is
        :meth:`truncation_center`)."""
        z = torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(seed)).to(self.device, self.dtype)
        return self.mapping(z).mean(0, keepdim=True)

    def truncation_center(self) -> torch.Tensor:
        """The network's ``w_avg`` (tracked during NVIDIA's training) -> [1, w_dim]."""
        return self.mapping.w_avg[None]

    def to_wplus(self, w: torch.Tensor) -> torch.Tensor:
        """w [N, 512] or W+ [N, n_latent, 512] -> W+ [N, n_latent, 512] (checked)."""
        return self.synthesis.to_wplus(w)

    def latent_consumers(self) -> list[list[str]]:
        """For each W+ row the modules that read it: row 0 ``synthesis.input`` (rotation and translation of the
        Fourier features), row ``i >= 1`` synthesis layer ``i - 1``'s affine (the last row: ToRGB)."""
        return [["synthesis.input"]] + [[f"synthesis.{name}"] for name in self.synthesis.layer_names]

    def input_layers(self) -> list[str]:
        """The synthesis input's module name (its affine reads row 0; its weight mixes the Fourier features)."""
        return ["synthesis.input"]

    def conv_layers(self) -> list[str]:
        """Every modulated synthesis layer but ToRGB, in order ("synthesis.L0_36_512", ...)."""
        return list(self.modulated_convs(to_rgb=False))

    def rgb_layers(self) -> list[str]:
        """The ToRGB layer's module name (StyleGAN3 has one, at the end)."""
        return [name for name, m in self.modulated_convs().items() if m.is_torgb]

    def make_noise(self, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """No noise inputs in StyleGAN3: ``[]``."""
        return []

    def noise_buffers(self) -> list[torch.Tensor]:
        """No noise inputs in StyleGAN3: ``[]``."""
        return []

    def forward(self, z: torch.Tensor, truncation: float = 1.0, w_avg: torch.Tensor | None = None,
                noise_mode: str = "const") -> torch.Tensor:
        """z [N, z_dim] -> image [N, 3, size, size]: mapping, truncation ``w_avg + psi (w - w_avg)`` (centre:
        :meth:`truncation_center` unless given), synthesis."""
        w = self.mapping(z)  # [N, w_dim]
        if truncation != 1.0:
            center = w_avg if w_avg is not None else self.truncation_center()
            w = center + truncation * (w - center)
        return self.synthesis(w, noise_mode=noise_mode)


def from_nvidia(module) -> StyleGAN3Generator:
    """A generator read from a network pickle (an object with NVIDIA's ``init_kwargs`` and flat ``state_dict``, such
    as :class:`nada.nets.nvidia_pickle.NvidiaModule`) as a :class:`StyleGAN3Generator` (what ``nada.weights``
    dispatches StyleGAN3 pickles to)."""
    return StyleGAN3Generator.from_nvidia(module.init_kwargs, module.state_dict)


__all__ = ["StyleGAN3Generator", "from_nvidia", "SynthesisNetwork", "CONV_IMPLS", "OFFSET_FORMS"]
