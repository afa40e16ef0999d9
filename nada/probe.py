"""Which layers train: adaptive layer selection (which W+ rows, hence which synthesis layers, move most towards the
target text), the fixed choices without it, and making exactly those layers (or their style offsets) trainable.

A copy of a batch of W+ codes is optimised with the global CLIP loss for a few SGD steps; rows are ranked by mean
absolute change and the top ``k`` rows name the layers to train this step. Only the W+ copy receives gradients:
the generator's own parameters are switched to ``requires_grad=False`` for the probe (the reference
back-propagates into every weight although only the W+ gradient is used).

Index-to-module map: row ``i`` is read by ``conv1`` (i=0) or ``convs[i-1]`` (see
``Generator.latent_consumers``). The reference code maps row 1 to ``to_rgb1`` and row ``i>=2`` to ``convs[i-2]``, an
off-by-one; we select the layer that actually consumes the row, as the paper describes. The last row of a
generator feeds only the final ToRGB, so it is a candidate only when ToRGB layers are trainable.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .clip_loss import ClipGuide
from .nets.stylegan2 import Generator


@dataclass
class ProbeResult:
    """Outcome of one probe: chosen rows, the modules to train, and every row's score (for charts)."""

    rows: list[int]  # chosen W+ rows, best first
    layers: list[str]  # generator module names to train
    scores: list[float]  # [n_latent] mean |delta W+| per row


@contextmanager
def frozen_parameters(module: torch.nn.Module):
    """Temporarily set ``requires_grad=False`` on every parameter, restoring the flags afterwards."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def row_modules(generator: Generator, row: int, train_to_rgb: bool = False) -> list[str]:
    """Trainable modules reading W+ row ``row``: its convolution, plus its ToRGB when ``train_to_rgb``."""
    rgb = set(generator.rgb_layers())
    return [m for m in generator.latent_consumers()[row] if train_to_rgb or m not in rgb]


def probe_layers(generator: Generator, w: torch.Tensor, guide: ClipGuide, k: int, iters: int = 1,
                 lr: float = 0.01, micro_batch: int | None = None, train_to_rgb: bool = False,
                 noise: list[torch.Tensor] | None = None, rows: list[int] | None = None) -> ProbeResult:
    """Rank W+ rows by how far ``iters`` SGD steps on the global loss move them, starting from ``w`` [B, 512] or
    [B, n_latent, 512]; return the top ``k`` candidate rows (of ``rows`` when given: frozen rows are never chosen).
    ``micro_batch`` bounds memory (gradients accumulate)."""
    w_plus = generator.to_wplus(w.detach()).clone().requires_grad_(True)  # [B, n_latent, 512]
    w0 = w_plus.detach().clone()
    opt = torch.optim.SGD([w_plus], lr=lr)
    batch = w_plus.shape[0]
    step = micro_batch or batch
    with frozen_parameters(generator):
        for _ in range(iters):
            opt.zero_grad(set_to_none=True)
            for s in range(0, batch, step):
                chunk_noise = None if noise is None else [n[s:s + step] if n.shape[0] > 1 else n for n in noise]
                img = generator.synthesis(w_plus[s:s + step], noise_mode="random", noise=chunk_noise)
                loss = guide.global_(guide.image_features(img)) * (img.shape[0] / batch)
                loss.backward()
            opt.step()
    scores = (w_plus.detach() - w0).abs().mean(dim=(0, 2)).tolist()  # n_latent floats: one host sync
    candidates = [i for i in (range(generator.n_latent) if rows is None else rows)
                  if row_modules(generator, i, train_to_rgb)]
    k = max(0, min(k, len(candidates)))
    ranked = sorted(candidates, key=lambda i: -scores[i])[:k]
    layers = [m for i in ranked for m in row_modules(generator, i, train_to_rgb)]
    return ProbeResult(rows=ranked, layers=layers, scores=scores)


# ------------------------------------------------------------------------------ the layers a run trains
OFFSET_BUFFERS = {"style_delta": "style_delta", "modulation": "style_offset"}  # AdaptConfig.params -> buffer


def conv_modules(generator: Generator) -> list[str]:
    """Names of every synthesis convolution layer (what trains without probing)."""
    return generator.conv_layers()


def init_style_offsets(generator: Generator, params: str = "modulation", train_to_rgb: bool = False
                       ) -> list[torch.Tensor]:
    """Give every synthesis convolution (and ToRGB layer with ``train_to_rgb``) an offset of the form ``params``
    ("style_delta" or "modulation"), zero unless it has one, as its own leaf tensor; offsets of the other form are
    kept as they are. Returns the offsets of that form (what the optimiser trains)."""
    buffer = OFFSET_BUFFERS[params]
    offsets = generator.style_offsets()
    for name, m in generator.modulated_convs(to_rgb=train_to_rgb).items():
        key = f"{name}.{buffer}"
        offsets[key] = offsets[key].detach().clone() if key in offsets else m.weight.new_zeros(m.in_ch)  # [in]
    generator.set_style_offsets(offsets)
    return [v for k, v in generator.style_offsets().items() if k.endswith(f".{buffer}")]


def set_trainable_offsets(generator: Generator, modules: list[str], params: str = "modulation") -> None:
    """Make exactly the ``params``-form style offsets of ``modules`` (layer names such as "convs.3") trainable; no
    weight and no offset of another form trains."""
    generator.requires_grad_(False)
    chosen, buffer = set(modules), OFFSET_BUFFERS.get(params)
    for name, m in generator.modulated_convs().items():
        for form in OFFSET_BUFFERS.values():
            value = getattr(m, form)
            if value is not None:
                value.requires_grad_(form == buffer and name.removesuffix(".conv") in chosen)


def rgb_modules(generator: Generator) -> list[str]:
    """Names of every ToRGB layer."""
    return generator.rgb_layers()


def every_row_modules(generator: Generator, rows: list[int], train_to_rgb: bool, weights: bool) -> list[str]:
    """The modules that train when every one of ``rows`` is chosen: the layers that read them (ToRGB layers with
    ``train_to_rgb``), and in a full-weight run ``to_rgb1`` with row 1. The official code's index-to-layer list
    (ZSSGAN/model/ZSSGAN.py) maps row 1 to ``to_rgb1`` and row i >= 2 to ``convs[i-2]``: with every row chosen (its
    README command, --auto_layer_k 18 at 1024) that is conv1, to_rgb1 and every conv, which this reproduces. When the
    probe chooses rows, row 1 means ``convs.0``, the layer that reads it (nada.probe), and ``to_rgb1`` stays frozen."""
    layers = [m for i in rows for m in row_modules(generator, i, train_to_rgb)]
    if weights and 1 in rows and "to_rgb1" in generator.rgb_layers() and "to_rgb1" not in layers:  # StyleGAN2 only
        layers.insert(layers.index("convs.0") + 1 if "convs.0" in layers else len(layers), "to_rgb1")
    return layers


def unprobed_modules(generator: Generator, frozen: list[int], train_to_rgb: bool, weights: bool) -> list[str]:
    """The modules that train without probing (the official code's default phase): the constant input (full-weight
    runs) and every convolution, every ToRGB layer too with ``train_to_rgb``; less the readers of ``frozen`` rows
    (the input counts as a reader of row 0: it feeds only the 4 px layer)."""
    held = {m for i in frozen for m in generator.latent_consumers()[i]}
    held |= set(generator.input_layers()) if 0 in frozen else set()
    names = (generator.input_layers() if weights else []) + conv_modules(generator) + \
        (rgb_modules(generator) if train_to_rgb else [])
    return [m for m in names if m not in held]


def set_trainable(generator: Generator, modules: list[str]) -> None:
    """Make exactly the parameters of ``modules`` trainable."""
    generator.requires_grad_(False)
    for name in modules:
        generator.get_submodule(name).requires_grad_(True)
