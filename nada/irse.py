"""Old import path of :mod:`nada.nets.irse` (the IR-SE ArcFace backbone), kept for one release."""

import warnings

from .nets.irse import MODES, Backbone, BottleneckIR, SqueezeExcite, body_num_layers, build_body, build_input_layer

warnings.warn("nada.irse moved to nada.nets.irse; the old path works for one release", DeprecationWarning,
              stacklevel=2)

__all__ = ["MODES", "Backbone", "BottleneckIR", "SqueezeExcite", "body_num_layers", "build_body", "build_input_layer"]
