"""nada.metrics.evaluate on a CLIP stand-in with a known embedding space (mean colour); ``python -m nada evaluate``.

The stand-in embeds an image as ``[mean R, mean G, mean B, K]`` of CLIP-preprocessed pixels and a text as the sum of
the colours of the words it knows ("red", "green", "blue", and "photo" = grey ``[0, 0, 0, 1]``). A generator whose
last ToRGB bias moves towards red (and away from blue) must then score s_dir > 0 for photo -> red, < 0 for
photo -> blue, and a higher CLIP score for "red" than its source.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nada.cli import main
from nada.cli.evaluate import _id_loss, table
from nada.metrics import CLIP_KEYS, direction_cosines, diversity, evaluate
from nada.styles import save_style, style_from_generators
from nada.tiny import tiny_clip, tiny_generator
from nada.weights import WeightsUnavailableError

from .helpers import PROJECT_ROOT, ColourClip

N = 8  # images per evaluation: enough pairs, fast on two CPU cores


class PixelID(nn.Module):
    """An identity-loss stand-in with IDLoss's semantics: ``1 - mean cos`` of the flattened images."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1 - nn.functional.cosine_similarity(x.flatten(1), y.flatten(1)).mean()


def redder(g: torch.nn.Module, shift: float = 0.5) -> torch.nn.Module:
    """A copy of ``g`` whose output moves by ``+shift`` in red and ``-shift`` in blue (last ToRGB bias)."""
    out = copy.deepcopy(g)
    with torch.no_grad():
        out.to_rgbs[-1].bias += torch.tensor([shift, 0.0, -shift]).view(1, 3, 1, 1)
    return out


@pytest.fixture(scope="module")
def gens():
    src = tiny_generator()
    return src, redder(src)


def test_direction_and_clip_score_follow_the_colour(gens):
    src, red = gens
    clip = ColourClip()
    to_red = evaluate(src, red, [(clip, 1.0)], "photo", "red", n=N, batch=4)
    to_blue = evaluate(src, red, [(clip, 1.0)], "photo", "blue", n=N, batch=4)
    to_green = evaluate(src, red, [(clip, 1.0)], "photo", "green", n=N, batch=4)
    assert to_red["s_dir"] > 0.3
    assert to_blue["s_dir"] < -0.3
    assert abs(to_green["s_dir"]) < 0.1  # the change is (nearly) orthogonal to green
    assert to_red["clip_target_adapted"] > to_red["clip_target_source"] + 0.01
    assert to_blue["clip_target_adapted"] < to_blue["clip_target_source"]
    assert set(CLIP_KEYS) <= set(to_red) and "id" not in to_red
    assert (to_red["n"], to_red["seed"], to_red["truncation"]) == (N, 0, 0.7)
    assert to_red["source_text"] == "photo" and to_red["target_text"] == "red"


def test_identical_generators_score_zero_change(gens):
    src, _ = gens
    clip = ColourClip()
    for other in (src, copy.deepcopy(src)):
        r = evaluate(src, other, [(clip, 1.0)], "photo", "red", n=N)
        assert r["s_dir"] == 0.0  # no image moved: defined as 0, not noise
        assert r["diversity_source"] == r["diversity_adapted"] > 0
        assert r["clip_target_source"] == r["clip_target_adapted"]


def test_constant_images_have_no_diversity(gens):
    src, _ = gens
    flat = copy.deepcopy(src)
    with torch.no_grad():  # every ToRGB without weights: the image is the sum of the biases, the same everywhere
        for m in [flat.to_rgb1, *flat.to_rgbs]:
            m.conv.weight.zero_()
    r = evaluate(src, flat, [(ColourClip(), 1.0)], "photo", "red", n=N)
    assert abs(r["diversity_adapted"]) < 1e-9
    assert r["diversity_source"] > 1e-4


def test_seeded_and_independent_of_batch(gens):
    src, red = gens
    clips = [(ColourClip(), 1.0)]
    a = evaluate(src, red, clips, "photo", "red", n=6, seed=3, batch=4)
    b = evaluate(src, red, clips, "photo", "red", n=6, seed=3, batch=4)
    c = evaluate(src, red, clips, "photo", "red", n=6, seed=3, batch=6)
    d = evaluate(src, red, clips, "photo", "red", n=6, seed=4, batch=4)
    assert a == b
    for key in CLIP_KEYS:
        assert c[key] == pytest.approx(a[key], abs=1e-6)
    assert d["s_dir"] != a["s_dir"] and d["diversity_source"] != a["diversity_source"]


def test_several_models_give_the_weighted_mean(gens):
    src, red = gens
    m1, m2 = ColourClip(k=10.0, resolution=32), ColourClip(k=3.0, resolution=16, channels=(2, 0, 1))
    one = evaluate(src, red, [(m1, 1.0)], "photo", "red", n=N)
    two = evaluate(src, red, [(m2, 1.0)], "photo", "red", n=N)
    both = evaluate(src, red, [(m1, 1.0), (m2, 3.0)], "photo", "red", n=N)
    for key in CLIP_KEYS:
        assert one[key] != pytest.approx(two[key])  # the test would prove nothing otherwise
        assert both[key] == pytest.approx((one[key] + 3 * two[key]) / 4, abs=1e-9)
    assert [m["weight"] for m in both["per_model"]] == [0.25, 0.75]
    assert both["per_model"][1]["s_dir"] == pytest.approx(two["s_dir"], abs=1e-12)
    m3 = ColourClip(k=5.0)
    dropped = evaluate(src, red, [(m3, 0.0), (m1, 2.0)], "photo", "red", n=N)
    assert m3.calls == 0 and dropped["per_model"][0]["model"] == "1:ColourClip"
    for key in CLIP_KEYS:
        assert dropped[key] == pytest.approx(one[key], abs=1e-12)


def test_identity_similarity_with_a_stand_in(gens):
    src, red = gens
    clips = [(ColourClip(), 1.0)]
    same = evaluate(src, src, clips, "photo", "red", n=N, id_loss=PixelID())
    assert same["id"] == pytest.approx(1.0, abs=1e-6)
    uneven = evaluate(src, red, clips, "photo", "red", n=6, batch=4, id_loss=PixelID())  # batches of 4 and 2
    whole = evaluate(src, red, clips, "photo", "red", n=6, batch=6, id_loss=PixelID())
    assert -1 < uneven["id"] < 0.999
    assert uneven["id"] == pytest.approx(whole["id"], abs=1e-6)  # a mean over images, not over batches


def test_metric_helpers_on_known_vectors():
    e = torch.eye(3)  # [3, 3]
    assert diversity(e) == pytest.approx(1.0)
    assert diversity(torch.stack([e[0], -e[0]])) == pytest.approx(2.0)
    assert diversity(e[:1].repeat(4, 1)) == pytest.approx(0.0, abs=1e-12)
    src = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    adp = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # the first moves towards +y, the second stays
    cos = direction_cosines(src, adp, torch.tensor([[0.0, 1.0]]))
    moved = torch.nn.functional.normalize(torch.tensor([1.0, 1.0]), dim=0) - torch.tensor([1.0, 0.0])
    assert cos.tolist() == pytest.approx([float(moved[1] / moved.norm()), 0.0])
    with pytest.raises(ValueError, match="at least 2"):
        diversity(e[:1])


def test_bad_arguments_are_refused(gens):
    src, red = gens
    clips = [(ColourClip(), 1.0)]
    with pytest.raises(ValueError, match="n must be"):
        evaluate(src, red, clips, "photo", "red", n=1)
    with pytest.raises(ValueError, match="architecture"):
        evaluate(src, tiny_generator(size=16), clips, "photo", "red", n=2)
    with pytest.raises(ValueError, match="same"):
        evaluate(src, red, clips, "photo", "Photo", n=2)


def test_random_tiny_clip_gives_finite_numbers_in_range(gens):
    src, red = gens
    r = evaluate(src, red, [(tiny_clip(), 1.0)], "photo", "sketch", n=N, truncation=1.0)
    assert all(torch.isfinite(torch.tensor(r[k])) for k in CLIP_KEYS)
    for key in ("s_dir", "clip_target_source", "clip_target_adapted"):
        assert -1.0 <= r[key] <= 1.0
    for key in ("diversity_source", "diversity_adapted"):
        assert 0.0 <= r[key] <= 2.0


def test_cli_evaluates_a_tiny_style(tmp_path, hub_cache, gens):
    src, red = gens
    style = style_from_generators(src, red, {"source": "tiny", "source_text": "photo", "target_text": "red"})
    path = save_style(style, tmp_path / "red.safetensors")
    out = tmp_path / "out" / "metrics.json"
    proc = subprocess.run([sys.executable, "-m", "nada", "evaluate", str(path), "--tiny", "--n", "8",
                           "--json", str(out)], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(CLIP_KEYS) <= set(result) and result["n"] == 8 and result["source"] == "tiny"
    assert (result["source_text"], result["target_text"]) == ("photo", "red")
    assert "s_dir" in proc.stdout and "diversity" in proc.stdout


def test_cli_asks_for_the_prompts_a_published_style_lacks(hub_cache, capsys):
    assert main(["evaluate", "nada-pixar", "--tiny", "--from", "Photo"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--to" in err and "published" in err
    assert not any(hub_cache.rglob("*.pt"))  # refused before any download


def test_cli_identity_is_on_for_faces_and_skipped_with_a_warning_when_arcface_is_missing(hub_cache, capsys):
    args = SimpleNamespace(id=None, arcface="arcface-ir-se50")
    assert _id_loss(args, "tiny", "cpu") is None and capsys.readouterr().err == ""  # not a face generator: off
    assert _id_loss(args, "ffhq", "cpu") is None  # faces: on, but the weights are not in the (empty, offline) cache
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("warning: identity similarity skipped")
    with pytest.raises(WeightsUnavailableError):  # asked for explicitly: an error, not a warning
        _id_loss(SimpleNamespace(id=True, arcface="arcface-ir-se50"), "tiny", "cpu")
    shown = table({"clip_target_source": 0.1, "clip_target_adapted": 0.3, "diversity_source": 0.5,
                   "diversity_adapted": 0.4, "s_dir": 0.2, "id": 0.75, "n": 8, "seed": 0, "truncation": 0.7,
                   "source_text": "photo", "target_text": "red"})
    assert "0.7500" in shown and "0.2000" in shown and len(shown.splitlines()) == 6
