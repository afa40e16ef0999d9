"""NVIDIA network pickles read as data (``nada.nets.nvidia_pickle``) and StyleGAN2-ADA as our StyleGAN2
(``nada.nets.nvidia_sg2``, ``nada.weights.load_generator``): NVIDIA's images and key manifest, the allow-list, and
bad files refused in words with nothing run.

Crafted pickles are built here, never committed: the shared fixture is read, changed and written back with a
``Pickler.reducer_override`` that names NVIDIA's globals (stand-in modules installed in ``sys.modules`` only while
pickling), or objects whose ``__reduce__`` asks for ``os.system``, ``builtins.exec``, ...
"""

from __future__ import annotations

import collections
import copy
import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys
import types

import pytest
import torch
from safetensors.torch import load_file

from nada.model_store import load_source
from nada.nets import nvidia_pickle as nvp
from nada.nets.nvidia_pickle import (
    ALLOWED_GLOBALS,
    NetworkPickle,
    NetworkPickleError,
    NvidiaModule,
    UnsafePickleError,
    UnsupportedNetworkError,
    describe_generator,
    read_generator,
    read_network_pickle,
)
from nada.nets.nvidia_sg2 import generator_from_nvidia, nvidia_key_map, nvidia_layout, nvidia_state_dict
from nada.nets.stylegan2 import Generator
from nada.styles.style import _architecture
from nada.weights import CheckpointError, UnsupportedGeneratorError, load_generator

from .fixtures import fixture_path

TOL = 1e-4  # of the image's range (the fixture README's suggestion)
EXPECTED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch.storage", "_load_from_bytes"), ("dnnlib.util", "EasyDict"), ("dnnlib", "EasyDict"),
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("_codecs", "encode"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct")}


def _fixture(name: str, ext: str = "pkl"):
    return fixture_path("nvidia", f"{name}.{ext}")


# --------------------------------------------------------------------------------- writing crafted pickles
def _named(module: str, name: str):
    """A function that pickles as the global ``module.name`` and fails the test if anything calls it."""
    def never(*args, **kwargs):
        raise AssertionError(f"{module}.{name} was called while reading")
    never.__module__, never.__name__, never.__qualname__ = module, name, name
    return never


@pytest.fixture
def dumps(monkeypatch):
    """``dumps(data) -> bytes``: an NVIDIA-layout pickle of a data tree read by nada (networks as NvidiaModule,
    dnnlib EasyDicts), written back under NVIDIA's global names."""
    persistence, util = types.ModuleType("torch_utils.persistence"), types.ModuleType("dnnlib.util")
    persistence._reconstruct_persistent_obj = _named("torch_utils.persistence", "_reconstruct_persistent_obj")
    util.EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})
    for name, mod in {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
                      "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}.items():
        monkeypatch.setitem(sys.modules, name, mod)

    class Writer(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, NvidiaModule):
                return persistence._reconstruct_persistent_obj, (obj.meta,)
            if isinstance(obj, nvp.EasyDict):
                return util.EasyDict, (), None, None, iter(obj.items())
            return NotImplemented

    def write(data) -> bytes:
        buf = io.BytesIO()
        Writer(buf, protocol=4).dump(data)
        return buf.getvalue()
    return write


def _read_fixture(name: str = "sg2ada_256") -> NetworkPickle:
    return read_network_pickle(_fixture(name))


def _with_generator(net: NetworkPickle, change) -> dict:
    """The file's entries with G and G_ema replaced by a changed copy (``change(meta)`` edits the meta in place)."""
    module = net.data["G_ema"]
    meta = copy.copy(module.meta)
    meta["state"] = dict(meta["state"])
    change(meta)
    changed = NvidiaModule(module.class_name, module.module_src, module.init_kwargs, module.state_dict, meta)
    return {**net.data, "G": changed, "G_ema": changed}


def _marker_src(marker) -> str:
    return f"open({str(marker)!r}, 'w').write('the embedded source ran')\n"


class Reduces:
    """An object that pickles as ``func(*args)``: what a malicious file asks the loader to call."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# ------------------------------------------------------------------------------------------------ the reader
def test_the_allow_list_is_what_network_pickles_use_each_mapped_to_our_own_stand_in():
    assert set(ALLOWED_GLOBALS) == EXPECTED_GLOBALS
    for key, stand_in in ALLOWED_GLOBALS.items():
        if stand_in in (set, frozenset, collections.OrderedDict):
            continue  # plain container types: calling them builds data
        assert stand_in.__module__ == nvp.__name__, key  # ours, never torch's, numpy's or NVIDIA's own
    import torch._utils
    assert ALLOWED_GLOBALS[("torch._utils", "_rebuild_tensor_v2")] is not torch._utils._rebuild_tensor_v2


@pytest.mark.parametrize("name", ["sg2ada_256", "sg3t_256", "sg3r_256"])
def test_every_fixture_uses_only_allowed_globals_and_reads_as_data(name):
    asked: set[tuple[str, str]] = set()

    class Recording(nvp._Reader):
        def find_class(self, module, attr):
            asked.add((module, attr))
            return super().find_class(module, attr)

    with open(_fixture(name), "rb") as f:
        data = Recording(f, name).load()
    assert asked <= set(ALLOWED_GLOBALS) and ("torch_utils.persistence", "_reconstruct_persistent_obj") in asked
    assert list(data) == ["G", "D", "G_ema", "augment_pipe", "training_set_kwargs"]
    g = read_generator(_fixture(name))
    meta = json.loads(_fixture(name, "json").read_text())
    assert g.class_name == "Generator" and isinstance(g.module_src, bytes) and g.module_src.startswith(b"#")
    assert {k: v for k, v in g.init_kwargs.items() if k != "img_resolution"} == meta["init_kwargs"]
    assert all(isinstance(t, torch.Tensor) for t in g.state_dict.values()) and "mapping.w_avg" in g.state_dict
    info = describe_generator(g)
    arch = {"sg2ada_256": "StyleGAN2-ADA", "sg3t_256": "StyleGAN3-T", "sg3r_256": "StyleGAN3-R"}[name]
    assert (info.architecture, info.resolution, info.num_ws, info.conditional) == (arch, 256, meta["num_ws"], False)
    assert info.summary() == f"a {arch} generator, 256 px, {meta['num_ws']} W+ rows, unconditional"


def test_a_file_object_reads_too_and_the_tree_is_kept_for_writing_back(dumps):
    with open(_fixture("sg2ada_256"), "rb") as f:
        net = read_network_pickle(f)
    assert net.name == "sg2ada_256.pkl" and set(net.networks) == {"G", "G_ema"}
    g = net.generator()
    assert g is net.data["G_ema"] and list(g.state_dict) == list(nvidia_layout(256))
    assert g.submodules["mapping"].submodules["fc0"].init_args == (512, 512)
    assert isinstance(net.data["training_set_kwargs"], dict) and net.data["training_set_kwargs"]["resolution"] == 256
    again = read_network_pickle(io.BytesIO(dumps(net.data))).generator()  # written back, read again: the same
    assert list(again.state_dict) == list(g.state_dict)
    assert all(torch.equal(again.state_dict[k], v) for k, v in g.state_dict.items())
    assert again.init_kwargs == g.init_kwargs and again.meta["module_src"] == g.meta["module_src"]


# ------------------------------------------------------------------------------------- StyleGAN2-ADA as ours
@pytest.fixture(scope="module")
def sg2():
    return load_generator(_fixture("sg2ada_256"))


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).abs().max() / (ref.max() - ref.min()))


@pytest.mark.parametrize("impl", ["batched", "grouped"])
def test_sg2ada_matches_nvidias_images_at_truncation_1_and_07(sg2, impl):
    ref = load_file(str(_fixture("sg2ada_256", "safetensors")))
    g = sg2.shared_copy().set_conv_impl(impl)
    with torch.no_grad():
        img1 = g(ref["io/z"], truncation=1.0, noise_mode="const")  # [2, 3, 256, 256]
        img07 = g(ref["io/z"], truncation=0.7, noise_mode="const")  # centre: the file's w_avg
        ws = g.to_wplus(g.mapping(ref["io/z"]))
        ws = g.truncation_center() + 0.7 * (ws - g.truncation_center())  # [2, 14, 512]
    assert _rel(img1, ref["io/img_psi1"]) < TOL
    assert _rel(img07, ref["io/img_psi07"]) < TOL
    assert _rel(ws, ref["io/ws_psi07"]) < TOL


def test_w_avg_is_the_truncation_centre_and_the_state_dict_stays_rosinalitys(sg2):
    w_avg = read_generator(_fixture("sg2ada_256")).state_dict["mapping.w_avg"]
    assert torch.equal(sg2.truncation_center(), w_avg[None])
    assert "latent_avg" not in sg2.state_dict() and not any("w_avg" in k for k in sg2.state_dict())
    plain = Generator(256, channel_max=64)  # a rosinality generator of that size: the same keys
    assert list(sg2.state_dict()) == list(plain.state_dict())
    assert sg2.n_latent == 14 and sg2.channels == {4: 64, 8: 64, 16: 64, 32: 64, 64: 64, 128: 32, 256: 16}


def test_nvidias_settings_are_in_the_config_and_compared_as_architecture(sg2):
    cfg = sg2.config()
    assert cfg == {"size": 256, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2, "channel_max": 64,
                   "channel_base": 4096, "conv_clamp": 256.0}
    assert Generator(**cfg).config() == cfg
    assert Generator(256).config() == {"size": 256, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2,
                                       "channel_max": 512}  # rosinality generators: as before
    assert _architecture(cfg)["channels"] == sg2.channels
    assert _architecture(cfg) != _architecture({**cfg, "conv_clamp": None})
    assert _architecture({**cfg, "mapping_lr": 0.01}) == _architecture(cfg)


def test_the_conv_clamp_bounds_every_layer_on_both_paths():
    torch.manual_seed(0)
    g = Generator(32, style_dim=32, n_mlp=2, channel_max=16, conv_clamp=0.5).eval()
    z = torch.randn(2, 32)
    outs = {}
    for impl in ("batched", "grouped"):
        g.set_conv_impl(impl)
        with torch.no_grad():
            x = g.conv1(g.input(2), g.mapping(z), g.noise_buffers()[0])
            outs[impl] = g(z)
        assert x.abs().max() <= 0.5
    assert torch.allclose(outs["batched"], outs["grouped"], atol=1e-5)
    unclamped = copy.deepcopy(g)
    for m in unclamped.modules():
        if hasattr(m, "conv_clamp"):
            m.conv_clamp = None
    with torch.no_grad():
        assert not torch.allclose(unclamped(z), outs["grouped"], atol=1e-3)


def test_our_manifest_at_the_public_1024_config_is_nvidias():
    meta = json.loads(_fixture("sg2ada_256", "json").read_text())
    pub = meta["public_kwargs"]
    assert (pub["channel_base"], pub["channel_max"], pub["mapping_kwargs"]["num_layers"]) == (32768, 512, 8)
    with torch.device("meta"):  # shapes only
        g = Generator(meta["full_resolution"], channel_max=pub["channel_max"], channel_base=pub["channel_base"],
                      n_mlp=pub["mapping_kwargs"]["num_layers"], conv_clamp=pub["conv_clamp"])
        g.latent_avg = torch.zeros(1, 512)
    ours = {k: list(v.shape) for k, v in nvidia_state_dict(g).items()}
    assert list(ours.items()) == list(meta["manifest_full"].items())  # names, shapes and order
    mapped = set(nvidia_key_map(1024).values()) - {"latent_avg"}
    fixed = {k for k in g.state_dict() if k.endswith(("blur.kernel", "upsample.kernel"))}
    assert mapped | fixed == set(g.state_dict()) and not mapped & fixed


def test_every_source_path_takes_a_network_pickle(tmp_path):
    renamed = tmp_path / "my-model.pt"  # a network pickle under another name is recognised by its content
    renamed.write_bytes(_fixture("sg2ada_256").read_bytes())
    g = load_source(str(renamed))
    assert g.size == 256 and g.conv_impl == "auto" and g.latent_avg is not None


# --------------------------------------------------------------------------------------------- refusals
def _refused(path, match: str, error=CheckpointError) -> str:
    with pytest.raises(error, match=match) as err:
        load_generator(path)
    message = str(err.value)
    assert str(path.parent) not in message and path.name in message  # the file's own name, never its folder
    return message


@pytest.mark.parametrize("func, args, name", [
    (os.system, ("touch {marker}",), "posix.system" if os.name == "posix" else "nt.system"),
    (eval, ("open({marker!r}, 'w')",), "builtins.eval"),
    (exec, ("open({marker!r}, 'w')",), "builtins.exec"),
    (subprocess.Popen, (["touch", "{marker}"],), "subprocess.Popen"),
    (torch.nn.Linear, (2, 2), "torch.nn.modules.linear.Linear"),
])
def test_any_other_global_is_refused_by_name_and_nothing_runs(tmp_path, func, args, name):
    marker = tmp_path / "ran"
    args = tuple([a.format(marker=str(marker)) for a in x] if isinstance(x, list) else
                 x.format(marker=str(marker)) if isinstance(x, str) else x for x in args)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G": Reduces(func, *args), "G_ema": None}, protocol=4))
    message = _refused(path, "may run code")
    assert f"'{name}'" in message and "nothing in the file was run" in message
    with pytest.raises(UnsafePickleError):
        read_network_pickle(path)
    assert not marker.exists()


def test_embedded_source_is_kept_as_bytes_and_never_run(tmp_path, dumps):
    marker = tmp_path / "ran"
    net = _read_fixture()
    data = _with_generator(net, lambda meta: meta.update(module_src=_marker_src(marker) + meta["module_src"]))
    path = tmp_path / "with-source.pkl"
    path.write_bytes(dumps(data))
    module = read_generator(path)
    assert module.module_src.startswith(_marker_src(marker).encode())
    g = load_generator(path)  # the whole way to a generator, and an image
    with torch.no_grad():
        assert torch.isfinite(g(torch.randn(1, 512))).all()
    assert not marker.exists()
    # the same source as a call to builtins.exec, beside a readable generator: refused before anything is called
    path.write_bytes(dumps({**data, "augment_pipe": Reduces(exec, _marker_src(marker))}))
    assert "'builtins.exec'" in _refused(path, "may run code")
    assert not marker.exists()


def test_a_global_inside_a_nested_tensor_blob_is_refused_too(tmp_path, dumps):
    marker = tmp_path / "ran"
    blob = pickle.dumps(Reduces(os.system, f"touch {marker}"), protocol=2)  # where a storage's torch.save should be
    path = tmp_path / "blob.pkl"
    path.write_bytes(dumps({**_read_fixture().data, "augment_pipe": Reduces(torch.storage._load_from_bytes, blob)}))
    assert "system'" in _refused(path, "may run code")
    assert not marker.exists()


def test_a_truncated_file_is_refused_in_words(tmp_path):
    data = _fixture("sg2ada_256").read_bytes()
    for cut in (50, len(data) // 2, len(data) - 1):
        path = tmp_path / "cut.pkl"
        path.write_bytes(data[:cut])
        _refused(path, "truncated or damaged")
        with pytest.raises(NetworkPickleError, match="truncated"):
            read_network_pickle(io.BytesIO(data[:cut]))
    (tmp_path / "empty.pkl").write_bytes(b"")
    _refused(tmp_path / "empty.pkl", "empty")


def test_a_discriminator_only_pickle_is_refused(tmp_path, dumps):
    net = _read_fixture()
    mapping = net.data["G_ema"].submodules["mapping"]
    d = NvidiaModule("Discriminator", b"", {}, {}, {**mapping.meta, "class_name": "Discriminator"})
    path = tmp_path / "d-only.pkl"
    path.write_bytes(dumps({**net.data, "G": None, "G_ema": None, "D": d}))
    assert "only D (Discriminator)" in _refused(path, "holds no generator")


def test_a_conditional_generator_is_refused(tmp_path, dumps):
    def conditional(meta):
        meta["state"].update(c_dim=10, _init_kwargs={**meta["state"]["_init_kwargs"], "c_dim": 10})
    path = tmp_path / "cond.pkl"
    path.write_bytes(dumps(_with_generator(_read_fixture(), conditional)))
    _refused(path, "class-conditional \\(10 labels\\).*class label")
    with pytest.raises(UnsupportedNetworkError):
        read_generator(path)


def test_a_plain_torch_save_named_pkl_is_refused(tmp_path, tiny_generator):
    for zipped in (True, False):
        path = tmp_path / "state.pkl"
        torch.save({"g_ema": tiny_generator.state_dict()}, path, _use_new_zipfile_serialization=zipped)
        _refused(path, "PyTorch checkpoint written by torch.save.*\\.pt name")


def test_an_unknown_architecture_is_refused(tmp_path, dumps):
    def unknown(meta):
        meta["class_name"] = "Generator"
        meta["state"]["_modules"] = {"mapping": meta["state"]["_modules"]["mapping"]}  # no synthesis network
    path = tmp_path / "xl.pkl"
    path.write_bytes(dumps(_with_generator(_read_fixture(), unknown)))
    _refused(path, "unknown architecture.*does not know")
    path.write_bytes(pickle.dumps({"G": 1, "weights": [1, 2]}, protocol=4))
    _refused(path, "not an NVIDIA network pickle")
    with pytest.raises(UnsupportedNetworkError):
        read_network_pickle(path)


@pytest.mark.skipif(importlib.util.find_spec("nada.nets.stylegan3") is not None,
                    reason="nada.nets.stylegan3 exists: StyleGAN3 pickles load")
def test_stylegan3_is_recognised_and_refused_in_words_until_nada_runs_it():
    with pytest.raises(UnsupportedGeneratorError, match="holds a StyleGAN3-T generator, 256 px, 16 W\\+ rows.*"
                                                        "cannot run StyleGAN3-T networks yet") as err:
        load_generator(_fixture("sg3t_256"))
    assert isinstance(err.value, NotImplementedError) and isinstance(err.value, CheckpointError)


def test_stylegan2_ada_variants_ours_cannot_run_are_refused(tmp_path, dumps):
    def resnet(meta):
        synthesis = meta["state"]["_modules"]["synthesis"]
        b8 = synthesis.submodules["b8"]
        b8.meta["state"] = {**b8.meta["state"], "architecture": "resnet"}
    path = tmp_path / "resnet.pkl"
    path.write_bytes(dumps(_with_generator(_read_fixture(), resnet)))
    _refused(path, "'resnet' synthesis architecture")
    module = read_generator(path)
    with pytest.raises(UnsupportedNetworkError):
        generator_from_nvidia(module, path.name)
