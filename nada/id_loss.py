"""Identity loss: 1 - cosine similarity of ArcFace (IR-SE50) embeddings of two face images.

Follows the pSp/e4e/StyleGAN-NADA identity loss: a 256x256 image in [-1, 1] is cropped to the face
region ``[35:223, 32:220]`` (188x188), average-pooled to 112x112 and embedded; no other normalisation.
Images of another size are first brought to 256x256: larger ones by adaptive average pooling (what
StyleGAN-NADA does; for 1024 or 512 it is an exact 4x4 or 2x2 box mean), smaller ones by bilinear
upsampling (the reference would replicate pixels there; it never meets such inputs with face models).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from nada import weights
from nada.nets.irse import Backbone

FACE_SIZE = 256  # the crop below is defined on 256x256 aligned faces
CROP_ROWS = (35, 223)
CROP_COLS = (32, 220)


def to_face_size(x: torch.Tensor) -> torch.Tensor:
    """Bring images [N, 3, H, W] to [N, 3, 256, 256] (average pooling down, bilinear up)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"identity loss expects RGB images [N, 3, H, W], got {list(x.shape)}.")
    h, w = x.shape[2:]
    if (h, w) == (FACE_SIZE, FACE_SIZE):
        return x
    if h >= FACE_SIZE and w >= FACE_SIZE:
        return F.adaptive_avg_pool2d(x, (FACE_SIZE, FACE_SIZE))
    return F.interpolate(x, size=(FACE_SIZE, FACE_SIZE), mode="bilinear", align_corners=False)


class IDLoss(nn.Module):
    """Frozen ArcFace identity loss; the backbone stays in eval mode even if a parent calls ``.train()``."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> IDLoss:
        """Keep the backbone in eval mode (BatchNorm statistics and dropout are frozen)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def face_crop(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone input: [N, 3, H, W] -> 256x256 -> face crop [N, 3, 188, 188] -> pooled [N, 3, 112, 112]."""
        x = to_face_size(x)  # [N, 3, 256, 256]
        x = x[:, :, CROP_ROWS[0]:CROP_ROWS[1], CROP_COLS[0]:CROP_COLS[1]]  # [N, 3, 188, 188]
        return F.adaptive_avg_pool2d(x, (self.backbone.input_size, self.backbone.input_size))  # [N, 3, 112, 112]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm identity embeddings [N, 512] of images [N, 3, H, W] in [-1, 1] (256x256 native)."""
        return self.backbone(self.face_crop(x))  # [N, 512], already L2-normalised

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``1 - mean_i cos(f(x_i), f(y_i))``; gradients flow into ``x`` only (``f(y)`` is detached)."""
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"identity loss needs equal batch sizes, got {x.shape[0]} and {y.shape[0]}.")
        fx = self.features(x)  # [N, 512]
        fy = self.features(y).detach()  # [N, 512]
        return 1.0 - (fx * fy).sum(dim=1).mean()

    @torch.no_grad()
    def similarities(self, y_hat: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample cosines as logged by pSp/e4e: ``target`` <y_hat,y>, ``input`` <y_hat,x>, ``views`` <y,x>,
        plus ``loss`` = mean(1 - target) and ``sim_improvement`` = mean(target - views)."""
        f_hat, f_y, f_x = self.features(y_hat), self.features(y), self.features(x)  # each [N, 512]
        target = (f_hat * f_y).sum(dim=1)  # [N]
        views = (f_y * f_x).sum(dim=1)  # [N]
        return {
            "target": target,
            "input": (f_hat * f_x).sum(dim=1),
            "views": views,
            "loss": (1.0 - target).mean(),
            "sim_improvement": (target - views).mean(),
        }


def load_id_loss(source: str | os.PathLike = "arcface-ir-se50", device: torch.device | str = "cpu") -> IDLoss:
    """An :class:`IDLoss` from a registry name (e.g. ``"arcface-ir-se50"``) or a ``model_ir_se50.pth`` path.

    Raises ``nada.weights.WeightsUnavailableError`` if the weights cannot be found or fetched, and
    ``nada.weights.CheckpointError`` if the file is not an IR-SE backbone state dict.
    """
    path = weights.resolve(source)
    state = weights.load_state_dict_file(path)
    if isinstance(state.get("state_dict"), dict):  # tolerate a {"state_dict": ...} wrapper
        state = state["state_dict"]
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        backbone = Backbone.from_state_dict(state)
    except (ValueError, RuntimeError) as exc:
        raise weights.CheckpointError(
            f"{path} is not an ArcFace IR-SE backbone checkpoint like model_ir_se50.pth: "
            f"{str(exc).splitlines()[0][:300]}") from exc
    return IDLoss(backbone.float()).to(device)
