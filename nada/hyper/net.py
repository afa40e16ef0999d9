"""The hypernetwork: a prompt's CLIP text direction in, the ``style_delta`` offsets of a compact style out.

Taken from HyperDomainNet (MACderRu/HyperDomainNet, NeurIPS 2022), in our own code: a shared MLP trunk on the CLIP
text input followed by one linear head per trained convolution, giving that layer's per-input-channel offset, with
the heads' weights scaled small (and biases zero) at the start so a fresh hypernetwork is nearly the source
generator; coarse rows get no offsets (its ``no_coarse``). Ours differs on purpose: the input is the normalised
target-minus-source text direction (so "Photo" -> X and "Sketch" -> X differ), the output is StyleDomain's
additive ``style_delta`` (our compact styles), there is no BatchNorm (per-rank batch statistics would break the
equality of one and several workers, and a single prompt at inference has no batch), and the heads are the row
blocks of one linear layer (the same function as separate heads, in one matrix product).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from ..clip_loss import check_prompts, template_features, text_embedding
from ..files import atomic_write
from ..nets.stylegan2 import Generator
from ..probe import unprobed_modules
from ..styles import Style, generator_fingerprint
from .config import HyperConfig

FORMAT_KEY = "nada_hypernet_format"  # safetensors metadata key that marks a nada hypernetwork file
FORMAT_VERSION = 1
HEAD_INIT = 0.01  # the heads' initial weights: a Xavier draw times this (HyperDomainNet's near-zero start)
DELTA_FORM = "style_delta"


class HypernetMismatchError(ValueError):
    """A hypernetwork file does not belong to the generator or the CLIP models it is used with (or is not one)."""


def trained_layers(generator: Generator, config: HyperConfig) -> dict[str, int]:
    """The modulated convolutions a compact style trains ("convs.5.conv" -> input channels): every synthesis
    convolution except the readers of ``config``'s frozen rows (as the compact recipe), no ToRGB layer."""
    frozen = config.frozen(generator.n_latent)
    modules = set(unprobed_modules(generator, frozen, False, False))
    layers = {name: m.in_ch for name, m in generator.modulated_convs().items() if name.removesuffix(".conv") in modules}
    if not layers:
        raise ValueError(f"Every layer is frozen (frozen_rows={config.frozen_rows!r}): the hypernetwork would have "
                         "nothing to predict.")
    return layers


@torch.no_grad()
def text_direction(clip_models: Sequence[tuple[nn.Module, float]], source_text: str, target_text: str,
                   template: str = "{}") -> torch.Tensor:
    """The hypernetwork's input, float32 on the CPU, [D] (D = the CLIP models' embedding sizes summed): per model the
    unit direction ``n(n(E(template(target))) - n(E(template(source))))`` times ``sqrt(w_m / sum w)``, concatenated,
    so the whole is unit length and each model counts by its weight. ``ValueError`` for empty, same or over-long
    prompts."""
    source_text, target_text = check_prompts(source_text, target_text)
    pairs = list(clip_models)
    if not pairs:
        raise ValueError("No CLIP model given: pass at least one (model, weight) pair.")
    weights = [float(w) for _, w in pairs]
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"CLIP model weights must be finite numbers >= 0, not all 0; got {weights}.")
    parts = []
    for (model, _), w in zip(pairs, weights):
        src, tgt = text_embedding(model, [template.format(source_text), template.format(target_text)])  # [D_m] each
        parts.append(F.normalize(tgt - src, dim=0).cpu() * math.sqrt(w / sum(weights)))  # one text pass per model
    return torch.cat(parts).float()  # [D]


class Hypernet(nn.Module):
    """CLIP text direction(s) [P, D] -> ``style_delta`` offsets of the layers a compact style trains, for one source
    generator; :attr:`meta` records that generator, the CLIP models, the template and the config."""

    def __init__(self, layers: dict[str, int], in_dim: int, config: HyperConfig, meta: dict | None = None):
        """``layers``: modulated convolution name -> input channels (:func:`trained_layers`); ``in_dim``: the text
        direction's size; ``meta``: what :meth:`for_generator` records (generator fingerprint and config, CLIP
        names and dims, template, steps)."""
        super().__init__()
        self.layers = dict(layers)
        self.in_dim, self.config = int(in_dim), config
        self.meta = dict(meta or {})
        self.meta.setdefault("steps", 0)
        gen = torch.Generator().manual_seed(config.seed)
        widths = [self.in_dim] + [config.hidden] * config.depth
        trunk: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            lin = nn.Linear(a, b)
            _xavier(lin, 1.0, gen)
            trunk += [lin, nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*trunk)
        self.head = nn.Linear(config.hidden, sum(self.layers.values()))  # row block per layer = that layer's head
        _xavier(self.head, HEAD_INIT, gen)

    @classmethod
    def for_generator(cls, generator: Generator, clip_models: Sequence[tuple[nn.Module, float]], config: HyperConfig,
                      source: str | None = None, fingerprint: str | None = None) -> Hypernet:
        """A fresh hypernetwork for ``generator`` with ``clip_models`` (named by ``config.clip_models``, in order);
        ``source``: the generator's registry name, recorded; ``fingerprint`` when already known."""
        config.validate()
        pairs = list(clip_models)
        if len(pairs) != len(config.clip_models):
            raise ValueError(f"{len(pairs)} CLIP models given for the {len(config.clip_models)} named in the config "
                             f"({', '.join(config.clip_models)}).")
        dims = [int(template_features(m, "photo", ("{}",))[0].numel()) for m, _ in pairs]
        meta = {"generator_fingerprint": fingerprint or generator_fingerprint(generator),
                "generator_config": json.loads(json.dumps(generator.config())), "source": source,
                "clip_models": list(config.clip_models),
                "clip_dims": dims, "clip_weights": [float(w) for _, w in pairs], "template": config.template}
        return cls(trained_layers(generator, config), sum(dims), config, meta).to(generator.device)

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return self.head.weight.device

    def forward(self, direction: torch.Tensor) -> dict[str, torch.Tensor]:
        """``direction`` [P, D] (or [D]) -> {"<module>.style_delta": [P, in]} (or [in] each)."""
        single = direction.dim() == 1
        x = direction.reshape(-1, self.in_dim).to(self.device, torch.float32)  # [P, D]
        out = self.head(self.trunk(x))  # [P, sum(in)]
        parts = torch.split(out, list(self.layers.values()), dim=1)
        return {f"{name}.{DELTA_FORM}": p[0] if single else p for name, p in zip(self.layers, parts)}

    @torch.no_grad()
    def style(self, clip_models: Sequence[tuple[nn.Module, float]], source_text: str, target_text: str) -> Style:
        """A compact style (kind "style_delta") for the prompt pair, in one forward pass; ``nada.styles.apply_style``
        applies it to this hypernetwork's generator and ``save_style`` saves it."""
        self.check_clip(clip_models)
        source_text, target_text = check_prompts(source_text, target_text)
        direction = text_direction(clip_models, source_text, target_text, self.meta.get("template", "{}"))
        if direction.numel() != self.in_dim:
            names = ", ".join(self.meta.get("clip_models") or [])
            raise HypernetMismatchError(f"The CLIP models given embed text in {direction.numel()} numbers; this "
                                        f"hypernetwork reads {self.in_dim} (from {names}). Load those models.")
        offsets = {k: v.detach().to("cpu", torch.float32).clone() for k, v in self(direction).items()}  # [in] each
        meta = {"source": self.meta.get("source"), "source_text": source_text, "target_text": target_text,
                "mode": "text", "config": {"params": DELTA_FORM, "hypernet": self.config.to_dict()},
                "layers": [name.removesuffix(".conv") for name in self.layers], "prompts": [source_text, target_text],
                "hypernet": True, "steps": 0, "hypernet_steps": int(self.meta.get("steps", 0)), "kind": DELTA_FORM,
                "source_fingerprint": self.meta.get("generator_fingerprint"),
                "generator_config": self.meta.get("generator_config"), "nada_version": __version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        return Style(offsets, meta)

    def check_clip(self, clip_models: Sequence[tuple[nn.Module, float]]) -> None:
        """``HypernetMismatchError`` unless ``clip_models`` has as many models as were recorded (their embedding sizes
        are checked when the direction is built)."""
        names = self.meta.get("clip_models") or []
        if len(list(clip_models)) != len(names):
            raise HypernetMismatchError(f"This hypernetwork was trained with the CLIP models {', '.join(names)}; "
                                        f"{len(list(clip_models))} models were given. Load those models.")

    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights as safetensors (atomically) with the metadata as JSON in the header."""
        from safetensors.torch import save_file  # third-party; only files need it

        path = Path(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"A hypernetwork file name must end in .safetensors, got '{path.name}'.")
        tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in self.state_dict().items()}
        header = {"meta": json.dumps(self.meta), "config": json.dumps(self.config.to_dict()),
                  "layers": json.dumps(self.layers), "in_dim": json.dumps(self.in_dim), FORMAT_KEY: str(FORMAT_VERSION)}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, generator: Generator | None = None,
             clip_names: Sequence[str] | None = None, *, fingerprint: str | None = None) -> Hypernet:
        """Read a hypernetwork file (safetensors only: nothing executable is loaded); ``HypernetMismatchError`` when
        it is not one, or was trained for another generator than ``generator`` or other CLIP models than
        ``clip_names`` (each checked when given; ``fingerprint``: the generator's, when already known)."""
        path = Path(path).expanduser()
        tensors, header = _read(path)
        try:
            config = HyperConfig.from_dict(json.loads(header["config"]))
            layers = {str(k): int(v) for k, v in json.loads(header["layers"]).items()}
            net = cls(layers, int(json.loads(header["in_dim"])), config, json.loads(header["meta"]))
            net.load_state_dict(tensors, strict=True)
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise HypernetMismatchError(f"'{path.name}' is not a readable nada hypernetwork ({type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0][:160] if str(exc) else ''}).") from None
        if clip_names is not None and list(clip_names) != list(net.meta.get("clip_models") or []):
            raise HypernetMismatchError(
                f"'{path.name}' was trained with the CLIP models {', '.join(net.meta.get('clip_models') or [])}, not "
                f"{', '.join(clip_names)}: a hypernetwork reads the text embeddings of the models it was trained with.")
        if generator is not None:
            mine = fingerprint or generator_fingerprint(generator)
            if mine != net.meta.get("generator_fingerprint"):  # a hash of every tensor, its name and shape
                theirs = net.meta.get("source") or "unnamed"
                raise HypernetMismatchError(
                    f"'{path.name}' was trained for another generator ('{theirs}', fingerprint "
                    f"{str(net.meta.get('generator_fingerprint'))[:12]}) than the one given (fingerprint {mine[:12]}); "
                    "use it with its own source generator.")
            net = net.to(generator.device)
        return net


def _xavier(lin: nn.Linear, scale: float, gen: torch.Generator) -> None:
    """Xavier-uniform weights times ``scale`` from ``gen``, zero bias (reproducible from the config's seed)."""
    bound = scale * math.sqrt(6.0 / (lin.in_features + lin.out_features))
    with torch.no_grad():
        lin.weight.copy_(torch.rand(lin.weight.shape, generator=gen) * 2 * bound - bound)
        lin.bias.zero_()


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, header) of a nada hypernetwork file; ``HypernetMismatchError`` naming the file otherwise."""
    from safetensors import safe_open  # third-party, as save

    if not path.is_file():
        raise HypernetMismatchError(f"Hypernetwork file '{path.name}' does not exist.")
    if path.suffix != ".safetensors":
        raise HypernetMismatchError(f"'{path.name}' is not a nada hypernetwork file (.safetensors).")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers and truncated files
        raise HypernetMismatchError(f"'{path.name}' could not be read as a safetensors file "
                                    f"({type(exc).__name__}); it may be corrupt or truncated.") from None
    version = header.get(FORMAT_KEY)
    if version is None:
        raise HypernetMismatchError(f"'{path.name}' is a safetensors file but not a nada hypernetwork (no "
                                    f"'{FORMAT_KEY}' metadata); a style file goes to --style.")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise HypernetMismatchError(f"'{path.name}' is a nada hypernetwork of format {version!r}; this nada "
                                    f"({__version__}) reads format {FORMAT_VERSION}. Update nada.")
    return tensors, header
