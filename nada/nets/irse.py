"""The IR-SE ResNet used by ArcFace (``model_ir_se50.pth``) and, as a feature body, by the e4e encoder.

Module and parameter names follow the public checkpoint layout, so a ``model_ir_se50.pth`` state dict loads
with ``strict=True``: ``input_layer.{0,1,2}``, ``body.<i>.{shortcut_layer,res_layer}.*``, ``output_layer.{0,3,4}``.
The residual body (``build_input_layer`` + ``build_body``) is shared with :mod:`nada.nets.e4e`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Units per stage for each depth; every stage starts with a stride-2 unit.
_STAGE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
_STAGE_DEPTHS = (64, 128, 256, 512)
MODES = ("ir", "ir_se")


class SqueezeExcite(nn.Module):
    """Channel attention: global average, bottleneck 1x1 convs (no bias), sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each channel of ``x`` [N, C, H, W] by a gate in (0, 1)."""
        gate = F.adaptive_avg_pool2d(x, 1)  # [N, C, 1, 1]
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(gate))))
        return x * gate


class BottleneckIR(nn.Module):
    """One improved-residual unit: BN-conv-PReLU-conv(stride)-BN[-SE] plus a (projected) shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int, use_se: bool = True) -> None:
        super().__init__()
        if in_channels == depth:
            # A 1x1 max pool with a stride is plain subsampling x[:, :, ::s, ::s]; it has no weights.
            self.shortcut_layer: nn.Module = nn.MaxPool2d(kernel_size=1, stride=stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, kernel_size=3, stride=1, padding=1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if use_se:
            layers.append(SqueezeExcite(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C_in, H, W] -> [N, depth, H/stride, W/stride]."""
        return self.res_layer(x) + self.shortcut_layer(x)


def _check_arch(num_layers: int, mode: str) -> None:
    if num_layers not in _STAGE_UNITS:
        raise ValueError(f"num_layers must be one of {sorted(_STAGE_UNITS)}, got {num_layers}.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")


def build_input_layer() -> nn.Sequential:
    """Stem: Conv3x3(3->64, no bias) -> BN -> PReLU; keys ``0.weight``, ``1.*``, ``2.weight``."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.PReLU(64),
    )


def build_body(num_layers: int = 50, mode: str = "ir_se") -> nn.Sequential:
    """The residual body: four stages (64, 128, 256, 512 channels), each halving the resolution."""
    _check_arch(num_layers, mode)
    units: list[nn.Module] = []
    in_channels = 64
    for depth, count in zip(_STAGE_DEPTHS, _STAGE_UNITS[num_layers], strict=True):
        for i in range(count):
            units.append(BottleneckIR(in_channels, depth, stride=2 if i == 0 else 1, use_se=mode == "ir_se"))
            in_channels = depth
    return nn.Sequential(*units)


def body_num_layers(num_units: int) -> int:
    """Depth (50/100/152) of a body with ``num_units`` residual units; ``ValueError`` if none matches."""
    for layers, counts in _STAGE_UNITS.items():
        if sum(counts) == num_units:
            return layers
    raise ValueError(f"{num_units} residual units match no IR-SE depth ({sorted(_STAGE_UNITS)}).")


class Backbone(nn.Module):
    """ArcFace IR(-SE) network: [N, 3, S, S] image (S = input_size) -> [N, 512] L2-normalised embedding."""

    def __init__(
        self,
        input_size: int = 112,
        num_layers: int = 50,
        mode: str = "ir_se",
        drop_ratio: float = 0.6,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if input_size not in (112, 224):
            raise ValueError(f"input_size must be 112 or 224, got {input_size}.")
        _check_arch(num_layers, mode)
        self.input_size = input_size
        final = input_size // 16  # four stride-2 stages: 112 -> 7, 224 -> 14
        self.input_layer = build_input_layer()
        self.body = build_body(num_layers, mode)
        # Indices 1 (dropout) and 2 (flatten) hold no weights, so the keys are output_layer.{0,3,4}.
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * final * final, 512),
            nn.BatchNorm1d(512, affine=affine),
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 512-d output before L2 normalisation: [N, 3, S, S] -> [N, 512]."""
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"Backbone expects images [N, 3, {self.input_size}, {self.input_size}], got {list(x.shape)}.")
        return self.output_layer(self.body(self.input_layer(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embedding [N, 512] (no epsilon, as in the reference)."""
        emb = self.embed(x)  # [N, 512]
        return emb / emb.norm(p=2, dim=1, keepdim=True)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> Backbone:
        """Build a backbone whose depth, mode, input size and affinity are read off ``state_dict``, and load it."""
        units = {k.split(".")[1] for k in state_dict if k.startswith("body.")}
        if "output_layer.3.weight" not in state_dict or not units:
            raise ValueError("not an IR-SE backbone state dict (no 'body.*' or 'output_layer.3.weight' keys).")
        num_layers = body_num_layers(len(units))
        mode = "ir_se" if "body.0.res_layer.5.fc1.weight" in state_dict else "ir"
        final_sq = state_dict["output_layer.3.weight"].shape[1] // 512
        input_size = {49: 112, 196: 224}.get(final_sq, -1)
        affine = "output_layer.4.weight" in state_dict
        with torch.device("meta"):  # skip random init: the state dict's tensors are assigned below
            model = cls(input_size=input_size, num_layers=num_layers, mode=mode, affine=affine)
        model.load_state_dict(state_dict, strict=True, assign=True)
        return model.float()
