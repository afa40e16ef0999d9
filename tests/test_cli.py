"""The command line: help, a real render from a local checkpoint, one-line errors."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from nada.cli import main, parse_seeds

from .helpers import PROJECT_ROOT


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "nada", *args], capture_output=True, text=True, cwd=PROJECT_ROOT,
                          env=full_env, timeout=120)


def test_help_reads_well():
    out = _run("generate", "--help")
    assert out.returncode == 0
    for flag in ("--source", "--seed", "--truncation", "--batch", "--device", "--out"):
        assert flag in out.stdout


def test_console_command_runs_the_same_main():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["nada"].partition(":")
    entry = getattr(importlib.import_module(module), func)
    assert entry is main
    with pytest.raises(SystemExit) as exc:
        entry(["--help"])
    assert exc.value.code == 0


def test_command_line_works_from_another_folder(tmp_path, tiny_generator):
    ckpt = tmp_path / "g.pt"
    torch.save({"g_ema": tiny_generator.state_dict()}, ckpt)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    out = subprocess.run([sys.executable, "-m", "nada", "generate", "--source", "g.pt", "--seed", "1", "-o", "x.png"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Image.open(tmp_path / "x.png").size == (32, 32)


def test_offline_ffhq_fails_in_seconds_with_one_line(tmp_path):
    t0 = time.monotonic()
    out = _run("generate", "--source", "ffhq", "-o", str(tmp_path / "face.png"), env={"NADA_CACHE": str(tmp_path)})
    assert time.monotonic() - t0 < 30  # interpreter start + torch import; no network wait
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not cached" in lines[0]
    assert "Traceback" not in out.stderr


def test_generate_writes_images_from_a_local_checkpoint(tmp_path, tiny_generator):
    ckpt = tmp_path / "tiny.pt"
    torch.save({"g_ema": tiny_generator.state_dict()}, ckpt)
    assert main(["generate", "--source", str(ckpt), "--seed", "7", "--truncation", "0.7", "-o",
                 str(tmp_path / "face.png"), "--device", "cpu"]) == 0
    face = np.asarray(Image.open(tmp_path / "face.png"))
    assert face.shape == (32, 32, 3) and face.std() > 1
    assert main(["generate", "--source", str(ckpt), "--seed", "6-8", "-o", str(tmp_path / "many")]) == 0
    files = sorted(p.name for p in (tmp_path / "many").iterdir())
    assert files == ["seed0006.png", "seed0007.png", "seed0008.png"]
    again = np.asarray(Image.open(tmp_path / "many" / "seed0007.png"))
    assert np.array_equal(face, again)  # a seed is the same face however it is batched


def test_bad_arguments_exit_non_zero(capsys):
    with pytest.raises(SystemExit) as err:
        main(["generate", "--truncation", "3"])
    assert err.value.code == 2
    assert "outside [0, 1]" in capsys.readouterr().err
    assert main(["generate", "--source", "/no/such/file.pt"]) == 1
    assert "neither a registry name" in capsys.readouterr().err


def test_seed_parsing():
    assert parse_seeds("7") == [7]
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,5-6") == [1, 5, 6]
    import argparse

    for bad in ("x", "5-2", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seeds(bad)


def test_adapt_end_to_end_with_tiny_models_writes_a_loadable_style(tmp_path):
    style = tmp_path / "sketchy.safetensors"
    out = _run("adapt", "--tiny", "--from", "photo", "--to", "pencil sketch", "--iterations", "3",
               "--probe-batch", "2", "--preview-every", "2", "--preview-dir", str(tmp_path / "prev"),
               "-o", str(style), "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert style.is_file() and (tmp_path / "prev" / "step0002.png").is_file()
    from nada.styles import load_style

    meta = load_style(style).meta
    assert meta["source"] == "tiny" and meta["target_text"] == "pencil sketch" and meta["steps"] == 3
    # the style renders through generate, and differs from the source
    assert main(["generate", "--source", "tiny", "--style", str(style), "--seed", "3", "-o",
                 str(tmp_path / "styled.png")]) == 0
    assert main(["generate", "--source", "tiny", "--seed", "3", "-o", str(tmp_path / "plain.png")]) == 0
    styled = np.asarray(Image.open(tmp_path / "styled.png")).astype(int)
    plain = np.asarray(Image.open(tmp_path / "plain.png")).astype(int)
    assert np.abs(styled - plain).mean() > 0.5


def test_adapt_bad_prompt_is_one_line(tmp_path):
    out = _run("adapt", "--tiny", "--from", "photo", "--to", "  ", "--iterations", "1", "-o",
               str(tmp_path / "x.safetensors"))
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: ") and "Traceback" not in out.stderr
