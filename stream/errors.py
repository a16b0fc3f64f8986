"""Error hierarchy shared by every ecgmon package."""

from __future__ import annotations


class EcgmonError(Exception):
    """Root of every error ecgmon raises on purpose."""

    retriable: bool = False


class ConfigError(EcgmonError):
    """A setting is missing or invalid; the message says which one and how to fix it."""


class DecodeError(EcgmonError):
    """A message on the wire could not be decoded; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ServiceUnavailable(EcgmonError):
    """A broker, Redis or other dependency cannot be reached right now."""

    retriable = True


class DeliveryFailed(ServiceUnavailable):
    """Kafka did not take a produced message (refused, timed out): whoever sent it must
    resend from its last durable point (the detector rewinds to its checkpoints)."""


class DataUnavailable(EcgmonError):
    """A recording is neither in the data directory nor downloadable."""
