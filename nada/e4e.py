"""Old import path of :mod:`nada.nets.e4e` (the e4e encoder) and of its loaders, now in :mod:`nada.weights`; kept
for one release."""

import warnings

from .nets.e4e import INPUT_SIZE, Encoder4Editing, GradualStyleBlock
from .weights import E4ECheckpointError, encoder_from_checkpoint, load_e4e

warnings.warn("nada.e4e moved to nada.nets.e4e (the encoder) and nada.weights (load_e4e, encoder_from_checkpoint, "
              "E4ECheckpointError); the old path works for one release", DeprecationWarning, stacklevel=2)

__all__ = ["INPUT_SIZE", "Encoder4Editing", "GradualStyleBlock", "E4ECheckpointError", "encoder_from_checkpoint",
           "load_e4e"]
