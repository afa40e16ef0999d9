"""Weights from a hub, end to end: a local stand-in for the Hugging Face hub (``bench.local_hub``) serves small files
in the exact public layouts (``bench.hub_files``) at the registry's real repo ids and file names, and nada downloads,
caches and strictly loads them through its real code path (``huggingface_hub.hf_hub_download``, no mocks of nada).

Every test gets a fresh hub (files copied from one set built per session) and a fresh, empty weights cache. The
command-line tests run ``python -m nada`` in a subprocess pointed at the hub with ``hub_env``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.hub_files import SMALL_SIZE, populate
from bench.local_hub import LocalHub, hub_env, patch_hub_constants
from nada import weights
from nada.registry import REGISTRY, Mirror
from nada.weights import (
    CheckpointError,
    UnsupportedGeneratorError,
    WeightsUnavailableError,
    cached_path,
    can_run,
    fetch,
)

from .fixtures import fixture_path
from .helpers import PROJECT_ROOT

# One asset of every kind the registry has, plus a ZeqiangLai/StyleGAN2 source without a recorded size (afhq-cat,
# served at its own 512 px) and one with a recorded size that the small file cannot match (car: the wrong-size test).
HUB_ASSETS = ("ffhq", "afhq-cat", "car", "nada-pixar", "e4e-ffhq", "clip-vit-b32", "clip-vit-b16", "arcface-ir-se50",
              "dlib-landmarks")
SIZES = {"afhq-cat": 512}  # the others are hub_files' small default (256 px): ffhq, its style and e4e fit together
FIRST_MIRROR_ONLY = {"dlib-landmarks"}  # the real 100 MB file: served once (its backup mirror adds nothing here)
PADDED = {"nada-pixar"}  # padded to the registry's published size (132,724,587 bytes), so the real record is checked
BIG = 20 * 2**20  # files above this are hard-linked into each test's hub instead of copied (never written to)


def mirrors(name: str) -> tuple[Mirror, ...]:
    return REGISTRY[name].mirrors


def served_entries(names: tuple[str, ...] = HUB_ASSETS) -> list[tuple]:
    """``populate`` entries: every mirror of every asset named."""
    out = []
    for name in names:
        asset = REGISTRY[name]
        for mirror in asset.mirrors[:1] if name in FIRST_MIRROR_ONLY else asset.mirrors:
            out.append((asset.kind, mirror.repo_id, mirror.filename, *([SIZES[name]] if name in SIZES else [])))
    return out


@pytest.fixture(scope="session")
def hub_files(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """(folder, [(repo_id, filename)]) of the small files, built once (~2 s); each test's hub serves copies."""
    pytest.importorskip("face_recognition_models")  # the dlib landmark file is copied from it
    source = LocalHub(tmp_path_factory.mktemp("hub-files"))  # never started: only its folder layout is used
    entries = served_entries()
    populate(source, served_entries(tuple(PADDED)), small=True, match_sizes=True)
    populate(source, served_entries(tuple(n for n in HUB_ASSETS if n not in PADDED)), small=True, match_sizes=False)
    return source.root, [(e[1], e[2]) for e in entries]


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A fresh, empty weights cache for this test."""
    folder = tmp_path / "cache"
    folder.mkdir()
    return folder


@pytest.fixture
def hub(hub_files, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch):
    """A started LocalHub serving every file of :func:`hub_files`; huggingface_hub and nada (in this process) are
    pointed at it with the fresh ``cache``. Stopped after the test."""
    root, files = hub_files
    server = LocalHub(tmp_path / "hub")
    for repo_id, filename in files:
        src, dest = root.joinpath(*repo_id.split("/"), *filename.split("/")), server.path(repo_id, filename)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.stat().st_size > BIG:
            os.link(src, dest)
        else:
            shutil.copyfile(src, dest)
        server.add(repo_id, filename, dest)
    server.start()
    patch_hub_constants(monkeypatch, server, cache)
    yield server
    server.stop()


def cached_blobs(cache: Path) -> list[Path]:
    """Every file in the cache's blob stores, partial downloads included."""
    return [p for p in cache.glob("models--*/blobs/*") if p.is_file()]


def run_nada(*args: str, hub: LocalHub, cache: Path, **extra_env: str) -> subprocess.CompletedProcess:
    """``python -m nada ...`` in a subprocess pointed at ``hub`` (huggingface_hub imported afresh there)."""
    env = {**os.environ, **hub_env(hub, cache), **extra_env}
    return subprocess.run([sys.executable, "-m", "nada", *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env=env, timeout=180)


# ---------------------------------------------------------------------------------- download, cache, strict load
def test_generator_downloads_once_into_the_cache_and_loads_strictly(hub, cache):
    g = weights.load_generator("ffhq")
    mirror = mirrors("ffhq")[0]
    assert hub.downloads == [(mirror.repo_id, mirror.filename)]
    path = cached_path("ffhq")
    assert path is not None and path.is_relative_to(cache) and path.name == mirror.filename
    assert g.size == SMALL_SIZE and g.n_latent == 14
    assert g.latent_avg is not None and g.latent_avg.shape == (1, 512)  # the converted FFHQ file's latent_avg
    with torch.no_grad():
        img = g(torch.randn(1, 512), truncation=0.7, w_avg=g.latent_avg)  # [1, 3, 256, 256]
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()

    again = weights.load_generator("ffhq")  # from the cache: nothing is downloaded again
    assert len(hub.downloads) == 1
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in g.state_dict().items())

    cat = weights.load_generator("afhq-cat")  # a ZeqiangLai/StyleGAN2 source (no size recorded), in a subfolder
    assert cat.size == 512 and hub.downloads[-1] == ("ZeqiangLai/StyleGAN2", "ada/afhqcat.pt")


def test_published_style_imports_against_its_generator(hub):
    from nada.styles import import_style_pt, load_any_style

    g = weights.load_generator("ffhq")
    style = import_style_pt("nada-pixar", g)  # {"g_ema"} only, rinong/stylegan-nada-models/pixar.pt
    assert hub.downloads[-1] == ("rinong/stylegan-nada-models", "pixar.pt")
    assert style.tensors and all(k.startswith(("conv1.", "convs.")) for k in style.tensors)
    assert style.meta["published"] == "rinong/stylegan-nada-models/pixar.pt"
    same = load_any_style("nada-pixar", g, "ffhq")  # cached now
    assert len(hub.downloads) == 2 and sorted(same.tensors) == sorted(style.tensors)


def test_e4e_arcface_and_dlib_download_and_load(hub):
    from nada.align import FaceAligner, load_predictor
    from nada.id_loss import load_id_loss
    from nada.weights import load_e4e

    encoder, latent_avg = load_e4e("e4e-ffhq")
    assert latent_avg.shape == (14, 512) and len(encoder.styles) == 14
    assert hub.downloads[-1] == (mirrors("e4e-ffhq")[0].repo_id, "e4e_ffhq_encode.pt")

    id_loss = load_id_loss("arcface-ir-se50")
    with torch.no_grad():
        feats = id_loss.features(torch.rand(1, 3, 256, 256) * 2 - 1)  # [1, 512]
    assert feats.shape == (1, 512) and torch.isfinite(feats).all()
    assert hub.downloads[-1] == (mirrors("arcface-ir-se50")[0].repo_id, mirrors("arcface-ir-se50")[0].filename)

    # nada.align prefers the face_recognition_models copy when installed, so fetch the hub's copy by name
    pytest.importorskip("dlib")
    path = fetch("dlib-landmarks")
    assert hub.downloads[-1] == (mirrors("dlib-landmarks")[0].repo_id, "shape_predictor_68_face_landmarks.dat")
    load_predictor(path)
    from PIL import Image

    face = FaceAligner.load(path).align(Image.open(PROJECT_ROOT / "examples" / "astronaut.jpg"), output_size=64)
    assert face.size == (64, 64)


def test_clip_prefers_safetensors_and_falls_back_to_the_bin_file(hub):
    from nada.clip_models import load_clip

    b32 = load_clip("clip-vit-b32")  # both files served: the safetensors one (no pickle) is the one downloaded
    repo32 = mirrors("clip-vit-b32")[0].repo_id
    assert hub.downloads == [(repo32, "open_clip_model.safetensors")]
    assert cached_path("clip-vit-b32").name == "open_clip_model.safetensors"

    repo16 = mirrors("clip-vit-b16")[0].repo_id
    hub.remove(repo16, "open_clip_model.safetensors")
    b16 = load_clip("clip-vit-b16")  # 404 on the safetensors file, then the .bin
    assert hub.downloads[-1] == (repo16, "open_clip_pytorch_model.bin")
    assert ("HEAD", f"/{repo16}/resolve/main/open_clip_model.safetensors") in hub.requests
    assert cached_path("clip-vit-b16").name == "open_clip_pytorch_model.bin"
    assert b32.visual.conv1.kernel_size == (32, 32) and b16.visual.conv1.kernel_size == (16, 16)
    import clip

    with torch.no_grad():
        assert b16.encode_text(clip.tokenize(["a photo"])).shape == (1, 32)
    assert b32.visual.conv1.weight.dtype == torch.float32  # stored in float16, returned in float32


def test_the_held_out_judge_downloads_from_its_hub_repo_and_builds(hub):
    """clip-vit-l14 (nada evaluate's judge) comes from timm/vit_large_patch14_clip_224.openai like the other CLIP
    models: the safetensors file first, built strictly, float32."""
    from bench.hub_files import clip_state_dict_files
    from nada.clip_models import load_clip

    repo = mirrors("clip-vit-l14")[0].repo_id
    for filename, data in clip_state_dict_files("ViT-L/14").items():  # a small ViT-L/14-shaped stand-in
        hub.add(repo, filename, data)
    model = load_clip("ViT-L/14")  # OpenAI's spelling is an alias of the registry name
    assert hub.downloads == [(repo, "open_clip_model.safetensors")]
    assert cached_path("clip-vit-l14").name == "open_clip_model.safetensors"
    assert model.visual.conv1.kernel_size == (14, 14) and model.visual.conv1.weight.dtype == torch.float32
    import clip

    with torch.no_grad():
        assert model.encode_text(clip.tokenize(["a photo"])).shape == (1, 32)


# ----------------------------------------------------------------------------------------------------- mirrors
def test_a_missing_file_or_repo_falls_through_to_the_next_mirror(hub):
    first, second = mirrors("arcface-ir-se50")
    hub.remove(first.repo_id, first.filename)  # AIRI-Institute/HairFastGAN exists, without the file: EntryNotFound
    path = fetch("arcface-ir-se50")
    assert path.name == "model_ir_se50.pth"
    assert ("HEAD", f"/{first.repo_id}/resolve/main/{first.filename}") in hub.requests  # both were tried
    assert hub.downloads == [(second.repo_id, second.filename)]
    from nada.id_loss import load_id_loss

    load_id_loss("arcface-ir-se50")  # loads from the cached second mirror, without the network
    assert len(hub.downloads) == 1

    e4e_first, e4e_second = mirrors("e4e-ffhq")
    shutil.rmtree(hub.repo_dir(e4e_first.repo_id))  # public-data/e4e gone altogether: RepoNotFound
    assert fetch("e4e-ffhq").is_file() and hub.downloads[-1] == (e4e_second.repo_id, e4e_second.filename)


def test_no_mirror_has_it_names_every_location(hub, cache):
    for mirror in mirrors("arcface-ir-se50"):
        hub.remove(mirror.repo_id, mirror.filename)
    with pytest.raises(WeightsUnavailableError) as err:
        fetch("arcface-ir-se50")
    msg = str(err.value)
    for mirror in mirrors("arcface-ir-se50"):
        assert f"{mirror.repo_id}/{mirror.filename}: not found" in msg
    assert "NADA_HUB_ARCFACE_IR_SE50" in msg and "\n" not in msg
    assert cached_path("arcface-ir-se50") is None and not cached_blobs(cache)


# ------------------------------------------------------------------------------------ damaged and partial files
def test_a_file_of_the_wrong_size_is_refused_and_not_kept(hub, cache, monkeypatch):
    # car: the registry records 123,949,595 bytes; the hub serves a small generator instead
    for attempt in (1, 2):
        with pytest.raises(CheckpointError, match=r"is [\d,]+ bytes, not the published 123,949,595.*removed"):
            fetch("car")
        assert cached_path("car") is None and not cached_blobs(cache)
        assert len(hub.downloads) == attempt  # the second fetch downloads again: nothing was trusted
    with pytest.raises(CheckpointError):
        weights.load_generator("car")

    # the published style is served at its recorded size; a record one byte larger refuses the same file
    style = REGISTRY["nada-pixar"]
    mirror = style.mirrors[0]
    wrong = dataclasses.replace(style, mirrors=(dataclasses.replace(mirror, nbytes=mirror.nbytes + 1),))
    monkeypatch.setitem(REGISTRY, "nada-pixar", wrong)
    with pytest.raises(CheckpointError, match=f"is {mirror.nbytes:,} bytes, not the published {mirror.nbytes + 1:,}"):
        fetch("nada-pixar")
    assert cached_path("nada-pixar") is None and not cached_blobs(cache)
    monkeypatch.setitem(REGISTRY, "nada-pixar", style)
    assert fetch("nada-pixar").stat().st_size == mirror.nbytes == 132_724_587


def test_a_truncated_download_fails_and_leaves_nothing_trusted(hub, cache, monkeypatch):
    mirror = mirrors("ffhq")[0]
    size = hub.path(mirror.repo_id, mirror.filename).stat().st_size
    hub.truncate(mirror.repo_id, mirror.filename, size // 2)  # every GET cut: the client retries (~5 s), gives up
    t0 = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match=re.escape(f"{mirror.repo_id}/{mirror.filename}")) as err:
        fetch("ffhq")
    assert time.monotonic() - t0 < 30 and "\n" not in str(err.value)
    assert cached_path("ffhq") is None and not cached_blobs(cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the next run, offline, finds nothing to trust
    assert not weights.asset_status("ffhq").cached
    with pytest.raises(WeightsUnavailableError, match="not cached"):
        fetch("ffhq")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub.clear_truncations()  # online again, the whole file arrives
    assert weights.load_generator("ffhq").size == SMALL_SIZE


# ---------------------------------------------------------------------------------------- hub down, offline mode
def test_an_unreachable_hub_uses_the_cache_else_says_so(hub, cache):
    cached, url = fetch("ffhq"), hub.url
    hub.stop()  # the port now refuses connections
    t0 = time.monotonic()
    assert fetch("ffhq") == cached
    assert weights.load_generator("ffhq").size == SMALL_SIZE
    with pytest.raises(WeightsUnavailableError) as err:
        fetch("e4e-ffhq")
    assert time.monotonic() - t0 < 10  # no client retries against a dead server
    msg = str(err.value)
    assert "could not be reached" in msg and url in msg and "offline mode" not in msg and "\n" not in msg
    assert "public-data/e4e/e4e_ffhq_encode.pt" in msg


def test_offline_with_nothing_cached_is_one_clear_line(hub, cache, tmp_path):
    out = run_nada("generate", "--source", "ffhq", "-o", str(tmp_path / "face.png"), hub=hub, cache=cache,
                   HF_HUB_OFFLINE="1")
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert "not cached" in lines[0] and "offline mode is on" in lines[0] and "Traceback" not in out.stderr
    assert not hub.requests  # offline: the hub was never contacted


# ----------------------------------------------------------------------------------------------- download, doctor
def test_download_command_then_doctor(hub, cache):
    out = run_nada("download", "ffhq", "clip-vit-b32", "e4e-ffhq", hub=hub, cache=cache)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert set(rows) == {"ffhq", "clip-vit-b32", "e4e-ffhq"}, out.stdout
    for line in rows.values():
        assert re.search(r"\d[\d,]* (KB|MB)\s+ok$", line), line
    assert "open_clip_model.safetensors" in rows["clip-vit-b32"]
    assert "3 ok, 0 failed" in out.stderr
    assert {d[1] for d in hub.downloads} == {"stylegan2-ffhq-config-f.pt", "open_clip_model.safetensors",
                                             "e4e_ffhq_encode.pt"}

    for offline in ("0", "1"):
        doc = run_nada("doctor", hub=hub, cache=cache, HF_HUB_OFFLINE=offline)
        assert doc.returncode == 0, doc.stderr
        state = {m.group(1): m.group(2) for m in re.finditer(r"^(\S+)\s.*\s(cached|missing|installed)$", doc.stdout,
                                                             re.M)}
        assert state["ffhq"] == state["clip-vit-b32"] == state["e4e-ffhq"] == "cached", doc.stdout
        assert state["clip-vit-b16"] == state["arcface-ir-se50"] == "missing"
        assert re.search(r"^Generate:\s+ready$", doc.stdout, re.M)
        adapt = re.search(r"^Adapt:\s+(.*)$", doc.stdout, re.M).group(1)
        if offline == "1":
            assert adapt == "will NOT work offline: missing clip-vit-b16" and "offline mode" in doc.stdout
        else:
            assert adapt == "downloads clip-vit-b16 on first use" and hub.url in doc.stdout
    assert len(hub.downloads) == 3  # doctor downloads nothing


def test_download_command_reports_a_failure(hub, cache):
    for mirror in mirrors("arcface-ir-se50"):
        hub.remove(mirror.repo_id, mirror.filename)
    out = run_nada("download", "ffhq", "arcface-ir-se50", "--no-verify", hub=hub, cache=cache)
    assert out.returncode == 1
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert rows["ffhq"].endswith("ok") and "failed: Could not download 'arcface-ir-se50'" in rows["arcface-ir-se50"]
    assert "1 ok, 1 failed" in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------------------------- NVIDIA network pickles, hub layouts
NETWORK_PICKLES = sorted(n for n, a in REGISTRY.items() if a.kind == "generator" and a.filename.endswith(".pkl"))
FIXTURE_OF = {"StyleGAN2-ADA": "sg2ada_256", "StyleGAN3-T": "sg3t_256", "StyleGAN3-R": "sg3r_256"}


@pytest.mark.parametrize("name", NETWORK_PICKLES)
def test_network_pickles_download_in_their_hub_layout_and_load_as_data(hub, cache, name):
    """Each registry pickle is served under its published repo, sub-folder and file name (NVIDIA's small fixture of
    its architecture stands in for the real file); a StyleGAN2-ADA one loads, a StyleGAN3 one loads or is refused
    in words while nada cannot run StyleGAN3 (whichever the code does: :func:`nada.weights.can_run`)."""
    asset = REGISTRY[name]
    mirror = mirrors(name)[0]
    hub.add(mirror.repo_id, mirror.filename, fixture_path("nvidia", f"{FIXTURE_OF[asset.architecture]}.pkl"))
    assert len(mirror.evidence) > 40  # public evidence beside each entry
    try:
        g = weights.load_generator(name)
    except UnsupportedGeneratorError as exc:
        assert asset.architecture.startswith("StyleGAN3") and not can_run(asset.architecture)
        assert f"holds a {asset.architecture} generator" in str(exc) and "cannot run" in str(exc)
        assert mirror.filename.rsplit("/", 1)[-1] in str(exc) and str(cache) not in str(exc)  # its own name only
    else:
        assert can_run(asset.architecture)
        with torch.no_grad():
            img = g(torch.randn(1, g.style_dim), truncation=0.7)  # centre: the file's w_avg
        assert img.shape[-1] == 256 and torch.isfinite(img).all()
    assert hub.downloads == [(mirror.repo_id, mirror.filename)]
    assert cached_path(name).name == mirror.filename.rsplit("/", 1)[-1]


def test_the_source_picker_offers_stylegan3_only_when_nada_runs_it(monkeypatch):
    from nada.model_store import ModelStore

    sg3 = [n for n in NETWORK_PICKLES if REGISTRY[n].architecture.startswith("StyleGAN3")]
    sg2ada = [n for n in NETWORK_PICKLES if REGISTRY[n].architecture == "StyleGAN2-ADA"]
    assert sg3 and sg2ada
    for module, offered in (("nada.nets.no_such_module", False), ("json", True)):  # json: any module that exists
        monkeypatch.setattr(weights, "STYLEGAN3_MODULE", module)
        names = {n for _, n in ModelStore().source_choices()}
        assert set(sg2ada) <= names and all((n in names) == offered for n in sg3)
        assert all(ModelStore().generator_rows(n) == 16 for n in sg3)  # StyleGAN3: 16 W+ rows at any size
