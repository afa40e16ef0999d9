"""The recipes equal the official commands field by field, and the figures are named and judged honestly.

Each official value is quoted with its source:
- README: the command in rinongal/StyleGAN-nada's README (also ZSSGAN/scripts in public forks):
  ``python train.py --size 1024 --batch 2 --n_sample 4 --lr 0.002 --iter 301 --source_class "photo"
  --target_class "sketch" --auto_layer_k 18 --auto_layer_iters 1 --auto_layer_batch 8 --output_interval 50
  --clip_models "ViT-B/32" "ViT-B/16" --clip_model_weights 1.0 1.0 --mixing 0.0 --save_interval 150``,
  with train_options.py's defaults for what it does not pass (``--lambda_direction 1.0``, ``--lambda_global 0.0``).
- NOTEBOOK: the official stylegan_nada.ipynb's training cell: ``model_choice = ["ViT-B/32", "ViT-B/16"]``,
  ``model_weights = [1.0, 0.0]``, ``if improve_shape or style_image_dir: model_weights[1] = 1.0``,
  ``mixing = 0.9 if improve_shape else 0.0``,
  ``auto_layers_k = int(2 * (2 * np.log2(size) - 2) / 3) if improve_shape else 0``,
  ``auto_layer_iters = 1 if improve_shape else 0``, ``training_iterations = 151``, ``output_interval = 50``,
  ``"batch": 2``, ``"lr": 0.002``.
- STYLEDOMAIN: AIRI-Institute/StyleDomain, SimilarDomains/configs (quoted in STYLEDOMAIN below, the fields that name
  a setting of ours), read with its trainers.py (the optimiser: ``patch_key: original`` scales lr and betas by
  g_reg_every / (g_reg_every + 1), any other patch takes them as given) and core/parametrizations.py (``no_coarse``
  freezes the heads conv_0..conv_5, i.e. W+ rows 0-5; it applies to offsets only).
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from PIL import Image

from bench.hub_files import BIN_FILE, SAFETENSORS_FILE
from nada.app.adapt_tab import metrics_markdown
from nada.cli.evaluate import table
from nada.clip_models import JUDGE_CLIP
from nada.metrics import LABELS, Evaluation, judged_by
from nada.registry import REGISTRY
from nada.train import RECIPES, AdaptConfig

from .helpers import PROJECT_ROOT

N_LATENT = {1024: 18, 512: 16, 256: 14}

# StyleDomain's published text-driven configs, field by field as the files give them (training, optimization_setup).
STYLEDOMAIN = {
    "td_nada_ffhq_sdelta.yaml": {"iter_num": 250, "batch_size": 4, "phase": "all", "patch_key": "s_delta",
                                 "no_coarse": True, "auto_layer_k": 16, "auto_layer_iters": 0, "mixing_noise": 0.9,
                                 "visual_encoders": ["ViT-B/32", "ViT-B/16"], "loss_funcs": ["direction", "indomain"],
                                 "loss_coefs": [1.0, 0.25], "g_reg_every": 4, "lr": 0.05, "betas": [0.9, 0.999]},
    "td_nada_ffhq.yaml": {"iter_num": 250, "batch_size": 4, "phase": "all", "patch_key": "original",
                          "no_coarse": True, "auto_layer_k": 16, "auto_layer_iters": 0, "mixing_noise": 0.9,
                          "visual_encoders": ["ViT-B/32", "ViT-B/16"], "loss_funcs": ["direction", "indomain"],
                          "loss_coefs": [1.0, 0.25], "g_reg_every": 4, "lr": 0.002, "betas": [0.0, 0.999]},
    "td_nada_cars.yaml": {"iter_num": 400, "batch_size": 8, "phase": "all", "patch_key": "original",
                          "auto_layer_k": 16, "auto_layer_iters": 0, "mixing_noise": 0.9,
                          "visual_encoders": ["ViT-B/32", "ViT-B/16"], "loss_funcs": ["direction", "indomain"],
                          "loss_coefs": [1.0, 1.5], "g_reg_every": 4, "lr": 0.002, "betas": [0.0, 0.999]},
}
PATCH_KEYS = {"s_delta": "style_delta", "s_mod": "modulation", "original": "weights"}  # StyleDomain's -> params


def styledomain_config(file: str) -> AdaptConfig:
    """The AdaptConfig a StyleDomain config file describes, field by field (ours where the file names no setting)."""
    f = STYLEDOMAIN[file]
    losses = dict(zip(f["loss_funcs"], f["loss_coefs"]))
    names = {"ViT-B/32": "clip-vit-b32", "ViT-B/16": "clip-vit-b16"}
    original = f["patch_key"] == "original"
    return AdaptConfig(
        iterations=f["iter_num"], batch_size=f["batch_size"], lr=f["lr"], betas=tuple(f["betas"]),
        params=PATCH_KEYS[f["patch_key"]], mixing=f["mixing_noise"], lambda_direction=losses["direction"],
        lambda_indomain=losses["indomain"], clip_models=tuple(names[v] for v in f["visual_encoders"]),
        probe_iters=f["auto_layer_iters"],  # 0: no probe, so auto_layer_k is moot
        frozen_rows="coarse" if f.get("no_coarse") and not original else (),  # no_coarse freezes offset heads only
        train_to_rgb=original and f["phase"] == "all")  # phase "all": every layer, ToRGB too (mapping: ours frozen)


def clip_weights(config: AdaptConfig) -> dict[str, float]:
    """The official --clip_models/--clip_model_weights pair as {model: weight} (ours: each named model at 1)."""
    names = {"clip-vit-b32": "ViT-B/32", "clip-vit-b16": "ViT-B/16"}
    return {official: (1.0 if ours in config.clip_models else 0.0) for ours, official in names.items()}


def official_rows(n_latent: int, k: int | float | None) -> int:
    """The rows a config trains, as the official auto_layer_k counts them."""
    return AdaptConfig(layers_k=k).resolved_layers_k(n_latent)


def test_paper_is_the_official_readme_command_field_by_field():
    c = AdaptConfig.from_recipe("paper")
    official = {"iterations": 301, "batch_size": 2, "lr": 0.002, "probe_iters": 1, "probe_batch": 8,
                "mixing": 0.0, "preview_every": 50, "lambda_direction": 1.0, "lambda_global": 0.0}
    assert {k: getattr(c, k) for k in official} == official
    assert official_rows(18, c.layers_k) == 18  # --auto_layer_k 18 at 1024: every row
    assert clip_weights(c) == {"ViT-B/32": 1.0, "ViT-B/16": 1.0}  # --clip_model_weights 1.0 1.0
    assert AdaptConfig() == c  # the default is the README's command


@pytest.mark.parametrize("size", [1024, 512, 256])
def test_shape_is_the_notebooks_improve_shape_field_by_field(size):
    c = AdaptConfig.from_recipe("shape")
    assert official_rows(N_LATENT[size], c.layers_k) == int(2 * (2 * math.log2(size) - 2) / 3)
    assert (c.mixing, c.probe_iters, c.iterations, c.batch_size, c.lr, c.preview_every) == (0.9, 1, 151, 2, 0.002, 50)
    assert clip_weights(c) == {"ViT-B/32": 1.0, "ViT-B/16": 1.0}  # improve_shape: model_weights[1] = 1.0


def test_notebook_is_the_notebooks_default_and_style_images_switch_vit_b16_on():
    c = AdaptConfig.from_recipe("notebook")
    assert (c.layers_k, c.mixing, c.iterations, c.batch_size, c.lr, c.preview_every) == (0, 0.0, 151, 2, 0.002, 50)
    assert not c.probing()  # auto_layer_iters = 0, auto_layers_k = 0
    assert clip_weights(c) == {"ViT-B/32": 1.0, "ViT-B/16": 0.0}  # model_weights = [1.0, 0.0]
    picture = Image.new("RGB", (64, 64), (200, 30, 30))
    guided = AdaptConfig.from_recipe("notebook", target_images=(picture,))
    assert clip_weights(guided) == {"ViT-B/32": 1.0, "ViT-B/16": 1.0}  # style_image_dir: model_weights[1] = 1.0
    named = AdaptConfig.from_recipe("notebook", target_images=(picture,), clip_models=("clip-vit-b32",))
    assert named.clip_models == ("clip-vit-b32",)  # the caller's choice wins
    for name in RECIPES:  # every recipe, with pictures: both models unless named
        assert clip_weights(AdaptConfig.from_recipe(name, target_images=(picture,)))["ViT-B/16"] == 1.0


def test_compact_is_styledomains_sdelta_config_field_by_field():
    c = AdaptConfig.from_recipe("compact")
    assert c == styledomain_config("td_nada_ffhq_sdelta.yaml")
    assert (c.params, c.lr, c.betas, c.batch_size, c.iterations, c.mixing, c.lambda_indomain, c.frozen_rows) == \
        ("style_delta", 0.05, (0.9, 0.999), 4, 250, 0.9, 0.25, "coarse")
    assert c.frozen(18) == [0, 1, 2, 3, 4, 5]  # conv_0..conv_5 in StyleDomain's names
    opt = c.adam([torch.zeros(1, requires_grad=True)]).param_groups[0]
    assert (opt["lr"], opt["betas"]) == (0.05, (0.9, 0.999))  # a patch other than "original": no extra factor


@pytest.mark.parametrize("source", [None, "ffhq", "afhq-cat", "church"])
def test_diverse_is_styledomains_ffhq_config_for_faces_and_sources_without_their_own(source):
    c = AdaptConfig.from_recipe("diverse", source)
    assert c == styledomain_config("td_nada_ffhq.yaml")
    opt = c.adam([torch.zeros(1, requires_grad=True)]).param_groups[0]
    ratio = 4 / (4 + 1)  # g_reg_every 4: the lazy-regularisation ratio, for patch_key "original"
    assert opt["lr"] == pytest.approx(0.002 * ratio) and opt["betas"] == pytest.approx((0.0, 0.999 ** ratio))


def test_diverse_on_cars_is_styledomains_cars_config():
    assert AdaptConfig.from_recipe("diverse", "car") == styledomain_config("td_nada_cars.yaml")
    assert AdaptConfig.from_recipe("diverse", "car", batch_size=2).batch_size == 2  # the caller's value wins
    assert AdaptConfig.from_recipe("compact", "car") == AdaptConfig.from_recipe("compact")  # cars: no sdelta config


def test_the_recipe_values_are_shown_where_a_recipe_is_chosen():
    from nada.app.adapt_tab import recipe_settings
    from nada.cli.adapt import recipe_summary

    assert recipe_summary("compact") == ("style_delta, lr 0.05, betas 0.9/0.999, batch 4, 250 steps, no probe, "
                                         "mixing 0.9, in-domain 0.25, B32+B16, coarse rows frozen")
    assert "every row + to_rgb1" in recipe_summary("paper")
    car = recipe_summary("diverse", "car")
    assert "batch 8, 400 steps" in car and "in-domain 1.5" in car
    out = subprocess.run([sys.executable, "-m", "nada", "adapt", "--help"], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, timeout=120)
    help_text = "".join(out.stdout.split())  # argparse wraps lines (also after a hyphen)
    assert all("".join(recipe_summary(n).split()) in help_text for n in RECIPES)
    note = recipe_settings("compact").recipe_note
    assert "Learning rate 0.05" in note and "Batch size 4" in note and "coarse rows frozen" in note
    car = recipe_settings("diverse", "car")
    assert (car.batch_size, car.lambda_indomain, car.iterations) == (8, 1.5, 400)
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "td_nada_ffhq_sdelta.yaml" in readme and "td_nada_ffhq.yaml" in readme and "to_rgb1" in readme


def test_the_held_out_judge_is_in_the_registry_with_its_evidence():
    asset = REGISTRY[JUDGE_CLIP]
    assert JUDGE_CLIP == "clip-vit-l14" and asset.kind == "clip"
    assert [m.repo_id for m in asset.mirrors] == ["timm/vit_large_patch14_clip_224.openai"] * 2
    assert [m.filename for m in asset.mirrors] == [SAFETENSORS_FILE, BIN_FILE]  # as the other CLIP models
    assert all("open_clip" in m.evidence and "ViT-L-14" in m.evidence for m in asset.mirrors)
    assert all(JUDGE_CLIP not in AdaptConfig.from_recipe(name).clip_models for name in RECIPES)


def test_evaluate_defaults_to_the_held_out_judge():
    out = subprocess.run([sys.executable, "-m", "nada", "evaluate", "--help"], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, timeout=120)
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    assert f"default: {JUDGE_CLIP}" in text and "held out" in text
    assert "CLIP direction score" in text and "target score" in text and "paper's" in text  # "not the paper's"


def test_the_figures_say_who_judged_them():
    assert judged_by(["clip-vit-l14"], ["clip-vit-b32", "clip-vit-b16"]).endswith("held out: the run did not "
                                                                                   "train against it")
    circular = judged_by(["clip-vit-b32"], ["clip-vit-b32", "clip-vit-b16"])
    assert "trained against (clip-vit-b32)" in circular and "partly circular" in circular
    result = {"clip_target_source": 0.1, "clip_target_adapted": 0.3, "diversity_source": 0.5, "diversity_adapted": 0.4,
              "s_dir": 0.2, "id": 0.75, "n": 8, "seed": 0, "truncation": 0.7, "source_text": "photo",
              "target_text": "red", "judged_by": circular, "id_trained": True}
    shown = table(result)
    assert circular in shown and "[trained with the identity loss]" in shown
    assert all(LABELS[k] in shown for k in ("s_dir", "clip_target", "diversity", "id"))
    trained = ["clip-vit-b32", "clip-vit-b16"]
    page = metrics_markdown(Evaluation.from_figures(result, judge=trained, trained_with=trained, id_trained=True))
    assert "Measured with the CLIP models it trained against (clip-vit-b32, clip-vit-b16)" in page
    assert "identity loss" in page and "8 random samples at truncation 0.7" in page and "CLIP direction score" in page
    assert "the paper's figures" not in page.lower()


def test_picking_a_recipe_in_the_app_sets_its_learning_rate():
    """The Adapt tab's learning-rate field is passed with every run, so a recipe choice must set it: "compact" trains
    ~6K offsets at its own rate, and the paper's 0.002 would barely move them."""
    from nada.app.adapt_tab import recipe_settings

    for name in RECIPES:
        assert recipe_settings(name).lr == AdaptConfig.from_recipe(name).lr
    assert recipe_settings("compact").lr > 10 * recipe_settings("paper").lr == 10 * 0.002
