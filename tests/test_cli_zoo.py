"""``nada zoo``: a line per finished style under an overall bar, files that ``nada generate`` reads, a rerun that
skips, one-line errors with exit code 1 before anything is written, 130 on Ctrl-C with the finished styles kept."""

from __future__ import annotations

import json
import socket
import time

import pytest

from nada.cli import build_parser, main
from nada.zoo import book as zoo_book

ZOO = ["--tiny", "--iterations", "1", "--judge-samples", "2", "--seeds", "0,1"]


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# my zoo\nSketch\nPhoto -> Pixar | seed=3\n", encoding="utf-8")
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_help_lists_the_flags():
    text = build_parser()._subparsers._group_actions[0].choices["zoo"].format_help()
    for flag in ("--out", "--source", "--styles-per-batch", "--address", "--gpus-per-job", "--seeds",
                 "--judge-samples", "--iterations", "--recipe"):
        assert flag in text


def test_zoo_trains_prints_a_line_per_style_and_its_files_work_with_generate(tmp_path, prompts, capsys):
    out = tmp_path / "zoo"
    assert main(["zoo", str(prompts), "--out", str(out), *ZOO]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines[:2]] == ["sketch", "pixar"] and all("done in" in ln for ln in lines[:2])
    assert "2 finished, 0 failed" in captured.out and "sheet.png" in captured.out
    assert "2 style(s) to train" in captured.err and "2/2" in captured.err  # the overall bar, on stderr
    book = json.loads((out / "zoo.json").read_text())
    assert [(s["name"], s["status"], s["overrides"]) for s in book["styles"]] == \
        [("sketch", "done", {"iterations": 1}), ("pixar", "done", {"iterations": 1})]
    assert main(["generate", "--source", "tiny", "--style", str(out / "pixar.safetensors"), "--seed", "1", "-o",
                 str(tmp_path / "pixar.png")]) == 0
    assert (tmp_path / "pixar.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["zoo", str(prompts), "--out", str(out), *ZOO]) == 0
    assert capsys.readouterr().out.count("already finished") == 2


def test_a_failed_style_exits_1_after_the_others_finish(tmp_path, capsys):
    path = tmp_path / "prompts.txt"
    path.write_text("Sketch\nPhoto -> Pixar | lambda_direction=1e308 lambda_global=1e308\n")  # a non-finite loss
    assert main(["zoo", str(path), "--out", str(tmp_path / "zoo"), *ZOO]) == 1
    out = capsys.readouterr().out
    assert "sketch: done" in out and "pixar: FAILED: The loss became inf at step 1" in out


def test_ctrl_c_keeps_the_finished_styles_and_exits_130(tmp_path, prompts, capsys, monkeypatch):
    real = zoo_book.ZooBook.record_done

    def record_then_interrupt(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(zoo_book.ZooBook, "record_done", record_then_interrupt)
    out = tmp_path / "zoo"
    assert main(["zoo", str(prompts), "--out", str(out), "--styles-per-batch", "1", *ZOO]) == 130
    assert "run the same command again" in capsys.readouterr().err
    book = json.loads((out / "zoo.json").read_text())
    assert [(s["name"], s["status"]) for s in book["styles"]] == [("sketch", "done")]
    monkeypatch.undo()
    assert main(["zoo", str(prompts), "--out", str(out), *ZOO]) == 0
    assert "sketch: already finished" in capsys.readouterr().out


@pytest.mark.parametrize("text, words", [
    ("", "error: prompts.txt has no styles"),
    ("Sketch\nsketch | seed=1\n", "error: prompts.txt: lines 1 and 2 both make the style name 'sketch'"),
    ("Sketch | lr=9\n", "error: prompts.txt, line 1:"),
])
def test_bad_prompt_files_are_one_line_errors_before_anything_is_written(tmp_path, capsys, text, words):
    path = tmp_path / "prompts.txt"
    path.write_text(text)
    assert main(["zoo", str(path), "--out", str(tmp_path / "zoo"), *ZOO]) == 1
    assert one_error_line(capsys).startswith(words)
    assert not (tmp_path / "zoo").exists()


def test_a_missing_prompt_file_and_an_unwritable_folder_are_named(tmp_path, prompts, capsys):
    assert main(["zoo", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "zoo"), *ZOO]) == 1
    assert "nope.txt does not exist" in one_error_line(capsys)
    assert main(["zoo", str(prompts), "--out", str(prompts / "zoo"), *ZOO]) == 1  # under a file
    line = one_error_line(capsys)
    assert "zoo folder 'zoo' cannot be written" in line and str(tmp_path) not in line


def test_an_address_that_does_not_answer_is_reported_within_seconds(tmp_path, prompts, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    assert main(["zoo", str(prompts), "--out", str(tmp_path / "zoo"), "--address", f"ray://127.0.0.1:{port}",
                 *ZOO]) == 1
    assert time.monotonic() - t0 < 5
    assert f"The Ray cluster at ray://127.0.0.1:{port} does not answer" in one_error_line(capsys)
    assert main(["zoo", str(prompts), "--out", str(tmp_path / "zoo"), "--gpus-per-job", "0.5", *ZOO]) == 1
    assert "--gpus-per-job applies to Ray runs" in one_error_line(capsys)
    assert not (tmp_path / "zoo").exists()
