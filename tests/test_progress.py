"""Progress reports: the time left a user reads in the panel."""

import argparse
import io
import json
import sys

import pytest

from backend.cogvideox import download
from backend.errors import UserError
from backend.events import EventStream
from backend.progress import Report


def progress_events(stream: io.StringIO) -> list[dict]:
    return [e for e in map(json.loads, stream.getvalue().splitlines()) if e["event"] == "progress"]


def test_a_stage_that_runs_again_gets_its_own_time_estimate(monkeypatch):
    clock = iter([0.0, 10.0, 100.0, 101.0])  # first download: 10 s per unit; second: 1 s per unit
    monkeypatch.setattr("backend.events.time.monotonic", lambda: next(clock))
    stream = io.StringIO()
    report = Report(EventStream(stream))
    report.stage("downloading", "first repository")
    report.progress(1, 100, "downloading")
    report.progress(2, 100, "downloading")
    report.stage("downloading", "second repository")
    report.progress(1, 10, "downloading")
    report.progress(2, 10, "downloading")
    eta = [e["eta_s"] for e in progress_events(stream)]
    assert eta == [None, 980.0, None, 8.0]


def test_a_changed_total_restarts_the_estimate(monkeypatch):
    clock = iter([0.0, 1.0, 2.0, 3.0])
    monkeypatch.setattr("backend.events.time.monotonic", lambda: next(clock))
    stream = io.StringIO()
    report = Report(EventStream(stream))
    report.progress(1, 50)
    report.progress(2, 50)
    report.progress(1, 4)  # a retry in a lower memory mode with another step count
    report.progress(2, 4)
    assert [e["eta_s"] for e in progress_events(stream)] == [None, 48.0, None, 2.0]


def test_download_without_huggingface_hub_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    args = argparse.Namespace(dest=str(tmp_path), only="trajmaster", offline=False, token=None)
    with pytest.raises(UserError) as err:
        download.download(args, Report(EventStream(io.StringIO())))
    assert err.value.code == "missing_dependency"
    assert "huggingface_hub" in err.value.message and "pip install" in err.value.hint
