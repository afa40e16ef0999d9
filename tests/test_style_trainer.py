"""nada.style_trainer: the one coordinator of a training run (nada.Studio, the app's GPU task, `nada adapt`).

What a user relies on: the style a run hands back (or saves as it goes) holds exactly the weights of its step, with
the run's metadata; the identity loss follows one rule everywhere; the figures at the end name their judge; and no
caller coordinates training on its own (none of them runs ``nada.train.adapt`` itself).
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest
import torch

from nada.metrics import Evaluation
from nada.model_store import ModelStore
from nada.style_trainer import StyleTrainer
from nada.styles import load_style
from nada.tiny import TINY_NAME
from nada.train import AdaptConfig

from .helpers import PROJECT_ROOT

CONFIG = AdaptConfig(source_text="Photo", target_text="Sketch", iterations=4, preview_every=2, preview_seeds=(0,),
                     layers_k=0, batch_size=1)


@pytest.fixture(scope="module")
def store() -> ModelStore:
    return ModelStore(tiny=True)


def test_the_style_file_holds_each_preview_step_and_the_last(store: ModelStore, tmp_path: Path) -> None:
    trainer = StyleTrainer(store, TINY_NAME, CONFIG, meta={"name": "sketch"})
    path = tmp_path / "run.safetensors"
    seen = []
    for rec in trainer.run(style_every=0, style_file=path):
        seen.append((rec.step, rec.saved_step, rec.preview is not None, rec.style is not None))
        if rec.saved_step:
            on_disk = load_style(path)
            assert on_disk.meta["steps"] == rec.saved_step  # never ahead of, never behind the report
            if rec.style is not None and rec.saved_step == rec.step:
                assert all(torch.equal(on_disk.tensors[k], rec.style.tensors[k]) for k in rec.style.tensors)
    assert [s[:2] for s in seen] == [(1, 0), (2, 2), (3, 2), (4, 4)]  # saved at the preview (2) and the end (4)
    assert [s[3] for s in seen] == [False, True, False, True]  # styles only where saved (style_every=0)
    style = load_style(path)
    assert style.meta["name"] == "sketch" and style.meta["mode"] == "text" and style.source == TINY_NAME
    assert style.meta["config"]["iterations"] == 4 and style.meta["source_text"] == "Photo"


def test_an_interrupted_run_can_still_be_snapshotted(store: ModelStore) -> None:
    stop = threading.Event()
    trainer = StyleTrainer(store, TINY_NAME, CONFIG, stop=stop)
    records = []
    for rec in trainer.run(style_every=0):
        records.append(rec)
        stop.set()  # asked after step 1: step 1 finishes, then a last record
    assert [r.step for r in records][-1] == 1 and records[-1].done and records[0].stopping is False
    style = trainer.style(records[0])  # what the CLI does with the last record after Ctrl-C
    assert style.meta["steps"] == 1 and set(style.tensors) == set(records[-1].style.tensors)


def test_one_identity_rule_off_with_a_warning_where_it_cannot_apply(store: ModelStore) -> None:
    trainer = StyleTrainer(store, TINY_NAME, AdaptConfig(**{**CONFIG.__dict__, "lambda_id": 0.1}))
    assert trainer.config.lambda_id == 0.0 and trainer.id_loss is None
    assert trainer.warnings == ["The identity loss needs a face generator; 'tiny' is not one, so it is off."]
    first = next(iter(trainer.run()))
    assert first.warnings == trainer.warnings  # the first record carries them to the page / terminal


def test_bad_settings_are_refused_before_anything_loads() -> None:
    fresh = ModelStore(tiny=True)
    with pytest.raises(ValueError, match="Unknown source generator 'nope'"):
        StyleTrainer(fresh, "nope", CONFIG)
    with pytest.raises(ValueError, match="(?i)batch_size must be at least 1"):
        StyleTrainer(fresh, TINY_NAME, AdaptConfig(**{**CONFIG.__dict__, "batch_size": 0}))
    assert fresh.loaded() == []


def test_the_last_record_carries_figures_that_name_their_judge(store: ModelStore) -> None:
    trainer = StyleTrainer(store, TINY_NAME, AdaptConfig(**{**CONFIG.__dict__, "iterations": 2}))
    last = list(trainer.run(metrics_samples=2))[-1]
    assert isinstance(last.metrics, Evaluation) and last.metrics.n == 2
    assert last.metrics.judge == ("tiny-clip",) and "partly circular" in last.metrics.judged_by
    assert last.metrics.id is None and last.metrics.id_trained is False


def _imports_adapt(path: Path) -> bool:
    """True if the module imports ``adapt`` from ``nada.train`` (or the ``train`` module itself)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "train":
            if any(a.name == "adapt" for a in node.names):
                return True
        if isinstance(node, ast.ImportFrom) and any(a.name == "train" for a in node.names):
            return True
    return False


def test_no_caller_coordinates_training_itself() -> None:
    """Studio, the app and the command line train through StyleTrainer; only it runs nada.train.adapt."""
    callers = [PROJECT_ROOT / "nada" / "studio.py", PROJECT_ROOT / "app.py",
               *(PROJECT_ROOT / "nada" / "app").rglob("*.py"), *(PROJECT_ROOT / "nada" / "cli").rglob("*.py")]
    assert (PROJECT_ROOT / "nada" / "cli" / "adapt.py") in callers  # the check sees the command line
    offenders = [str(p.relative_to(PROJECT_ROOT)) for p in callers if _imports_adapt(p)]
    assert not offenders, f"these import nada.train.adapt instead of nada.style_trainer.StyleTrainer: {offenders}"
    assert _imports_adapt(PROJECT_ROOT / "nada" / "style_trainer.py")  # and the check can see an import of it
