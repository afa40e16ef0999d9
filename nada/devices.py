"""Choosing a torch device from a user's words."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; otherwise the named device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Device '{name}' was asked for, but no CUDA GPU is available here; use --device cpu.")
    return dev
