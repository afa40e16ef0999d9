"""Edits by W+ row group (``EditConfig.rows``, ``learn_direction(..., rows=)``): only the chosen rows are learned, the
direction is exactly zero elsewhere; presets name their rows; the cache and edit files keep them apart; the command
line's ``--edit NAME:STRENGTH@ROWS`` and ``edit learn --rows``; the Invert tab's Edit rows menu.

The 32 px tiny generator has 8 W+ rows (coarse 0-5, medium 6-7, no fine); a 128 px one has 12 (fine: row 11); the
tiny inversion generator (256 px) 14 (fine: 11-13)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from PIL import Image

from nada import cli
from nada.edits import (
    AS_PRESET,
    PRESETS,
    Edit,
    EditConfig,
    apply_edit,
    cache_path,
    edit_rows,
    learn_cached,
    learn_direction,
    load_edit,
    make_edit,
    save_edit,
)
from nada.nets.rows import canonical_rows, resolve_rows, rows_label
from nada.styles import generator_fingerprint
from nada.tiny import tiny_generator

from .helpers import ColourClip
from .test_edits import held_out_codes, red_scores

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def coarse_edit():
    """(generator, direction) of "photo" -> "red" learned on the coarse rows (0-5) of the 32 px tiny generator."""
    g = tiny_generator()
    assert g.n_latent == 8  # coarse 0-5 and medium 6-7 exist on it; fine does not
    return g, learn_direction(g, [(ColourClip(), 1.0)], "photo", "red", steps=12, batch=2, seed=0, rows="coarse")


# ----------------------------------------------------------------------------------------------- learning
def test_a_coarse_edit_leaves_the_medium_rows_codes_untouched_and_still_edits(coarse_edit):
    g, direction = coarse_edit
    assert direction.shape == (8, g.style_dim)
    assert torch.count_nonzero(direction[6:]) == 0  # exactly zero outside the chosen rows
    assert (direction[:6].abs().sum(dim=1) > 0).all()  # every coarse row learned something
    codes = held_out_codes(g)  # [16, 8, D]
    edited = apply_edit(codes, direction, 1.5)
    assert torch.equal(edited[:, 6:], codes[:, 6:])  # the medium rows' codes: bit for bit the same
    assert (edited[:, :6] - codes[:, :6]).abs().amax() > 0.01  # the coarse rows moved
    clip = ColourClip()
    assert red_scores(g, edited, clip).mean() > red_scores(g, codes, clip).mean() + 0.01  # and it is the edit asked


def test_a_medium_edit_leaves_the_coarse_and_fine_rows_alone():
    g = tiny_generator(size=128)
    assert g.n_latent == 12 and resolve_rows("fine", 12) == [11]
    direction = learn_direction(g, [(ColourClip(resolution=32), 1.0)], "photo", "red", steps=3, batch=2,
                                rows="medium")
    assert torch.count_nonzero(direction[:6]) == 0 and torch.count_nonzero(direction[11:]) == 0
    assert (direction[6:11].abs().sum(dim=1) > 0).all()
    codes = held_out_codes(g, 4)
    edited = apply_edit(codes, direction, 1.0)
    assert torch.equal(edited[:, :6], codes[:, :6]) and torch.equal(edited[:, 11:], codes[:, 11:])


def test_the_direction_is_exactly_zero_outside_an_explicit_list():
    g = tiny_generator()
    direction = learn_direction(g, [(ColourClip(), 1.0)], "photo", "red", steps=3, batch=2, rows=[7, 1, 4])
    assert torch.count_nonzero(direction[[0, 2, 3, 5, 6]]) == 0
    assert (direction[[1, 4, 7]].abs().sum(dim=1) > 0).all()
    same = learn_direction(g, [(ColourClip(), 1.0)], "photo", "red", steps=3, batch=2, rows="1+4+7")
    assert torch.equal(same, direction)  # a list and its "+" spelling are one setting


def test_every_row_is_learned_as_before_rows_existed():
    g = tiny_generator()
    every = learn_direction(g, [(ColourClip(), 1.0)], "photo", "red", steps=3, batch=2)
    assert (every.abs().sum(dim=1) > 0).all()  # rows=None: each row changes
    assert torch.equal(every, learn_direction(g, [(ColourClip(), 1.0)], "photo", "red", steps=3, batch=2, rows="all"))


def test_bad_rows_are_refused_with_words_before_any_step():
    g = tiny_generator()  # 8 rows: no fine
    clip = ColourClip()
    for rows, message in (("sideways", "Unknown row group 'sideways'"), ([0, 8], "Row 8 does not exist: this "
                          "generator has W\\+ rows 0-7"), ("fine", "'fine' names no W\\+ row of this generator \\(it "
                          "has rows 0-7: coarse 0-5, medium 6-7\\)"), (-1, "Row -1 does not exist"),
                          ("coarse+", "empty part"), ([True], "group names .* or row numbers"), ("", "No rows named")):
        with pytest.raises(ValueError, match=message):
            learn_direction(g, [(clip, 1.0)], "photo", "red", steps=2, batch=1, rows=rows)
    assert clip.calls == 0  # no image was drawn or judged
    with pytest.raises(ValueError, match="Unknown row group 'meduim'"):
        EditConfig(rows="meduim")  # the settings refuse it at once


def test_rows_have_one_spelling():
    assert EditConfig(rows=[0, 1, 2, 3, 4, 5]).rows == "coarse" == EditConfig(rows=" Coarse ").rows
    assert EditConfig(rows="medium + coarse").rows == "coarse+medium" and EditConfig(rows=[2, 0]).rows == "0+2"
    assert EditConfig(rows="all").rows is None and EditConfig(rows="coarse+medium+fine").rows is None
    assert EditConfig(rows=["medium", 3]).to_dict()["rows"] == "medium+3"  # plain JSON
    assert canonical_rows("fine+20") == "fine+20"  # 20 may lie beyond a generator's fine rows: kept to be checked
    assert rows_label(None) == "every row" and rows_label("coarse+medium") == "coarse+medium rows"
    assert rows_label([0, 1]) == "rows 0+1"


# ---------------------------------------------------------------------------------------------- presets
def test_presets_name_their_rows_with_a_reason():
    assert set(PRESETS) == {"smile", "older", "younger", "glasses", "beard", "long hair"}
    for name, preset in PRESETS.items():
        assert preset.rows is not None and canonical_rows(preset.rows) == preset.rows, name
        assert "fine" not in preset.rows, name  # fine rows carry colour and lighting: no face preset changes them
        assert resolve_rows(preset.rows, 18) and len(preset.why) > 20, name
    assert PRESETS["smile"].rows == "coarse+medium" and PRESETS["glasses"].rows == "coarse"
    assert edit_rows("smile") == "coarse+medium" and edit_rows(" Long  Hair ", AS_PRESET) == "coarse"
    assert edit_rows("face with freckles") is None  # free text: every row
    assert edit_rows("smile", "all") is None and edit_rows("smile", "medium") == "medium"
    assert edit_rows("face with freckles", [6, 7]) == "6+7"


# ------------------------------------------------------------------------------------- the cache and files
def test_cache_keys_differ_by_rows_and_every_row_keeps_its_old_key():
    fp = "abc"
    every = cache_path(fp, EditConfig(), True)
    assert every.name == "smiling-face-c830a155486060bc16ce.safetensors"  # the key before rows existed: still found
    assert cache_path(fp, EditConfig(rows="all"), True) == every
    coarse, medium = cache_path(fp, EditConfig(rows="coarse"), True), cache_path(fp, EditConfig(rows="medium"), True)
    assert len({every, coarse, medium}) == 3
    assert cache_path(fp, EditConfig(rows=list(range(6))), True) == coarse  # the same rows, the same entry


def test_cached_directions_are_kept_apart_by_rows(hub_cache):
    g = tiny_generator()
    clips = [(ColourClip(), 1.0)]
    base = {"source_text": "photo", "target_text": "red", "steps": 2, "batch": 1, "clip_models": ("colour",)}
    coarse = list(learn_cached(g, clips, EditConfig(**base, rows="coarse"), source="tiny"))[-1].direction
    medium = list(learn_cached(g, clips, EditConfig(**base, rows="medium"), source="tiny"))
    assert [r.step for r in medium] == [1, 2]  # learned, not the coarse one from the cache
    assert torch.count_nonzero(medium[-1].direction[:6]) == 0 and torch.count_nonzero(coarse[6:]) == 0
    saved = load_edit(cache_path(generator_fingerprint(g), EditConfig(**base, rows="medium"), False))
    assert saved.rows == "medium" and saved.meta["config"]["rows"] == "medium"
    assert saved.label == "photo -> red (medium rows)"


def test_an_edit_file_saved_before_rows_existed_loads_as_every_row(tmp_path):
    g = tiny_generator()
    edit = make_edit(torch.ones(g.n_latent, g.style_dim), g, EditConfig(source_text="photo", target_text="red"))
    del edit.meta["rows"], edit.meta["config"]["rows"]  # as written before this change
    loaded = load_edit(save_edit(edit, tmp_path / "old.safetensors"))
    assert loaded.rows is None and loaded.label == "photo -> red"
    assert EditConfig(**loaded.meta["config"]).rows is None  # its settings read back: every row
    codes = held_out_codes(g, 2)
    assert (apply_edit(codes, loaded.direction, 1.0) != codes).all()  # and it changes every row
    new = Edit(torch.zeros(8, 32), {"source_text": "photo", "target_text": "red", "rows": "coarse+medium"})
    assert new.rows == "coarse+medium" and new.label == "photo -> red (coarse+medium rows)"


# ---------------------------------------------------------------------------------------------- command line
def test_edit_arguments_read_strength_and_rows():
    from nada.cli.invert import edit_arg

    assert edit_arg("smile:1.5@medium") == ("smile", 1.5, "medium")
    assert edit_arg("smile@coarse+medium") == ("smile", 1.0, "coarse+medium")
    assert edit_arg("face with freckles:-1@0+1+2") == ("face with freckles", -1.0, "0+1+2")
    assert edit_arg("smile@ Medium + Coarse ").rows == "coarse+medium" and edit_arg("smile@all").rows == "all"
    assert edit_arg("smile:2") == ("smile", 2.0, AS_PRESET)  # no @: the preset's own rows
    assert edit_arg("/tmp/a@b/smile.pt:2") == ("/tmp/a@b/smile.pt", 2.0, AS_PRESET)  # '@' in a path is the path's
    for bad, message in (("smile@meduim", "Unknown row group 'meduim'.*'@' in --edit names the W\\+ rows"),
                         ("smile@medium:1.5", "write the strength before the rows: NAME:STRENGTH@ROWS \\(e.g. "
                                              "smile:1.5@medium\\)"),
                         ("smile@", "nothing after '@'"), ("smile@-1", "Row -1 does not exist"),
                         ("@medium", "the edit is empty"), ("smile:5@medium", "from -3 to 3")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            edit_arg(bad)


def test_edit_learn_takes_rows_and_presets_bring_their_own(tmp_path, capsys):
    from nada.cli.edit import edit_config

    parser = cli.build_parser()

    def rows_of(*extra: str) -> str | None:
        return edit_config(parser.parse_args(["edit", "learn", "--tiny", "-o", "x.pt", *extra])).rows

    assert rows_of("--preset", "smile") == "coarse+medium" and rows_of("--preset", "glasses") == "coarse"
    assert rows_of("--preset", "smile", "--rows", "medium") == "medium"
    assert rows_of("--preset", "smile", "--rows", "all") is None
    assert rows_of("--to", "face with freckles") is None and rows_of("--to", "sad face", "--rows", "0+2") == "0+2"
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["edit", "learn", "--tiny", "--preset", "smile", "--rows", "meduim", "-o", "x.pt"])
    assert exc.value.code == 2 and "Unknown row group 'meduim'" in capsys.readouterr().err
    out = tmp_path / "smile.pt"
    assert cli.main(["edit", "learn", "--tiny", "--preset", "smile", "--rows", "medium", "--steps", "1", "--batch",
                     "1", "-o", str(out)]) == 0
    learned = load_edit(out)
    assert learned.rows == "medium" and learned.label == "face -> smiling face (medium rows)"
    assert learned.direction.shape == (14, 512)  # the tiny inversion generator: coarse 0-5, medium 6-10, fine 11-13
    assert torch.count_nonzero(learned.direction[:6]) == 0 and torch.count_nonzero(learned.direction[11:]) == 0
    assert "on medium rows in 1 steps" in capsys.readouterr().err
    assert cli.main(["edit", "presets"]) == 0
    listed = capsys.readouterr().out
    assert "smile: face -> smiling face; coarse+medium rows: " in listed and "glasses: face -> face with glasses; " \
        "coarse rows: " in listed


def test_invert_refuses_rows_on_an_edit_file_and_rows_the_generator_lacks(tmp_path, hub_cache, capsys):
    g = tiny_generator()
    edit_file = tmp_path / "red.safetensors"
    save_edit(make_edit(torch.zeros(g.n_latent, g.style_dim), g, EditConfig(), source="tiny"), edit_file)
    out = tmp_path / "out"
    base = ["invert", "--tiny", str(ASTRONAUT), "-o", str(out)]
    assert cli.main([*base, "--edit", f"{edit_file}:1.5@medium"]) == 1
    err = capsys.readouterr().err
    assert f"the edit file '{edit_file}' cannot take '@medium'" in err and "fixed when it was learned" in err
    assert cli.main([*base, "--edit", "smile:1@14"]) == 1  # the tiny inversion generator has rows 0-13
    assert "Row 14 does not exist: this generator has W+ rows 0-13" in capsys.readouterr().err
    assert not out.exists() and not (hub_cache / "edits").exists()  # nothing written, nothing learned


# ------------------------------------------------------------------------------------------------------- app
def test_the_invert_tab_learns_the_picked_rows(store, session, hub_cache, monkeypatch):
    from nada.app import invert_tab

    face = Image.new("RGB", (256, 256), (128, 100, 90))
    monkeypatch.setattr(invert_tab, "aligned_face", lambda store, image: face)  # no face finder needed
    learned: list[EditConfig] = []
    real_learn = invert_tab.learn_edit

    def learn_edit(store, source, config):  # the GPU task, recording what it is asked to learn
        learned.append(config)
        yield from real_learn(store, source, config)

    def inverted(face, refs, strength, direction, edit_strength):  # e4e's part is not what is tested here
        return face, face, [(face, None)] if direction is not None else [], torch.zeros(1, 14, 512)

    gpu = invert_tab.InvertGpu.direct(store)
    gpu = invert_tab.InvertGpu(inverted, gpu.restyle, lambda source, config: learn_edit(store, source, config),
                               gpu.invert_video)
    out = invert_tab.invert_photo(store, session, str(ASTRONAUT), [], 1.0, "smile", 1.5, "medium", gpu=gpu)
    assert learned[-1].rows == "medium" and learned[-1].target_text == "smiling face"
    assert [c for _, c in out.gallery] == ["edited: smile +1.5 @medium"]  # not the preset's rows: said
    direction = invert_tab.learned_direction(store, PRESETS["smile"].pair, "medium")  # cached with its rows
    assert direction is not None and direction.shape == (14, 512)
    assert torch.count_nonzero(direction[:6]) == 0 and torch.count_nonzero(direction[11:]) == 0
    assert invert_tab.learned_direction(store, PRESETS["smile"].pair, "coarse+medium") is None  # another entry
    out = invert_tab.invert_photo(store, session, str(ASTRONAUT), [], 1.0, "smile", 1.5, gpu=gpu)  # preset's
    assert learned[-1].rows == "coarse+medium" and [c for _, c in out.gallery] == ["edited: smile +1.5"]
    calls = len(learned)
    again = invert_tab.restyle_photo(store, session, str(ASTRONAUT), [], 1.0, "smile", 1.0, "medium", gpu=gpu)
    assert [c for _, c in again.gallery] == ["edited: smile +1 @medium"] and len(learned) == calls  # from the cache
    unlearned = invert_tab.restyle_photo(store, session, str(ASTRONAUT), [], 1.0, "smile", 1.0, "fine", gpu=gpu)
    assert "The edit 'smile' on fine rows is not learned yet: press **Invert**" in unlearned.status


def test_the_invert_tab_checks_the_rows_before_any_work(store, session):
    from nada.app import invert_tab
    from nada.app.errors import InputError

    for rows, message in (("meduim", "Unknown row group 'meduim'"), ("14", "Row 14 does not exist: this generator "
                          "has W\\+ rows 0-13"), ([1], "must be a group"), ("", "No rows named")):
        with pytest.raises(InputError, match=message) as exc:
            invert_tab.check_invert(store, session, str(ASTRONAUT), [], 1.0, "smile", 1.0, rows)
        assert exc.value.field == "edit_rows"
    assert invert_tab.check_edit_rows(store, "smile", invert_tab.AS_PRESET) == "coarse+medium"
    assert invert_tab.check_edit_rows(store, "smile", None) == "coarse+medium"  # an API call without it
    assert invert_tab.check_edit_rows(store, "sad face", "preset") is None
    assert invert_tab.check_edit_rows(store, "smile", "0+1+2") == "0+1+2"
    assert [value for _, value in invert_tab.EDIT_ROWS] == [invert_tab.AS_PRESET, "all", "coarse", "medium", "fine",
                                                            "coarse+medium", "medium+fine"]
    assert all(invert_tab.check_edit_rows(store, "smile", value) is None or
               resolve_rows(invert_tab.check_edit_rows(store, "smile", value), 14) for _, value in invert_tab.EDIT_ROWS)
    assert "glasses, long hair: coarse" in invert_tab.edit_rows_info()
