"""nada: text-driven domain adaptation of StyleGAN2 generators with CLIP (StyleGAN-NADA, re-implemented)."""

__version__ = "0.1.0"
