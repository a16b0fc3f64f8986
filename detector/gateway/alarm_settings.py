"""Per-patient alarm settings: what ``/api/patients/{id}/alarm-settings`` reads and sends.

A change (low and high heart-rate limits, pause limit, optional alarms switched off) is
checked here with the detector's own rules (:class:`detector.core.alarms.AlarmLimits`), sent
as an :class:`~stream.schemas.AlarmSettings` message on the samples topic keyed by the
patient, so the detector applies it between the patient's chunks in stream order (and again
at the same point after a restart), and appended to the patient's audit trail in Redis.  The
detector writes what it applies to the patient's Redis hash; ``pending`` is a change sent and
not yet applied, ``refused`` the newest change when the detector refused it (with why).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from pydantic import BaseModel, Field

from detector.alarm_defaults import deployment_limits
from detector.core.alarms import LIMIT_RANGES, OPTIONAL_ALARMS, AlarmLimits
from detector.gateway.context import ApiError
from detector.gateway.inband import InBandSender
from stream.errors import ServiceUnavailable
from stream.kafka import Producer
from stream.redis import AlertStore
from stream.schemas import MIN_HR_GAP_BPM, AlarmSettings
from stream.settings import Settings

logger = logging.getLogger(__name__)

HISTORY = 50


class AlarmSettingsBody(BaseModel):
    user: str = Field(min_length=1, max_length=100, description="who changes the settings")
    hr_low_bpm: float = Field(description="low heart-rate alarm limit (extreme bradycardia), bpm")
    hr_high_bpm: float = Field(description="high heart-rate alarm limit (extreme tachycardia), bpm")
    pause_s: float = Field(description="pause alarm: an RR interval longer than this, s")
    disabled: list[str] = Field(default_factory=list, max_length=len(OPTIONAL_ALARMS),
                                description="optional alarm types switched off for this patient")


class AlarmSettingsDesk:
    """Reads a patient's alarm settings and sends changes (through ``sender``, or a sender of
    its own on ``producer``)."""

    def __init__(self, settings: Settings, store: AlertStore, producer: Producer | None = None, *,
                 sender: InBandSender | None = None) -> None:
        self.settings, self.store = settings, store
        self.sender = sender or InBandSender(settings, producer)
        self.defaults = deployment_limits(settings)  # what the detector starts every patient on

    async def stop(self) -> None:
        await self.sender.stop()

    async def read(self, patient_id: str) -> dict[str, Any]:
        state = await self.store.patient_state(patient_id)
        applied = state.alarm_settings
        history = await self.store.alarm_settings_log(patient_id, HISTORY)
        newest = history[0] if history else None
        refused = state.alarm_settings_refused
        if not (newest and refused and refused.get("request_id") == newest["request_id"]):
            refused = None  # only the newest change's refusal is news
        pending = newest if newest and refused is None and (
            applied is None or newest["request_id"] != applied.get("request_id")) else None
        effective = {k: applied[k] for k in self.defaults.to_dict()} if applied else self.defaults.to_dict()
        return {
            "patient_id": patient_id, "effective": effective, "applied": applied,
            "defaults": self.defaults.to_dict(),
            "ranges": {**{k: list(v) for k, v in LIMIT_RANGES.items()}, "min_gap_bpm": MIN_HR_GAP_BPM},
            "optional_alarms": [a.value for a in OPTIONAL_ALARMS],
            "pending": pending, "refused": refused, "history": history,
        }

    async def send(self, patient_id: str, body: AlarmSettingsBody) -> dict[str, Any]:
        """Check and send a change; ApiError 422 (invalid) or 503 (Kafka did not take it)."""
        user = body.user.strip()
        if not user or not user.isprintable():
            raise ApiError(422, "user must be 1-100 printable characters")
        try:
            limits = AlarmLimits.checked(body.hr_low_bpm, body.hr_high_bpm, body.pause_s, body.disabled)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        set_at_ns = time.time_ns()
        change = AlarmSettings(patient_id, uuid.uuid4().hex, user, set_at_ns, limits.hr_low_bpm,
                               limits.hr_high_bpm, limits.pause_s,
                               tuple(limits.to_dict()["disabled"]))
        await self.sender.send(change, "the change")
        entry = {**limits.to_dict(), "request_id": change.request_id, "user": user,
                 "set_at_ms": set_at_ns // 1_000_000}
        answer: dict[str, Any] = {"request_id": change.request_id, "status": "sent", "settings": entry}
        try:
            await self.store.log_alarm_settings(patient_id, entry)
        except ServiceUnavailable as exc:
            # Kafka has it: the detector applies it. Saying 503 would invite a second change.
            logger.warning("alarm settings sent but not logged", extra={
                "patient": patient_id, "request_id": change.request_id, "error": str(exc)})
            answer["warning"] = ("sent, but not written to the change history (Redis unavailable): "
                                 "it shows as applied once the detector applies it")
        logger.info("alarm settings sent", extra={"patient": patient_id, "request_id": change.request_id})
        return answer
