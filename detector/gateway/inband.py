"""Clinicians' messages to the detector, sent in-band on the samples topic.

A change of alarm limits (:class:`~stream.schemas.AlarmSettings`) and a discharge
(:class:`~stream.schemas.Discharge`) travel keyed by the patient, like the patient's chunks,
so the detector acts on them between that patient's chunks in stream order, and again at the
same point after a restart.  :class:`InBandSender` owns the gateway's Kafka producer for them:
it starts on the first message (a gateway that only watches never connects one), and a
message Kafka does not take within :data:`SEND_TIMEOUT_S` is a 503 the clinician sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from detector.gateway.context import ApiError
from stream.errors import DeliveryFailed, ServiceUnavailable
from stream.kafka import Producer
from stream.schemas import AlarmSettings, Discharge
from stream.settings import Settings

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10.0  # Kafka must take a message within this, or the request answers 503


class InBandSender:
    """Sends in-band messages; a producer that failed is dropped and the next send starts one."""

    def __init__(self, settings: Settings, producer: Producer | None = None) -> None:
        self.settings = settings
        self._producer = producer
        self._own = producer is None
        self._lock = asyncio.Lock()

    async def send(self, message: AlarmSettings | Discharge, what: str) -> None:
        """Send ``message`` keyed by its patient; ApiError 503 when Kafka did not take it
        (``what`` names it in the answer: "the change", "the discharge")."""
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                producer = await self._started()
                await producer.send_and_wait(self.settings.topic("samples"), message,
                                             message.patient_id)
        except (TimeoutError, ServiceUnavailable, DeliveryFailed) as exc:
            logger.warning("in-band message not sent", extra={
                "kind": type(message).__name__, "error": str(exc) or "timeout"})
            await self._reset()
            raise ApiError(503, f"{what} was not sent: Kafka did not take it; try again") from None

    async def stop(self) -> None:
        if self._own and self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _started(self) -> Producer:
        async with self._lock:
            if self._producer is None:
                producer = Producer(self.settings)
                await producer.start()
                self._producer = producer
            return self._producer

    async def _reset(self) -> None:
        if self._own:
            await self.stop()
