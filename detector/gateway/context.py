"""What every gateway endpoint shares: settings, auth, store, feeds, hub; and the ack operation."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from detector.gateway.auth import TokenAuth
from detector.gateway.clients import ClientHub
from detector.gateway.feeds import Feeds
from stream.redis import AlertStore
from stream.settings import Settings

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with an HTTP status (or a WS error frame)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


@dataclass(frozen=True, slots=True)
class Gateway:
    settings: Settings
    registry: CollectorRegistry
    store: AlertStore
    feeds: Feeds
    auth: TokenAuth

    @property
    def hub(self) -> ClientHub:
        return self.feeds.hub

    async def acknowledge(self, alarm_id: str, user: str) -> dict[str, Any]:
        """Record who acknowledged an alarm and when, broadcast ``acked``; ApiError 404/409."""
        user = user.strip()
        if not user or len(user) > 100 or not user.isprintable():
            raise ApiError(422, "user must be 1-100 printable characters")
        done = await self.store.acknowledge(alarm_id, user)
        state = await self.store.alarm(alarm_id)
        if state is None:
            raise ApiError(404, "unknown alarm")
        at_ms = (state.acked_at_ns or 0) // 1_000_000
        if not done:
            raise ApiError(409, "alarm already acknowledged", acked_by=state.acked_by, at_ms=at_ms)
        frame = {"type": "acked", "alarm_id": alarm_id, "user": user, "at_ms": at_ms}
        self.hub.broadcast_urgent(state.patient_id, frame)
        logger.info("alarm acknowledged")
        logger.debug("alarm acknowledged", extra={"alarm_id": alarm_id})
        return frame
