"""The zoo's prompt file (nada.zoo.prompts): lines to entries, typed overrides, the validated config, the result key,
and a clear message naming the file and the line for every kind of mistake."""

from __future__ import annotations

import pytest

from nada.train import AdaptConfig
from nada.zoo.prompts import (
    MAX_FILE_BYTES,
    MAX_LINE_CHARS,
    MAX_LINES,
    PromptFileError,
    ZooEntry,
    override_fields,
    parse_prompts,
    read_prompts,
)

EXAMPLE = """# source -> target | overrides

Sketch
Photo -> Pixar character | seed=3 iterations=100 layers_k=0.5
  Old photo -> The Joker | recipe=paper name="the joker" bf16=yes time_limit_s=none clip_models=clip-vit-b32
"""


def test_lines_become_entries_with_defaults_and_typed_overrides():
    sketch, pixar, joker = parse_prompts(EXAMPLE)
    assert (sketch.name, sketch.line, sketch.source_text, sketch.target_text, sketch.recipe, sketch.seed) == \
        ("sketch", 3, "Photo", "Sketch", "compact", 0)
    assert sketch.overrides == {} and sketch.prompt == "Photo -> Sketch"
    assert (pixar.name, pixar.line, pixar.seed) == ("pixar-character", 4, 3)
    assert pixar.overrides == {"iterations": 100, "layers_k": 0.5}
    assert isinstance(pixar.overrides["iterations"], int)
    assert (joker.name, joker.source_text, joker.recipe) == ("the-joker", "Old photo", "paper")
    assert joker.overrides == {"bf16": True, "time_limit_s": None, "clip_models": ("clip-vit-b32",)}


def test_defaults_come_from_the_caller():
    (entry,) = parse_prompts("Sketch", source_text="Portrait photo", recipe="shape")
    assert (entry.source_text, entry.recipe) == ("Portrait photo", "shape")


def test_config_is_the_recipe_with_overrides_seed_and_texts():
    _, pixar, joker = parse_prompts(EXAMPLE)
    cfg = pixar.config()
    expected = AdaptConfig.from_recipe("compact", None, iterations=100, layers_k=0.5, seed=3, source_text="Photo",
                                       target_text="Pixar character")
    assert cfg == expected and cfg.params == "style_delta" and cfg.lr == 0.05
    cfg = joker.config("ffhq")
    assert (cfg.params, cfg.bf16, cfg.clip_models, cfg.iterations) == ("weights", True, ("clip-vit-b32",), 301)


def test_tuples_bools_none_and_row_lists_are_typed():
    (entry,) = parse_prompts("Sketch | betas=0.5,0.9 preview_seeds=1,2 train_to_rgb=off frozen_rows=0,1 "
                             "probe_micro_batch=none")
    assert entry.overrides == {"betas": (0.5, 0.9), "preview_seeds": (1, 2), "train_to_rgb": False,
                               "frozen_rows": (0, 1), "probe_micro_batch": None}
    assert entry.config().frozen(8) == [0, 1]
    (entry,) = parse_prompts("Sketch | frozen_rows=coarse+medium layers_k=3")
    assert entry.overrides == {"frozen_rows": "coarse+medium", "layers_k": 3}


def test_entries_are_hashable_and_overrides_read_only():
    a, b = parse_prompts(EXAMPLE)[1], parse_prompts(EXAMPLE)[1]
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    a.overrides["iterations"] = 5
    assert a.overrides["iterations"] == 100
    made = ZooEntry("x", 1, "Photo", "Sketch", override_items={"preview_seeds": [1, 2], "iterations": 3})
    assert made.override_items == (("iterations", 3), ("preview_seeds", (1, 2))) and hash(made)
    assert made.to_dict()["overrides"] == {"iterations": 3, "preview_seeds": (1, 2)}


def test_key_changes_with_anything_that_decides_the_result():
    base = parse_prompts("Sketch")[0]
    key = base.key("ffhq")
    assert len(key) == 32 and key == parse_prompts("# moved\n\nSketch")[0].key("ffhq")  # line numbers do not count
    others = [parse_prompts(t)[0].key("ffhq") for t in ("Sketch | seed=1", "Sketch | iterations=10",
                                                         "Portrait -> Sketch", "Sketch | recipe=paper",
                                                         "Sketch | lambda_global=0.5")]
    others.append(base.key("cat"))
    assert key not in others and len(set(others)) == len(others)
    assert parse_prompts("Sketch | name=other")[0].key("ffhq") == key  # the name decides the file, not the result


def test_names_are_slugs_and_unusable_targets_get_a_line_name():
    entries = parse_prompts("Van Gogh's Starry Night!\n水彩画\nx | name=../../etc/passwd")
    assert [e.name for e in entries] == ["van-gogh-s-starry-night", "style-2", "etc-passwd"]


def test_read_prompts_reads_a_utf8_file_with_bom_and_crlf(tmp_path):
    path = tmp_path / "styles.txt"
    path.write_bytes("\ufeffSketch\r\nPhoto -> Café | seed=2\r\n".encode())
    entries = read_prompts(path)
    assert [(e.name, e.target_text, e.seed, e.line) for e in entries] == [("sketch", "Sketch", 0, 1),
                                                                         ("cafe", "Café", 2, 2)]


@pytest.mark.parametrize("text, words", [
    ("", ["no styles"]),
    ("# only a comment\n\n", ["no styles"]),
    ("Sketch\nPhoto ->", ["line 2", "no target"]),
    ("-> Sketch", ["line 1", "no source"]),
    ("a -> b -> c", ["line 1", "more than one"]),
    ("Sketch\n\nSketch | iters=3", ["line 3", "unknown setting 'iters'", "did you mean 'iterations'", "lambda_global"]),
    ("Sketch | source_text=x", ["line 1", "unknown setting 'source_text'"]),
    ("Sketch | target_images=a.png", ["line 1", "unknown setting 'target_images'"]),
    ("Sketch | seed", ["line 1", "expected key=value"]),
    ("Sketch | seed=1 seed=2", ["line 1", "given twice"]),
    ("Sketch | iterations=1.5", ["line 1", "whole number"]),
    ("Sketch | seed=-1", ["line 1", "seed", "whole number"]),
    ("Sketch | lr=5", ["line 1", "at most 0.1"]),
    ("Sketch | mixing=2", ["line 1", "probability"]),
    ("Sketch | lambda_global=nan", ["line 1", "finite"]),
    ("Sketch | bf16=maybe", ["line 1", "true or false"]),
    ("Sketch | betas=0.9", ["line 1", "2 comma-separated"]),
    ("Sketch | recipe=fancy", ["line 1", "unknown recipe 'fancy'", "compact"]),
    ("Sketch | frozen_rows=bogus", ["line 1", "bogus"]),
    ("Sketch | name='open", ["line 1", "quote"]),
    ("Photo -> photo", ["line 1", "the same"]),
    ("Sketch\n" + "word " * 100, ["line 2", "too long for CLIP"]),
    ("x" * (MAX_LINE_CHARS + 1), ["line 1", "too long", f"{MAX_LINE_CHARS:,}"]),
    ("Sketch\x00", ["line 1", "control characters"]),
    ("Sketch\nCartoon\nsketch!", ["lines 1 and 3", "'sketch'", "name="]),
    ("Sketch\nCartoon | name=sketch", ["lines 1 and 2"]),
    ("Sketch\n" * (MAX_LINES + 1), [f"{MAX_LINES:,}"]),
])
def test_mistakes_name_the_file_and_the_line(text, words):
    with pytest.raises(PromptFileError) as info:
        parse_prompts(text, filename="/private/server/path/my prompts.txt")
    message = str(info.value)
    assert message.startswith("my prompts.txt") and "/private" not in message
    for word in words:
        assert word in message, (word, message)


def test_file_errors_name_the_file_by_its_own_name(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(PromptFileError, match=r"^nope\.txt does not exist"):
        read_prompts(missing)
    with pytest.raises(PromptFileError, match="is not a file"):
        read_prompts(tmp_path)
    binary = tmp_path / "styles.bin"
    binary.write_bytes(b"Sketch\nCartoon\n\xff\xfe oops\n")
    with pytest.raises(PromptFileError, match=r"^styles\.bin, line 3: not UTF-8"):
        read_prompts(binary)
    huge = tmp_path / "huge.txt"
    huge.write_bytes(b"Sketch\n" + b"#" * MAX_FILE_BYTES)
    with pytest.raises(PromptFileError, match=r"^huge\.txt is too large") as info:
        read_prompts(huge)
    assert str(tmp_path) not in str(info.value)


def test_every_adapt_config_field_but_the_texts_seed_and_pictures_can_be_set():
    fields = set(override_fields())
    assert {"iterations", "lambda_global", "mixing", "frozen_rows", "clip_models", "betas"} <= fields
    assert not fields & {"source_text", "target_text", "seed", "target_images"}
