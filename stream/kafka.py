"""aiokafka adapters: topics, a batching producer of typed messages, consumers, dead letters.

Keys are patient ids (UTF-8), so one patient's messages stay in one partition and
in order; values are :func:`stream.serde.encode` payloads.  Nothing here knows
about signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from prometheus_client import CollectorRegistry

from stream import metrics, serde
from stream.errors import DecodeError, DeliveryFailed, ServiceUnavailable
from stream.schemas import DeadLetter, Message
from stream.settings import Settings, env_name

logger = logging.getLogger(__name__)

TOPICS = ("samples", "beats", "alerts", "deadletter")
_TOPIC_ALREADY_EXISTS = 36


class BrokerWatch(logging.Handler):
    """ecgmon's own two lines for a broker outage, beside aiokafka's (rate-limited) flood.

    Attached to the ``aiokafka`` logger: its first connection error logs WARNING
    ``kafka broker unreachable: clients retry with backoff``; the caller that next gets an
    answer from the broker calls :meth:`reachable`, which logs ``kafka broker reachable
    again`` with ``down_s``.
    """

    MARKERS = ("Unable connect to node", "Unable to update metadata")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.down_since: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.down_since is None and str(record.msg).startswith(self.MARKERS):
            self.down_since = time.monotonic()
            logger.warning("kafka broker unreachable: clients retry with backoff",
                           extra={"detail": record.getMessage()[:200]})

    def reachable(self) -> None:
        if self.down_since is not None:
            down_s, self.down_since = time.monotonic() - self.down_since, None
            logger.warning("kafka broker reachable again", extra={"down_s": round(down_s, 1)})


BROKER_WATCH = BrokerWatch()
logging.getLogger("aiokafka").addHandler(BROKER_WATCH)
# Dead letters keep the bad payload for inspection, but never more than this.
DEAD_PAYLOAD_LIMIT = 1024 * 1024

C = TypeVar("C")


def _unreachable(settings: Settings, what: str, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"cannot reach Kafka at {settings.kafka_bootstrap} for the {what} after "
        f"{settings.connect_attempts} attempts ({exc}); check that the broker runs and that "
        f"{env_name('kafka_bootstrap')} (--kafka-bootstrap) names it, or unset it to let "
        "`ecgmon up` start a local one"
    )


async def connect(
    make: Callable[[], C],
    start: Callable[[C], Awaitable[None]],
    close: Callable[[C], Awaitable[None]],
    settings: Settings,
    what: str,
    hint: str = "",
) -> C:
    """Build and start a client, retrying with doubling backoff; ServiceUnavailable at the end.

    Only connection-type (retriable) errors are retried; a broker that answers
    with an error fails at once, with ``hint`` appended.
    """
    if not settings.kafka_bootstrap:
        raise ServiceUnavailable(
            f"no Kafka for the {what}: set {env_name('kafka_bootstrap')} or --kafka-bootstrap"
        )
    delay = settings.connect_backoff_s
    for attempt in range(1, settings.connect_attempts + 1):
        client = make()
        try:
            await start(client)
            return client
        except asyncio.CancelledError:  # e.g. a caller's time limit: leave no half-started client
            with contextlib.suppress(KafkaError, OSError):
                await close(client)
            raise
        except (KafkaError, OSError) as exc:
            with contextlib.suppress(KafkaError, OSError):
                await close(client)
            retriable = isinstance(exc, OSError | KafkaConnectionError) or bool(
                getattr(exc, "retriable", False)
            )
            if not retriable:
                raise ServiceUnavailable(
                    f"Kafka at {settings.kafka_bootstrap} refused the {what}: {exc!r}. {hint}".strip()
                ) from exc
            if attempt == settings.connect_attempts:
                raise _unreachable(settings, what, exc) from exc
            logger.warning(
                "kafka not reachable, retrying",
                extra={"what": what, "attempt": attempt, "retry_in_s": delay, "error": str(exc)},
            )
            await asyncio.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


# --- topics ---------------------------------------------------------------------------------


def topic_names(settings: Settings, kinds: Iterable[str] = TOPICS) -> list[str]:
    return [settings.topic(kind) for kind in kinds]


async def ensure_topics(settings: Settings, kinds: Iterable[str] = TOPICS) -> list[str]:
    """Create the topics with ``settings.partitions`` partitions; existing ones are fine."""
    names = topic_names(settings, kinds)

    async def close(admin: AIOKafkaAdminClient) -> None:
        await admin.close()

    admin = await connect(
        lambda: AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap),
        lambda a: a.start(), close, settings, "admin client",
    )
    try:
        configs = {"retention.ms": str(round(settings.retention_s * 1000))}
        new = [NewTopic(n, settings.partitions, settings.replication_factor, topic_configs=configs)
               for n in names]
        try:
            response = await admin.create_topics(new)
        except TopicAlreadyExistsError:
            return names
        for topic, code, message in _topic_errors(response):
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise ServiceUnavailable(f"cannot create topic {topic}: error {code} {message}")
        logger.info("topics ready", extra={"topics": ",".join(names),
                                           "partitions": settings.partitions})
        return names
    finally:
        await admin.close()


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    return [(str(e[0]), int(e[1]), e[2] if len(e) > 2 else None) for e in response.topic_errors]


# --- producer -------------------------------------------------------------------------------


class Producer:
    """A started-once producer of :mod:`stream.schemas` messages (``async with`` or start/stop).

    :meth:`send` only enqueues into aiokafka's per-partition batches (it waits
    when a partition's batch is full: that is the backpressure) and returns at
    once, so many messages share one request.  Delivery failures surface on the
    next :meth:`send` or on :meth:`flush`; :meth:`stop` flushes first.
    """

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        self._options: dict[str, Any] = {
            "bootstrap_servers": settings.kafka_bootstrap,
            "acks": "all",
            "enable_idempotence": settings.kafka_idempotence,
            "linger_ms": settings.linger_ms,
            "max_batch_size": settings.batch_bytes,
            **overrides,
        }
        self._producer: AIOKafkaProducer | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._error: BaseException | None = None
        self.sent_messages = 0
        self.sent_bytes = 0

    async def start(self) -> None:
        if self._producer is not None:
            return

        async def close(p: AIOKafkaProducer) -> None:
            await p.stop()

        producer: AIOKafkaProducer = await connect(
            lambda: AIOKafkaProducer(**self._options), lambda p: p.start(), close,
            self.settings, "producer", hint=self._hint(),
        )
        self._producer = producer

    def _hint(self) -> str:
        if not self._options["enable_idempotence"]:
            return ""
        return (f"Brokers without idempotent producers (such as the bundled Tansu) need "
                f"{env_name('kafka_idempotence')}=false or --no-kafka-idempotence")

    async def stop(self) -> None:
        """Flush what was sent, then close (idempotent)."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await self._wait_pending()
        finally:
            await producer.stop()
        self._raise_error()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def send(self, topic: str, message: Message, key: str) -> None:
        """Enqueue one message keyed by ``key`` (a patient id); returns before delivery."""
        await self.send_raw(topic, serde.encode(message), key.encode("utf-8"))

    async def send_raw(self, topic: str, value: bytes, key: bytes) -> None:
        self._raise_error()
        if self._producer is None:
            raise RuntimeError("Producer.send before start()")
        try:
            future = await self._producer.send(topic, value, key=key)
        except KafkaError as exc:  # e.g. no metadata for the topic within request_timeout_ms
            raise DeliveryFailed(f"Kafka delivery failed: {exc!r}") from exc
        self.sent_messages += 1
        self.sent_bytes += len(value)
        self._pending.add(future)
        future.add_done_callback(self._done)

    async def send_and_wait(self, topic: str, message: Message, key: str) -> None:
        """Send one message and wait until the broker acknowledged it (and all before it)."""
        await self.send(topic, message, key)
        await self.flush()

    async def flush(self) -> None:
        """Wait until everything sent so far is acknowledged; raise the first delivery error."""
        await self._wait_pending()
        self._raise_error()

    async def _wait_pending(self) -> None:
        while self._pending:
            await asyncio.wait(list(self._pending))

    def _done(self, future: asyncio.Future[Any]) -> None:
        self._pending.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            BROKER_WATCH.reachable()
        elif self._error is None:
            self._error = exc
            logger.error("kafka delivery failed", extra={"error": repr(exc)})

    def _raise_error(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise DeliveryFailed(f"Kafka delivery failed: {exc!r}") from exc


# --- consumer -------------------------------------------------------------------------------


def make_consumer(
    settings: Settings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """An unstarted consumer: manual commits, earliest offset, short fetch wait, raw bytes."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        **overrides,
    }
    return AIOKafkaConsumer(*topics, **options)


async def start_consumer(
    settings: Settings, *topics: str, group_id: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A started consumer (bounded retries, then ServiceUnavailable naming the env var)."""

    async def close(c: AIOKafkaConsumer) -> None:
        await c.stop()

    return await connect(
        lambda: make_consumer(settings, *topics, group_id=group_id, **overrides),
        lambda c: c.start(), close, settings, "consumer",
    )


async def start_reader(settings: Settings, topic: str, **overrides: Any) -> AIOKafkaConsumer:
    """A group-less consumer of every partition of ``topic`` from the beginning.

    For tools, tests and benchmarks that read a whole topic: no group join (which
    costs seconds on some brokers) and no commits.
    """

    async def close(c: AIOKafkaConsumer) -> None:
        await c.stop()

    consumer: AIOKafkaConsumer = await connect(
        lambda: make_consumer(settings, group_id=None, **overrides),
        lambda c: c.start(), close, settings, "reader",
    )
    try:
        await consumer.topics()  # refresh metadata
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise ServiceUnavailable(f"topic {topic} has no partitions (does it exist?)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


# --- dead letters ---------------------------------------------------------------------------


class DeadLetterPublisher:
    """Publish undecodable records to the dead-letter topic, count them, log where they were."""

    def __init__(self, producer: Producer, settings: Settings, registry: CollectorRegistry) -> None:
        self.producer = producer
        self.topic = settings.topic("deadletter")
        self.counter = metrics.counter(
            "ecgmon_dead_letters_total", "messages sent to the dead-letter topic",
            registry, labels=("reason", "topic"),
        )

    async def publish(self, record: Any, error: DecodeError) -> DeadLetter:
        """``record`` is an aiokafka ConsumerRecord; its payload is kept, never logged."""
        key = bytes(record.key or b"")[:0xFFFF]
        payload = bytes(record.value or b"")[:DEAD_PAYLOAD_LIMIT]
        letter = DeadLetter(
            source_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key,
            reason=error.reason,
            detail=error.detail[:4096],
            payload=payload,
            created_at_ns=time.time_ns(),
        )
        await self.producer.send_raw(self.topic, serde.encode(letter), key)
        self.counter.labels(reason=error.reason, topic=record.topic).inc()
        logger.warning(
            "message dead-lettered",
            extra={"topic": record.topic, "partition": record.partition,
                   "offset": record.offset, "reason": error.reason, "detail": error.detail[:200]},
        )
        return letter


__all__ = [
    "TOPICS",
    "DeadLetterPublisher",
    "Producer",
    "connect",
    "ensure_topics",
    "make_consumer",
    "start_consumer",
    "start_reader",
    "topic_names",
]
