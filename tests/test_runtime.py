"""Process tuning used by the entry points."""

from __future__ import annotations

import subprocess
import sys


def test_tune_allocator_runs_in_a_fresh_process():
    code = "from nada.runtime import tune_allocator; import sys; sys.exit(0 if tune_allocator() else 3)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == (0 if sys.platform.startswith("linux") else 3), out.stderr


def test_importing_runtime_does_not_import_torch():
    """ZeroGPU's `spaces` must be imported before torch: the entry points' process tuning must not pull torch in."""
    code = "import sys, nada.runtime; sys.exit(3 if 'torch' in sys.modules else 0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_tf32_is_chosen_once_and_off_unless_asked(monkeypatch):
    import torch

    from nada.runtime import configure_torch

    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        monkeypatch.delenv("NADA_TF32", raising=False)
        assert configure_torch() is False
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
        monkeypatch.setenv("NADA_TF32", "1")
        assert configure_torch() is True and torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) = flags
