"""The notebooks: both run top to bottom in tiny mode with no network (as CI runs them) and show images; they are
committed without outputs.

Each notebook runs in a fresh kernel of *this* interpreter (a kernelspec written to a temp folder names
``sys.executable``, so no globally installed kernelspec is used), with ``NADA_TINY=1``, ``HF_HUB_OFFLINE=1``, a temp
weights cache (``NADA_CACHE``: the trained style goes there, not into ``checkpoints/``) and a temp copy of
``notebooks/`` (beside a copy of the example photo) as the working directory, so what a notebook writes next to
itself (the video) stays out of the checkout; ``PYTHONPATH`` names the checkout, as an install would. ``train.ipynb``
runs first; ``inference.ipynb`` then also finds the style it saved. Both reach nada through ``import nada`` only.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager  # jupyter_client comes with nbclient and ipykernel
from jupyter_client.manager import AsyncKernelManager
from PIL import Image

from nada.notebook import enlarge, labelled_grid, tiny_mode

from .helpers import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"
NAMES = ["train.ipynb", "inference.ipynb"]  # in this order: inference picks up the style train saves
KERNEL = "nada-test-python"
CELL_TIMEOUT_S = 600  # generous: each notebook takes 7-25 s here (about 55 s on a busy 2-core machine)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A kernelspec for this interpreter with the tiny-mode environment, and the weights cache it uses."""
    root = tmp_path_factory.mktemp("notebooks")
    cache = root / "cache"
    cache.mkdir()
    work = root / "work"  # work/notebooks/*.ipynb and work/examples/astronaut.jpg, as in a checkout
    shutil.copytree(NOTEBOOKS, work / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (work / "examples").mkdir()
    shutil.copy(PROJECT_ROOT / "examples" / "astronaut.jpg", work / "examples")
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    env = {"NADA_TINY": "1", "HF_HUB_OFFLINE": "1", "NADA_CACHE": str(cache), "PYTHONPATH": str(PROJECT_ROOT)}
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nada tests", "language": "python", "env": env}))
    return {"kernels": str(root / "kernels"), "cache": cache, "notebooks": work / "notebooks"}


def run_notebook(path: Path, kernels: str) -> tuple[nbformat.NotebookNode, float]:
    """Execute ``path`` (working directory: its folder) in the test kernel; (executed notebook, seconds)."""
    nb = nbformat.read(path, as_version=4)
    km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernels]))
    client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, allow_errors=False,
                                     resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute(cleanup_kc=True)  # a kernel manager we pass is not shut down unless asked
    return nb, time.perf_counter() - t0


def outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def text_of(nb: nbformat.NotebookNode) -> str:
    parts = []
    for out in outputs(nb):
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"{name}: code cell {i} ({cell.get('id')}) has outputs: strip them"
        assert cell.execution_count is None, f"{name}: code cell {i} ({cell.get('id')}) has an execution count"
    assert "widgets" not in nb.metadata, f"{name}: widget state saved in the metadata"


@pytest.mark.parametrize("name", NAMES)
def test_runs_in_tiny_mode_and_shows_images(name: str, kernel_env: dict) -> None:
    nb, seconds = run_notebook(kernel_env["notebooks"] / name, kernel_env["kernels"])
    errors = [o for o in outputs(nb) if o.get("output_type") == "error"]
    assert not errors, f"{name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    images = [o for o in outputs(nb) if "image/png" in o.get("data", {})]
    assert images, f"{name} showed no image"
    text = text_of(nb)
    assert "Tiny mode" in text, f"{name} did not run in tiny mode"
    print(f"{name}: {seconds:.1f} s, {len(images)} images")
    if name == "train.ipynb":
        saved = list((kernel_env["cache"] / "styles").glob("*.safetensors"))
        assert [p.name for p in saved] == ["tiny-sketch.safetensors"], saved
        assert "s_dir" in text and "CLIP direction score" in text  # the metrics table, by key and by name
        assert "Style(" in text and "source='tiny'" in text  # the trained style (tiny mode: the 32 px generator)
    else:
        assert len(images) >= 4, f"{name}: {len(images)} images (generate, strengths, inversion, its strengths)"
        assert "tiny-invert-demo: Style(" in text
        assert (kernel_env["notebooks"] / "nada-walk.mp4").stat().st_size > 0  # the video cell, next to the notebook
        assert any("<video" in str(o.get("data", {}).get("text/html", "")) for o in outputs(nb))
        if (kernel_env["cache"] / "styles" / "tiny-sketch.safetensors").is_file():  # train.ipynb ran first
            assert "tiny-sketch: Style(" in text


@pytest.mark.parametrize("name", NAMES)
def test_goes_through_the_front_door(name: str) -> None:
    """The notebooks use ``import nada`` and ``nada.Studio`` (display helpers: ``nada.notebook``), nothing deeper."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "nada.Studio(" in code
    words = " ".join(c.source for c in nb.cells).lower()
    assert "paper's figures" not in words and "paper's metrics" not in words  # nada's own measurements, named so
    imports = [line.strip() for line in code.splitlines() if line.strip().startswith(("import ", "from "))]
    deep = [line for line in imports if "nada." in line and not line.startswith("from nada.notebook import")]
    assert not deep, f"{name} imports nada internals: {deep}"
    used = {word.split("(")[0] for word in code.replace("\n", " ").split() if word.startswith("nada.")}
    allowed = ("nada.Studio", "nada.notebook", "nada.RECIPES", "nada.AdaptConfig", "nada.__version__")
    assert all(u.startswith(allowed) for u in used), sorted(used)
    long_cells = [c.source.count("\n") + 1 for c in nb.cells if c.cell_type == "code" and "REPO_URL" not in c.source]
    assert max(long_cells) <= 16, f"{name}: a code cell of {max(long_cells)} lines (keep cells short)"


# ------------------------------------------------------------------------------------- nada.notebook helpers
def test_tiny_mode_reads_the_flag_like_the_app() -> None:
    assert tiny_mode({"NADA_TINY": "1"}) and tiny_mode({"NADA_TINY": " Yes "}) and tiny_mode({"NADA_TINY": "on"})
    assert not tiny_mode({}) and not tiny_mode({"NADA_TINY": "0"}) and not tiny_mode({"NADA_TINY": ""})


def test_enlarge_and_labelled_grid() -> None:
    from PIL import Image

    small = Image.new("RGB", (32, 16), (255, 0, 0))
    big = enlarge(small, 256)
    assert big.size == (512, 256) and big.getpixel((511, 255)) == (255, 0, 0)
    assert enlarge(big, 256) is big
    tiles = [Image.new("RGB", (32, 32), (0, 0, 255)), Image.new("RGB", (512, 512), (0, 255, 0))]
    sheet = labelled_grid([tiles, tiles[:1]], ["a row", "b"], ["one", "two"], size=64)
    assert sheet.width > 2 * 64 and sheet.height > 2 * 64  # label margins on the left and at the top
    left, top = sheet.width - 2 * 64, sheet.height - 2 * 64
    assert sheet.getpixel((left + 10, top + 10)) == (0, 0, 255)  # enlarged tile
    assert sheet.getpixel((left + 64 + 10, top + 10)) == (0, 255, 0)  # shrunk tile
    assert sheet.getpixel((left + 64 + 10, top + 64 + 10)) == (255, 255, 255)  # short row: background
    plain = labelled_grid([tiles], size=64)
    assert plain.size == (128, 64)
    with pytest.raises(ValueError):
        labelled_grid([tiles], ["x", "y"])
    with pytest.raises(ValueError):
        labelled_grid([])


def test_offer_download_and_upload_outside_colab(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nada.notebook import in_colab, offer_download, upload_or

    assert not in_colab()
    f = tmp_path / "style.safetensors"
    f.write_bytes(b"x")
    assert offer_download(f) == f.resolve()
    assert str(f.resolve()) in capsys.readouterr().out
    with pytest.raises(FileNotFoundError):
        offer_download(tmp_path / "missing.safetensors")
    assert upload_or(f) == f
    with pytest.raises(FileNotFoundError):
        upload_or(tmp_path / "missing.jpg")


def test_colab_download_and_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In Colab the helpers go through ``google.colab.files`` (a stand-in module here)."""
    import types

    from nada.notebook import in_colab, offer_download, upload_or

    calls = []
    files = types.SimpleNamespace(download=lambda p: calls.append(("download", p)),
                                  upload=lambda: calls.append(("upload",)) or {"me.jpg": b"JPEG bytes"})
    colab = types.ModuleType("google.colab")
    colab.files = files
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert in_colab()
    f = tmp_path / "style.safetensors"
    f.write_bytes(b"x")
    offer_download(f)
    assert calls == [("download", str(f.resolve()))]
    assert upload_or(None) == b"JPEG bytes"
    files.upload = dict  # nothing chosen: the default
    assert upload_or(f) == f


def test_watch_keeps_the_steps_before_an_interrupt_and_metrics_table_names_the_figures() -> None:
    """``watch`` outside a notebook (IPython prints what it would show): records, losses, probe, latest style."""
    import types

    from nada.notebook import TrainingLog, metrics_table, watch

    def record(step: int, style: object | None) -> types.SimpleNamespace:
        return types.SimpleNamespace(step=step, total=5, losses={"direction": 1.0 / step, "total": 1.0 / step},
                                     scores=[0.1, 0.3] if step == 2 else None, rows=[1] if step == 2 else None,
                                     preview=Image.new("RGB", (32, 32)) if step == 2 else None, error=None,
                                     layers=["convs.0"], style=style)

    closed = []

    def records():
        try:
            yield record(1, "style-1")
            yield record(2, "style-2")
            yield record(3, None)  # a record without a snapshot (style_every > 1)
            raise KeyboardInterrupt  # the kernel's stop button, during step 4
        finally:
            closed.append(True)

    log = watch(records())
    assert isinstance(log, TrainingLog) and log.stopped and closed == [True]
    assert log.last.step == 3 and log.style == "style-2"  # the latest snapshot is kept
    assert [row["step"] for row in log.losses] == [1, 2, 3] and log.losses[1]["total"] == 0.5
    assert log.probe == ([0.1, 0.3], [1])

    table = metrics_table({"s_dir": 0.25, "clip_target_source": 0.1, "clip_target_adapted": 0.2,
                           "diversity_source": 0.5, "diversity_adapted": 0.4, "n": 64, "per_model": []})
    assert list(table.index) == ["s_dir", "clip_target_source", "clip_target_adapted", "diversity_source",
                                 "diversity_adapted"]
    assert table.loc["s_dir", "figure"] == "CLIP direction score" and table.loc["s_dir", "value"] == 0.25
    assert table.loc["clip_target_adapted", "figure"] == "target score, styled"
    assert "id" in metrics_table({"s_dir": 0.0, "id": 0.9}).index
