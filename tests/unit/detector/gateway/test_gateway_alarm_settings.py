"""The gateway's alarm-settings desk without a broker: refusal, 503, pending and history."""

from __future__ import annotations

from typing import Any

import pytest

from detector.gateway.alarm_settings import AlarmSettingsBody, AlarmSettingsDesk
from detector.gateway.context import ApiError
from stream.errors import DeliveryFailed, ServiceUnavailable
from stream.redis import PatientState
from stream.settings import load


class _Store:
    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []
        self.applied: dict[str, Any] | None = None
        self.refused: dict[str, Any] | None = None

    async def patient_state(self, patient: str) -> PatientState:
        return PatientState(patient, 70.0, None, None, None, (), self.applied,
                            alarm_settings_refused=self.refused)

    async def alarm_settings_log(self, patient: str, count: int = 50) -> list[dict[str, Any]]:
        return list(reversed(self.log))[:count]

    async def log_alarm_settings(self, patient: str, change: dict[str, Any]) -> None:
        self.log.append(change)


class _Producer:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.sent, self.stopped = fail, [], False

    async def send_and_wait(self, topic: str, message: Any, key: str) -> None:
        if self.fail:
            raise DeliveryFailed("Kafka delivery failed: injected")
        self.sent.append((topic, message, key))

    async def stop(self) -> None:
        self.stopped = True


def _body(**kw: Any) -> AlarmSettingsBody:
    return AlarmSettingsBody(**{"user": "nurse a", "hr_low_bpm": 50, "hr_high_bpm": 130,
                                "pause_s": 2.5, "disabled": ["bigeminy"], **kw})


async def test_a_change_kafka_does_not_take_is_a_503_and_not_logged() -> None:
    store = _Store()
    desk = AlarmSettingsDesk(load(environ={}), store, _Producer(fail=True))  # type: ignore[arg-type]
    with pytest.raises(ApiError) as err:
        await desk.send("p1", _body())
    assert err.value.status == 503 and "not sent" in err.value.message
    assert store.log == []


async def test_a_change_sent_while_redis_fails_is_a_202_that_says_the_history_missed_it() -> None:
    class _Down(_Store):
        async def log_alarm_settings(self, patient: str, change: dict[str, Any]) -> None:
            raise ServiceUnavailable("redis unavailable for log_alarm_settings")

    producer = _Producer()
    desk = AlarmSettingsDesk(load(environ={}), _Down(), producer)  # type: ignore[arg-type]
    sent = await desk.send("p1", _body())
    assert sent["status"] == "sent" and "not written to the change history" in sent["warning"]
    assert len(producer.sent) == 1  # the detector gets it


async def test_pending_until_the_detector_reports_the_newest_change_applied() -> None:
    store, producer = _Store(), _Producer()
    desk = AlarmSettingsDesk(load(environ={}, topic_prefix="t"), store, producer)  # type: ignore[arg-type]
    first = await desk.send("p1", _body())
    second = await desk.send("p1", _body(hr_low_bpm=45, disabled=[]))
    assert [(t, m.request_id, k) for t, m, k in producer.sent] == [
        ("t.samples", first["request_id"], "p1"), ("t.samples", second["request_id"], "p1")]
    view = await desk.read("p1")
    assert view["pending"] == second["settings"] and view["applied"] is None
    assert view["history"] == [second["settings"], first["settings"]]
    store.refused = {"request_id": first["request_id"], "reason": "unknown_patient", "detail": "x"}
    assert (await desk.read("p1"))["refused"] is None  # an older change's refusal is old news
    store.refused = {**store.refused, "request_id": second["request_id"]}
    view = await desk.read("p1")
    assert view["refused"] == store.refused and view["pending"] is None
    store.refused = None
    store.applied = first["settings"]  # the detector is one change behind
    assert (await desk.read("p1"))["pending"] == second["settings"]
    store.applied = second["settings"]
    view = await desk.read("p1")
    assert view["pending"] is None
    assert view["effective"] == {"hr_low_bpm": 45.0, "hr_high_bpm": 130.0, "pause_s": 2.5, "disabled": []}
    with pytest.raises(ApiError) as err:
        await desk.send("p1", _body(pause_s=4.0))
    assert err.value.status == 422 and err.value.message == "pause_s must be 1.5-3.5 s, got 4.0"
    assert len(producer.sent) == 2


async def test_the_defaults_are_the_deployments() -> None:
    ward = load(environ={"ECGMON_ALARM_HR_LOW_BPM": "50", "ECGMON_ALARMS_OFF": "pause"})
    view = await AlarmSettingsDesk(ward, _Store(), _Producer()).read("p1")  # type: ignore[arg-type]
    assert view["defaults"] == view["effective"] == {
        "hr_low_bpm": 50.0, "hr_high_bpm": 140.0, "pause_s": 2.0, "disabled": ["pause"]}
