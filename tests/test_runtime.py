"""Process tuning used by the entry points."""

from __future__ import annotations

import subprocess
import sys


def test_tune_allocator_runs_in_a_fresh_process():
    code = "from nada.runtime import tune_allocator; import sys; sys.exit(0 if tune_allocator() else 3)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == (0 if sys.platform.startswith("linux") else 3), out.stderr
