"""Discharge in the gateway without a broker: the live feed drops the patient and tells the
clients once, late beats of the ended stay are dropped, data again is a new admission; the
desk's 422 and 503."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detector.gateway.clients import ClientHub, Subscription
from detector.gateway.context import ApiError
from detector.gateway.discharge import DischargeBody, DischargeDesk
from detector.gateway.feeds import Feeds
from detector.gateway.inband import InBandSender
from stream import serde
from stream.errors import DeliveryFailed
from stream.schemas import Beat, BeatClass, Discharge, SampleChunk
from stream.settings import load


class _Store:
    prefix = "ecgmon"

    def __init__(self, patients: list[str]) -> None:
        self.ids = patients

    async def patients(self) -> list[str]:
        return list(self.ids)


def _chunk(pid: str, first: int) -> bytes:
    return serde.encode(SampleChunk(pid, "x", ("MLII",), 360.0, (200.0,), (0,), first,
                                    np.zeros((90, 1), np.int16), 1))


def _beat(pid: str, sample: int) -> bytes:
    return serde.encode(Beat(pid, sample, 360.0, BeatClass.N, 0.9, 0.8, 1, 1))


def _frames(client: Any) -> list[dict[str, Any]]:
    out = []
    while (item := client._next()) is not None:
        out.append(json.loads(item[0]))
    return out


async def test_a_discharge_drops_the_patient_tells_the_clients_once_and_data_again_readmits() -> None:
    settings = load(environ={}, no_data_alarm_s=15.0)
    hub = ClientHub(CollectorRegistry(), 100)
    feeds = Feeds(settings, _Store(["p1", "p2"]), hub, CollectorRegistry())  # type: ignore[arg-type]
    live, samples, beats = feeds.live, settings.topic("samples"), settings.topic("beats")
    watcher, everyone = hub.add(), hub.add()
    watcher.subscription = Subscription(frozenset({"p1"}), waveform=False)
    everyone.subscription = Subscription(None, waveform=True)
    live.handle(samples, _chunk("p1", 0))
    live.handle(beats, _beat("p1", 40))
    assert feeds.nodata is not None and "p1" in feeds.nodata.seen
    assert await feeds.state.patient_ids() == ["p1", "p2"]
    _frames(watcher), _frames(everyone)

    d = Discharge("p1", "d1", "nurse b", 7_000_000)
    live.handle(samples, serde.encode(d))
    live.handle(samples, serde.encode(d))  # seen twice (two consumers' overlap): one frame
    live.handle(beats, _beat("p1", 300))  # the detector's last beat of the stay, arriving late
    frame = {"type": "discharged", "patient_id": "p1", "request_id": "d1", "user": "nurse b", "at_ms": 7}
    assert _frames(watcher) == [frame] and _frames(everyone) == [frame]
    assert "p1" not in live.patients and "p1" not in feeds.nodata.seen
    assert await feeds.state.patient_ids() == ["p2"]  # Redis still lists it until the detector archives

    live.handle(samples, _chunk("p1", 90))  # its monitor streams on: a new admission
    assert "p1" in live.patients and await feeds.state.patient_ids() == ["p1", "p2"]
    live.handle(beats, _beat("p1", 400))
    assert [f["type"] for f in _frames(everyone)] == ["waveform", "beat"]


class _Producer:
    def __init__(self, fail: bool = False) -> None:
        self.fail, self.sent = fail, []

    async def send_and_wait(self, topic: str, message: Any, key: str) -> None:
        if self.fail:
            raise DeliveryFailed("Kafka delivery failed: injected")
        self.sent.append((topic, message, key))

    async def stop(self) -> None:
        return None


async def test_the_desk_sends_a_discharge_keyed_by_the_patient_or_says_why_not() -> None:
    settings = load(environ={}, topic_prefix="t")
    producer = _Producer()
    desk = DischargeDesk(None, InBandSender(settings, producer))  # type: ignore[arg-type]
    sent = await desk.send("p1", DischargeBody(user=" nurse b "))
    [(topic, message, key)] = producer.sent
    assert (topic, key) == ("t.samples", "p1") and isinstance(message, Discharge)
    assert sent["request_id"] == message.request_id and sent["user"] == message.user == "nurse b"
    with pytest.raises(ApiError) as err:
        await desk.send("p1", DischargeBody(user="\t"))
    assert err.value.status == 422
    failing = DischargeDesk(None, InBandSender(settings, _Producer(fail=True)))  # type: ignore[arg-type]
    with pytest.raises(ApiError) as err:
        await failing.send("p1", DischargeBody(user="nurse b"))
    assert err.value.status == 503 and err.value.message.startswith("the discharge was not sent")
