"""Webhook load (bench/webhooks.py, smaller): a burst and a sustained phase against gunicorn with the default
settings, then one worker drains the queue. Every acknowledged event is stored and processed exactly once, and no
request gets a 5xx or no answer. Timings are printed by the benchmark, never asserted here."""
from __future__ import annotations

from bench import webhooks


def test_burst_then_sustained_rate_loses_nothing_and_processes_each_once(tmp_path):
    rows, summary = webhooks.run(tmp_path, burst=400, rate=50, seconds=3, connections=8)
    assert [r["sent"] for r in rows] == [400, 150]
    assert all(r["acknowledged"] == r["sent"] and not r["other_status"] for r in rows), rows
    assert summary["acknowledged"] == summary["stored"] == summary["processed"] == 550, summary
    assert summary["failed"] == 0 and summary["lost"] == 0 and summary["processed_twice"] == 0, summary
    assert summary["server_errors_5xx"] == 0 and summary["no_answer"] == 0, summary
