"""Text-defined edits (nada.edits): learned with a CLIP stand-in whose embedding space is known (an image is its mean
colour), checked on latents the learning never saw; edit files, the cache, the command line and the app's Invert tab
in tiny mode."""

from __future__ import annotations

import copy
import importlib.util
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nada import cli
from nada.clip_loss import ClipGuide
from nada.edits import (
    PRESETS,
    EditConfig,
    EditFileError,
    EditMismatchError,
    apply_edit,
    cache_path,
    check_strength,
    edit_prompts,
    learn_cached,
    learn_direction,
    learn_steps,
    load_edit,
    make_edit,
    save_edit,
    verify_edit,
)
from nada.nets.stylegan2 import truncate
from nada.tiny import tiny_generator
from nada.video import PhotoVideoPlan, photo_frames

from .helpers import ColourClip

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "examples" / "astronaut.jpg"
HELD_OUT_SEED = 12345  # latents the learning never drew (it draws from seed 0's stream)
needs_dlib = pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition_models")),
                                reason="dlib (dlib-bin) and face_recognition_models are needed for alignment")


def held_out_codes(g, n: int = 16) -> torch.Tensor:
    """W+ codes [n, n_latent, D] of fresh latents at truncation 0.7."""
    with torch.no_grad():
        z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(HELD_OUT_SEED))
        w = truncate(g.mapping(z), g.truncation_center(), 0.7)  # [n, D]
    return w[:, None, :].expand(-1, g.n_latent, -1).clone()


def red_scores(g, codes: torch.Tensor, clip: ColourClip) -> torch.Tensor:
    """Per image: the stand-in CLIP's cosine between the image and the text "red" [n]."""
    guide = ClipGuide([(clip, 1.0)], "photo", "red")
    with torch.no_grad():
        feats = guide.image_features(g.synthesis(codes, noise_mode="const"))[0]  # [n, 4]
    text = torch.tensor([1.0, 0.0, 0.0, 0.0])
    return feats @ text


@pytest.fixture(scope="module")
def colour_edit():
    """(generator, direction) of "photo" -> "red" learned on the tiny generator with the colour stand-in."""
    g = tiny_generator()
    before = copy.deepcopy(g.state_dict())
    direction = learn_direction(g, [(ColourClip(), 1.0)], "photo", "red", steps=40, batch=4, seed=0)
    for key, value in g.state_dict().items():
        assert torch.equal(value, before[key])  # the generator is not modified
    assert all(p.grad is None for p in g.parameters())  # and no gradient reached it
    return g, direction


# ------------------------------------------------------------------------------------------- the held-out check
def test_a_learned_edit_carries_over_to_latents_it_never_saw(colour_edit):
    g, direction = colour_edit
    assert direction.shape == (g.n_latent, g.style_dim) and direction.dtype == torch.float32
    clip = ColourClip()
    codes = held_out_codes(g)
    plain = red_scores(g, codes, clip)
    more = red_scores(g, apply_edit(codes, direction, 1.0), clip)
    less = red_scores(g, apply_edit(codes, direction, -1.0), clip)
    assert torch.equal(red_scores(g, apply_edit(codes, direction, 0.0), clip), plain)  # 0 changes nothing
    assert more.mean() > plain.mean() + 0.01 and less.mean() < plain.mean() - 0.01
    assert (more > plain).float().mean() >= 0.9 and (less < plain).float().mean() >= 0.9  # nearly every face
    with torch.no_grad():  # the images really turn red: red channel up, blue down, on average
        a = g.synthesis(codes, noise_mode="const")
        b = g.synthesis(apply_edit(codes, direction, 1.0), noise_mode="const")
    assert (b[:, 0] - a[:, 0]).mean() > 0.1 and (b[:, 0] - b[:, 2]).mean() > (a[:, 0] - a[:, 2]).mean() + 0.2


def test_the_change_follows_the_text_not_any_colour(colour_edit):
    g, direction = colour_edit
    codes = held_out_codes(g)
    guide = ClipGuide([(ColourClip(), 1.0)], "photo", "red")
    with torch.no_grad():
        before = guide.image_features(g.synthesis(codes, noise_mode="const"))[0]  # [n, 4]
        after = guide.image_features(g.synthesis(apply_edit(codes, direction, 1.0), noise_mode="const"))[0]
    gain = (after - before).mean(dim=0)  # [4]: red, green, blue, constant
    assert gain[0] > 3 * gain[1].abs() and gain[0] > 3 * gain[2].abs()  # red, far more than green or blue


def test_learning_is_seeded_and_reports_each_step():
    g = tiny_generator()
    config = EditConfig(source_text="photo", target_text="blue", steps=5, batch=2, clip_models=("colour",))
    records = list(learn_steps(g, [(ColourClip(), 1.0)], config))
    assert [r.step for r in records] == [1, 2, 3, 4, 5] and records[-1].done
    assert records[-1].direction is not None and all(r.direction is None for r in records[:-1])
    assert set(records[0].losses) == {"direction", "along", "size", "total"}
    assert records[0].losses["size"] == 0.0  # it starts at zero
    again = list(learn_steps(g, [(ColourClip(), 1.0)], config))[-1].direction
    assert torch.equal(again, records[-1].direction)
    other = list(learn_steps(g, [(ColourClip(), 1.0)], EditConfig(**{**config.to_dict(), "seed": 1})))[-1]
    assert not torch.equal(other.direction, again)


def test_the_identity_loss_takes_part_when_given():
    g = tiny_generator()

    class PixelID(torch.nn.Module):
        def forward(self, x, y):
            return (x - y).abs().mean()

    config = EditConfig(source_text="photo", target_text="red", steps=3, batch=2, lambda_id=1.0)
    last = list(learn_steps(g, [(ColourClip(), 1.0)], config, PixelID()))[-1]
    assert last.losses["id"] > 0


def test_apply_edit_adds_a_scaled_offset():
    direction = torch.randn(8, 32)
    codes = torch.randn(3, 8, 32)
    assert apply_edit(codes, direction, 0.0) is codes  # strength 0: the same codes
    assert torch.allclose(apply_edit(codes, direction, 1.5), codes + 1.5 * direction)
    assert torch.allclose(apply_edit(codes, direction, -2), codes - 2 * direction)
    assert torch.allclose(apply_edit(codes[0], direction, 1.0), codes[0] + direction)  # one code [n_latent, D]
    with pytest.raises(ValueError, match="another number of W\\+ rows"):
        apply_edit(torch.randn(1, 14, 32), direction, 1.0)
    with pytest.raises(ValueError, match="finite"):
        apply_edit(codes, direction, float("nan"))


def test_prompts_presets_and_strengths_are_checked():
    assert set(PRESETS) == {"smile", "older", "younger", "glasses", "beard", "long hair"}
    assert edit_prompts("smile") == PRESETS["smile"].pair
    assert edit_prompts("  Long   Hair ") == PRESETS["long hair"].pair
    assert edit_prompts("face with freckles") == ("face", "face with freckles")
    assert edit_prompts("photo -> sketch") == ("photo", "sketch")
    for bad, message in (("", "The edit is empty"), ("   ", "The edit is empty"), ("face", "are the same"),
                         ("-> sketch", "nothing before"), ("photo ->", "nothing after"),
                         ("word " * 80, "too long for CLIP")):
        with pytest.raises(ValueError, match=message):
            edit_prompts(bad)
    assert check_strength("1.5") == 1.5 and check_strength(-3) == -3.0 and check_strength(0) == 0.0
    for bad in (3.5, -4, float("nan"), "lots", None, True):
        with pytest.raises(ValueError, match="edit strength"):
            check_strength(bad)


# ------------------------------------------------------------------------------------------ files and the cache
def test_edit_files_round_trip_and_are_refused_on_another_generator(colour_edit, tmp_path):
    g, direction = colour_edit
    config = EditConfig(source_text="photo", target_text="red", steps=40, clip_models=("colour",))
    edit = make_edit(direction, g, config, source="tiny")
    path = save_edit(edit, tmp_path / "red.pt")  # a .pt name asked for: still a safetensors file
    loaded = load_edit(path)
    assert torch.equal(loaded.direction, direction) and loaded.meta["target_text"] == "red"
    assert loaded.meta["config"]["steps"] == 40 and loaded.label == "photo -> red"
    verify_edit(loaded, g, "tiny")  # its own generator: accepted
    with pytest.raises(EditMismatchError, match="learned on the generator 'tiny'.*learn it again"):
        verify_edit(loaded, tiny_generator(seed=1), "other")  # other weights
    with pytest.raises(EditMismatchError, match="16 px"):
        verify_edit(loaded, tiny_generator(size=16), "small")  # another size
    pickled = tmp_path / "pickled.pt"
    torch.save({"direction": direction}, pickled)
    with pytest.raises(EditFileError, match="not a nada edit file"):
        load_edit(pickled)  # never unpickled
    from safetensors.torch import save_file

    save_file({"direction": direction}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(EditFileError, match="no 'nada_edit_format'"):
        load_edit(tmp_path / "plain.safetensors")
    with pytest.raises(EditFileError, match="does not exist"):
        load_edit(tmp_path / "missing.pt")


def test_directions_are_cached_per_generator_prompts_and_settings(hub_cache):
    g = tiny_generator()
    clips = [(ColourClip(), 1.0)]
    config = EditConfig(source_text="photo", target_text="red", steps=3, batch=2, clip_models=("colour",))
    first = list(learn_cached(g, clips, config, source="tiny"))
    assert [r.step for r in first] == [1, 2, 3]
    path = cache_path(_fingerprint(g), config, False)
    assert path.is_file() and path.parent == hub_cache / "edits" and path.name.startswith("red-")
    again = list(learn_cached(g, clips, config, source="tiny"))
    assert len(again) == 1 and again[0].step == 0 and again[0].done  # from the cache, no learning
    assert torch.equal(again[0].direction, first[-1].direction)
    other = EditConfig(**{**config.to_dict(), "steps": 4})
    assert cache_path(_fingerprint(g), other, False) != path
    assert cache_path(_fingerprint(g), config, True) != path  # with the identity loss: another direction
    assert cache_path(_fingerprint(tiny_generator(seed=1)), config, False) != path


def _fingerprint(g) -> str:
    from nada.styles import generator_fingerprint

    return generator_fingerprint(g)


# ------------------------------------------------------------------------------------------------- the video
def test_a_photo_video_holds_each_style_while_the_edit_goes_forth_and_back(colour_edit):
    g, direction = colour_edit
    from nada.model_store import _tiny_demo_style

    style = _tiny_demo_style(g, "tiny")
    codes = held_out_codes(g, 1)
    plan = PhotoVideoPlan(fps=4, hold_s=1.0, morph_s=0.5, edit_strength=1.0, size=32)
    assert plan.frames(2) == 4 + 2 + 4
    frames = list(photo_frames(g, [style], codes, plan, direction))
    assert len(frames) == 10 and frames[0].shape == (32, 32, 3)
    red = [f[..., 0].astype(float).mean() - f[..., 2].astype(float).mean() for f in frames]
    assert red[1] > red[0] + 5 and red[2] > red[3] + 5  # the edit comes in and goes back during the hold
    assert np.array_equal(frames[0], frames[3])  # the hold ends where it began
    with torch.no_grad():
        from nada.render import to_pil
        from nada.styles import apply_style

        styled = np.asarray(to_pil(apply_style(g, style, 1.0).synthesis(codes, noise_mode="const"))[0])
    assert np.array_equal(frames[6], styled)  # the second stop is the style itself
    assert not np.array_equal(frames[4], frames[3]) and not np.array_equal(frames[4], styled)  # the morph: between
    with pytest.raises(ValueError, match="another number of W\\+ rows"):
        list(photo_frames(g, [], codes, plan, torch.zeros(3, g.style_dim)))


# ---------------------------------------------------------------------------------------------- command line
@needs_dlib
def test_command_line_learns_an_edit_and_makes_the_photo_video(tmp_path, hub_cache, capsys):
    edit_file = tmp_path / "smile.pt"
    assert cli.main(["edit", "learn", "--tiny", "--preset", "smile", "--steps", "2", "--batch", "1",
                     "-o", str(edit_file)]) == 0
    loaded = load_edit(edit_file)  # safetensors whatever the suffix
    assert loaded.meta["target_text"] == "smiling face" and loaded.meta["source"] == "tiny-invert"
    assert loaded.direction.shape == (14, 512) and loaded.direction.abs().sum() > 0
    out = tmp_path / "out"
    clip = tmp_path / "clip.mp4"
    assert cli.main(["invert", "--tiny", str(ASTRONAUT), "--edit", f"{edit_file}:1.5", "--video", str(clip), "--gif",
                     "--fps", "4", "-o", str(out)]) == 0
    recon = np.asarray(Image.open(out / "reconstruction.png"), dtype=np.int16)
    edited = np.asarray(Image.open(out / "edited.png"), dtype=np.int16)
    assert np.abs(recon - edited).mean() > 1  # the edit changed the face
    assert clip.stat().st_size > 1000
    gif = Image.open(tmp_path / "clip.gif")
    assert gif.n_frames > 3 and gif.info.get("loop") == 0  # an animated GIF that loops
    printed = capsys.readouterr().out.split()
    assert str(out / "edited.png") in printed and str(clip) in printed and str(tmp_path / "clip.gif") in printed


@needs_dlib
def test_command_line_refuses_bad_edits_before_any_work(tmp_path, hub_cache, capsys):
    out = tmp_path / "out"
    base = ["invert", "--tiny", str(ASTRONAUT), "-o", str(out)]
    for bad in ("", "smile:5", ":1"):
        with pytest.raises(SystemExit) as exc:
            cli.main([*base, "--edit", bad])
        assert exc.value.code == 2
    assert "must be from -3 to 3" in capsys.readouterr().err
    assert cli.main([*base, "--edit", "missing.pt:1"]) == 1
    assert "does not exist" in capsys.readouterr().err
    other = tmp_path / "other.safetensors"  # learned on the 32 px tiny generator: not invert's
    g = tiny_generator()
    save_edit(make_edit(torch.zeros(g.n_latent, g.style_dim), g, EditConfig(), source="tiny"), other)
    assert cli.main([*base, "--edit", f"{other}:1"]) == 1
    assert "learned on the generator 'tiny'" in capsys.readouterr().err
    (tmp_path / "clip.gif").mkdir()  # the GIF's path is a folder: cannot be written
    assert cli.main([*base, "--edit", "smile", "--video", str(tmp_path / "clip.mp4"), "--gif"]) == 1
    err = capsys.readouterr().err
    assert "the GIF" in err and "is a folder" in err
    assert cli.main([*base, "--gif"]) == 1  # a GIF needs --video
    assert not out.exists() and not (tmp_path / "clip.mp4").exists()  # nothing was written
    assert not (hub_cache / "edits").exists()  # nor learned


def test_edit_learn_checks_its_arguments(tmp_path, capsys):
    assert cli.main(["edit", "learn", "--tiny", "-o", str(tmp_path / "x.pt")]) == 1
    assert "--preset NAME, or --to TEXT" in capsys.readouterr().err
    assert cli.main(["edit", "learn", "--tiny", "--preset", "smile", "--to", "old face", "-o",
                     str(tmp_path / "x.pt")]) == 1
    assert cli.main(["edit", "learn", "--tiny", "--from", "face", "--to", " Face ", "-o", str(tmp_path / "x.pt")]) == 1
    assert "are the same" in capsys.readouterr().err
    assert cli.main(["edit", "presets"]) == 0
    assert "smile: face -> smiling face" in capsys.readouterr().out
    assert not (tmp_path / "x.pt").exists()


# ------------------------------------------------------------------------------------------------------- app
@needs_dlib
def test_invert_handler_edits_the_face_in_each_style(store, session, hub_cache):
    from nada.app import invert_tab

    plain = invert_tab.invert_photo(store, session, str(ASTRONAUT), ["tiny-invert-demo"], 1.0)
    out = invert_tab.invert_photo(store, session, str(ASTRONAUT), ["tiny-invert-demo"], 1.0, "smile", 1.5)
    assert [c for _, c in out.gallery] == ["edited: smile +1.5", "tiny-invert-demo (strength 1) · smile +1.5"]
    assert np.array_equal(np.asarray(out.reconstruction), np.asarray(plain.reconstruction))  # the plain one stays
    styled_plain, styled_edit = np.asarray(plain.gallery[0][0], np.int16), np.asarray(out.gallery[1][0], np.int16)
    assert np.abs(styled_plain - styled_edit).mean() > 1  # the style shows the edited face
    assert list((hub_cache / "edits").glob("smiling-face-*.safetensors"))  # learned once, cached
    zero = invert_tab.invert_photo(store, session, str(ASTRONAUT), ["tiny-invert-demo"], 1.0, "smile", 0)
    assert np.array_equal(np.asarray(zero.gallery[1][0]), np.asarray(plain.gallery[0][0]))  # strength 0: no change
    video = invert_tab.invert_video(store, session, str(ASTRONAUT), ["tiny-invert-demo"], 1.0, "smile", 1.5)
    assert Path(video.video).suffix == ".mp4" and Path(video.video).stat().st_size > 1000
    assert Image.open(video.gif).n_frames > 3


def test_invert_checks_the_edit_row_before_any_work(store, session):
    from nada.app import invert_tab
    from nada.app.errors import InputError

    for edit, strength, field, message in (("   ", 1.0, "edit", "The edit is empty"),
                                           ("face", 1.0, "edit", "are the same"),
                                           ("smile", 4.0, "edit_strength", "from -3 to 3"),
                                           ("smile", "x", "edit_strength", "must be a number"),
                                           (7, 1.0, "edit", "must be text")):
        with pytest.raises(InputError, match=message) as exc:
            invert_tab.check_invert(store, session, str(ASTRONAUT), [], 1.0, edit, strength)
        assert exc.value.field == field
    assert invert_tab.check_edit("none", 0.5) == (None, 0.5) and invert_tab.check_edit(None, 1) == (None, 1.0)
    assert invert_tab.check_edit("smile", -2) == (PRESETS["smile"].pair, -2.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_dlib
@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # gradio's own pandas calls
def test_the_invert_endpoint_takes_an_edit(hub_cache):
    gradio_client = pytest.importorskip("gradio_client")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import app

    demo = app.build_demo(tiny=True)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                **app.launch_kwargs())
    try:
        client = gradio_client.Client(demo.local_url, verbose=False)
        photo = gradio_client.handle_file(str(ASTRONAUT))
        _, _, gallery, _ = client.predict(photo, ["tiny-invert-demo"], 1.0, edit="older", edit_strength=-1.0,
                                          api_name="/invert")
        assert [g["caption"] for g in gallery] == ["edited: older -1", "tiny-invert-demo (strength 1) · older -1"]
        _, _, gallery, _ = client.predict(photo, [], 1.0, api_name="/invert")  # the edit is optional
        assert gallery == []
        with pytest.raises(gradio_client.exceptions.ValidationError, match="The edit is empty"):
            client.predict(photo, [], 1.0, edit=" ", edit_strength=1.0, api_name="/invert")
        video, gif, status = client.predict(photo, [], 1.0, edit="older", edit_strength=1.0,
                                            api_name="/invert_video")
        assert status.startswith("Done in ") and "the edit 'older +1' going forth and back" in status
        assert Path(video["video"] if isinstance(video, dict) else video).stat().st_size > 1000
        assert Image.open(gif).n_frames > 3
        client.close()
    finally:
        demo.close()
