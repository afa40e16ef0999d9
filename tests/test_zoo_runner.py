"""The zoo runner in this process (no Ray): batches planned by the sharing rule, every finished style written at once
with its zoo.json record, a rerun that retrains nothing (and only what changed), failed styles recorded while the
others finish, and every bad input refused before anything is written."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from nada.styles import load_style
from nada.zoo import jobs as zoo_jobs
from nada.zoo.book import ZOO_FILE, ZooBook, ZooFolderError
from nada.zoo.jobs import StoreSettings, StyleResult, plan_batches, train_batch
from nada.zoo.prompts import parse_prompts
from nada.zoo.runner import run_zoo
from nada.zoo.sheet import INDEX_NAME, SHEET_NAME

TINY = StoreSettings(tiny=True, judge_samples=2)
PROMPTS = ("Sketch | iterations=1\n"
           "Photo -> Pixar | iterations=1 seed=3\n"
           "# a comment\n"
           "Joker | iterations=1 recipe=notebook\n")


def entries(text: str = PROMPTS):
    return parse_prompts(text, source="tiny")


def run(text: str, out: Path, **kwargs) -> list:
    return list(run_zoo(entries(text), out, source="tiny", settings=TINY, seeds=(0, 1), **kwargs))


def styles_of(events) -> list[str]:
    return [e.record["name"] for e in events if e.kind == "style"]


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def test_batches_share_only_what_adapt_many_allows():
    es = parse_prompts("a | iterations=2\nb | iterations=2\nc | iterations=3\nd | iterations=2\n"
                       "e | iterations=2 recipe=paper\nf | iterations=2 recipe=paper\ng | iterations=2\n",
                       source="tiny")
    jobs = plan_batches(es, "tiny", TINY, styles_per_batch=2)
    assert [j.names for j in jobs] == [["a", "b"], ["d", "g"], ["c"], ["e"], ["f"]]
    assert [j.steps for j in jobs] == [4, 4, 3, 2, 2]
    assert all(len({zoo_jobs.batch_signature(c) for c in j.configs}) == 1 for j in jobs)
    assert jobs[0].keys == (es[0].key("tiny"), es[1].key("tiny"))
    with pytest.raises(ValueError, match="at least 1"):
        plan_batches(es, "tiny", TINY, styles_per_batch=0)


def test_a_zoo_run_writes_every_style_its_record_and_the_pictures(tmp_path):
    out = tmp_path / "zoo"
    events = run(PROMPTS, out, styles_per_batch=4)
    assert styles_of(events) == ["sketch", "pixar", "joker"]
    plan = next(e for e in events if e.kind == "plan")
    assert plan.total_steps == 3 and sum(e.steps for e in events if e.kind == "steps") == 3
    book = json.loads((out / ZOO_FILE).read_text())
    assert book["format"] == "nada-zoo" and book["source"] == "tiny" and book["seeds"] == [0, 1]
    by_name = {s["name"]: s for s in book["styles"]}
    assert list(by_name) == ["sketch", "pixar", "joker"]
    pixar = by_name["pixar"]
    assert (pixar["line"], pixar["source_text"], pixar["target_text"], pixar["recipe"], pixar["seed"]) == \
        (2, "Photo", "Pixar", "compact", 3)
    assert pixar["overrides"] == {"iterations": 1} and pixar["status"] == "done" and pixar["error"] is None
    assert pixar["file"] == "pixar.safetensors" and pixar["seconds"] > 0 and pixar["where"]
    assert pixar["figures"]["n"] == 2 and -1 <= pixar["figures"]["s_dir"] <= 1
    assert pixar["key"] == entries()[1].key("tiny")
    style = load_style(out / "pixar.safetensors")
    assert style.kind == "style_delta" and style.meta["target_text"] == "Pixar" and style.meta["config"]["seed"] == 3
    assert load_style(out / "joker.safetensors").kind == "weights"
    assert (out / SHEET_NAME).stat().st_size > 0 and "Pixar" in (out / INDEX_NAME).read_text()


def test_a_rerun_retrains_nothing_and_a_changed_line_only_itself(tmp_path):
    out = tmp_path / "zoo"
    run(PROMPTS, out)
    before = snapshot(out)
    again = run(PROMPTS, out)
    assert styles_of(again) == [] and [e.kind for e in again] == ["skip"] * 3
    assert snapshot(out) == before  # same files, same bytes, not even rewritten (mtimes); zoo.json included
    changed = run(PROMPTS.replace("seed=3", "seed=4"), out)
    assert styles_of(changed) == ["pixar"]
    after = snapshot(out)
    for name in ("sketch.safetensors", "joker.safetensors"):
        assert after[name] == before[name]
    assert after["pixar.safetensors"][1] != before["pixar.safetensors"][1]
    book = json.loads((out / ZOO_FILE).read_text())
    assert [s["name"] for s in book["styles"]] == ["sketch", "pixar", "joker"]  # each once
    assert {s["name"]: s["seed"] for s in book["styles"]}["pixar"] == 4


def test_a_missing_file_is_trained_again(tmp_path):
    out = tmp_path / "zoo"
    run(PROMPTS, out)
    (out / "sketch.safetensors").unlink()
    assert styles_of(run(PROMPTS, out)) == ["sketch"]


def _crashing(real):
    """adapt_many that raises for a batch holding "Crash" (as a CUDA fault would end the whole batch)."""
    def adapt_many(generator, clips, configs, id_loss=None, *, stop=None):
        if any(c.target_text == "Crash" for c in configs):
            raise RuntimeError("CUDA error: an illegal memory access (stand-in)")
        yield from real(generator, clips, configs, id_loss, stop=stop)
    return adapt_many


def test_failed_styles_are_recorded_and_the_others_finish(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo_jobs, "adapt_many", _crashing(zoo_jobs.adapt_many))
    out = tmp_path / "zoo"
    text = ("Sketch | iterations=1\n"
            "Broken | iterations=1 lambda_direction=1e308 lambda_global=1e308\n"  # a real non-finite loss
            "Crash | iterations=2\n"
            "Pixar | iterations=1\n")
    events = run(text, out, styles_per_batch=2)
    book = {s["name"]: s for s in json.loads((out / ZOO_FILE).read_text())["styles"]}
    assert {n: s["status"] for n, s in book.items()} == \
        {"sketch": "done", "broken": "failed", "crash": "failed", "pixar": "done"}
    assert "The loss became inf at step 1" in book["broken"]["error"] and book["broken"]["file"] is None
    assert "illegal memory access" in book["crash"]["error"]
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["pixar.safetensors", "sketch.safetensors"]
    end = next(e for e in events if e.kind == "end")
    assert (end.styles, end.failed) == (2, 2)
    assert sum(e.steps for e in events if e.kind == "steps") == 5  # the bar reaches its end
    monkeypatch.undo()
    assert styles_of(run(text, out, styles_per_batch=2)) == ["broken", "crash"]  # failures train again
    assert json.loads((out / ZOO_FILE).read_text())["styles"][2]["status"] == "done"


def test_train_batch_gives_every_style_one_result_even_when_models_fail(monkeypatch):
    job = plan_batches(entries(), "tiny", TINY)[0]

    def no_store(self):
        raise OSError("disk gone")
    monkeypatch.setattr(StoreSettings, "store", no_store)
    results = [r for r in train_batch(job) if isinstance(r, StyleResult)]
    assert [(r.name, r.status) for r in results] == [("sketch", "failed"), ("pixar", "failed")]
    assert all("disk gone" in r.error for r in results)


@pytest.mark.parametrize("text, words", [
    ("", "no styles"),
    ("# only a comment\n\n", "no styles"),
    ("Sketch\nsketch | seed=2\n", "lines 1 and 2"),
    ("Sketch | iterations=zero\n", "line 1"),
    ("Sketch | colour=red\n", "unknown setting"),
])
def test_bad_prompts_are_refused_before_anything_is_written(tmp_path, text, words):
    out = tmp_path / "zoo"
    with pytest.raises(ValueError, match=words):
        run(text, out)
    assert not out.exists()


def test_duplicate_entries_given_directly_are_refused(tmp_path):
    es = entries("Sketch\n") * 2
    with pytest.raises(ValueError, match="both make the style name 'sketch'"):
        list(run_zoo(es, tmp_path / "zoo", source="tiny", settings=TINY))


@pytest.mark.parametrize("make", ["file", "under_a_file"])
def test_an_unwritable_folder_is_refused_naming_it(tmp_path, make):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    out = blocker if make == "file" else blocker / "zoo"
    with pytest.raises(ZooFolderError) as exc:
        run(PROMPTS, out)
    assert f"'{out.name}'" in str(exc.value) and str(tmp_path) not in str(exc.value)
    assert blocker.read_text() == "x"


def test_a_corrupt_or_foreign_zoo_json_is_an_error_and_left_alone(tmp_path):
    out = tmp_path / "zoo"
    out.mkdir()
    (out / ZOO_FILE).write_text("{not json")
    with pytest.raises(ZooFolderError, match="zoo/zoo.json' cannot be read"):
        run(PROMPTS, out)
    assert (out / ZOO_FILE).read_text() == "{not json"
    (out / ZOO_FILE).write_text(json.dumps({"format": "nada-zoo", "version": 1, "source": "ffhq", "styles": []}))
    with pytest.raises(ZooFolderError, match="source generator 'ffhq'"):
        run(PROMPTS, out)
    (out / ZOO_FILE).write_text(json.dumps({"format": "nada-zoo", "version": 1, "source": "tiny",
                                            "styles": [{"name": "../x", "status": "done"}]}))
    with pytest.raises(ZooFolderError, match="unsafe name"):
        ZooBook.open(out, "tiny", [0])


def test_unknown_source_too_many_sheet_seeds_and_gpus_without_a_cluster_are_refused(tmp_path):
    with pytest.raises(ValueError, match="1 to 16 seeds"):
        list(run_zoo(entries(), tmp_path / "zoo", source="tiny", settings=TINY, seeds=range(17)))
    with pytest.raises(ValueError, match="Unknown source generator 'nope'"):
        list(run_zoo(entries(), tmp_path / "zoo", source="nope", settings=TINY))
    with pytest.raises(ValueError, match="--gpus-per-job applies to Ray runs"):
        list(run_zoo(entries(), tmp_path / "zoo", source="tiny", settings=TINY, gpus_per_job=0.5))
    assert not (tmp_path / "zoo").exists()


def test_stop_loses_at_most_the_batch_in_flight_and_a_rerun_goes_on(tmp_path):
    out, stop = tmp_path / "zoo", threading.Event()
    first = []
    for event in run_zoo(entries(), out, source="tiny", settings=TINY, seeds=(0,), styles_per_batch=1, stop=stop):
        if event.kind == "style":
            first.append(event.record["name"])
            stop.set()
    assert first == ["sketch"]
    assert [s["name"] for s in json.loads((out / ZOO_FILE).read_text())["styles"]] == ["sketch"]
    assert styles_of(run(PROMPTS, out)) == ["pixar", "joker"]
