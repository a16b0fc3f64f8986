"""Alarm strips: the window cut from the trace history, when it is cut, and what is stored."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detector.gateway.feeds import PatientLive, TraceHistory
from detector.gateway.strips import StripRecorder, cut_strip, decode_strip, encode_strip
from stream.schemas import AlarmPhase, AlarmPriority, Alert, Beat, BeatClass

FS = 120.0


def _alert(t_s: float, phase: AlarmPhase = AlarmPhase.ONSET, patient: str = "p1") -> Alert:
    return Alert(patient, "vtach", AlarmPriority.HIGH, phase, round((t_s - 3) * 360), round(t_s * 360),
                 360.0, 150.0, "VT", 0, 0)


def _live(until_s: float, since_s: float = 0.0) -> PatientLive:
    live = PatientLive(history=TraceHistory(20.0))
    first = round(since_s * FS)
    live.history.add("MLII", FS, first, np.arange(first, round(until_s * FS)) / FS)
    return live


def test_window_is_what_the_history_holds_of_the_span() -> None:
    h = TraceHistory(20.0)
    assert h.window(0, 1) is None and h.end_s is None
    h.add("MLII", FS, 600, np.arange(600, 3000) / FS)  # 5 s to 25 s
    got = h.window(10.0, 12.5)
    assert got is not None
    lead, fs, first, mv = got
    assert (lead, fs, first, len(mv)) == ("MLII", FS, 1200, 300)
    assert np.allclose(mv, np.arange(1200, 1500) / FS)
    clipped = h.window(0.0, 6.0)
    assert clipped is not None and clipped[2] == 600 and len(clipped[3]) == 120
    assert h.window(25.0, 30.0) is None and h.window(1.0, 4.0) is None
    assert h.end_s == 25.0


def test_strip_is_ten_seconds_before_to_five_after_the_alert_with_its_beats() -> None:
    live = _live(until_s=20.0)
    for t in (1.0, 2.5, 9.0, 16.9, 17.5):
        live.add_beat(Beat("p1", round(t * 360), 360.0, BeatClass.V, 0.9, 0.8, 0, 0))
    strip = cut_strip(_alert(12.0), live)
    assert strip is not None and strip["complete"] is True
    assert strip["t_s"] == 2.0 and strip["first_sample_index"] == 240 and len(strip["mv"]) == 1800
    assert strip["mv"][0] == 2.0 and strip["mv"][-1] == round(2039 / FS, 3)
    assert strip["alert_t_s"] == 12.0 and strip["onset_t_s"] == 9.0 and strip["alarm_type"] == "vtach"
    assert strip["window_t_s"] == [2.0, 17.0]
    assert [b["t_s"] for b in strip["beats"]] == [2.5, 9.0, 16.9]
    early = cut_strip(_alert(6.0), live)  # the trace starts 4 s before the alarm
    assert early is not None and early["complete"] is False and early["t_s"] == 0.0
    assert early["window_t_s"] == [-4.0, 11.0] and len(early["mv"]) == 11 * 120
    assert cut_strip(_alert(40.0), live) is None and cut_strip(_alert(12.0), None) is None
    assert decode_strip(encode_strip(strip)) == strip


class _FakeRedis:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def set(self, key: str, value: bytes, nx: bool = False, ex: int | None = None) -> bool:
        assert nx and ex
        if key in self.data:
            return False
        self.data[key] = value
        return True

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)


async def test_recorder_waits_for_the_trace_then_stores_once() -> None:
    now = [0.0]
    store: Any = SimpleNamespace(prefix="P", client=_FakeRedis())
    feed: Any = SimpleNamespace(patients={"p1": _live(until_s=14.0)})
    registry = CollectorRegistry()
    rec = StripRecorder(store, feed, registry, wait_s=30.0, clock=lambda: now[0])
    alert = _alert(12.0)
    rec.add(_alert(12.0, AlarmPhase.UPDATE))  # only onsets have strips
    rec.add(alert)
    assert list(rec.pending) == ["p1"]  # the trace is at 14 s, the strip needs it to 17 s
    feed.patients["p1"].history.add("MLII", FS, round(14 * FS), np.zeros(round(3 * FS)))
    rec.check("p1")
    assert not rec.pending
    await asyncio.sleep(0)
    await asyncio.gather(*rec._writes)
    stored = await rec.load(alert.alert_id)
    assert stored is not None and stored["complete"] and len(stored["mv"]) == 1800
    assert list(store.client.data) == [f"P:strip:{alert.alert_id}"]
    assert registry.get_sample_value("ecgmon_gateway_alarm_strips_total", {"result": "recorded"}) == 1


@pytest.mark.parametrize(("patients", "result"), [({"p1": None}, "missed"), ({}, "missed"),
                                                  ({"p1": "trace to 14 s"}, "partial")])
async def test_recorder_cuts_what_there_is_once_it_has_waited(patients: dict[str, Any],
                                                                result: str) -> None:
    now = [0.0]
    store: Any = SimpleNamespace(prefix="P", client=_FakeRedis())
    live = {k: _live(until_s=14.0) for k, v in patients.items() if v}
    feed: Any = SimpleNamespace(patients=live)
    registry = CollectorRegistry()
    rec = StripRecorder(store, feed, registry, wait_s=30.0, clock=lambda: now[0])
    rec.add(_alert(12.0))
    now[0] = 29.0
    rec.check("p1")
    assert rec.pending  # still waiting for the trace
    now[0] = 30.0
    rec.check("p1")
    assert not rec.pending
    await asyncio.gather(*rec._writes)
    assert registry.get_sample_value("ecgmon_gateway_alarm_strips_total", {"result": result}) == 1
    assert len(store.client.data) == (result == "partial")
