"""The detector service against the real broker and Redis, with the committed default model."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from detector.evaluation import drop_excluded, load_reference, score
from detector.onnx_classifier import OnnxClassifier
from detector.service import DetectorService, Rebalance
from replay.producer import replay
from stream import serde
from stream.errors import DeliveryFailed
from stream.kafka import Producer, ensure_topics, start_consumer, start_reader
from stream.redis import AlertStore, beat_entry_sample
from stream.schemas import AlarmPhase, AlarmPriority, AlarmSettings, Alert, Discharge, Message
from stream.settings import Settings, load

pytestmark = [pytest.mark.integration, pytest.mark.data]

MINUTES = 6
RECORDS = ("203", "207")


def _settings(kafka: str, redis_url: str, prefix: str, mitdb: Path) -> Settings:
    return load(environ={}, kafka_bootstrap=kafka, redis_url=redis_url, topic_prefix=prefix,
                redis_prefix=prefix,
                kafka_idempotence=False, partitions=4, data_dir=mitdb,
                records=",".join(RECORDS), speed="max", chunk_s=0.25,
                duration_s=MINUTES * 60.0, progress_s=0)


async def _produce(settings: Settings) -> int:
    await ensure_topics(settings)
    async with Producer(settings) as producer:
        progress = await replay(settings, producer)
    return progress.messages


class _RefusingProducer(Producer):
    """The real producer, except that Kafka "refuses" the ``nth`` beat sent (once): the
    memory broker cannot be made to refuse a produce on cue."""

    def __init__(self, settings: Settings, nth: int) -> None:
        super().__init__(settings)
        self.nth, self.beats = nth, 0

    async def send(self, topic: str, message: Message, key: str) -> None:
        if topic.endswith(".beats"):
            self.beats += 1
            if self.beats == self.nth:
                raise DeliveryFailed("Kafka delivery failed: injected UnknownError")
        await super().send(topic, message, key)


async def _consume(settings: Settings, until_chunks: int = 0, *, drain_to: int = 0,
                   crash: bool = False, refuse_beat: int = 0,
                   fault: Callable[[], Awaitable[None]] | None = None,
                   fault_at: int = 0, snapshot_slice_s: float = 0.005) -> CollectorRegistry:
    """Run one service instance until it has consumed ``until_chunks`` chunks (counted from
    its own start) or, with ``drain_to``, until its positions summed over the partitions reach
    that many messages (the end of the topic, also after resuming from a checkpoint).
    ``crash`` skips the final checkpoint, like kill -9; ``refuse_beat`` makes Kafka refuse
    that beat; ``fault`` is awaited once ``fault_at`` chunks are consumed, while the service
    runs; ``snapshot_slice_s`` 0 snapshots one patient per batch in periodic checkpoints.
    Returns the instance's metrics."""
    registry = CollectorRegistry()
    classifier = OnnxClassifier.load(settings.model)
    producer = _RefusingProducer(settings, refuse_beat) if refuse_beat else Producer(settings)
    async with producer, AlertStore.from_settings(settings, registry) as store:
        service = DetectorService(settings, classifier, registry, producer, store,
                                  checkpoint_s=1.0, max_records=200,
                                  snapshot_slice_s=snapshot_slice_s)
        consumer = await start_consumer(settings, group_id=service.group_id)
        consumer.subscribe([service.topic], listener=Rebalance(service, [consumer]))
        stop = asyncio.Event()

        async def watch() -> None:
            # polls a metric the service updates; no event exists to wait on
            def consumed() -> float:
                return registry.get_sample_value("ecgmon_chunks_consumed_total") or 0

            def done() -> bool:
                return consumed() >= until_chunks and sum(service.next_offsets.values()) >= drain_to

            if fault is not None:
                while consumed() < fault_at:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                await fault()
            while not done():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if crash:
                async def no_checkpoint() -> None:
                    return None
                service.checkpoint = no_checkpoint  # type: ignore[method-assign]
            stop.set()

        watcher = asyncio.create_task(watch())
        try:
            await asyncio.wait_for(service.run(consumer, stop), timeout=240)
        finally:
            watcher.cancel()
            await consumer.stop()
    return registry


async def _outputs(settings: Settings) -> tuple[dict[str, set[int]], list[str], list[str]]:
    """Beats per patient (Redis beat streams), alert ids in Redis, alert ids on Kafka."""
    client = aioredis.Redis.from_url(settings.redis_url or "")
    try:
        beats: dict[str, set[int]] = {}
        for rec in RECORDS:
            pid = f"mitdb-{rec}"
            entries = await client.xrange(f"{settings.redis_prefix}:beats:{pid}")
            beats[pid] = {beat_entry_sample(f) for _, f in entries}
        raw = await client.xrange(f"{settings.redis_prefix}:alerts")
        redis_ids = [f[b"alert_id"].decode() for _, f in raw]
    finally:
        await client.aclose()
    reader = await start_reader(settings, settings.topic("alerts"))
    kafka_ids: list[str] = []
    try:
        while batch := await reader.getmany(timeout_ms=1500):
            for records in batch.values():
                kafka_ids += [serde.decode_as(r.value, Alert).alert_id for r in records]
    finally:
        await reader.stop()
    return beats, redis_ids, kafka_ids


async def test_ventricular_alarms_beats_and_exactly_once_alerts(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path
) -> None:
    settings = _settings(kafka_bootstrap, redis_url, topic_prefix, mitdb_dir)
    n = await _produce(settings)
    await _consume(settings, n)
    beats, redis_ids, kafka_ids = await _outputs(settings)

    end = MINUTES * 60 * 360 - 2 * 360  # the last beats wait for their successor
    for rec in RECORDS:
        ref = load_reference(mitdb_dir / rec)
        want = drop_excluded(ref.beats[ref.beats < end], ref.excluded)
        got = drop_excluded(np.array(sorted(b for b in beats[f"mitdb-{rec}"] if b < end)),
                            ref.excluded)
        counts = score(want, got, int(0.15 * 360))  # EC57: 150 ms, VF episodes excluded
        assert counts.se >= 0.98 and counts.ppv >= 0.98, (rec, counts)
    assert len(redis_ids) == len(set(redis_ids)), "an alert was stored twice"
    assert set(redis_ids) == set(kafka_ids)
    types = {i.split(":")[1] for i in redis_ids if i.startswith("mitdb-203")}
    assert types & {"ventricular_tachycardia", "ventricular_run", "ventricular_couplet"}, types
    types_207 = {i.split(":")[1] for i in redis_ids if i.startswith("mitdb-207")}
    assert types_207 & {"ventricular_fibrillation", "ventricular_tachycardia"}, types_207


Outputs = tuple[dict[str, set[int]], list[str], list[str]]


@pytest.fixture(scope="module")
async def uninterrupted(
    kafka_bootstrap: str, redis_url: str, mitdb_dir: Path
) -> tuple[int, Outputs]:
    """Chunks replayed and the outputs of one uninterrupted run, to compare faults against."""
    prefix = f"t{uuid.uuid4().hex[:12]}"  # topic_prefix is per test
    base = _settings(kafka_bootstrap, redis_url, prefix, mitdb_dir)
    n = await _produce(base)
    await _consume(base, n)
    return n, await _outputs(base)


async def test_a_refused_kafka_delivery_rewinds_to_the_checkpoints_and_loses_nothing(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path,
    uninterrupted: tuple[int, Outputs], caplog: pytest.LogCaptureFixture,
) -> None:
    n, expected = uninterrupted
    refused = _settings(kafka_bootstrap, redis_url, topic_prefix + "r", mitdb_dir)
    await _produce(refused)
    registry = await _consume(refused, drain_to=n, refuse_beat=300)
    got = await _outputs(refused)

    assert registry.get_sample_value("ecgmon_detector_rewinds_total") == 1
    assert any(r.getMessage() == "kafka delivery failed: rewinding to the last checkpoints"
               for r in caplog.records)
    assert got[0] == expected[0]  # every beat in Redis, as without the fault
    assert sorted(got[1]) == sorted(expected[1]) and len(got[1]) == len(set(got[1]))
    assert set(got[2]) == set(expected[2])  # Kafka: at-least-once, none missing


async def test_crash_and_restart_lose_and_duplicate_nothing(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path,
    uninterrupted: tuple[int, Outputs],
) -> None:
    n, expected = uninterrupted

    crashed = _settings(kafka_bootstrap, redis_url, topic_prefix + "b", mitdb_dir)
    await _produce(crashed)
    await _consume(crashed, n // 2, crash=True)
    await _consume(crashed, drain_to=n)  # resumes from the last checkpoint, re-does the rest
    got = await _outputs(crashed)

    assert got[0] == expected[0]
    assert sorted(got[1]) == sorted(expected[1])
    assert len(got[1]) == len(set(got[1]))
    # the Kafka alert topic is at-least-once: the same ids, re-sent ones allowed
    assert set(got[2]) == set(expected[2])



async def test_crash_with_patients_snapshotted_at_different_offsets_loses_and_duplicates_nothing(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path,
    uninterrupted: tuple[int, Outputs],
) -> None:
    """Periodic checkpoints snapshot a partition's patients a slice at a time between
    batches, so a patient's snapshot can be ahead of the checkpoint's offset. Here both
    patients share one partition and each batch snapshots one of them: after the crash
    the patient saved later must drop the chunks it had already seen (counted as
    ``duplicate``) and the outputs must still equal the uninterrupted run's."""
    n, expected = uninterrupted
    shared = replace(_settings(kafka_bootstrap, redis_url, topic_prefix + "s", mitdb_dir),
                     partitions=1)
    await _produce(shared)
    await _consume(shared, n // 2, crash=True, snapshot_slice_s=0.0)
    resumed = await _consume(shared, drain_to=n, snapshot_slice_s=0.0)
    got = await _outputs(shared)

    duplicates = resumed.get_sample_value("ecgmon_chunk_sequence_total", {"fate": "duplicate"})
    assert duplicates, "no patient was restored ahead of the checkpoint offset"
    assert got[0] == expected[0]
    assert sorted(got[1]) == sorted(expected[1]) and len(got[1]) == len(set(got[1]))
    assert set(got[2]) == set(expected[2])


CHANGE_S = 150.0  # when, in 203's data, a nurse switches its AF alarm off


async def _produce_with_a_change(settings: Settings) -> int:
    """The records up to CHANGE_S, a change of 203's alarm limits (AF off, low limit 50), one
    for a patient nobody streams, then the rest: the change sits between 203's chunks."""
    await ensure_topics(settings)
    first = replace(settings, duration_s=CHANGE_S)
    rest = replace(settings, start_s=CHANGE_S, duration_s=MINUTES * 60.0 - CHANGE_S)
    async with Producer(settings) as producer:
        n = (await replay(first, producer)).messages
        for pid in ("mitdb-203", "nobody"):
            await producer.send(settings.topic("samples"), AlarmSettings(
                pid, f"change-{pid}", "nurse a", 1, 50.0, 140.0, 2.0, ("atrial_fibrillation",)), pid)
        n += (await replay(rest, producer)).messages
    return n


async def test_an_alarm_switched_off_mid_stream_ends_there_and_a_crash_replays_the_change_identically(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path,
) -> None:
    change = int(CHANGE_S * 360)
    runs = []
    for suffix, crash in (("u", False), ("c", True)):
        settings = _settings(kafka_bootstrap, redis_url, topic_prefix + suffix, mitdb_dir)
        n = await _produce_with_a_change(settings)
        if crash:  # killed soon after the change, resumed from its last checkpoint
            await _consume(settings, int(n * (CHANGE_S + 20) / (MINUTES * 60)), crash=True)
        registry = await _consume(settings, drain_to=n + 2)
        runs.append((settings, registry, await _outputs(settings)))

    (settings, registry, expected), (crashed, _, got) = runs
    af = [i for i in expected[1] if i.startswith("mitdb-203:atrial_fibrillation:")]
    onsets = [int(i.split(":")[2]) for i in af if ":onset:" in i]
    assert onsets and min(onsets) < change, af  # 203's AF alarm was on before the change
    assert max(onsets) < change, "an AF alarm was raised after it was switched off"
    ends = [int(i.split(":")[-1]) for i in af if ":end:" in i]
    assert any(change - 2 * 360 <= e <= change + 360 for e in ends), (ends, change)
    client = aioredis.Redis.from_url(redis_url)
    try:
        applied = json.loads(await client.hget(f"{settings.redis_prefix}:patient:mitdb-203",
                                               "alarm_settings"))
        refused = json.loads(await client.hget(f"{settings.redis_prefix}:patient:nobody",
                                               "alarm_settings_refused"))
    finally:
        await client.aclose()
    assert applied == {"hr_low_bpm": 50.0, "hr_high_bpm": 140.0, "pause_s": 2.0,
                       "disabled": ["atrial_fibrillation"], "request_id": "change-mitdb-203",
                       "user": "nurse a", "set_at_ms": 0}
    assert refused["request_id"] == "change-nobody" and refused["reason"] == "unknown_patient"
    assert registry.get_sample_value("ecgmon_dead_letters_total",
                                     {"reason": "unknown_patient",
                                      "topic": settings.topic("samples")}) == 1
    # the crash changed nothing: same beats, same alerts, each once
    assert got[0] == expected[0]
    assert sorted(got[1]) == sorted(expected[1]) and len(got[1]) == len(set(got[1]))
    assert set(got[2]) == set(expected[2])


DISCHARGE_S = 150.0  # when, in 203's data, a nurse discharges the patient; its monitor streams on


async def _produce_with_a_discharge(settings: Settings) -> int:
    """The records up to DISCHARGE_S with a change of 203's low limit at 60 s, 203's discharge,
    then the rest of both records: 203's later chunks are a new admission under the same id."""
    await ensure_topics(settings)
    cuts = [(0.0, 60.0), (60.0, DISCHARGE_S), (DISCHARGE_S, MINUTES * 60.0)]
    n = 0
    async with Producer(settings) as producer:
        for i, (start, end) in enumerate(cuts):
            n += (await replay(replace(settings, start_s=start, duration_s=end - start), producer)).messages
            if i == 0:
                await producer.send(settings.topic("samples"), AlarmSettings(
                    "mitdb-203", "change-1", "nurse a", 1, 50.0, 140.0, 2.0), "mitdb-203")
            elif i == 1:
                await producer.send(settings.topic("samples"), Discharge(
                    "mitdb-203", "discharge-1", "nurse b", 2_000_000), "mitdb-203")
    return n + 2


async def _stay(settings: Settings) -> dict[str, object]:
    """What Redis holds of 203 after the run: its alerts, the archive and the new admission."""
    client = aioredis.Redis.from_url(settings.redis_url or "")
    p = settings.redis_prefix
    try:
        alerts = [serde.decode_as(f[b"alert"], Alert) for _, f in await client.xrange(f"{p}:alerts")]
        archive = await client.xrange(f"{p}:discharges")
        return {
            "alerts": [a for a in alerts if a.patient_id == "mitdb-203"],
            "archive": [{k.decode(): v.decode() for k, v in f.items()} for _, f in archive],
            "archived_alerts": len(await client.xrange(f"{p}:discharged:discharge-1:alerts")),
            "archived_changes": len(await client.xrange(f"{p}:discharged:discharge-1:alarm-settings")),
            "archive_ttl_s": [await client.ttl(f"{p}:discharged:discharge-1:{k}")
                              for k in ("alerts", "alarm-settings")],
            "stay_alerts": [serde.decode_as(f[b"alert"], Alert).alert_id
                            for _, f in await client.xrange(f"{p}:alerts:mitdb-203")],
            "hash": {k.decode(): v.decode()
                     for k, v in (await client.hgetall(f"{p}:patient:mitdb-203")).items()},
            "patients": sorted(x.decode() for x in await client.smembers(f"{p}:patients")),
            "active": sorted(x.decode() for x in await client.smembers(f"{p}:active:mitdb-203")),
        }
    finally:
        await client.aclose()


async def test_a_discharge_ends_the_alarms_archives_the_stay_and_later_data_is_a_new_admission(
    kafka_bootstrap: str, redis_url: str, topic_prefix: str, mitdb_dir: Path,
) -> None:
    discharge = int(DISCHARGE_S * 360)
    runs = []
    for suffix, crash in (("u", False), ("c", True)):
        settings = _settings(kafka_bootstrap, redis_url, topic_prefix + "d" + suffix, mitdb_dir)
        n = await _produce_with_a_discharge(settings)
        async with AlertStore.from_settings(settings, CollectorRegistry()) as store:
            # what the gateway writes: the ward's details, a change's audit entry, and a no_data
            # alarm left open (the detector never raised it: it must end it all the same)
            await store.set_patient_info("mitdb-203", {"bed": "12", "name": "J. Doe", "note": ""})
            await store.log_alarm_settings("mitdb-203", {"request_id": "change-1"})
            await store.write_alert(Alert("mitdb-203", "no_data", AlarmPriority.MEDIUM, AlarmPhase.ONSET,
                                          1000, 1000, 360.0, 0.0, "no data", 1, 1, technical=True))
        if crash:  # killed soon after the discharge, resumed from its last checkpoint
            await _consume(settings, int(n * (DISCHARGE_S + 20) / (MINUTES * 60)), crash=True)
        registry = await _consume(settings, drain_to=n)
        runs.append((settings, registry, await _outputs(settings), await _stay(settings)))

    (settings, registry, expected, stay), (_, _, got, crashed_stay) = runs
    alerts = stay["alerts"]
    assert isinstance(alerts, list)
    before = {a.alarm_id for a in alerts if a.phase is AlarmPhase.ONSET and a.onset_sample_index < discharge}
    ended = [a for a in alerts if a.phase is AlarmPhase.END
             and dict(a.details).get("reason") == "patient discharged by nurse b"]
    af = [a for a in ended if a.alarm_type == "atrial_fibrillation"]
    assert af and all(discharge - 2 * 360 <= a.sample_index <= discharge for a in af), ended
    assert "mitdb-203:no_data:1000" in {a.alarm_id for a in ended}
    # every alarm of the stay ended (at the discharge, or earlier on its own)
    ended_ids = {a.alarm_id for a in alerts if a.phase is AlarmPhase.END}
    assert before <= ended_ids, before - ended_ids
    archive = stay["archive"]
    assert isinstance(archive, list) and len(archive) == 1
    record = json.loads(archive[0]["discharge"])
    assert record["user"] == "nurse b" and record["request_id"] == "discharge-1"
    assert {"mitdb-203:no_data:1000", *(a.alarm_id for a in af)} <= set(record["alarms_ended"])
    assert json.loads(archive[0]["info"])["name"] == "J. Doe"
    assert json.loads(archive[0]["alarm_settings"])["request_id"] == "change-1"
    # the stay's alert stream and audit trail are archived under the discharge's id
    assert stay["archived_changes"] == 1
    assert stay["archived_alerts"] == len([a for a in alerts if a.onset_sample_index < discharge])
    ttl = stay["archive_ttl_s"]  # kept ECGMON_ARCHIVE_DAYS (90 by default), then gone
    assert isinstance(ttl, list) and all(89 * 86400 < t <= 90 * 86400 for t in ttl), ttl
    async with AlertStore.from_settings(settings, CollectorRegistry()) as store:
        archived = await store.discharged_stay("discharge-1")
        assert await store.discharged_stay("nobody") is None
    assert archived is not None and archived["user"] == "nurse b" and archived["info"]["name"] == "J. Doe"
    assert len(archived["alerts"]) == stay["archived_alerts"]
    assert [c["request_id"] for c in archived["alarm_settings_history"]] == ["change-1"]
    # the new admission: monitored again from its next chunk, on the defaults, no details
    assert "mitdb-203" in stay["patients"]
    assert isinstance(stay["hash"], dict) and "info" not in stay["hash"]
    assert "alarm_settings" not in stay["hash"] and "heart_rate_bpm" in stay["hash"]
    assert min(expected[0]["mitdb-203"]) >= discharge  # the stay's beats are gone with it
    assert isinstance(stay["stay_alerts"], list)
    assert all(int(i.split(":")[2]) >= discharge for i in stay["stay_alerts"]), stay["stay_alerts"]
    assert registry.get_sample_value("ecgmon_discharge_to_applied_seconds_count") == 1
    # the crash changed nothing: same beats, same alerts each once, one archive entry
    assert got[0] == expected[0]
    assert sorted(got[1]) == sorted(expected[1]), (set(got[1]) ^ set(expected[1]))
    assert len(got[1]) == len(set(got[1]))
    assert set(got[2]) == set(expected[2])
    assert crashed_stay["archive"] and len(crashed_stay["archive"]) == 1  # type: ignore[arg-type]
    assert crashed_stay["active"] == stay["active"] and crashed_stay["patients"] == stay["patients"]
