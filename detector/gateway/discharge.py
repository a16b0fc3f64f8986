"""Discharge: what ``POST /api/patients/{id}/discharge`` sends and ``GET /api/discharges`` reads.

A discharge ends a patient's monitoring.  The gateway sends a
:class:`~stream.schemas.Discharge` in-band (:mod:`detector.gateway.inband`), after the
patient's chunks; the detector ends the patient's active alarms ("patient discharged by
<user>"), archives the stay in Redis (:meth:`stream.redis.AlertStore.discharge`: who, when,
the ward details and alarm limits; the stay's alert stream and limit-change trail kept under
the request id) and drops the patient's state.  Every gateway sees the message on the
samples topic, drops the patient from its station and sends its clients a ``discharged``
frame.  Data that arrives later under the same id is a new admission: fresh learning, the
ward's default limits, no details.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from pydantic import BaseModel, Field

from detector.gateway.context import ApiError
from detector.gateway.feeds import alert_frame
from detector.gateway.inband import InBandSender
from stream.redis import AlertStore
from stream.schemas import Discharge

logger = logging.getLogger(__name__)


class DischargeBody(BaseModel):
    user: str = Field(min_length=1, max_length=100, description="who discharges the patient")


class DischargeDesk:
    """Sends discharges and reads the archive."""

    def __init__(self, store: AlertStore, sender: InBandSender) -> None:
        self.store, self.sender = store, sender

    async def send(self, patient_id: str, body: DischargeBody) -> dict[str, Any]:
        """Send the discharge of ``patient_id``; ApiError 422 (user) or 503 (Kafka did not take it)."""
        user = body.user.strip()
        if not user or not user.isprintable():
            raise ApiError(422, "user must be 1-100 printable characters")
        d = Discharge(patient_id, uuid.uuid4().hex, user, time.time_ns())
        await self.sender.send(d, "the discharge")
        logger.info("discharge sent", extra={"patient": patient_id, "request_id": d.request_id})
        return {"patient_id": patient_id, "request_id": d.request_id, "user": user,
                "discharged_at_ms": d.discharged_at_ns // 1_000_000, "status": "sent"}

    async def recent(self, count: int) -> list[dict[str, Any]]:
        return await self.store.discharges(count)

    async def stay(self, request_id: str) -> dict[str, Any]:
        """One discharge's archive with the stay's alerts as alert frames; ApiError 404."""
        stay = await self.store.discharged_stay(request_id)
        if stay is None:
            raise ApiError(404, "no archive of this discharge: unknown, or older than "
                                "ECGMON_ARCHIVE_DAYS")
        return {**stay, "alerts": [alert_frame(a.stream_id, a.alert) for a in stay["alerts"]]}
