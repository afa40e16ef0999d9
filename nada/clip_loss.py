"""CLIP guidance for StyleGAN-NADA: image preprocessing, text directions and the directional/global losses.

The loss code touches only ``encode_image``, ``encode_text``, ``visual.input_resolution`` and ``clip.tokenize``,
so any object with that interface works (load real models with :func:`nada.clip_models.load_clip`).

Formulas (``n(v) = v / ||v||``; those of StyleGAN-NADA's ``CLIPLoss``, ``ZSSGAN/criteria/clip_loss.py``):
- image features ``n(E_img(pre(I)))``; ``pre`` maps generator output in [-1, 1] to CLIP's input.
- text direction ``dt = n(mean_k[n(E_txt(template_k(target))) - n(E_txt(template_k(source)))])`` over the
  79 ImageNet templates, computed once per (model, source, target) and held by a :class:`TextDirection`.
- directional loss ``mean_b(1 - cos(n(e_train - e_frozen), dt))``; global loss ``mean(1 - cos(e_img, e_txt))``.
- in-domain angle consistency (HyperDomainNet, arXiv 2210.08884; not in StyleGAN-NADA)
  ``mean_{i<j}(cos(f_i, f_j) - cos(t_i, t_j))^2`` over a batch's frozen (``f``) and trainable (``t``) features: it keeps
  the samples as far apart as they were, against the mode collapse of the directional loss (see :func:`indomain_loss`).

Departures from the paper's code, on purpose: the global loss is ``1 - cos`` (the reference scales the cosine by
``exp(logit_scale) / 100``, which is 1 for the released models only); preprocessing antialiases by default (what
torchvision >= 0.17 does with the reference code; ``antialias=False`` gives the paper-era result); identical
train/frozen features give a well-defined loss instead of re-encoding a perturbed image (see
:func:`directional_loss`); text directions are never cached across prompts.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .clip_models import import_clip

# The ImageNet prompt-ensemble sentences averaged into each text feature: OpenAI CLIP's 80 templates minus
# "a photo of many {}." (the 79 StyleGAN-NADA uses); tests/test_clip_loss.py checks each against the reference tokens.
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CONTEXT_LENGTH = 77  # tokens CLIP reads, start and end tokens included
_ZERO_NORM = 1e-12  # feature differences below this norm count as "no change" (see directional_loss)


# ----------------------------------------------------------------------------------------------- images
def clip_norm(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP's per-channel (mean, std) as ``[1, 3, 1, 1]`` tensors on ``like``'s device and dtype (a host-to-device
    copy: make them once per device, not per call)."""
    return like.new_tensor(CLIP_MEAN).view(1, 3, 1, 1), like.new_tensor(CLIP_STD).view(1, 3, 1, 1)


def preprocess(images: torch.Tensor, resolution: int, antialias: bool = True,
               norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Differentiable CLIP preprocessing of generator output: [-1, 1] -> [0, 1], bicubic resize of the shorter
    side to ``resolution`` (aspect kept), centre crop, CLIP mean/std (``norm``, default :func:`clip_norm`).
    ``[N, 3, H, W] -> [N, 3, R, R]``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"Expected images of shape [N, 3, H, W], got {list(images.shape)}.")
    x = (images + 1) / 2  # [N, 3, H, W] in [0, 1]
    h, w = x.shape[-2:]
    if min(h, w) != resolution:  # torchvision Resize(int): shorter side -> R, longer side truncated to int
        size = (resolution, int(resolution * w / h)) if h <= w else (int(resolution * h / w), resolution)
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=antialias)
    h, w = x.shape[-2:]
    top, left = int(round((h - resolution) / 2.0)), int(round((w - resolution) / 2.0))
    x = x[..., top:top + resolution, left:left + resolution]  # [N, 3, R, R]
    mean, std = norm if norm is not None else clip_norm(x)
    return (x - mean) / std


def _model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where a CLIP model's weights live and its compute dtype: ``model.dtype`` where it has one (``clip``'s
    half-precision models keep LayerNorms and embeddings in float32), else the first floating parameter's."""
    device, dtype = torch.device("cpu"), torch.float32  # parameter-less stand-ins
    for p in model.parameters():
        if p.is_floating_point():
            device, dtype = p.device, p.dtype
            break
    declared = getattr(model, "dtype", None)
    return device, declared if isinstance(declared, torch.dtype) else dtype


def encode_images(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """L2-normalised float32 image features of already preprocessed pixels ``[N, 3, R, R] -> [N, D]``;
    the input is cast to the model's dtype and device, gradients flow to ``pixels``."""
    device, dtype = _model_device_dtype(model)
    feats = model.encode_image(pixels.to(device=device, dtype=dtype)).float()  # [N, D]
    return F.normalize(feats, dim=-1)


# ------------------------------------------------------------------------------------------------- text
def clean_prompt(text: str, what: str = "prompt") -> str:
    """The prompt with outer whitespace removed; ``ValueError`` when it is not a string or is empty."""
    if not isinstance(text, str):
        raise ValueError(f"The {what} must be text, got {type(text).__name__}.")
    text = text.strip()
    if not text:
        raise ValueError(f"The {what} is empty: type a few words describing the images, e.g. 'Photo'.")
    return text


def tokenize(texts: Sequence[str], what: str = "prompt") -> torch.Tensor:
    """``clip.tokenize`` without truncation: ``[len(texts), 77]``; ``ValueError`` when a text is too long."""
    clip = import_clip()

    texts = list(texts)
    try:
        return clip.tokenize(texts, context_length=CONTEXT_LENGTH, truncate=False)
    except RuntimeError as exc:
        counts = [len(clip.clip._tokenizer.encode(t)) for t in texts]
        worst = max(range(len(texts)), key=counts.__getitem__)
        shown = texts[worst][:80] + ("..." if len(texts[worst]) > 80 else "")
        raise ValueError(
            f"The {what} is too long for CLIP, which reads at most {CONTEXT_LENGTH - 2} word pieces: "
            f"{shown!r} has {counts[worst]}{' (prompt template included)' if len(texts) > 1 else ''}. "
            "Shorten it to a few words.") from exc


def _same_prompt(a: str, b: str) -> bool:
    """Prompts equal up to case and whitespace."""
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def check_prompts(source: str, target: str) -> tuple[str, str]:
    """Both prompts cleaned, or a ``ValueError`` a person understands (empty, same, too long even untemplated)."""
    source, target = clean_prompt(source, "source prompt"), clean_prompt(target, "target prompt")
    if _same_prompt(source, target):
        raise ValueError(f"The source and target prompts are the same ({source!r}): the target should describe "
                         "the new domain, e.g. 'Photo' -> 'Sketch'.")
    tokenize([source], "source prompt")
    tokenize([target], "target prompt")
    return source, target


@torch.no_grad()
def template_features(model: torch.nn.Module, text: str,
                      templates: Sequence[str] = IMAGENET_TEMPLATES, what: str = "prompt") -> torch.Tensor:
    """Per-template L2-normalised float32 text features of ``text``: ``[len(templates), D]``, detached."""
    text = clean_prompt(text, what)
    tokens = tokenize([t.format(text) for t in templates], what)  # [T, 77]
    device, _ = _model_device_dtype(model)
    feats = model.encode_text(tokens.to(device)).float()  # [T, D]
    return F.normalize(feats, dim=-1)


@torch.no_grad()
def text_embedding(model: torch.nn.Module, text: str | Sequence[str]) -> torch.Tensor:
    """L2-normalised float32 features of plain text(s), no templates: ``[J, D]`` (J = 1 for one string)."""
    texts = [text] if isinstance(text, str) else list(text)
    if not texts:
        raise ValueError("No text given for the CLIP text embedding.")
    texts = [clean_prompt(t) for t in texts]
    device, _ = _model_device_dtype(model)
    feats = model.encode_text(tokenize(texts).to(device)).float()  # [J, D]
    return F.normalize(feats, dim=-1)


@dataclass(frozen=True)
class TextDirection:
    """The CLIP-space direction from ``source`` to ``target`` text for one model (computed once, immutable).

    ``direction`` is ``[1, D]``, unit length, on the model's device. Build it with :meth:`compute`."""

    source: str
    target: str
    direction: torch.Tensor = field(repr=False)  # [1, D]

    @classmethod
    def compute(cls, model: torch.nn.Module, source: str, target: str,
                templates: Sequence[str] = IMAGENET_TEMPLATES) -> TextDirection:
        """``n(mean_k[n(E(t_k(target))) - n(E(t_k(source)))])`` over the templates; ``ValueError`` for empty,
        over-long or identical prompts."""
        source, target = check_prompts(source, target)
        src = template_features(model, source, templates, "source prompt")  # [T, D]
        tgt = template_features(model, target, templates, "target prompt")  # [T, D]
        direction = F.normalize((tgt - src).mean(dim=0, keepdim=True), dim=-1)  # [1, D]
        return cls(source, target, direction)

    def matches(self, source: str, target: str) -> bool:
        """True if this direction was computed for these prompts (up to case and whitespace)."""
        return _same_prompt(self.source, source) and _same_prompt(self.target, target)


# ----------------------------------------------------------------------------------------------- losses
def directional_loss(img_feat_train: torch.Tensor, img_feat_frozen: torch.Tensor,
                     direction: torch.Tensor) -> torch.Tensor:
    """``mean_b(1 - cos(n(e_train - e_frozen), dt))``, a scalar; features ``[B, D]``, direction ``[1, D]``.

    Inputs are normalised here (idempotent for :meth:`ClipGuide.image_features` output). Where a row's feature
    change is zero (norm < 1e-12, e.g. the first step, when both generators are still equal and share noise),
    its direction is undefined: the reference re-encodes ``I_train + 1e-6``, which gives numerical noise. Such
    rows use ``1 - <dI, dt>`` instead: value 1 (the loss of a change orthogonal to ``dt``) and gradient
    ``-dt``, i.e. a push of the trainable features along the text direction, finite and well scaled.
    """
    if img_feat_train.shape != img_feat_frozen.shape or img_feat_train.ndim != 2:
        raise ValueError(f"Feature shapes differ or are not [B, D]: {list(img_feat_train.shape)} "
                         f"vs {list(img_feat_frozen.shape)}.")
    delta = F.normalize(img_feat_train.float(), dim=-1) - F.normalize(img_feat_frozen.float(), dim=-1)  # [B, D]
    dt = direction.to(delta).reshape(1, -1)  # [1, D]
    norm = delta.norm(dim=-1, keepdim=True)  # [B, 1]
    moved = norm > _ZERO_NORM
    unit = delta / torch.where(moved, norm, torch.ones_like(norm))  # [B, D]; unchanged rows stay ~0
    cos = (unit * dt).sum(dim=-1)  # [B]
    return (1 - cos).mean()


def indomain_loss(img_feat_train: torch.Tensor, img_feat_frozen: torch.Tensor) -> torch.Tensor:
    """In-domain angle consistency (HyperDomainNet's "indomain" loss): ``mean_{i<j}(cos(f_i, f_j) - cos(t_i, t_j))^2``
    over the batch's pairs, ``t`` the trainable copy's and ``f`` the frozen copy's image features ``[B, D]``, B >= 2.
    A scalar, 0 when the trainable batch keeps every pairwise angle of the frozen one; gradients flow to ``t`` only.

    Against HyperDomainNet's ``core/loss.py``: the same value (its strict lower-triangle mask picks the same unordered
    pairs, and it divides their sum by ``B (B - 1) / 2``); features are normalised here (idempotent for
    :meth:`ClipGuide.image_features`); with several CLIP models each term takes the model's ensemble weight (the
    reference gives every encoder the loss's one coefficient: the same with the paper's weights of 1). The weight is
    the published one: HyperDomainNet's single-domain configs use 1.5 (``configs/td_single_car.yaml``) and 0.5
    (``td_single_horse.yaml``); StyleDomain's NADA configs 0.25 for faces (``td_nada_ffhq.yaml``,
    ``td_nada_ffhq_sdelta.yaml``) and 1.5 for cars (``td_nada_cars.yaml``): the "compact" and "diverse" recipes."""
    if img_feat_train.shape != img_feat_frozen.shape or img_feat_train.ndim != 2:
        raise ValueError(f"Feature shapes differ or are not [B, D]: {list(img_feat_train.shape)} "
                         f"vs {list(img_feat_frozen.shape)}.")
    n = img_feat_train.shape[0]
    if n < 2:
        raise ValueError(f"The in-domain loss compares pairs of images: it needs a batch of at least 2, got {n}.")
    t = F.normalize(img_feat_train.float(), dim=-1)  # [B, D]
    f = F.normalize(img_feat_frozen.float(), dim=-1).detach()  # [B, D]
    i, j = torch.triu_indices(n, n, offset=1, device=t.device)  # the B (B - 1) / 2 pairs i < j
    return ((f @ f.T)[i, j] - (t @ t.T)[i, j]).square().mean()


def global_loss(img_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
    """``mean_{b,j}(1 - cos(e_img_b, e_txt_j))``, a scalar; ``img_feat [B, D]``, ``text_feat [J, D]`` or ``[D]``."""
    img = F.normalize(img_feat.float(), dim=-1)  # [B, D]
    txt = F.normalize(text_feat.to(img).reshape(-1, img.shape[-1]), dim=-1)  # [J, D]
    return (1 - img @ txt.T).mean()


# --------------------------------------------------------------------------------------------- ensemble
class ClipGuide:
    """A weighted CLIP ensemble for one (source, target) prompt pair, with everything textual computed once.

    ``models`` is ``[(model, weight), ...]`` (the paper: ViT-B/32 and ViT-B/16, 1.0 each). Models of weight 0
    are dropped at construction and never evaluated (the reference still runs them; their loss term is 0 anyway).
    Images are preprocessed once per distinct input resolution. ``autocast_bf16`` runs the image encoders under
    bf16 autocast on CUDA or the CPU (default off: float32). Text directions and the target's plain-text embedding
    are computed once, here. A new prompt pair needs a new guide: nothing is cached across prompts; embeddings of
    other texts passed to :meth:`global_` are kept per text for this guide's lifetime only.
    """

    def __init__(self, models: Sequence[tuple[torch.nn.Module, float]], source_text: str, target_text: str, *,
                 antialias: bool = True, templates: Sequence[str] = IMAGENET_TEMPLATES,
                 autocast_bf16: bool = False, target_images: torch.Tensor | Sequence[torch.Tensor] | None = None,
                 source_images: torch.Tensor | None = None) -> None:
        """``target_images`` (with ``source_images``, samples of the frozen generator ``[N, 3, H, W]`` in [-1, 1]):
        image-guided mode. Each picture (``[1, 3, H, W]`` in [-1, 1], any size) is encoded, and the direction is
        ``n(mean_i n(E(target_i)) - mean_j n(E(source_j)))`` per model, as in the paper's image-guided variant; the
        global loss then aims at the pictures' mean feature. With a target text as well, the text and image
        directions are averaged (each unit length, so neither dominates) and renormalised. Without one, pass an empty
        ``target_text``."""
        pairs = list(models)
        if not pairs:
            raise ValueError("No CLIP model given: pass at least one (model, weight) pair.")
        for _, w in pairs:
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                raise ValueError(f"CLIP model weights must be finite numbers >= 0, got {w!r}.")
        self.models = [(m, float(w)) for m, w in pairs if w > 0]
        if not self.models:
            raise ValueError("All CLIP model weights are 0: at least one model must have a positive weight.")
        self.n_skipped = len(pairs) - len(self.models)
        self.antialias = antialias
        self.autocast_bf16 = autocast_bf16
        self._norm: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # CLIP mean/std per device
        self.source_text = clean_prompt(source_text, "source prompt")
        has_images = target_images is not None and len(target_images) > 0
        if has_images and source_images is None:
            raise ValueError("Image-guided adaptation needs samples of the source generator (source_images).")
        self.target_text = clean_prompt(target_text, "target prompt") if not has_images or \
            (isinstance(target_text, str) and target_text.strip()) else ""
        text_dirs = [TextDirection.compute(m, self.source_text, self.target_text, templates)
                     for m, _ in self.models] if self.target_text else None
        # Plain-text embeddings for the global loss, per text; the bare target is ready from the start.
        self._text_feats: dict[str, list[torch.Tensor]] = {}
        if self.target_text:
            self._text_feats[self.target_text] = [text_embedding(m, self.target_text) for m, _ in self.models]
        self.target_image_feats: list[torch.Tensor] | None = None  # [1, D] per model: the pictures' mean feature
        if has_images:
            self.target_image_feats, image_dirs = self._image_directions(target_images, source_images)
            if text_dirs is None:
                self.directions = image_dirs
            else:  # text and pictures together: the mean of the two unit directions, renormalised
                self.directions = [TextDirection(t.source, t.target, F.normalize(t.direction + i.direction, dim=-1))
                                   for t, i in zip(text_dirs, image_dirs, strict=True)]
        else:
            self.directions = text_dirs

    @torch.no_grad()
    def _image_directions(self, targets: torch.Tensor | Sequence[torch.Tensor], sources: torch.Tensor
                          ) -> tuple[list[torch.Tensor], list[TextDirection]]:
        """(the pictures' mean normalised feature [1, D], the image direction) per kept model."""
        pictures = [targets[i:i + 1] for i in range(len(targets))] if isinstance(targets, torch.Tensor) \
            else list(targets)
        per_picture = [self.image_features(p.float()) for p in pictures]  # per picture: [1, D] per model
        source_feats = self.image_features(sources.float())  # [N, D] per model
        means, dirs = [], []
        for m in range(len(self.models)):
            target = torch.cat([f[m] for f in per_picture]).mean(dim=0, keepdim=True)  # [1, D]
            source = source_feats[m].mean(dim=0, keepdim=True)  # [1, D]
            means.append(F.normalize(target, dim=-1))
            dirs.append(TextDirection(self.source_text, self.target_text or f"{len(pictures)} pictures",
                                      F.normalize(target - source, dim=-1)))
        return means, dirs

    def image_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Normalised float32 features ``[N, D_m]`` per kept model of generator output ``[N, 3, H, W]`` in [-1, 1]."""
        pixels: dict[int, torch.Tensor] = {}
        feats = []
        for model, _ in self.models:
            res = int(model.visual.input_resolution)
            if res not in pixels:
                if images.device not in self._norm:
                    self._norm[images.device] = clip_norm(images.float())
                pixels[res] = preprocess(images.float(), res, self.antialias,  # [N, 3, R, R]; float32 resize
                                         self._norm[images.device])
            device, _ = _model_device_dtype(model)
            use_amp = self.autocast_bf16 and device.type in ("cuda", "cpu")
            ctx = torch.autocast(device.type, dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()
            with ctx:
                feats.append(encode_images(model, pixels[res]))
        return feats

    def directional(self, feats_train: Sequence[torch.Tensor], feats_frozen: Sequence[torch.Tensor]) -> torch.Tensor:
        """``sum_m w_m * directional_loss`` over the kept models (feature lists from :meth:`image_features`)."""
        self._check_len(feats_train, feats_frozen)
        return sum(w * directional_loss(ft, ff, d.direction)
                   for (_, w), d, ft, ff in zip(self.models, self.directions, feats_train, feats_frozen, strict=True))

    def indomain(self, feats_train: Sequence[torch.Tensor], feats_frozen: Sequence[torch.Tensor]) -> torch.Tensor:
        """``sum_m w_m * indomain_loss`` over the kept models (the features :meth:`directional` already takes)."""
        self._check_len(feats_train, feats_frozen)
        return sum(w * indomain_loss(ft, ff)
                   for (_, w), ft, ff in zip(self.models, feats_train, feats_frozen, strict=True))

    def global_(self, feats: Sequence[torch.Tensor], text: str | None = None) -> torch.Tensor:
        """``sum_m w_m * global_loss`` against ``text`` (default: the bare target prompt, or in image-guided mode the
        target pictures' mean feature) over the kept models."""
        self._check_len(feats)
        if text is None and self.target_image_feats is not None:
            return sum(w * global_loss(f, t) for (_, w), f, t in zip(self.models, feats, self.target_image_feats,
                                                                       strict=True))
        text = self.target_text if text is None else clean_prompt(text, "text")
        if text not in self._text_feats:
            self._text_feats[text] = [text_embedding(m, text) for m, _ in self.models]
        texts = self._text_feats[text]
        return sum(w * global_loss(f, t) for (_, w), f, t in zip(self.models, feats, texts, strict=True))

    def _check_len(self, *lists: Sequence[torch.Tensor]) -> None:
        for feats in lists:
            if len(feats) != len(self.models):
                raise ValueError(f"Expected {len(self.models)} feature tensors (one per CLIP model with weight > 0), "
                                 f"got {len(feats)}.")
