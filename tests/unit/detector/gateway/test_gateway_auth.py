"""Token checks: header for REST, query or bearer.<t> subprotocol for WebSocket; logs redacted."""

from __future__ import annotations

import logging

from starlette.requests import HTTPConnection

from detector.gateway.auth import RedactTokens, TokenAuth, redact


def _conn(path: str = "/ws", query: str = "", headers: dict[str, str] | None = None) -> HTTPConnection:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return HTTPConnection({"type": "websocket", "path": path, "query_string": query.encode(),
                           "headers": raw})


def test_rest_needs_the_exact_bearer_token() -> None:
    auth = TokenAuth("s3cret")
    assert auth.rest_ok(_conn(headers={"Authorization": "Bearer s3cret"}))
    assert auth.rest_ok(_conn(headers={"Authorization": "bearer s3cret"}))
    for value in ("Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret", ""):
        assert not auth.rest_ok(_conn(headers={"Authorization": value}))
    assert not auth.rest_ok(_conn())


def test_websocket_token_from_query_or_subprotocol() -> None:
    auth = TokenAuth("s3cret")
    assert auth.websocket_ok(_conn(query="token=s3cret")) == (True, None)
    assert auth.websocket_ok(_conn(query="token=nope"))[0] is False
    ok, chosen = auth.websocket_ok(_conn(headers={"Sec-WebSocket-Protocol": "bearer.s3cret"}))
    assert ok and chosen == "bearer.s3cret"
    ok, chosen = auth.websocket_ok(
        _conn(headers={"Sec-WebSocket-Protocol": "ecgmon.v1, bearer.s3cret"}))
    assert ok and chosen == "ecgmon.v1"  # the token is not echoed when another protocol is offered
    assert auth.websocket_ok(_conn(headers={"Sec-WebSocket-Protocol": "bearer.x"}))[0] is False


def test_no_token_means_open_only_when_configured_so() -> None:
    assert TokenAuth(None).rest_ok(_conn()) and not TokenAuth(None).enabled
    assert not TokenAuth("t").check(None)


def test_tokens_are_redacted_from_log_records() -> None:
    assert redact('"WebSocket /ws?token=abc&x=1" [accepted]') == '"WebSocket /ws?token=***&x=1" [accepted]'
    record = logging.makeLogRecord({"msg": '%s - "WebSocket %s" 403',
                                    "args": ("127.0.0.1:5", "/ws?token=abc")})
    RedactTokens().filter(record)
    assert "abc" not in record.getMessage()
