"""The soak test's short version: the tiny app in its own process, two users for half a minute (bench/soak.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio_client")
pytest.importorskip("dlib")

from bench import soak  # noqa: E402


def test_two_users_for_half_a_minute_nothing_fails_and_sessions_stay_apart():
    report = soak.run(users=2, seconds=25)
    assert report["failures"] == [] and report["isolation_breaches"] == []
    served = {name: e["served"] for name, e in report["endpoints"].items()}
    assert set(served) == {"generate", "invert", "adapt", "stop", "upload_style"}, served  # every kind of request
    assert served["adapt"] == 2 and served["stop"] >= 1 and served["generate"] >= 4  # one run each, stopped
    assert report["isolation_probes"] >= 1  # another session's style was asked for, and refused
    assert len(report["rss_mib"]) >= 3 and all(r > 0 for _, r in report["rss_mib"])  # memory was sampled
