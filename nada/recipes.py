"""The published training settings, by name: the official StyleGAN-NADA commands and StyleDomain's configs, each
field by field (``tests/test_recipes.py`` quotes every value beside its source). ``nada.train.AdaptConfig.from_recipe``
builds a config from them; ``nada.train.RECIPES`` is this table."""

from __future__ import annotations

import dataclasses

COMPACT_LR = 0.05  # the "compact" recipe's lr (StyleDomain's td_nada_ffhq_sdelta.yaml)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named set of :class:`AdaptConfig` settings, with the line a person reads when choosing it."""

    description: str
    settings: dict


# The published settings, in one place (tests/test_recipes.py quotes each value beside its source).
# The official StyleGAN-NADA code (rinongal/StyleGAN-nada): "paper" is the command in its README (Photo -> Sketch and
# most published models): --auto_layer_k 18 at 1024, i.e. every row; one probe iteration on 8 latents (skipped here:
# with every row chosen it cannot change anything); ViT-B/32 + ViT-B/16 at weight 1; batch 2; lr 0.002; no mixing;
# --iter 301, i.e. 301 steps. Two facts about its layers: with every row chosen, the official index-to-layer list maps
# row 1 to to_rgb1, so conv1, to_rgb1 and every conv train, and so they do here (nada.probe.every_row_modules); when
# the probe chooses rows ("shape"), row 1 means convs.0, the layer that reads it (our documented choice), and
# to_rgb1 stays frozen. "notebook": the official Colab notebook's default (no probing: the constant input and every
# convolution train; ViT-B/32 only, model_weights [1.0, 0.0]; 151 steps). "shape": the notebook's "improve shape"
# setting (probe 2/3 of the rows, 12 at 1024, with style mixing 0.9; the notebook then sets ViT-B/16's weight to 1.0,
# so both models). With style images the notebook switches ViT-B/16 on as well: from_recipe does the same unless the
# caller names the models.
# StyleDomain (AIRI-Institute/StyleDomain, "StyleDomain: Efficient and Lightweight Parameterizations of StyleGAN for
# One-shot and Few-shot Domain Adaptation", ICCV 2023), its SimilarDomains/configs: "compact" is
# td_nada_ffhq_sdelta.yaml (patch_key s_delta: s + delta on the style vector of each synthesis convolution; Adam lr
# 0.05, betas (0.9, 0.999), as given; batch 4; iter_num 250; mixing_noise 0.9; ViT-B/32 + ViT-B/16; loss_coefs
# direction 1.0, indomain 0.25; no_coarse: conv_0..conv_5, W+ rows 0-5, never train; auto_layer_iters 0: no probe).
# "diverse" is td_nada_ffhq.yaml (patch_key original: the weights; lr 0.002 and betas (0, 0.999), both scaled by the
# lazy-regularisation ratio as in the paper's code; batch 4; 250 steps; mixing 0.9; in-domain 0.25; phase "all":
# every synthesis layer and ToRGB; no_coarse there applies only to offsets, so the coarse rows train). Phase "all"
# also trains the mapping network; ours stays frozen (both copies see the same latents; see nada.train).
# Sources with a published setting of their own use it (SOURCE_RECIPES): LSUN cars, td_nada_cars.yaml (and
# HyperDomainNet's configs/td_single_car.yaml): in-domain 1.5 at batch 8, 400 steps. Other sources use the faces'.
# The in-domain loss (lambda_indomain) is HyperDomainNet's (MACderRu/HyperDomainNet, NeurIPS 2022): its single-domain
# configs weigh it too (td_single_car.yaml 1.5, td_single_horse.yaml 0.5).
_COMPACT = {"params": "style_delta", "lr": COMPACT_LR, "betas": (0.9, 0.999), "batch_size": 4, "iterations": 250,
            "mixing": 0.9, "lambda_indomain": 0.25, "frozen_rows": "coarse", "probe_iters": 0}
RECIPES: dict[str, Recipe] = {
    "paper": Recipe("Style and texture: every layer trains (the paper's command)", {}),
    "shape": Recipe("Shape change: the layers that move most, with style mixing",
                    {"layers_k": 2 / 3, "mixing": 0.9, "iterations": 151}),
    "notebook": Recipe("Quick: every convolution and the constant input, one CLIP model (the official notebook)",
                       {"layers_k": 0, "iterations": 151, "clip_models": ("clip-vit-b32",)}),
    "compact": Recipe("Compact: StyleDomain's ~3,000 style offsets instead of the weights (tiny file; coarse rows "
                      "kept)", _COMPACT),
    "diverse": Recipe("Keep variety: every layer trains with a loss that keeps the samples as different from each "
                      "other as they were (against mode collapse; StyleDomain's setting)",
                      {"lr": 0.002, "betas": (0.0, 0.999), "batch_size": 4, "iterations": 250, "mixing": 0.9,
                       "lambda_indomain": 0.25, "probe_iters": 0, "train_to_rgb": True}),
}
# Published settings of a source of their own, on top of a recipe: {source: {recipe: settings}}.
SOURCE_RECIPES: dict[str, dict[str, dict]] = {
    "car": {"diverse": {"lambda_indomain": 1.5, "batch_size": 8, "iterations": 400}},
}
