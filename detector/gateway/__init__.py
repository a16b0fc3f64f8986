"""The gateway: live ECG, beats, alerts and state to people (web dashboard) and machines (REST, WS)."""

from __future__ import annotations

import dataclasses
import secrets
import sys
from typing import Any

from stream.settings import Settings


def up_part(settings: Settings) -> Any:
    """``ecgmon up`` runs the gateway as a child process.

    Without ``ECGMON_AUTH_TOKEN`` (and without ``--dev-no-auth``) it makes a token for this
    session and writes it to the terminal (not to the logs) so the dashboard can sign in.
    """
    from stream.up import Part, UpContext, child_process_part

    token = settings.auth_token
    if not token and not settings.dev_no_auth:
        token = secrets.token_urlsafe(24)
    child = child_process_part("gateway", [sys.executable, "-m", "stream.cli", "gateway"])

    async def run(ctx: UpContext) -> None:
        if token != ctx.settings.auth_token:
            sys.stderr.write(f"gateway token for this session: {token}  "
                             "(set ECGMON_AUTH_TOKEN to choose one)\n")
        await child.run(dataclasses.replace(
            ctx, settings=dataclasses.replace(ctx.settings, auth_token=token)))

    return Part("gateway", run)
