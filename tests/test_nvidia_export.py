"""Styles exported back into NVIDIA network pickles (``nada.nets.nvidia_export``, ``nada.styles.pkl_files``,
``python -m nada export``): the original file's structure with G_ema and G carrying the styled weights, read back by
our reader and rendering the styled images, nothing of ours inside; and ``.pt`` exports of NVIDIA-sourced StyleGAN2.

NVIDIA's own loader is not run here (its code is not part of the project): the shared fixtures' embedded source is a
comment. That check was made once, outside the project, on a snapshot written by NVIDIA's training code.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import os
import pickle
import pickletools
import re
import subprocess
import sys

import pytest
import torch

from nada.cli import main
from nada.nets.nvidia_export import (
    WRITTEN_GLOBALS,
    ExportError,
    generator_nvidia_state,
    pickle_globals,
    write_network_pickle,
)
from nada.nets.nvidia_pickle import LEGACY_TORCH_MAGIC, NetworkPickle, NvidiaModule, plain, read_network_pickle
from nada.nets.nvidia_sg2 import nvidia_state_dict
from nada.styles import StyleMismatchError, apply_style, save_style, style_from_generators
from nada.styles.pkl_files import export_style_pkl
from nada.styles.pt_files import export_style_pt
from nada.weights import load_generator

from .fixtures import fixture_path
from .helpers import PROJECT_ROOT

TOL = 1e-4  # of the image's range (the fixture README's suggestion)
# What NVIDIA's StyleGAN2-ADA and StyleGAN3 snapshots name (numpy's helpers in the spelling of numpy >= 2 here, as
# the fixtures were written); an exported file names nothing else.
NVIDIA_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch.storage", "_load_from_bytes"), ("dnnlib.util", "EasyDict"),
    ("collections", "OrderedDict"), ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct")}
STORAGE_KEY = re.compile(rb"X[\x08-\x14]\x00\x00\x00\d{8,20}")  # a storage's key in a nested torch.save blob


def _fixture(name: str = "sg2ada_256"):
    return fixture_path("nvidia", f"{name}.pkl")


@pytest.fixture(scope="module")
def net() -> NetworkPickle:
    return read_network_pickle(_fixture())


@pytest.fixture(scope="module")
def source():
    return load_generator(_fixture())


def _weight_style(g):
    """A weight style: a few tensors perturbed (a convolution, a ToRGB bias, a noise map: a buffer in NVIDIA's)."""
    a = copy.deepcopy(g)
    torch.manual_seed(3)
    with torch.no_grad():
        a.convs[3].conv.weight.add_(0.3 * a.convs[3].conv.weight.std() * torch.randn_like(a.convs[3].conv.weight))
        a.to_rgbs[2].bias.add_(0.1)
        a.noises.noise_3.mul_(0.5)
    return style_from_generators(g, a, {"source": "sg2ada_256.pkl"})


def _delta_style(g):
    """A compact style: StyleDomain's s + delta on every modulated convolution, ToRGB included."""
    b = copy.deepcopy(g)
    torch.manual_seed(4)
    b.set_style_offsets({f"{n}.style_delta": 0.3 * torch.randn(m.in_ch) for n, m in b.modulated_convs().items()})
    return style_from_generators(g, b, {"source": "sg2ada_256.pkl", "config": {"params": "style_delta"}})


STYLES = {"weights": _weight_style, "style_delta": _delta_style}


def _images(g, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([g(z, truncation=psi) for psi in (1.0, 0.7)])


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).abs().max() / (ref.max() - ref.min()))


def _structure(value, depth: int = 0):
    """A comparable description of a data tree: tensors as (dtype, shape), modules as their meta, the rest as is."""
    if isinstance(value, NvidiaModule):
        return ("module", _structure({k: v for k, v in value.meta.items()}, depth + 1))
    if isinstance(value, torch.Tensor):
        return ("tensor", str(value.dtype), tuple(value.shape))
    if isinstance(value, dict):
        return (type(value).__name__, [(k, _structure(v, depth + 1)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_structure(v, depth + 1) for v in value])
    return ("value", repr(plain(value)))


def _blob_globals(data: bytes) -> set[tuple[str, str]]:
    """The globals named inside every nested torch.save blob (legacy format: several pickles, then raw bytes)."""
    found: set[tuple[str, str]] = set()
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name.endswith("BINBYTES") or op.name == "BINBYTES8":
            if arg.startswith(LEGACY_TORCH_MAGIC):
                f = io.BytesIO(arg)
                for _ in range(4):  # magic, protocol, sys_info, the storage
                    found |= pickle_globals(f)
    return found


# ------------------------------------------------------------------------------------------- written back
@pytest.mark.parametrize("name", ["sg2ada_256", "sg3t_256"])
def test_a_file_written_back_unchanged_is_the_original_byte_for_byte(tmp_path, name):
    """The writer reproduces NVIDIA's own pickling: only the storages' keys (memory addresses) differ."""
    original = read_network_pickle(_fixture(name))
    path = tmp_path / "again.pkl"
    write_network_pickle(original, dict(original.generator().state_dict), path)
    a, b = _fixture(name).read_bytes(), path.read_bytes()
    assert len(a) == len(b) and STORAGE_KEY.sub(b"K", a) == STORAGE_KEY.sub(b"K", b)


@pytest.mark.parametrize("kind", list(STYLES))
def test_an_exported_style_reads_back_and_renders_the_styled_images(tmp_path, net, source, kind):
    style = STYLES[kind](source)
    path = export_style_pkl(source, style, net, tmp_path / "styled.pkl")
    back = read_network_pickle(path)
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(5))
    styled = apply_style(source, style)
    ref, theirs = _images(styled, z), _images(load_generator(path), z)
    assert _rel(theirs, ref) < TOL and _rel(_images(source, z), ref) > 0.05  # the style shows, and is what we wrote
    # the file's structure is the original's: entries, order, persistent objects, dtypes and shapes
    assert list(back.data) == list(net.data) and back.protocol == net.protocol
    assert _structure(back.data) == _structure(net.data)
    assert back.data["G"] is back.data["G_ema"]  # as the fixture shares them
    old, new = net.generator(), back.generator()
    assert new.module_src == old.module_src and new.init_kwargs == old.init_kwargs
    expected = nvidia_state_dict(styled.fold_style_offsets())
    changed = {k for k, v in new.state_dict.items() if not torch.equal(v, old.state_dict[k])}
    assert all(torch.equal(new.state_dict[k], v) for k, v in expected.items())
    assert changed and "mapping.w_avg" not in changed and not any(k.startswith("mapping.") for k in changed)
    if kind == "style_delta":  # folded into the affine biases, and nowhere else
        assert changed == {k for k in old.state_dict if k.endswith("affine.bias")}
    else:
        assert changed == {"synthesis.b16.conv1.weight", "synthesis.b32.torgb.bias", "synthesis.b16.conv0.noise_const"}


@pytest.mark.parametrize("name", ["sg3t_256", "sg3r_256"])
def test_a_stylegan3_style_exports_reads_back_and_renders(tmp_path, name):
    """StyleGAN3 keeps NVIDIA's names: its compact style folds into the affine layers and goes back into the file."""
    original, sg3 = read_network_pickle(_fixture(name)), load_generator(_fixture(name))
    styled = copy.deepcopy(sg3)
    torch.manual_seed(6)
    styled.set_style_offsets({f"{n}.style_delta": 0.3 * torch.randn(m.in_ch)
                              for n, m in styled.modulated_convs().items()})
    style = style_from_generators(sg3, styled, {"source": f"{name}.pkl", "config": {"params": "style_delta"}})
    path = export_style_pkl(sg3, style, original, tmp_path / "styled.pkl")
    back = read_network_pickle(path)
    assert list(back.data) == list(original.data) and back.generator().module_src == original.generator().module_src
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(5))
    ref, theirs = _images(apply_style(sg3, style), z), _images(load_generator(path), z)
    assert _rel(theirs, ref) < TOL and _rel(_images(sg3, z), ref) > 0.05
    old = original.generator().state_dict
    changed = {k for k, v in back.generator().state_dict.items() if not torch.equal(v, old[k])}
    assert changed and all(k.endswith("affine.bias") for k in changed)  # the deltas, folded into the biases


def test_nothing_of_ours_is_inside(tmp_path, net, source):
    path = export_style_pkl(source, _delta_style(source), net, tmp_path / "styled.pkl")
    data = path.read_bytes()
    with open(_fixture(), "rb") as f:
        assert pickle_globals(f) <= NVIDIA_GLOBALS  # the scan itself, on NVIDIA's file (memoised module names too)
    found = pickle_globals(io.BytesIO(data))
    assert found <= NVIDIA_GLOBALS and found <= WRITTEN_GLOBALS
    assert b"nada" not in data
    assert _blob_globals(data) == _blob_globals(_fixture().read_bytes()) == {("torch", "FloatStorage")}
    evil = pickle.dumps({"x": os.system}, protocol=4)  # the scan sees foreign names
    assert ("posix" if os.name == "posix" else "nt", "system") in pickle_globals(io.BytesIO(evil))


def test_other_networks_and_entries_are_written_as_they_were(tmp_path, net, source):
    """D and augment_pipe (here: persistent modules made of the mapping network's meta) keep every tensor bit for bit,
    and G, a separate object from G_ema in a real snapshot, takes the same styled weights."""
    mapping = net.generator().submodules["mapping"]
    d = NvidiaModule("Discriminator", mapping.module_src, {}, mapping.state_dict,
                     {**mapping.meta, "class_name": "Discriminator"})
    g = copy.copy(net.data["G_ema"])  # another object with the same meta: written separately
    full = dataclasses.replace(net, data={**net.data, "G": g, "D": d, "augment_pipe": d})
    path = export_style_pkl(source, _weight_style(source), full, tmp_path / "full.pkl")
    back = read_network_pickle(path)
    assert back.data["G"] is not back.data["G_ema"] and back.data["D"] is back.data["augment_pipe"]
    assert back.data["D"].class_name == "Discriminator" and back.data["training_set_kwargs"] == net.data[
        "training_set_kwargs"]
    assert all(torch.equal(back.data["D"].state_dict[k], v) for k, v in mapping.state_dict.items())
    assert all(torch.equal(back.data["G"].state_dict[k], v) for k, v in back.data["G_ema"].state_dict.items())


@pytest.mark.parametrize("protocol, numpy_module", [(2, "numpy.core.multiarray"), (3, "numpy.core.multiarray"),
                                                    (5, "numpy._core.multiarray")])
def test_the_files_protocol_and_numpy_spelling_are_kept(tmp_path, protocol, numpy_module):
    """Python 3.7's snapshots are protocol 3, numpy < 2 spells its helpers numpy.core: written as the file was."""
    original = read_network_pickle(_fixture("sg3r_256"))  # numpy arrays and scalars in its layers' state
    old = dataclasses.replace(original, protocol=protocol, globals=frozenset({(numpy_module, "scalar")}))
    path = tmp_path / "old.pkl"
    write_network_pickle(old, dict(original.generator().state_dict), path)
    back = read_network_pickle(path)
    found = pickle_globals(io.BytesIO(path.read_bytes()))
    assert back.protocol == protocol and (numpy_module, "_reconstruct") in found and found <= WRITTEN_GLOBALS
    assert not any(m.startswith("numpy") and m != numpy_module for m, _ in found - {("numpy", "dtype"),
                                                                                    ("numpy", "ndarray")})
    assert _structure(back.data) == _structure(original.data)
    sd = back.generator().state_dict
    assert all(torch.equal(sd[k], v) for k, v in original.generator().state_dict.items())


def test_weights_that_do_not_fit_are_refused_and_nothing_is_written(tmp_path, net):
    sd = dict(net.generator().state_dict)
    path = tmp_path / "x.pkl"
    cases = [({**sd, "synthesis.b4.const": torch.zeros(3)}, "'synthesis.b4.const' is \\[3\\]"),
             ({**sd, "synthesis.b4.extra": torch.zeros(3)}, "no tensors named \\['synthesis.b4.extra'\\]"),
             ({k: v for k, v in sd.items() if k != "mapping.fc0.weight"}, "lack its parameter 'mapping.fc0.weight'"),
             ({**sd, "mapping.fc0.bias": torch.full_like(sd["mapping.fc0.bias"], float("nan"))}, "NaN")]
    for new, match in cases:
        with pytest.raises(ExportError, match=match):
            write_network_pickle(net, new, path)
    assert not path.exists()
    few = {k: v for k, v in sd.items() if "noise_const" not in k}  # buffers not given keep the file's values
    write_network_pickle(net, few, path)
    assert torch.equal(read_network_pickle(path).generator().state_dict["synthesis.b8.conv0.noise_const"],
                       sd["synthesis.b8.conv0.noise_const"])


def test_a_generator_or_style_of_another_source_is_refused(tmp_path, net, source):
    other = copy.deepcopy(source)
    with torch.no_grad():
        other.style[1].weight.mul_(1.01)
    with pytest.raises(StyleMismatchError, match="not the one in sg2ada_256.pkl"):
        export_style_pkl(other, _weight_style(other), net, tmp_path / "x.pkl")
    with pytest.raises(StyleMismatchError, match="other weights"):
        export_style_pkl(source, _weight_style(other), net, tmp_path / "x.pkl")
    assert not (tmp_path / "x.pkl").exists()


def test_generator_nvidia_state_is_the_one_dispatch_point(source):
    assert list(generator_nvidia_state(source)) == list(nvidia_state_dict(source))

    class OwnNames(torch.nn.Module):  # e.g. a StyleGAN3 that keeps NVIDIA's names
        nvidia_names = True

        def __init__(self):
            super().__init__()
            self.register_buffer("w_avg", torch.zeros(4))

    class OwnMethod(torch.nn.Module):
        def nvidia_state_dict(self):
            return {"mapping.w_avg": torch.ones(4)}

    assert list(generator_nvidia_state(OwnNames())) == ["w_avg"]
    assert list(generator_nvidia_state(OwnMethod())) == ["mapping.w_avg"]
    with pytest.raises(ExportError, match="no NVIDIA layout"):
        generator_nvidia_state(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------------------ .pt
def test_a_pt_of_an_nvidia_stylegan2_reloads_with_its_settings(tmp_path, source, tiny_generator):
    style = _delta_style(source)
    path = export_style_pt(source, style, tmp_path / "styled.pt", strength=0.5)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["nvidia_settings"] == {"channel_base": 4096, "conv_clamp": 256.0}
    again = load_generator(path)
    assert again.config() == source.config() and torch.equal(again.latent_avg, source.latent_avg)
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(6))
    assert _rel(_images(again, z), _images(apply_style(source, style, 0.5), z)) < TOL
    plain_pt = export_style_pt(tiny_generator, style_from_generators(tiny_generator, tiny_generator, {}),
                               tmp_path / "tiny.pt")
    assert "nvidia_settings" not in torch.load(plain_pt, weights_only=True)  # rosinality's files stay as they were


# -------------------------------------------------------------------------------------------- command line
def test_the_command_exports_a_style_end_to_end(tmp_path, source):
    style = save_style(_weight_style(source), tmp_path / "mine.safetensors")
    out = tmp_path / "new.pkl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "nada", "export", str(style), "--source", str(_fixture()), "--out",
                          str(out), "--strength", "0.5"], capture_output=True, text=True, cwd=PROJECT_ROOT,
                         env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(out) and not run.stderr.strip()
    z = torch.randn(1, 512, generator=torch.Generator().manual_seed(8))
    ref = _images(apply_style(source, _weight_style(source), 0.5), z)
    assert _rel(_images(load_generator(out), z), ref) < TOL
    help_text = subprocess.run([sys.executable, "-m", "nada", "export", "--help"], capture_output=True, text=True,
                               cwd=PROJECT_ROOT, env=env, timeout=120).stdout
    words = " ".join(help_text.split())
    assert "Export never runs the embedded source" in words and "tools will run it when they load" in words


def test_bad_inputs_get_one_line_naming_files_by_their_own_name(tmp_path, source, tiny_generator, capsys):
    style = save_style(_weight_style(source), tmp_path / "mine.safetensors")
    foreign = save_style(style_from_generators(tiny_generator, tiny_generator, {"source": "tiny"}),
                         tmp_path / "tiny-style.safetensors")
    rosinality = tmp_path / "plain.pt"
    torch.save({"g_ema": tiny_generator.state_dict()}, rosinality)
    (tmp_path / "folder.pkl").mkdir()
    fixture = str(_fixture())
    cases = [
        ([str(style), "--source", str(tmp_path / "missing.pkl"), "--out", str(tmp_path / "a.pkl")],
         "the source 'missing.pkl' does not exist"),
        ([str(foreign), "--source", fixture, "--out", str(tmp_path / "a.pkl")], "trained on the source generator"),
        ([str(style), "--source", str(rosinality), "--out", str(tmp_path / "a.pkl")],
         "the source 'plain.pt' is not one .*--out NEW.pt"),
        ([str(style), "--source", fixture, "--out", str(tmp_path / "folder.pkl")], "'folder.pkl' is a folder"),
        ([str(style), "--source", fixture, "--out", str(tmp_path / "a.png")], "'a.png' must end in .pkl"),
    ]
    for argv, match in cases:
        assert main(["export", *argv]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1 and re.search(match, err), err
        assert str(tmp_path) not in err and str(_fixture().parent) not in err
    assert not any(p.suffix == ".pkl" and p.is_file() for p in tmp_path.iterdir())
