"""The gateway's FastAPI app: REST under ``/api``, the ``/ws`` feed, health, metrics, dashboard.

Built by :func:`create_app` from injected parts so tests can use real or fake ones.
``/healthz``, ``/metrics``, ``/openapi.json`` and the dashboard files are open; ``/api/*``
and ``/ws`` need the bearer token.  No docs UI: it would load assets from a CDN.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field
from starlette.middleware.cors import CORSMiddleware

from detector.gateway import patient_info
from detector.gateway.alarm_settings import AlarmSettingsBody, AlarmSettingsDesk
from detector.gateway.auth import TokenAuth
from detector.gateway.context import ApiError, Gateway
from detector.gateway.discharge import DischargeBody, DischargeDesk
from detector.gateway.feeds import STREAM_ID, Feeds, alert_frame, stored_beats, stored_beats_since
from detector.gateway.inband import InBandSender
from detector.gateway.uploads import Analyzer, AnalyzeRunner, onnx_analyzer
from detector.gateway.ws import websocket_endpoint
from stream.errors import ConfigError, ServiceUnavailable
from stream.redis import AlarmState, AlertStore
from stream.settings import Settings

logger = logging.getLogger(__name__)

RECENT_BEATS = 20
BEAT_HISTORY_MAX = 5000  # 20 min at 250 bpm: more than the dashboard's 10-minute trend needs


class AckBody(BaseModel):
    user: str = Field(min_length=1, max_length=100, description="who acknowledges the alarm")


def create_app(settings: Settings, registry: CollectorRegistry, store: AlertStore, feeds: Feeds,
               analyzer: Analyzer | None = None) -> FastAPI:
    """The app; its lifespan starts the store (if needed) and the feeds, and stops the feeds.

    Refuses to build an open app unless ``settings.dev_no_auth`` says so explicitly.
    """
    if not settings.auth_token and not settings.dev_no_auth:
        raise ConfigError("the gateway needs ECGMON_AUTH_TOKEN (or dev_no_auth for development)")
    token = settings.auth_token or None
    gw = Gateway(settings, registry, store, feeds, TokenAuth(token))
    sender = InBandSender(settings)  # one Kafka producer for alarm settings and discharges
    desk = AlarmSettingsDesk(settings, store, sender=sender)
    discharges = DischargeDesk(store, sender)
    runner = AnalyzeRunner(analyzer or onnx_analyzer(settings.model), settings.upload_max_bytes,
                           settings.analyze_timeout_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.start()
        await feeds.start()
        try:
            yield
        finally:
            await feeds.stop()
            await sender.stop()

    app = FastAPI(title="ecgmon gateway", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.gateway = gw
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(ServiceUnavailable, _unavailable)  # type: ignore[arg-type]
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        problems = await feeds.problems()
        if problems:
            return JSONResponse({"status": "unavailable", "reasons": problems}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", tags=["ops"])
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket_endpoint(websocket, gw)

    app.include_router(_api(gw, runner, desk, discharges))
    _static(app, settings)
    return app


def _api(gw: Gateway, runner: AnalyzeRunner, desk: AlarmSettingsDesk,
         discharges: DischargeDesk) -> APIRouter:
    async def require_token(request: Request) -> None:
        if not gw.auth.rest_ok(request):
            raise ApiError(401, "unauthorized: send Authorization: Bearer <token>")

    api = APIRouter(prefix="/api", dependencies=[Depends(require_token)], tags=["api"])

    @api.get("/patients")
    async def patients() -> dict[str, Any]:
        states = [await gw.feeds.state.state(p) for p in await gw.feeds.state.patient_ids()]
        return {"patients": [{k: v for k, v in s.items() if k != "type"} for s in states]}

    @api.get("/patients/{patient_id}")
    async def patient(patient_id: str) -> dict[str, Any]:
        if patient_id not in await gw.feeds.state.patient_ids():
            raise ApiError(404, "unknown patient")
        state = await gw.feeds.state.state(patient_id)
        stored = await gw.store.patient_state(patient_id)
        alarms = await gw.store.active_alarms(patient_id)
        return {"patient_id": patient_id, "heart_rate_bpm": state["heart_rate_bpm"],
                "last_class": state["last_class"], "last_alert_id": stored.last_alert_id,
                "active_alarms": [_alarm(a) for a in alarms],
                "recent_beats": await _recent_beats(gw, patient_id)}

    @api.get("/patients/{patient_id}/beats")
    async def beats(
        patient_id: str,
        seconds: Annotated[float, Query(gt=0, le=3600, description="data time before the newest beat")] = 600,
        limit: Annotated[int, Query(ge=1, le=BEAT_HISTORY_MAX, description="at most the newest N")] = 3000,
    ) -> dict[str, Any]:
        """The patient's beats of the last ``seconds`` (the detector keeps about 2,000 per patient
        in Redis), oldest first, as the live ``beat`` frames: class, confidence and the heart rate
        (median of 8 RR), so a page opened late draws its trends at once."""
        if patient_id not in await gw.feeds.state.patient_ids():
            raise ApiError(404, "unknown patient")
        rows = await stored_beats_since(gw.store, gw.settings.redis_prefix, patient_id, seconds, limit)
        return {"patient_id": patient_id, "beats": [{k: v for k, v in b.items() if k != "patient_id"}
                                                    for b in rows]}

    @api.get("/patients/{patient_id}/info")
    async def get_info(patient_id: str) -> dict[str, Any]:
        """Bed label, name and note the ward entered for the patient (empty when none), with
        who entered them and when."""
        if patient_id not in await gw.feeds.state.patient_ids():
            raise ApiError(404, "unknown patient")
        return await patient_info.read(gw.store, patient_id)

    @api.post("/patients/{patient_id}/info")
    async def set_info(patient_id: str, body: patient_info.PatientInfoBody) -> dict[str, Any]:
        """Enter or change the patient's bed label, name and note (empty strings clear them);
        every dashboard shows them with the next state frame."""
        if patient_id not in await gw.feeds.state.patient_ids():
            raise ApiError(404, "unknown patient")
        return await patient_info.write(gw.store, patient_id, body)

    @api.get("/patients/{patient_id}/alarm-settings")
    async def alarm_settings(patient_id: str) -> dict[str, Any]:
        """The alarm limits the detector applies to the patient (``effective``; ``applied`` is
        null on the defaults), the allowed ranges, a change sent and not yet applied
        (``pending``) and the changes sent, newest first (``history``)."""
        if patient_id not in await gw.feeds.state.patient_ids():
            raise ApiError(404, "unknown patient")
        return await desk.read(patient_id)

    @api.post("/patients/{patient_id}/alarm-settings", status_code=202)
    async def set_alarm_settings(patient_id: str, body: AlarmSettingsBody) -> dict[str, Any]:
        """Change the patient's alarm limits: sent to the detector, which applies them at this
        point of the patient's stream (a state frame's ``alarm_settings`` then carries the
        returned ``request_id``); 422 names an invalid value, 503 when Kafka did not take it."""
        if patient_id not in await gw.feeds.state.patient_ids():
            raise ApiError(404, "unknown patient")
        return await desk.send(patient_id, body)

    @api.post("/patients/{patient_id}/discharge", status_code=202)
    async def discharge(patient_id: str, body: DischargeBody) -> dict[str, Any]:
        """End the patient's monitoring: sent to the detector, which ends the patient's active
        alarms and archives the stay (``GET /api/discharges``); every dashboard gets a
        ``discharged`` frame and drops the patient.  Data that arrives later under the same id
        is a new admission.  404 unknown patient, 422 bad user, 503 when Kafka did not take it."""
        if patient_id not in await gw.feeds.state.patient_ids():
            raise ApiError(404, "unknown patient")
        return await discharges.send(patient_id, body)

    @api.get("/discharges")
    async def discharged(
        count: Annotated[int, Query(ge=1, le=500, description="the newest N")] = 50,
    ) -> dict[str, Any]:
        """The newest discharges, newest first: who discharged whom and when, the stay's ward
        details and alarm limits, and the alarms the discharge ended."""
        return {"discharges": await discharges.recent(count)}

    @api.get("/discharges/{request_id}")
    async def discharged_stay(request_id: Annotated[str, Path(max_length=200)]) -> dict[str, Any]:
        """One discharge's archive: the record, the stay's alerts (alert frames, oldest first)
        and its alarm-limit changes (newest first); 404 unknown or older than ECGMON_ARCHIVE_DAYS."""
        return await discharges.stay(request_id)

    @api.get("/alerts")
    async def alerts(
        patient: Annotated[str | None, Query(max_length=200)] = None,
        after: Annotated[str | None, Query(pattern=STREAM_ID.pattern,
                                           description="stream id; alerts after it")] = None,
        count: Annotated[int, Query(ge=1, le=1000)] = 100,
        newest: Annotated[bool, Query(description="the newest count alerts (still oldest first) "
                                                  "instead of the oldest")] = False,
    ) -> dict[str, Any]:
        rows = await gw.store.history(patient, after, count, newest)
        frames = [alert_frame(r.stream_id, r.alert) for r in rows]
        return {"alerts": frames, "next_after": frames[-1]["id"] if frames else after}

    @api.get("/alerts/{alert_id}/strip")
    async def strip(alert_id: Annotated[str, Path(max_length=400)]) -> dict[str, Any]:
        """The ECG the gateway recorded around an alarm's onset (10 s before to 5 s after the
        alert), with the beats it saw there; ``complete`` false if the trace had a gap."""
        found = await gw.feeds.strips.load(alert_id)
        if found is None:
            raise ApiError(404, "no strip recorded for this alert: the gateway records one for "
                           "each alarm onset it sees live, and keeps it 7 days")
        return found

    @api.post("/alarms/{alarm_id}/ack")
    async def ack(alarm_id: str, body: AckBody) -> dict[str, Any]:
        frame = await gw.acknowledge(alarm_id, body.user)
        return {k: v for k, v in frame.items() if k != "type"}

    @api.post("/analyze", openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                      "description": "a WFDB record (.hea + .dat [+ .atr]) or one .csv"},
            "fs_hz": {"type": "number", "description": "sampling rate of a CSV upload"}}}}}}})
    async def analyze(request: Request) -> dict[str, Any]:
        """Beats, classes and alarms of an uploaded recording (413 too large, 408/503 too slow)."""
        return await runner.handle(request)

    return api


def _alarm(a: AlarmState) -> dict[str, Any]:
    return {"alarm_id": a.alarm_id, "alarm_type": a.alarm_type, "priority": a.priority.value,
            "phase": a.phase.value, "technical": a.technical, "message": a.message,
            "onset_sample_index": a.onset_sample_index, "sample_index": a.sample_index,
            "acknowledged_by": a.acked_by,
            "acknowledged_at_ms": None if a.acked_at_ns is None else a.acked_at_ns // 1_000_000}


async def _recent_beats(gw: Gateway, patient_id: str) -> list[dict[str, Any]]:
    """Beats seen live by this gateway, else the detector's recent beats kept in Redis."""
    live = gw.feeds.live.patients.get(patient_id)
    if live is not None and live.recent:
        return [{k: v for k, v in b.items() if k != "type"} for b in list(live.recent)[-RECENT_BEATS:]]
    return await stored_beats(gw.store, gw.settings.redis_prefix, patient_id, RECENT_BEATS)


def _static(app: FastAPI, settings: Settings) -> None:
    web = settings.web_dir

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = web / "index.html"
        if not page.is_file():
            return JSONResponse({"error": f"dashboard not found in {web}"}, status_code=404)
        return FileResponse(page)

    if web.is_dir():
        app.mount("/static", StaticFiles(directory=web), name="static")
        app.mount("/", StaticFiles(directory=web), name="web")


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status, headers=headers)


async def _unavailable(_: Request, exc: ServiceUnavailable) -> JSONResponse:
    logger.warning("request failed: a dependency is unavailable", extra={"error": str(exc)})
    return JSONResponse({"error": "service unavailable"}, status_code=503)
