"""Per-client outboxes: a slow client loses waveform frames, never alerts, and is closed if it lags."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from detector.gateway.clients import CLOSE_LAGGING, ClientHub, Subscription


def _hub(queue_size: int = 4, **kw: int) -> tuple[ClientHub, CollectorRegistry]:
    registry = CollectorRegistry()
    return ClientHub(registry, queue_size, **kw), registry


def _dropped(registry: CollectorRegistry, kind: str) -> float:
    return registry.get_sample_value("ecgmon_ws_dropped_frames_total", {"kind": kind}) or 0.0


async def test_full_outbox_drops_oldest_waveform_but_keeps_every_alert() -> None:
    hub, registry = _hub(queue_size=4)
    client = hub.add()
    client.subscription = Subscription(None, waveform=True)
    for i in range(10):
        hub.publish("p1", "waveform", {"type": "waveform", "i": i})
        client.push_urgent(f'{{"type":"alert","i":{i}}}', created_at_ns=None)
    assert client.backlog == (10, 4)
    assert _dropped(registry, "waveform") == 6
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)
        if len(sent) == 14:
            client.close()

    await asyncio.wait_for(client.run_sender(send), 2)
    assert sent[:10] == [f'{{"type":"alert","i":{i}}}' for i in range(10)]  # urgent first, in order
    assert sent[10:] == [f'{{"type":"waveform","i":{i}}}' for i in range(6, 10)]  # newest kept


async def test_a_blocked_client_does_not_hold_up_the_hub_or_other_clients() -> None:
    hub, _ = _hub(queue_size=2)
    slow, fast = hub.add(), hub.add()
    for c in (slow, fast):
        c.subscription = Subscription(frozenset({"p1"}), waveform=True)
    got: list[str] = []
    blocked = asyncio.Event()

    async def stuck(_: str) -> None:
        await blocked.wait()

    async def quick(text: str) -> None:
        got.append(text)

    tasks = [asyncio.create_task(slow.run_sender(stuck)), asyncio.create_task(fast.run_sender(quick))]
    for i in range(100):
        hub.publish("p1", "beat", {"i": i})
        hub.publish("p2", "beat", {"i": i})  # not subscribed: never queued
        await asyncio.sleep(0)
    assert len(got) == 100
    assert slow.backlog[1] == 2
    for c in (slow, fast):
        c.close()
    blocked.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)


async def test_alert_backlog_past_the_hard_cap_closes_with_the_reconnect_code() -> None:
    hub, registry = _hub(soft_cap=2, hard_cap=3)
    client = hub.add()
    client.subscription = Subscription(None, waveform=False)
    for i in range(4):
        client.push_urgent(str(i))
    assert client.closed.is_set() and client.close_code == CLOSE_LAGGING
    assert registry.get_sample_value("ecgmon_ws_lagging_closes_total") == 1.0


async def test_alert_reader_waits_for_room_then_closes_a_stalled_client() -> None:
    hub, _ = _hub(soft_cap=2, hard_cap=100)
    client = hub.add()
    assert await client.push_alert("a", 0, stall_s=0.05)
    assert await client.push_alert("b", 0, stall_s=0.05)
    assert not await client.push_alert("c", 0, stall_s=0.05)  # nobody drained for stall_s
    assert client.close_code == CLOSE_LAGGING


def test_subscription_filters_patients_and_waveform() -> None:
    sub = Subscription(frozenset({"a"}), waveform=False)
    assert sub.wants("a", "beat") and not sub.wants("a", "waveform") and not sub.wants("b", "beat")
    assert Subscription(None, waveform=True).wants("zz", "waveform")
