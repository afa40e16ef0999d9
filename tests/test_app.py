"""The launched app (tiny mode, in-process) driven through gradio_client, as a remote user would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError, ValidationError  # noqa: E402

from .helpers import adapt_args  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # gradio's own pandas calls
ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "examples" / "astronaut.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def import_app():
    """``app.py`` from the project root (it is not part of the ``nada`` package)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import app

    return app


@pytest.fixture(scope="module")
def served():
    """(demo, url) of the tiny-mode app on a free port; closed after the module."""
    app = import_app()
    demo = app.build_demo(tiny=True)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                **app.launch_kwargs())
    yield demo, demo.local_url
    demo.close()
    cleanup_sessions(demo)


@pytest.fixture(scope="module")
def client(served):
    c = Client(served[1], verbose=False)
    yield c
    c.close()


def cleanup_sessions(demo) -> None:
    """Delete the temp folders of the sessions the tests opened (the server would after the session TTL)."""
    from nada.app.sessions import SessionStyles

    for state in getattr(getattr(demo, "state_holder", None), "session_data", {}).values():
        for value in list(getattr(state, "state_data", {}).values()):
            if isinstance(value, SessionStyles):
                value.cleanup()


def image(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def adapt_values(**over) -> list:
    """The /adapt endpoint's values in order: the Adapt tab's (``helpers.adapt_args``), with ``over``."""
    return list(adapt_args(**over).values())


# Run in a fresh interpreter (this one may have imported app already): every ModelStore made, every torch module
# constructed and every read of weights (torch.load, safetensors) is recorded while `import app` and build_demo run.
SPY = """
import json, sys
import safetensors, safetensors.torch, torch
from nada import model_store

seen = {"stores": [], "modules": 0, "reads": []}

def spy(owner, name):
    real = getattr(owner, name)
    def call(*args, **kwargs):
        seen["reads"].append(name)
        return real(*args, **kwargs)
    setattr(owner, name, call)

for owner, name in [(torch, "load"), (safetensors, "safe_open"), (safetensors.torch, "load_file"),
                    (safetensors.torch, "load")]:
    spy(owner, name)
module_init, store_init = torch.nn.Module.__init__, model_store.ModelStore.__init__

def count_module(self, *args, **kwargs):
    seen["modules"] += 1
    module_init(self, *args, **kwargs)

def keep_store(self, *args, **kwargs):
    store_init(self, *args, **kwargs)
    seen["stores"].append(self)

torch.nn.Module.__init__, model_store.ModelStore.__init__ = count_module, keep_store
import app
imported = {"stores": len(seen["stores"]), "modules": seen["modules"], "reads": list(seen["reads"])}
app.build_demo(tiny=True)
app.build_demo(tiny=False)  # offline, nothing cached: the page says what is missing
print(json.dumps({"import": imported, "stores": len(seen["stores"]), "modules": seen["modules"],
                  "reads": seen["reads"], "loaded": [s.loaded() for s in seen["stores"]]}))
"""


def test_import_has_no_side_effects(tmp_path):
    """Importing app.py and building the page (tiny and real mode) constructs no model and reads no weights: the
    models load on first use, in a handler."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NADA_CACHE": str(tmp_path), "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("NADA_TINY", None)
    out = subprocess.run([sys.executable, "-c", SPY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["import"] == {"stores": 0, "modules": 0, "reads": []}  # importing app makes nothing
    assert seen["stores"] == 2 and seen["loaded"] == [[], []]  # each build makes its store, and loads nothing
    assert seen["modules"] == 0 and seen["reads"] == []  # no network constructed, no weights read


def test_page_has_the_three_tabs_and_the_tiny_label(served):
    import httpx  # a dependency of gradio and gradio_client (requests is not)

    cfg = httpx.get(served[1].rstrip("/") + "/config", timeout=10).json()
    tabs = [c["props"]["label"] for c in cfg["components"] if c.get("type") == "tabitem"]
    assert tabs == ["Adapt", "Generate", "Invert"]
    texts = " ".join(str(c["props"].get("value")) for c in cfg["components"] if c.get("type") == "markdown")
    assert "TINY MODE" in texts


def test_video_endpoint_returns_a_playable_mp4(client):
    out = client.predict("tiny-demo", 3, 0.7, 2, 1.0, api_name="/video")
    path = out["video"] if isinstance(out, dict) else out
    assert str(path).endswith(".mp4") and Path(path).stat().st_size > 1000
    with open(path, "rb") as f:
        assert f.read(12)[4:8] == b"ftyp"  # an MP4 container


def test_generate_changes_with_seed_and_truncation(client):
    base, styled, files, info = client.predict("tiny-demo", 3, 0.7, 1, 1.0, api_name="/generate")
    assert [g["caption"] for g in base + styled] == ["seed 3 · source (tiny)", "seed 3 · tiny-demo"]
    src, styled = image(base[0]["image"]), image(styled[0]["image"])
    assert src.shape == (256, 256, 3) and np.abs(src - styled).mean() > 5
    other_seed = client.predict("tiny-demo", 4, 0.7, 1, 1.0, api_name="/generate")[0]
    other_trunc = client.predict("tiny-demo", 3, 0.2, 1, 1.0, api_name="/generate")[0]
    assert np.abs(image(other_seed[0]["image"]) - src).mean() > 5
    assert np.abs(image(other_trunc[0]["image"]) - src).mean() > 2
    same = client.predict("tiny-demo", 3, 0.7, 1, 1.0, api_name="/generate")[0]
    assert np.array_equal(image(same[0]["image"]), src)
    assert files[0].endswith(".zip") and "seeds 3–3" in info


def test_adapt_streams_previews_and_its_style_feeds_generate(client):
    job = client.submit(*adapt_values(), api_name="/adapt")
    outputs = list(job)
    assert job.status().success
    previews = [o[0] for o in outputs if isinstance(o[0], str)]
    assert len(previews) >= 2
    grids = [image(p) for p in previews]
    assert grids[0].shape == (256, 512, 3) and not np.array_equal(grids[0], grids[-1])
    final = outputs[-1]
    assert "Training finished" in final[3] and final[4].endswith("sketch.safetensors")
    assert final[5]["value"] == "session:sketch"  # the Generate dropdown now offers and selects it
    _, styled, files, _ = client.predict("session:sketch", 0, 0.7, 2, 1.0, api_name="/generate")
    assert len(styled) == 2 and styled[1]["caption"] == "seed 1 · sketch"
    assert any(f.endswith("sketch.safetensors") for f in files)
    stranger = Client(client.src, verbose=False)  # another browser session does not see this style
    with pytest.raises(ValidationError, match="style: The style 'sketch' is no longer in this session"):
        stranger.predict("session:sketch", 0, 0.7, 1, 1.0, api_name="/generate")
    stranger.close()


def test_invert_astronaut(client):
    if not ASTRONAUT.is_file():
        pytest.skip("examples/astronaut.jpg is missing")
    aligned, recon, gallery, status = client.predict(handle_file(str(ASTRONAUT)), ["tiny-invert-demo"], 1.0,
                                                     api_name="/invert")
    assert status.startswith("Done in ") and "its reconstruction and 1 style" in status  # the status line says so
    a, r = image(aligned), image(recon)
    assert a.shape == r.shape == (256, 256, 3) and a.std() > 20
    assert len(gallery) == 1 and gallery[0]["caption"] == "tiny-invert-demo (strength 1)"
    assert np.abs(image(gallery[0]["image"]) - r).mean() > 2


def test_bad_inputs_come_back_as_messages(client, tmp_path):
    """Bad values are refused by the inputs' check before the event runs (gradio_client: ValidationError naming the
    input); failures only the run can find (no face, a corrupt file) come back as the handler's AppError."""
    with pytest.raises(ValidationError, match="target_text: Target text is empty"):
        client.predict(*adapt_values(target_text="  "), api_name="/adapt")
    with pytest.raises(ValidationError, match="image: Upload a photo with a face"):
        client.predict(None, [], 1.0, api_name="/invert")
    blank = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (200, 190, 180)).save(blank)
    with pytest.raises(AppError, match="No face was found"):
        client.predict(handle_file(str(blank)), [], 1.0, api_name="/invert")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a style")
    with pytest.raises(AppError, match="Invalid file type"):
        client.predict(handle_file(str(notes)), api_name="/upload_style")
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"garbage")
    with pytest.raises(AppError, match="could not be read as a safetensors file") as err:
        client.predict(handle_file(str(fake)), api_name="/upload_style")
    assert str(err.value).startswith("'fake.safetensors' could not be read")  # its own name, no server path
    with pytest.raises(ValidationError, match="seed: The seed must be a whole number from 0 to 4294967295, got -1"):
        client.predict("tiny-demo", -1, 0.7, 1, 1.0, api_name="/generate")
    assert client.predict("tiny-demo", 1, 0.7, 1, 1.0, api_name="/generate")[0]  # and the app still serves


def test_wrong_numbers_are_refused_not_rounded_or_clamped(client):
    with pytest.raises(ValidationError, match="seed: The seed must be a whole number .*got 1.5"):
        client.predict("tiny-demo", 1.5, 0.7, 8, 1.0, api_name="/generate")  # was: seeds 2-9, silently
    for over, message in [({"lr": 1000}, "lr: The learning rate must be above 0 and at most 0.1"),
                          ({"lr": 0}, "lr: The learning rate must be above 0"),
                          ({"seed": 0.5}, "seed: The seed must be a whole number")]:
        with pytest.raises(ValidationError, match=message):
            client.predict(*adapt_values(**over), api_name="/adapt")


def test_invert_decodes_uploads_itself_and_names_them_by_their_own_names(client, tmp_path):
    """Gradio's own decoding answered these with a bare "Error"; nada's loader says what is wrong."""
    renamed = tmp_path / "selfie.jpg"
    renamed.write_text("a text file renamed to .jpg\n" * 20)
    with pytest.raises(ValidationError, match="image: 'selfie.jpg' is not an image Pillow can read") as err:
        client.predict(handle_file(str(renamed)), [], 1.0, api_name="/invert")
    huge = tmp_path / "huge.png"
    Image.new("1", (15000, 15000)).save(huge)  # 225 megapixels, a few kB on disk
    with pytest.raises(ValidationError, match="image: 'huge.png' declares a gigantic size") as err2:
        client.predict(handle_file(str(huge)), [], 1.0, api_name="/invert")
    half = tmp_path / "cut.jpg"  # an interrupted upload: the header reads, the pixels do not
    half.write_bytes(ASTRONAUT.read_bytes()[:4000])
    with pytest.raises(AppError, match="'cut.jpg' is corrupt or truncated") as err3:
        client.predict(handle_file(str(half)), [], 1.0, api_name="/invert")
    for e in (err, err2, err3):
        assert "/tmp" not in str(e.value) and "gradio" not in str(e.value)


def test_stop_keeps_the_style_and_a_shared_file_works_elsewhere(served, client):
    long_run = adapt_values(target_text="Zombie", iterations=100, probe=False)  # no probing
    job = client.submit(*long_run, api_name="/adapt")
    deadline = time.monotonic() + 60
    while not any(isinstance(o[0], str) for o in job.outputs()):  # wait for the first preview (step 10)
        assert time.monotonic() < deadline and not job.done(), "training produced no preview"
        time.sleep(0.1)
    assert "Stopping after the current step" in client.predict(api_name="/stop")  # same session as the run
    final = job.result(timeout=60)
    assert "stopped at step" in final[3] and final[4].endswith("zombie.safetensors")
    friend = Client(served[1], verbose=False)  # someone the file was shared with
    gen_dd, inv_dd = friend.predict(handle_file(final[4]), api_name="/upload_style")
    assert gen_dd["value"] == "session:zombie"
    _, styled, _, _ = friend.predict("session:zombie", 5, 0.7, 1, 1.0, api_name="/generate")
    assert styled[0]["caption"] == "seed 5 · zombie"
    assert friend.predict(api_name="/stop") is not None  # nothing to stop there: harmless
    friend.close()


def test_offline_real_mode_page_says_which_weights_are_missing(hub_cache):
    import gradio as gr

    demo = import_app().build_demo(tiny=False)  # no cached weights, HF_HUB_OFFLINE=1: the page still builds
    texts = " ".join(b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown) and b.value)
    assert texts.count("needs weights that are not on this machine yet") == 3  # one notice per tab
    assert "`ffhq`" in texts and "`e4e-ffhq`" in texts and "offline mode is on" in texts and "TINY MODE" not in texts
