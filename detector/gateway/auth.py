"""Bearer-token checks for REST (``Authorization`` header) and WebSocket (query or subprotocol).

Browsers cannot set headers on a WebSocket, so a WS client may send the token as
``?token=<t>`` or offer the subprotocol ``bearer.<t>``.  Comparison is constant time.
"""

from __future__ import annotations

import hmac
import logging
import re

from starlette.requests import HTTPConnection

logger = logging.getLogger(__name__)

SUBPROTOCOL_PREFIX = "bearer."
_TOKEN_IN_TEXT = re.compile(r"(token=|bearer\.)[^&\s\"']+", re.IGNORECASE)


class TokenAuth:
    """Checks presented tokens against the configured one; ``None`` means auth is off (dev)."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode("utf-8") if token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def check(self, presented: str | None) -> bool:
        if self._token is None:
            return True
        if not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8"), self._token)

    def rest_ok(self, conn: HTTPConnection) -> bool:
        scheme, _, value = conn.headers.get("authorization", "").partition(" ")
        return self.check(value.strip() if scheme.lower() == "bearer" else None)

    def websocket_ok(self, conn: HTTPConnection) -> tuple[bool, str | None]:
        """(allowed, subprotocol to accept with).  Token from ``?token=`` or ``bearer.<t>``."""
        offered = [p.strip() for p in conn.headers.get("sec-websocket-protocol", "").split(",")]
        offered = [p for p in offered if p]
        bearer = [p[len(SUBPROTOCOL_PREFIX):] for p in offered if p.startswith(SUBPROTOCOL_PREFIX)]
        others = [p for p in offered if not p.startswith(SUBPROTOCOL_PREFIX)]
        # A browser requires the server to pick one offered subprotocol: prefer a non-token one.
        chosen = others[0] if others else (offered[0] if offered else None)
        if not self.enabled:
            return True, chosen
        query = conn.query_params.get("token")
        ok = any(self.check(t) for t in ([query] if query else []) + bearer)
        return ok, chosen


def redact(text: str) -> str:
    """Hide tokens in text bound for logs (uvicorn logs WebSocket paths with their query)."""
    return _TOKEN_IN_TEXT.sub(lambda m: m.group(1) + "***", text)


class RedactTokens(logging.Filter):
    """Logging filter that removes ``token=...`` from records (uvicorn access and error logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True
