"""The networks, the bottom layer of nada: StyleGAN2 (:mod:`~nada.nets.stylegan2`), StyleGAN3-T and -R
(:mod:`~nada.nets.stylegan3`, with its layer plan and filter designs in :mod:`~nada.nets.sg3_filters`, its blocks in
:mod:`~nada.nets.sg3_layers`, the filtered leaky ReLU as defined in :mod:`~nada.nets.sg3_ops` and computed fast in
:mod:`~nada.nets.sg3_poly`), the e4e encoder
(:mod:`~nada.nets.e4e`), the IR-SE ArcFace backbone (:mod:`~nada.nets.irse`), and their low-level ops
(:mod:`~nada.nets.ops`: FIR filtering, fast convolution paths) with the per-shape choice among those paths
(:mod:`~nada.nets.autotune`). These modules import nothing from the rest of nada (only torch): they build modules
whose state dicts match the public checkpoints and read no checkpoint files; turning a file into a network is the
library's job (:func:`nada.weights.load_generator`, :func:`nada.weights.load_e4e`, :func:`nada.id_loss.load_id_loss`).
The one reader here is NVIDIA's network-pickle format, read as data (:mod:`~nada.nets.nvidia_pickle`), with
StyleGAN2-ADA's tensors in our StyleGAN2's layout (:mod:`~nada.nets.nvidia_sg2`), so that the StyleGAN3 network can
share it; :func:`nada.weights.load_generator` decides which files it reads.
"""
