"""How well a style did: the CLIP direction score, the target score, the diversity and the identity.

Both generators render the same ``n`` images' latents and noise: ``z_i`` from one CPU ``torch.Generator`` seeded with
``seed`` (so every device gives the same numbers), mapped by the SOURCE generator's mapping network and truncated
towards its :meth:`~nada.nets.stylegan2.Generator.truncation_center` by ``truncation``; then one noise map per layer and
image from the same stream, image by image (the numbers do not depend on ``batch``). ``S_i`` and ``A_i`` are the
source's and the adapted generator's image ``i``; nothing is clamped (as in the CLIP guidance during training).

Formulas, per CLIP model ``m`` (``n(v) = v / ||v||``, ``E(I) = n(E_img(pre(I)))`` as :meth:`ClipGuide.image_features`):
- ``s_dir = mean_i cos(E(A_i) - E(S_i), dt)``, ``dt`` the template-averaged text direction from the source to the
  target text (:class:`nada.clip_loss.TextDirection`, what the directional loss follows; ``1 - s_dir`` is that loss
  on these truncated images). Where an image's feature change is zero (``||E(A_i) - E(S_i)|| < 1e-6``: e.g. identical
  generators) the direction is undefined and the image counts as 0: it did not move towards the target, nor away
  (the value :func:`nada.clip_loss.directional_loss` gives such rows). So identical generators score exactly 0.
- ``clip_target_source = mean_i cos(E(S_i), T)``, ``clip_target_adapted = mean_i cos(E(A_i), T)``, ``T`` the
  plain-text embedding of the target text (no templates: :func:`nada.clip_loss.text_embedding`).
- ``diversity_X = mean_{i<j} (1 - cos(E(X_i), E(X_j)))`` over the ``n (n - 1) / 2`` pairs, for X = S, A; in [0, 2].
- ``id = mean_i cos(F(A_i), F(S_i))`` with ArcFace features ``F`` (``1 - IDLoss(A, S)`` averaged over the images),
  only with an ``id_loss``.
With several CLIP models each CLIP metric is ``sum_m w_m metric_m / sum_m w_m`` (weight-0 models dropped); the
per-model values are under ``per_model``.

What these are, and what they are not. They are named for what they measure: the "CLIP direction score" (``s_dir``,
the cosine the directional loss is built on; later text-driven editing work calls it "CLIP directional
similarity"), the "target score" (``clip_target_*``, CLIP similarity to the target text), the "diversity" (in CLIP
space, not LPIPS: comparable between a source and its styles, not across papers) and the "identity" (ArcFace, the
same model and crop as the identity loss). They are NOT the paper's figures: the official StyleGAN-NADA repository
ships no code for S_dir or ID, and the published S_dir/ID tables come from later work that measures inverted
CelebA-HQ photos. This protocol measures ``n`` random samples at truncation 0.7 (:data:`PROTOCOL`).

Judged by whom: figures measured with the CLIP models a run trained against are partly circular (the run optimised
exactly that score). ``nada evaluate`` and :meth:`nada.Studio.evaluate` therefore judge with a held-out CLIP,
:data:`nada.clip_models.JUDGE_CLIP` (ViT-L/14, never used in training); the app's end-of-run figures keep the
training CLIPs to spare a Space a 1.7 GB download, and say so. An identity figure after a run that used the identity
loss is flagged the same way: the run optimised it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .clip_loss import ClipGuide, text_embedding
from .nets.stylegan2 import Generator, truncate

ZERO_CHANGE = 1e-6  # an image whose unit CLIP features moved less than this counts as unchanged (s_dir term 0)
CLIP_KEYS = ("s_dir", "clip_target_source", "clip_target_adapted", "diversity_source", "diversity_adapted")
LABELS = {  # what each figure is called wherever it is shown (CLI, app, notebooks)
    "s_dir": "CLIP direction score",
    "clip_target": "target score",
    "diversity": "diversity",
    "id": "identity",
}
PROTOCOL = "random samples of the source and the styled generator (same latents and noise), truncation 0.7"


@dataclass(frozen=True)
class Evaluation:
    """The figures of :func:`evaluate` for one style, with the CLIP models that judged it."""

    s_dir: float  # CLIP direction score: mean cosine of the image change with the text direction
    clip_target_source: float  # target score of the source's images
    clip_target_adapted: float  # target score of the styled images
    diversity_source: float  # mean pairwise CLIP distance of the source's images, in [0, 2]
    diversity_adapted: float  # the same for the styled images
    judge: tuple[str, ...]  # the CLIP models that scored it (names or paths)
    id: float | None = None  # identity kept (ArcFace cosine), when measured
    trained_with: tuple[str, ...] | None = None  # the CLIP models the run trained against, when known
    id_trained: bool = False  # the run trained with the identity loss (so ``id`` is partly circular)
    n: int = 0  # images per generator
    seed: int = 0
    truncation: float = 0.7
    source_text: str = ""
    target_text: str = ""
    per_model: tuple[dict, ...] = ()  # each CLIP model's figures

    @classmethod
    def from_figures(cls, figures: dict, judge: Sequence[str], trained_with: Sequence[str] | None = None,
                     id_trained: bool = False) -> Evaluation:
        """The record of :func:`evaluate`'s dict, judged by ``judge``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"judge", "trained_with", "id_trained", "per_model"}
        return cls(**{k: v for k, v in figures.items() if k in names}, judge=tuple(judge),
                   trained_with=tuple(trained_with) if trained_with is not None else None, id_trained=id_trained,
                   per_model=tuple(figures.get("per_model", ())))

    @property
    def judged_by(self) -> str:
        """The line saying who scored the style (:func:`judged_by`)."""
        return judged_by(self.judge, self.trained_with)

    def as_dict(self) -> dict:
        """The figures as a plain dict (JSON-ready), ``judged_by`` included; no ``id`` key when not measured."""
        out = dataclasses.asdict(self)
        out["per_model"] = list(self.per_model)
        out["judged_by"] = self.judged_by
        if self.id is None:
            del out["id"]
        return out

    # ``Studio.evaluate`` returned a plain dict until this record: reading it as one still works, for one release.
    def __getitem__(self, key: str):
        _dict_access_warning()
        return self.as_dict()[key]

    def __contains__(self, key: object) -> bool:
        _dict_access_warning()
        return key in self.as_dict()

    def get(self, key: str, default=None):
        """Deprecated dict access (use the attributes)."""
        _dict_access_warning()
        return self.as_dict().get(key, default)


def _dict_access_warning() -> None:
    warnings.warn("Evaluation is a record now: read its attributes (result.s_dir) or result.as_dict(); dict access "
                  "goes in the next release.", DeprecationWarning, stacklevel=3)


def judged_by(judges: Sequence[str], trained_with: Sequence[str] | None) -> str:
    """A line saying which CLIP models scored a style, and whether the run trained against them (partly circular)."""
    names = ", ".join(judges) or "-"
    if trained_with is None:
        return f"judged by {names}"
    overlap = sorted(set(judges) & set(trained_with))
    if not overlap:
        return f"judged by {names}, held out: the run did not train against it"
    return (f"judged by {names}: measured with the CLIP models it trained against ({', '.join(overlap)}), "
            "partly circular")


def _check_int(value: object, name: str, least: int) -> int:
    """``value`` as an int >= ``least``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}.")
    return value


def _check_pair(source: Generator, adapted: Generator) -> None:
    """``ValueError`` unless both generators take the same latents and noise and give images of one size."""
    def shape(g: Generator) -> tuple:
        return g.size, g.style_dim, g.n_latent, [tuple(b.shape) for b in g.noise_buffers()]
    if shape(source) != shape(adapted):
        raise ValueError(f"The source and adapted generators differ in architecture ({source.config()} vs "
                         f"{adapted.config()}): evaluate an adapted copy of the source.")


def direction_cosines(feat_source: torch.Tensor, feat_adapted: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Per image ``cos(E(A) - E(S), dt)``, 0 where the change is below :data:`ZERO_CHANGE`: [N, D] x2, [1, D] -> [N]."""
    delta = F.normalize(feat_adapted.double(), dim=-1) - F.normalize(feat_source.double(), dim=-1)  # [N, D]
    norm = delta.norm(dim=-1)  # [N]
    dt = F.normalize(direction.to(delta).reshape(1, -1), dim=-1)  # [1, D]
    cos = (delta * dt).sum(dim=-1) / norm.clamp_min(ZERO_CHANGE)  # [N]
    return torch.where(norm >= ZERO_CHANGE, cos, torch.zeros_like(cos))


def diversity(feats: torch.Tensor) -> float:
    """Mean pairwise cosine distance ``mean_{i<j} (1 - cos(e_i, e_j))`` of features ``[N, D]``, N >= 2."""
    n = feats.shape[0]
    if n < 2:
        raise ValueError(f"Diversity needs at least 2 images, got {n}.")
    e = F.normalize(feats.double(), dim=-1)  # [N, D]
    pair_cos_sum = (e.sum(dim=0).square().sum() - (e * e).sum()) / 2  # sum_{i<j} <e_i, e_j>
    return float(1 - pair_cos_sum / (n * (n - 1) / 2))


def _batches(source: Generator, n: int, seed: int, truncation: float, batch: int):
    """Yield ``(w [B, 512], noise list of [B, 1, r, r])`` for the n images, on the source's device and dtype."""
    ref = next(source.parameters())  # a parameter: the module's device and dtype
    rng = torch.Generator().manual_seed(seed)  # CPU stream: the same images on every device
    z_all = torch.randn(n, source.style_dim, generator=rng)  # [n, 512]
    center = source.truncation_center() if truncation != 1.0 else None  # [1, 512]
    for start in range(0, n, batch):
        z = z_all[start:start + batch].to(ref)  # [B, 512]
        w = source.mapping(z)  # [B, 512]
        if center is not None:
            w = truncate(w, center, truncation)
        per_image = [source.make_noise(1, generator=rng) for _ in range(z.shape[0])]  # B lists of [1, 1, r, r]
        noise = [torch.cat(maps) for maps in zip(*per_image)]  # per layer [B, 1, r, r]
        yield w, noise


def _model_name(index: int, model: torch.nn.Module) -> str:
    """A readable label for the ``index``-th CLIP model of the list."""
    return f"{index}:{type(model).__name__}"


@torch.no_grad()
def evaluate(source: Generator, adapted: Generator, clip_models: Sequence[tuple[torch.nn.Module, float]],
             source_text: str, target_text: str, n: int = 64, seed: int = 0, id_loss: torch.nn.Module | None = None,
             truncation: float = 0.7, batch: int = 8) -> dict:
    """The metrics of the module docstring for ``adapted`` against ``source`` over ``n`` seeded images."""
    n, seed, batch = _check_int(n, "n", 2), _check_int(seed, "seed", 0), _check_int(batch, "batch", 1)
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not math.isfinite(truncation):
        raise ValueError(f"truncation must be a finite number, got {truncation!r}.")
    _check_pair(source, adapted)
    pairs = list(clip_models)
    guide = ClipGuide(pairs, source_text, target_text)  # checks weights and prompts; text directions, once
    kept = [i for i, (_, w) in enumerate(pairs) if w > 0]  # original positions of guide.models
    total_w = sum(w for _, w in guide.models)
    weights = [w / total_w for _, w in guide.models]
    targets = [text_embedding(m, guide.target_text) for m, _ in guide.models]  # per model [1, D]
    adapted_ref = next(adapted.parameters())

    feats_s: list[list[torch.Tensor]] = [[] for _ in guide.models]  # per model, per batch [B, D] (CPU)
    feats_a: list[list[torch.Tensor]] = [[] for _ in guide.models]
    id_sum = 0.0
    for w, noise in _batches(source, n, seed, float(truncation), batch):
        img_s = source.synthesis(w, noise=noise).float()  # [B, 3, H, W]
        img_a = adapted.synthesis(w.to(adapted_ref), noise=[x.to(adapted_ref) for x in noise]).float()
        for k, (fs, fa) in enumerate(zip(guide.image_features(img_s), guide.image_features(img_a), strict=True)):
            feats_s[k].append(fs.cpu())
            feats_a[k].append(fa.cpu())
        if id_loss is not None:
            id_sum += (1.0 - float(id_loss(img_a, img_s.to(img_a.device)))) * w.shape[0]
        del img_s, img_a

    per_model = []
    for k, ((model, _), direction, target) in enumerate(zip(guide.models, guide.directions, targets, strict=True)):
        es, ea = torch.cat(feats_s[k]), torch.cat(feats_a[k])  # [n, D] each
        t = F.normalize(target.cpu().double(), dim=-1).reshape(-1)  # [D]
        per_model.append({
            "model": _model_name(kept[k], model), "weight": weights[k],
            "s_dir": float(direction_cosines(es, ea, direction.direction.cpu()).mean()),
            "clip_target_source": float((F.normalize(es.double(), dim=-1) @ t).mean()),
            "clip_target_adapted": float((F.normalize(ea.double(), dim=-1) @ t).mean()),
            "diversity_source": diversity(es), "diversity_adapted": diversity(ea),
        })
    result: dict = {key: sum(m["weight"] * m[key] for m in per_model) for key in CLIP_KEYS}
    if id_loss is not None:
        result["id"] = id_sum / n
    result.update(n=n, seed=seed, truncation=float(truncation), source_text=guide.source_text,
                  target_text=guide.target_text, per_model=per_model)
    return result


__all__ = ["evaluate", "Evaluation", "direction_cosines", "diversity", "judged_by", "CLIP_KEYS", "LABELS", "PROTOCOL",
           "ZERO_CHANGE"]
