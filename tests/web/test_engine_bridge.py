"""The engine bridge's contract (what labsite relies on), checked on the current body."""

from __future__ import annotations

import pytest

from labsite.redisurls import celery_broker_url, channels_redis_url
from labsite.runs.engine_bridge import iter_run
from labsite.runs.errors import RunInputError


def _run(body: str, mode: str = "trace", seed: int = 3):
    progress = []
    stream = iter_run(body, mode=mode, seed=seed, progress=progress.append)
    return stream, list(stream), progress


def test_events_are_ordered_dicts_and_summary_follows():
    stream, events, progress = _run("flows: 5\npackets_per_flow: 2\n")
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert {"seq", "t_us", "kind", "flow", "core"} <= set(events[0])
    assert progress == sorted(progress) and progress[-1] == 1.0
    summary = stream.summary()
    assert summary["totals"]["events"] == len(events) and len(summary["flows"]) == 5
    assert {f["verdict"] for f in summary["flows"]} <= {"symmetric", "handed_off", "asymmetric"}


def test_summary_before_the_end_is_an_error():
    stream = iter_run("flows: 1", mode="trace", seed=0, progress=lambda _: None)
    with pytest.raises(RuntimeError, match="not all been read"):
        stream.summary()


def test_same_input_same_events_and_batch_mode_agrees():
    a, events_a, _ = _run("flows: 20", seed=9)
    b, events_b, _ = _run("flows: 20", seed=9)
    c, events_c, _ = _run("flows: 20", mode="batch", seed=9)
    assert events_a == events_b and a.summary() == b.summary()
    assert events_c == [] and c.summary() == a.summary()


@pytest.mark.parametrize(("body", "mode", "message"), [
    ("flows: [1", "trace", "scenario: expected YAML or JSON, got a syntax error"),
    ("- 1\n- 2", "trace", "scenario: expected a mapping, got list"),
    ("cores: 65", "trace", "cores: expected an integer 1–64, got 65"),
    ("delay_ms: fast", "trace", "delay_ms: expected an integer 0–1000, got 'fast'"),
    ("", "stream", "mode: expected one of trace, batch, got 'stream'"),
])
def test_bad_input_names_the_field(body, mode, message):
    with pytest.raises(RunInputError, match=message.replace("[", r"\[")):
        list(iter_run(body, mode=mode, seed=0, progress=lambda _: None))


@pytest.mark.parametrize(("url", "celery", "channels"), [
    ("unix:///tmp/r.sock", "redis+socket:///tmp/r.sock", "unix:///tmp/r.sock"),
    ("redis+socket:///tmp/r.sock", "redis+socket:///tmp/r.sock", "unix:///tmp/r.sock"),
    ("redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/14"),
])
def test_one_redis_url_spelled_for_each_client(url, celery, channels):
    assert celery_broker_url(url) == celery and channels_redis_url(url) == channels
