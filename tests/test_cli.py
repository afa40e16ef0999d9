"""The command line: help, a real render from a local checkpoint, one-line errors."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nada.cli import main
from nada.cli.args import parse_seeds

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


# -------------------------------------------------------------------------------- a failed or stopped run loses no work
ADAPT = ["adapt", "--tiny", "--from", "Photo", "--to", "Sketch", "--device", "cpu"]


def _no_training(*args, **kwargs):
    raise AssertionError("models were loaded although an output cannot be written")


@pytest.mark.parametrize("flag", ["-o", "--export-pt", "--preview-dir"])
def test_adapt_checks_every_output_before_loading_anything(tmp_path, monkeypatch, capsys, flag):
    monkeypatch.setattr("nada.cli.adapt.trainer_for", _no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    target = {"-o": "x.safetensors", "--export-pt": "x.pt", "--preview-dir": "previews"}[flag]
    args = [*ADAPT, "--iterations", "2", flag, str(blocker / target)]
    if flag != "-o":
        args += ["-o", str(tmp_path / "ok.safetensors")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and "is a file, not a folder" in err and "Nothing was started" in err
    assert not (tmp_path / "ok.safetensors").exists() and list(tmp_path.iterdir()) == [blocker]  # no probe left


def test_adapt_saves_to_a_fallback_file_when_the_output_fails_at_the_end(hub_cache, tmp_path, monkeypatch, capsys):
    import errno

    from nada.cli import adapt as cli_adapt
    from nada.styles import load_style

    out = tmp_path / "witcher.safetensors"
    real_save = cli_adapt.save_style

    def disk_full_at_the_target(style, path, *a, **k):
        if Path(path) == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(style, path, *a, **k)

    monkeypatch.setattr(cli_adapt, "save_style", disk_full_at_the_target)
    assert main([*ADAPT, "--iterations", "2", "-o", str(out)]) == 1
    captured = capsys.readouterr()
    saved = Path(captured.out.strip().splitlines()[-1])
    assert saved.parent == hub_cache / "styles" and saved.name.startswith("witcher-") and not out.exists()
    assert load_style(saved).meta["steps"] == 2  # the trained work is there
    assert f"could not write '{out}' (No space left on device)" in captured.err and str(saved) in captured.err


def test_sigterm_during_adapt_saves_the_steps_trained_so_far(tmp_path):
    import select
    import signal

    out = tmp_path / "sketch.safetensors"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "nada", *ADAPT, "--iterations", "1000", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=PROJECT_ROOT, env=env)
    try:
        seen, deadline = b"", time.monotonic() + 90
        while b"1/1000" not in seen:  # the progress bar's first step
            assert time.monotonic() < deadline and proc.poll() is None, seen.decode(errors="replace")
            if select.select([proc.stderr], [], [], 1.0)[0]:
                seen += os.read(proc.stderr.fileno(), 65536)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    from nada.styles import load_style

    assert proc.returncode == 143, stderr.decode(errors="replace")
    assert stdout.decode().strip() == str(out)
    steps = load_style(out).meta["steps"]
    assert 1 <= steps < 1000 and f"SIGTERM: saved the {steps} steps trained so far" in stderr.decode()


@pytest.mark.parametrize("args, message", [
    (["generate", "--seed", "0-99999"], "at most 10000 seeds at a time ('0-99999' alone is 100000)"),
    (["generate", "--seed", "4294967296"], "seeds go from 0 to 4294967295"),
    (["generate", "--seed", "1.5"], "use whole numbers"),
    ([*ADAPT, "--lr", "1000"], "the learning rate must be above 0 and at most 0.1"),
    ([*ADAPT, "--lr", "0"], "the learning rate must be above 0 and at most 0.1"),
    ([*ADAPT, "--iterations", "0"], "the number of steps must be a whole number from 1 to 100000"),
    ([*ADAPT, "--iterations", "2.5"], "the number of steps must be a whole number from 1 to 100000"),
    ([*ADAPT, "--seed", "-1"], "the seed must be a whole number from 0 to 4294967295"),
])
def test_out_of_range_settings_are_refused_naming_the_limit(capsys, args, message):
    with pytest.raises(SystemExit) as err:
        main(args)
    assert err.value.code == 2 and message in capsys.readouterr().err


def test_invert_checks_every_style_before_aligning_or_writing(tmp_path, monkeypatch, capsys):
    from nada.invert import tiny_inversion_models
    from nada.styles import save_style, style_from_generators
    from nada.tiny import TINY_INVERT, tiny_generator

    photo = PROJECT_ROOT / "examples" / "astronaut.jpg"
    if not photo.is_file():
        pytest.skip("examples/astronaut.jpg is missing")
    generator = tiny_inversion_models()[2]
    adapted = tiny_generator(seed=3, size=256, style_dim=512)  # not an adaptation of the inversion generator
    good = save_style(style_from_generators(generator, generator, {"source": TINY_INVERT}), tmp_path / "ok.safetensors")
    foreign = save_style(style_from_generators(adapted, adapted, {"source": TINY_INVERT}),
                         tmp_path / "foreign.safetensors")

    def no_alignment(*args, **kwargs):
        raise AssertionError("the photo was aligned before every style was checked")

    monkeypatch.setattr("nada.cli.invert.prepare_face", no_alignment)
    out = tmp_path / "out"
    for styles, message in [(f"{good},{foreign}", "This style was trained on the source generator"),
                            (f"{good},{tmp_path / 'missing.safetensors'}", "not found")]:
        assert main(["invert", str(photo), "--tiny", "--device", "cpu", "--styles", styles, "-o", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err
        assert not out.exists()  # nothing written, not even the folder
