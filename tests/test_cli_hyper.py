"""``nada hyper train`` and ``nada hyper style`` with tiny models: a hypernetwork file, a checkpoint that --resume
continues, a style that ``nada generate --style`` renders; every bad input a one-line error naming files by their
own names, before anything is written."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch
from PIL import Image

from nada.cli import main
from nada.hyper import Hypernet
from nada.hyper.ray_train import checkpoint_path, load_state
from nada.styles import load_style
from nada.tiny import tiny_generator

PROMPTS = "# colours\nred\n\ngreen\nPhoto -> blue\n"
TRAIN = ("--tiny", "--iterations", "2", "--prompts-per-step", "2", "--hidden", "8", "--lr", "0.05",
         "--checkpoint-every", "1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A hypernetwork trained by the CLI (2 steps), and its folder."""
    folder = tmp_path_factory.mktemp("hyper")
    (folder / "prompts.txt").write_text(PROMPTS)
    out = folder / "hyper.safetensors"
    assert main(["hyper", "train", str(folder / "prompts.txt"), "--out", str(out), *TRAIN]) == 0
    return out


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    return err[-1]


def test_hyper_train_writes_the_hypernetwork_and_its_checkpoint(trained):
    net = Hypernet.load(trained)
    assert net.meta["source"] == "tiny" and net.meta["steps"] == 2 and net.config.hidden == 8
    assert net.config.iterations == 2 and net.config.prompts_per_step == 2 and net.config.lr == 0.05
    state = load_state(checkpoint_path(trained))
    assert checkpoint_path(trained).name == "hyper.ckpt.pt" and state["step"] == 2


def test_a_second_run_refuses_to_overwrite_the_checkpoint_and_resume_continues_it(trained, tmp_path, capsys):
    out = tmp_path / "hyper.safetensors"
    out.write_bytes(trained.read_bytes())
    checkpoint_path(out).write_bytes(checkpoint_path(trained).read_bytes())
    prompts = trained.parent / "prompts.txt"
    before = out.read_bytes()
    assert main(["hyper", "train", str(prompts), "--out", str(out), *TRAIN]) == 1
    message = one_line_error(capsys)
    assert "hyper.ckpt.pt holds the checkpoint of an earlier run: add --resume" in message
    assert str(tmp_path) not in message and out.read_bytes() == before  # nothing changed
    assert main(["hyper", "train", str(prompts), "--out", str(out), "--tiny", "--iterations", "3", "--resume"]) == 0
    assert "steps 3 to 3" in capsys.readouterr().err
    assert Hypernet.load(out).meta["steps"] == 3 and load_state(checkpoint_path(out))["step"] == 3


def test_hyper_style_writes_a_style_that_generate_renders(trained, tmp_path, capsys):
    style_file = tmp_path / "blue.safetensors"
    assert main(["hyper", "style", "Photo", "blue sky", "--hyper", str(trained), "--out", str(style_file),
                 "--tiny"]) == 0
    assert "wrote" in capsys.readouterr().out
    style = load_style(style_file)
    assert style.meta["hypernet"] is True and style.meta["target_text"] == "blue sky"
    assert style.meta["kind"] == "style_delta" and style.meta["hypernet_steps"] == 2
    styled, plain = tmp_path / "styled.png", tmp_path / "plain.png"
    assert main(["generate", "--source", "tiny", "--style", str(style_file), "--seed", "3", "-o", str(styled)]) == 0
    assert main(["generate", "--source", "tiny", "--seed", "3", "-o", str(plain)]) == 0
    a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in (styled, plain))
    assert a.shape == b.shape and np.abs(a - b).max() > 0  # the style changes the picture


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("case", ["empty", "long", "settings", "missing", "ray-flag", "malformed", "unwritable"])
def test_bad_training_inputs_give_one_line_errors_naming_files_by_their_names(case, tmp_path, capsys):
    prompts, out = tmp_path / "prompts.txt", tmp_path / "hyper.safetensors"
    prompts.write_text(PROMPTS)
    extra: list[str] = []
    expected = {
        "empty": "The prompt list prompts.txt holds no prompts",
        "long": "prompts.txt, line 3: The target prompt is too long for CLIP",
        "settings": "prompts.txt, line 2: a hypernetwork's prompt list takes no '| settings'",
        "missing": "The prompt list nowhere.txt does not exist",
        "ray-flag": "--workers, --gpus: only for training on Ray; add --address local",
        "malformed": "'nowhere' is not a Ray address",
        "unwritable": "Cannot write 'hyper.safetensors' in its folder",
    }[case]
    if case == "empty":
        prompts.write_text("# nothing\n\n")
    elif case == "long":
        prompts.write_text("red\n\n" + "word " * 120 + "\n")
    elif case == "settings":
        prompts.write_text("red\nblue | iterations=3\n")
    elif case == "missing":
        prompts = tmp_path / "nowhere.txt"
    elif case == "ray-flag":
        extra = ["--workers", "2", "--gpus"]
    elif case == "malformed":
        extra = ["--address", "nowhere"]
    else:
        (tmp_path / "file").write_text("a file, not a folder")
        out = tmp_path / "file" / "hyper.safetensors"
    assert main(["hyper", "train", str(prompts), "--out", str(out), "--tiny", "--iterations", "1", *extra]) == 1
    message = one_line_error(capsys)
    assert expected in message and str(tmp_path) not in message
    assert not out.exists() and not checkpoint_path(out).exists()


def test_an_address_that_does_not_answer_fails_within_seconds_and_writes_nothing(tmp_path, capsys):
    pytest.importorskip("ray")
    prompts, out = tmp_path / "prompts.txt", tmp_path / "hyper.safetensors"
    prompts.write_text(PROMPTS)
    address = f"ray://127.0.0.1:{unused_port()}"
    t0 = time.monotonic()
    assert main(["hyper", "train", str(prompts), "--out", str(out), "--tiny", "--address", address]) == 1
    assert time.monotonic() - t0 < 8
    message = one_line_error(capsys)
    assert f"The Ray cluster at {address} does not answer" in message
    assert "training a hypernetwork" not in capsys.readouterr().err and not out.exists()


def test_hyper_style_refuses_another_generator_and_files_that_are_not_hypernetworks(trained, tmp_path, capsys):
    other = tmp_path / "other.pt"
    torch.save({"g_ema": tiny_generator(seed=1).state_dict()}, other)
    out = tmp_path / "style.safetensors"
    assert main(["hyper", "style", "Photo", "blue", "--hyper", str(trained), "--out", str(out), "--source",
                 str(other), "--device", "cpu"]) == 1
    message = one_line_error(capsys)
    assert "'hyper.safetensors' was trained for another generator ('tiny'" in message
    assert str(trained.parent) not in message and not out.exists()
    style_file = tmp_path / "a-style.safetensors"
    assert main(["hyper", "style", "Photo", "blue", "--hyper", str(trained), "--out", str(style_file),
                 "--tiny"]) == 0
    capsys.readouterr()
    for hyper, expected in ((style_file, "'a-style.safetensors' is a safetensors file but not a nada hypernetwork"),
                            (tmp_path / "gone.safetensors", "Hypernetwork file 'gone.safetensors' does not exist")):
        assert main(["hyper", "style", "Photo", "blue", "--hyper", str(hyper), "--out", str(out), "--tiny"]) == 1
        message = one_line_error(capsys)
        assert expected in message and str(tmp_path) not in message and not out.exists()
    assert main(["hyper", "style", "Photo", "", "--hyper", str(trained), "--out", str(out), "--tiny"]) == 1
    assert "The target prompt is empty" in one_line_error(capsys) and not out.exists()
