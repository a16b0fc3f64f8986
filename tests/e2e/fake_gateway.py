"""A stand-in for `ecgmon gateway` that serves the dashboard with synthetic patients.

Speaks the dashboard's WebSocket protocol (hello, waveform, beat, alert, state, acked,
discharged, feed) and its REST API (GET /api/patients[/{id}[/beats]], GET /api/alerts[/{id}/strip], POST
/api/alarms/{id}/ack, POST /api/analyze, GET/POST /api/patients/{id}/alarm-settings, GET/POST
/api/patients/{id}/info, POST /api/patients/{id}/discharge, GET /api/discharges[/{request_id}]; a
strip only for alarms of the last ~55 s) with
ten synthetic patients: sinus rhythms, PVC bigeminy, atrial fibrillation, a recurring
ventricular-tachycardia episode (high priority), a technical alarm with gaps in the signal.
`--no-alarms` leaves the scripted alarms out.

For the tests, ``POST /api/_fake/websocket {"refuse": true}`` closes every WebSocket and refuses
new ones (503) until ``{"refuse": false}``: a lost link to the gateway.
``POST /api/_fake/feed {"receiving": false}`` stops the data of every bed at once (no waveform, no
beats, no alarm changes; state frames go on, from Redis in the real gateway) and sends every
WebSocket, subscribed or not, ``{"type": "feed", "receiving": false, "last_data_ms"}`` at once (the
real gateway waits ``ECGMON_NO_DATA_ALARM_S`` first): the broker or the gateway's Kafka feed is
down. ``{"receiving": true}`` resumes the data (the samples of the outage are lost, a gap) and sends
``{"type": "feed", "receiving": true, ...}`` with the first waveform frame. The hello carries the
same state (``feed``).
``POST /api/_fake/alarm-settings {"refuse": "unknown_patient" | "invalid_field", "detail": "..."}``
makes the detector refuse the next change of alarm settings sent (of any patient) about a second
later, as it does (GET then names it in ``refused``, with ``pending`` null); ``{"refuse": null}``
cancels that.

A discharge (``POST /api/patients/{id}/discharge {"user"}``, 202) is carried out about half a
second later, as the gateway and detector do: every subscribed client gets the ``discharged``
frame, then the end of each of the patient's active alarms ("patient discharged by <user>" in
``details.reason``) and one stale state frame of the ended stay (a gateway sends the urgent
frame ahead of those already queued); then nothing more of that id, which leaves
``/api/patients`` and the hello; its details and alarm settings are archived in ``GET
/api/discharges`` and reset; ``GET /api/discharges/{request_id}`` answers the stay's archive (the
row, the stay's alert frames oldest first in ``alerts``, its alarm-limit changes newest first in
``alarm_settings_history``; 404 when unknown). ``POST /api/_fake/discharge {"refuse": true}`` answers
the next discharge 503 (Kafka did not take it); ``POST /api/_fake/readmit {"patient": "203"}`` admits
a discharged patient again: its frames resume as a new patient (no details, default limits).
``POST /api/_fake/expire-archive {"request_id"}`` drops a stay's archive while its row stays listed
(the gateway keeps archives ``ECGMON_ARCHIVE_DAYS``): its GET answers 404.

The `websockets` server handles the WebSocket and every GET (static files from
dashboards/web at / and /static/..., REST GETs) in ``process_request``. It cannot parse POST
requests, so a small TCP front end on the public port answers POSTs itself and pipes every
other connection through to it.

    .venv/bin/python tests/e2e/fake_gateway.py --port 8765 --token demo
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.parser
import email.policy
import json
import logging
import math
import mimetypes
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

logger = logging.getLogger("fake_gateway")

WEB_DIR = Path(__file__).resolve().parents[2] / "dashboards" / "web"
FS_ORIG_HZ = 360.0
FS_HZ = 120.0  # decimated waveform rate sent to the dashboard
HISTORY_S = 60.0


# ---- synthetic ECG ------------------------------------------------------------------------


def _g(dt: float, centre: float, width: float, amp: float) -> float:
    return amp * math.exp(-(((dt - centre) / width) ** 2))


def beat_shape(dt: float, cls: str) -> float:
    """Sum-of-Gaussians PQRST (mV) at dt seconds from the R peak; wide and inverted-T for V."""
    if abs(dt) > 0.6:
        return 0.0
    if cls == "V":
        return _g(dt, 0.0, 0.045, 1.5) + _g(dt, 0.09, 0.045, -0.7) + _g(dt, 0.36, 0.08, -0.45)
    p_amp = 0.05 if cls == "S" else 0.13
    return (
        _g(dt, -0.2, 0.025, p_amp)
        + _g(dt, -0.035, 0.01, -0.12)
        + _g(dt, 0.0, 0.012, 1.15)
        + _g(dt, 0.035, 0.012, -0.28)
        + _g(dt, 0.3, 0.055, 0.3)
    )


@dataclass
class Scenario:
    hr_bpm: float
    pattern: str = "sinus"  # sinus | bigeminy | af | vt_episodes | pac | fusion | noisy
    noise_mv: float = 0.02
    burst_s: float = 0.5


SCENARIOS: dict[str, Scenario] = {
    "100": Scenario(72),
    "101": Scenario(64, "pac"),
    "105": Scenario(80, "noisy", noise_mv=0.08, burst_s=1.0),
    "106": Scenario(70, "bigeminy"),
    "119": Scenario(66, "sinus", burst_s=1.0),
    "200": Scenario(108, "af"),
    "203": Scenario(82, "vt_episodes", burst_s=1.0),
    "208": Scenario(88, "fusion"),
    "210": Scenario(46, "sinus"),
    "213": Scenario(112, "sinus", burst_s=0.25),
}

VT_PERIOD_S, VT_ON_S, VT_OFF_S = 90.0, 3.0, 48.0
TECH_PERIOD_S, TECH_ON_S, TECH_OFF_S = 60.0, 4.0, 34.0
GAP_ON_S, GAP_OFF_S = 20.0, 27.0


def vt_active(t: float) -> bool:
    return VT_ON_S <= t % VT_PERIOD_S < VT_OFF_S


def tech_active(t: float) -> bool:
    return TECH_ON_S <= t % TECH_PERIOD_S < TECH_OFF_S


def signal_gap(t: float) -> bool:
    return GAP_ON_S <= t % TECH_PERIOD_S < GAP_OFF_S


@dataclass
class AlarmScript:
    alarm_type: str
    priority: str
    technical: bool
    active: Any  # Callable[[float], bool] on the sim clock
    message: str


ALARMS: dict[str, list[AlarmScript]] = {
    "203": [AlarmScript("ventricular_tachycardia", "high", False, vt_active, "VT: run of V beats > 120 bpm")],
    "200": [
        AlarmScript("atrial_fibrillation", "medium", False, lambda t: t > 2.0, "Irregularly irregular RR")
    ],
    "106": [AlarmScript("bigeminy", "low", False, lambda t: t > 1.0, "N-V-N-V pattern")],
    "105": [AlarmScript("signal_inoperable", "medium", True, tech_active, "ECG unreadable (noise)")],
    "210": [AlarmScript("extreme_bradycardia", "high", False, lambda t: t > 1.5, "HR < 50 bpm")],
}


# ---- per-patient alarm settings (the contract in the dashboard's README) ----------------------

SETTINGS_DEFAULTS: dict[str, Any] = {"hr_low_bpm": 40.0, "hr_high_bpm": 140.0, "pause_s": 2.0, "disabled": []}
SETTINGS_RANGES: dict[str, Any] = {
    "hr_low_bpm": [15, 120], "hr_high_bpm": [60, 300], "min_gap_bpm": 10, "pause_s": [1.5, 3.5],
}
SETTINGS_UNITS = {"hr_low_bpm": "bpm", "hr_high_bpm": "bpm", "pause_s": "s"}
OPTIONAL_ALARMS = [
    "atrial_fibrillation", "bigeminy", "trigeminy", "ventricular_couplet", "ventricular_run", "pause",
]
SETTINGS_APPLY_S = 1.0  # the detector applies a change about a second later, in the patient's data
SETTINGS_HISTORY = 50
DISCHARGE_APPLY_S = 0.5  # the discharged frame comes about this long after the POST
DISCHARGES_KEPT = 500


@dataclass
class AlarmSettings:
    applied: dict[str, Any] | None = None  # null = the defaults
    # (apply at, entry, refusal: the detector refuses it then, or None)
    pending: list[tuple[float, dict[str, Any], dict[str, Any] | None]] = field(default_factory=list)
    refused: dict[str, Any] | None = None  # the last change refused: {request_id, reason, detail}
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=SETTINGS_HISTORY))

    def effective(self) -> dict[str, Any]:
        src = self.applied or SETTINGS_DEFAULTS
        return {k: src[k] for k in SETTINGS_DEFAULTS}

    def disabled(self) -> list[str]:
        return list(self.applied["disabled"]) if self.applied else []


def _missing_or_mistyped(body: Any) -> list[dict[str, Any]]:
    """FastAPI's own 422 `detail` for a body without a field or with a field of the wrong type."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    problems = []
    for key in ("user", "hr_low_bpm", "hr_high_bpm", "pause_s", "disabled"):
        value = body.get(key)
        if key not in body:
            msg, kind = "Field required", "missing"
        elif key == "user" and not isinstance(value, str):
            msg, kind = "Input should be a valid string", "string_type"
        elif key == "disabled" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            msg, kind = "Input should be a valid list", "list_type"
        elif key in SETTINGS_UNITS and (isinstance(value, bool) or not isinstance(value, int | float)):
            msg, kind = "Input should be a valid number", "float_type"
        else:
            continue
        problems.append({"loc": ["body", key], "msg": msg, "type": kind})
    return problems


def check_settings(body: Any) -> tuple[int, dict[str, Any]]:
    """(0, the settings) for a valid POST body, else (422, the answer) as the gateway's."""
    if problems := _missing_or_mistyped(body):
        return 422, {"detail": problems}
    user = body["user"].strip()
    if not 1 <= len(user) <= 100 or not user.isprintable():
        return 422, {"error": "user must be 1-100 printable characters"}
    for key, unit in SETTINGS_UNITS.items():
        lo, hi = SETTINGS_RANGES[key]
        if not lo <= body[key] <= hi:
            return 422, {"error": f"{key} must be {lo}-{hi} {unit}"}
    gap = SETTINGS_RANGES["min_gap_bpm"]
    if body["hr_high_bpm"] - body["hr_low_bpm"] < gap:
        return 422, {"error": f"hr_high_bpm must be at least {gap} bpm above hr_low_bpm"}
    if bad := [t for t in body["disabled"] if t not in OPTIONAL_ALARMS]:
        return 422, {"error": f"disabled: {', '.join(bad)} cannot be switched off (only {OPTIONAL_ALARMS})"}
    return 0, {
        "hr_low_bpm": float(body["hr_low_bpm"]),
        "hr_high_bpm": float(body["hr_high_bpm"]),
        "pause_s": round(float(body["pause_s"]), 1),
        "disabled": [t for t in OPTIONAL_ALARMS if t in body["disabled"]],
        "user": user,
    }


# ---- what the ward enters about a patient (detector/gateway/patient_info.py) -----------------

INFO_LIMITS = {"bed": 16, "name": 100, "note": 200}


def _json_body(raw: bytes) -> tuple[Any, dict[str, Any] | None]:
    """A request body as FastAPI reads it: the JSON value, or FastAPI's 422 detail when it is none."""
    try:
        return json.loads(raw or b"null"), None
    except json.JSONDecodeError as exc:
        return None, {"detail": [{"loc": ["body"], "msg": f"JSON decode error: {exc}",
                                  "type": "json_invalid"}]}


def _info_problems(body: Any) -> list[dict[str, Any]]:
    """FastAPI's own 422 `detail` for PatientInfoBody: user 1-100 characters, the others <= limit."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    problems = []
    for key, (lo, hi) in {"user": (1, 100), **{k: (0, n) for k, n in INFO_LIMITS.items()}}.items():
        if key not in body:
            if key == "user":
                problems.append({"loc": ["body", key], "msg": "Field required", "type": "missing"})
            continue
        value = body[key]
        if not isinstance(value, str):
            msg, kind = "Input should be a valid string", "string_type"
        elif len(value) < lo:
            msg, kind = f"String should have at least {lo} character", "string_too_short"
        elif len(value) > hi:
            msg, kind = f"String should have at most {hi} characters", "string_too_long"
        else:
            continue
        problems.append({"loc": ["body", key], "msg": msg, "type": kind})
    return problems


def check_info(body: Any) -> tuple[int, dict[str, Any]]:
    """(0, the stripped fields) for a valid POST body, else (422, the answer) as the gateway's."""
    if problems := _info_problems(body):
        return 422, {"detail": problems}
    fields = {key: str(body.get(key, "")).strip() for key in ("user", *INFO_LIMITS)}
    if not fields["user"]:
        return 422, {"error": "user must be 1-100 printable characters"}
    for key, value in fields.items():
        if not value.isprintable():
            return 422, {"error": f"{key} must be printable text on one line"}
    return 0, fields


@dataclass
class Patient:
    pid: str
    sc: Scenario
    rng: random.Random
    next_beat_t: float = 0.5
    beats: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=64))
    emitted_beats: int = 0
    wave: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=int(HISTORY_S * FS_HZ)))
    next_k: int = 0  # next decimated sample index to synthesise
    sent_k: int = 0  # first sample not yet sent
    last_send: float = 0.0
    bigeminy_v: bool = False
    sent_beats: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))
    last_class: str = "N"
    hr: float | None = None

    def schedule(self, until: float) -> None:
        """Plan beats up to `until` (sim seconds) according to the scenario."""
        while self.next_beat_t < until:
            t = self.next_beat_t
            rr = 60.0 / self.sc.hr_bpm
            cls = "N"
            if self.sc.pattern == "vt_episodes" and vt_active(t):
                cls, rr = "V", 60.0 / 165.0 * self.rng.uniform(0.96, 1.04)
            elif self.sc.pattern == "bigeminy":
                self.bigeminy_v = not self.bigeminy_v
                cls = "V" if self.bigeminy_v else "N"
                rr *= 0.75 if not self.bigeminy_v else 1.25
            elif self.sc.pattern == "af":
                rr *= self.rng.uniform(0.65, 1.35)
            elif self.sc.pattern == "pac" and self.rng.random() < 0.08:
                cls, rr = "S", rr * 0.7
            elif self.sc.pattern == "fusion" and self.rng.random() < 0.06:
                cls = "F"
            else:
                rr *= self.rng.uniform(0.97, 1.03)
            if self.sc.pattern == "noisy" and self.rng.random() < 0.05:
                cls = "Q"
            self.beats.append((t, cls))
            self.next_beat_t = t + rr

    def value(self, t: float) -> float:
        v = 0.08 * math.sin(2 * math.pi * 0.22 * t + hash(self.pid) % 7)
        noise = self.sc.noise_mv * (3.0 if self.sc.pattern == "noisy" and tech_active(t) else 1.0)
        v += self.rng.gauss(0.0, noise)
        for tb, cls in self.beats:
            if abs(t - tb) < 0.6:
                v += beat_shape(t - tb, "N" if cls in "FQ" else cls) * (0.8 if cls == "F" else 1.0)
        return v


# ---- the fake gateway ------------------------------------------------------------------------


class FakeGateway:
    def __init__(
        self, token: str, web_dir: Path, n_patients: int = 10, seed: int = 1, alarms: bool = True
    ) -> None:
        self.token = token
        self.web_dir = web_dir
        self.t0 = time.monotonic()
        rng = random.Random(seed)
        scenarios = dict(SCENARIOS)
        for i in range(len(scenarios), n_patients):  # more beds: sinus rhythms at various rates
            scenarios[str(300 + i)] = Scenario(rng.uniform(55, 105), burst_s=rng.choice([0.25, 0.5, 1.0]))
        self.patients = {pid: Patient(pid, sc, random.Random(rng.random())) for pid, sc in scenarios.items()}
        self.clients: set[ServerConnection] = set()
        self.alerts: list[dict[str, Any]] = []
        self.active: dict[str, dict[str, Any]] = {}  # alarm_id -> alarm
        self.acked: dict[str, str] = {}
        self.alert_seq = 0
        self.settings = {pid: AlarmSettings() for pid in self.patients}
        self.info: dict[str, dict[str, Any]] = {}  # pid -> bed, name, note, who, when
        self.alarms = alarms
        self.refuse_ws = False
        self.refuse_settings: dict[str, str] | None = None  # {reason, detail}: refuse the next change
        self.refuse_discharge = False  # answer the next discharge 503
        self.pending_discharges: list[tuple[float, dict[str, Any]]] = []  # (carry out at, record)
        self.discharges: deque[dict[str, Any]] = deque(maxlen=DISCHARGES_KEPT)  # newest first
        self.discharged: dict[str, Scenario] = {}  # discharged, not admitted again
        # request_id -> the stay's alert frames (oldest first) and limit changes (newest first)
        self.stays: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.archived_alerts: set[str] = set()  # alert ids of ended stays (out of the patient's history)
        self.rng = rng
        self.sockets: set[ServerConnection] = set()  # every open WebSocket, subscribed or not
        self.receiving = True  # False: no bedside data reaches the gateway (POST /api/_fake/feed)
        self.announce_receiving = False  # say `receiving: true` with the next waveform frame
        self.last_data_ms: int | None = None  # wall ms of the newest waveform frame of any bed
        self.tasks: set[asyncio.Task[None]] = set()

    def sim_t(self) -> float:
        return time.monotonic() - self.t0

    # -- simulation --
    def step(self) -> None:
        now = self.sim_t()
        while self.pending_discharges and self.pending_discharges[0][0] <= now:
            self.carry_out_discharge(self.pending_discharges.pop(0)[1], now)
        for p in self.patients.values():
            p.schedule(now + 1.0)
            if not self.receiving:  # the beds go on, but nothing of them reaches the gateway (nor
                continue  # the detector: no alarm starts or ends, no settings change is applied)
            self.apply_settings(p, now)
            while p.next_k / FS_HZ <= now:
                t = p.next_k / FS_HZ
                if not (p.sc.pattern == "noisy" and signal_gap(t)):
                    p.wave.append((p.next_k, p.value(t)))
                p.next_k += 1
            if now - p.last_send >= p.sc.burst_s * random.uniform(0.8, 1.2):
                p.last_send = now
                self.send_wave(p)
            self.send_beats(p, now)
            self.run_alarms(p, now)

    def send_wave(self, p: Patient) -> None:
        """One frame per contiguous run of new samples (a signal gap splits it)."""
        run: list[tuple[int, float]] = []
        for k, v in p.wave:
            if k < p.sent_k:
                continue
            if run and k != run[-1][0] + 1:
                self.publish(self.wave_frame(p, run))
                run = []
            run.append((k, v))
        if run:
            self.publish(self.wave_frame(p, run))
            self.last_data_ms = int(time.time() * 1000)
            if self.announce_receiving:
                self.announce_receiving = False
                self.broadcast_all(self.feed_frame())
        p.sent_k = p.next_k

    @staticmethod
    def wave_frame(p: Patient, run: list[tuple[int, float]]) -> dict[str, Any]:
        k0 = run[0][0]
        return {
            "type": "waveform",
            "patient_id": p.pid,
            "lead": "MLII",
            "fs_hz": FS_HZ,
            "first_sample_index": k0,
            "t_s": k0 / FS_HZ,
            "mv": [round(v, 4) for _, v in run],
        }

    def send_beats(self, p: Patient, now: float) -> None:
        beats = list(p.beats)
        # Emit every planned beat whose time has passed (+ detector latency), once each.
        for tb, cls in beats:
            key = int(tb * 1000)
            if key <= p.emitted_beats or tb + 0.25 > now:
                continue
            if p.sc.pattern == "noisy" and signal_gap(tb):
                p.emitted_beats = key
                continue
            prev = [b for b, _ in beats if b < tb][-8:]
            rrs = [b - a for a, b in zip(prev, [*prev[1:], tb], strict=True)] if prev else []
            p.hr = 60.0 / (sum(rrs) / len(rrs)) if rrs else p.sc.hr_bpm
            p.last_class = cls
            p.emitted_beats = key
            frame = {
                "type": "beat",
                "patient_id": p.pid,
                "sample_index": round(tb * FS_ORIG_HZ),
                "t_s": round(tb, 4),
                "class": cls,
                "confidence": round(p.rng.uniform(0.85, 0.99), 3),
                "hr_bpm": round(p.hr, 1),
            }
            p.sent_beats.append(frame)
            self.publish(frame)

    def run_alarms(self, p: Patient, now: float) -> None:
        for script in ALARMS.get(p.pid, []) if self.alarms else []:
            current = next(
                (
                    a
                    for a in self.active.values()
                    if a["patient_id"] == p.pid and a["alarm_type"] == script.alarm_type
                ),
                None,
            )
            on = script.active(now) and script.alarm_type not in self.settings[p.pid].disabled()
            if on and current is None:
                onset = round(now, 3)
                alarm = {
                    "alarm_id": f"{p.pid}:{script.alarm_type}:{round(onset * FS_ORIG_HZ)}",
                    "patient_id": p.pid,
                    "alarm_type": script.alarm_type,
                    "priority": script.priority,
                    "technical": script.technical,
                    "onset_t_s": onset,
                    "message": script.message,
                    "last_update": now,
                }
                self.active[alarm["alarm_id"]] = alarm
                self.alert(alarm, "onset", now, p)
            elif on and current is not None and now - current["last_update"] >= 10.0:
                current["last_update"] = now
                self.alert(current, "update", now, p)
            elif not on and current is not None:
                del self.active[current["alarm_id"]]
                self.alert(current, "end", now, p)

    def alert(
        self, alarm: dict[str, Any], phase: str, now: float, p: Patient, details: dict[str, Any] | None = None
    ) -> None:
        self.alert_seq += 1
        frame = {
            "type": "alert",
            "id": f"{int(time.time() * 1000)}-{self.alert_seq}",
            "alert_id": f"{alarm['alarm_id']}:{phase}:{round(now * FS_ORIG_HZ)}",
            "alarm_id": alarm["alarm_id"],
            "patient_id": p.pid,
            "alarm_type": alarm["alarm_type"],
            "priority": alarm["priority"],
            "phase": phase,
            "technical": alarm["technical"],
            "onset_t_s": alarm["onset_t_s"],
            "t_s": round(now, 3),
            "heart_rate_bpm": round(p.hr or 0.0, 1),
            "message": alarm["message"],
        }
        if details:
            frame["details"] = details
        self.alerts.append(frame)
        del self.alerts[:-1000]
        self.publish(frame)

    def state_frame(self, p: Patient) -> dict[str, Any]:
        return {
            "type": "state",
            "patient_id": p.pid,
            "heart_rate_bpm": round(p.hr, 1) if p.hr else None,
            "last_class": p.last_class,
            "active_alarms": [
                {
                    "alarm_id": a["alarm_id"],
                    "alarm_type": a["alarm_type"],
                    "priority": a["priority"],
                    "acknowledged_by": self.acked.get(a["alarm_id"]),
                }
                for a in self.active.values()
                if a["patient_id"] == p.pid
            ],
            "alarm_settings": self.settings[p.pid].applied,
            "info": self.info.get(p.pid),
        }

    # -- patient details --
    def info_answer(self, pid: str) -> dict[str, Any]:
        empty = {"patient_id": pid, "bed": "", "name": "", "note": "", "updated_by": None,
                 "updated_at_ms": None}
        return {**empty, **self.info.get(pid, {})}

    def post_info(self, pid: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        body, invalid = _json_body(raw)
        if invalid is not None:
            return 422, invalid
        if problems := _info_problems(body):  # FastAPI checks the body before the route runs
            return 422, {"detail": problems}
        if pid not in self.patients:
            return 404, {"error": "unknown patient"}
        status, fields = check_info(body)
        if status:
            return status, fields
        self.info[pid] = {"patient_id": pid, **{k: fields[k] for k in INFO_LIMITS},
                          "updated_by": fields["user"], "updated_at_ms": int(time.time() * 1000)}
        logger.info("patient details for %s changed by %s", pid, fields["user"])  # no names in logs
        return 200, self.info[pid]

    # -- discharge --
    def post_discharge(self, pid: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """As the gateway's: FastAPI checks the body (422), then 404, 422 for a blank user, 503."""
        body, invalid = _json_body(raw)
        if invalid is not None:
            return 422, invalid
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or not 1 <= len(user) <= 100:
            missing = not isinstance(body, dict) or "user" not in body
            msg = "Field required" if missing else "String should have 1-100 characters"
            return 422, {"detail": [{"loc": ["body", "user"], "msg": msg, "type": "string_type"}]}
        if pid not in self.patients:
            return 404, {"error": "unknown patient"}
        user = user.strip()
        if not user or not user.isprintable():
            return 422, {"error": "user must be 1-100 printable characters"}
        if self.refuse_discharge:
            self.refuse_discharge = False
            return 503, {"error": "the discharge was not sent: Kafka did not take it; try again"}
        record = {"patient_id": pid, "request_id": uuid.uuid4().hex, "user": user,
                  "discharged_at_ms": int(time.time() * 1000)}
        self.pending_discharges.append((self.sim_t() + DISCHARGE_APPLY_S, record))
        logger.info("discharge of %s sent", pid)  # no names in logs
        return 202, {**record, "status": "sent"}

    def carry_out_discharge(self, record: dict[str, Any], now: float) -> None:
        """The gateway's frame, the detector's alarm ends, a stale frame; archive and forget."""
        pid = record["patient_id"]
        p = self.patients.pop(pid, None)
        if p is None:
            return
        stale = self.state_frame(p)  # queued before the discharge: sent after its urgent frame
        self.publish({"type": "discharged", "patient_id": pid, "request_id": record["request_id"],
                      "user": record["user"], "at_ms": record["discharged_at_ms"]})
        ended = [a for a in self.active.values() if a["patient_id"] == pid]
        for alarm in ended:
            del self.active[alarm["alarm_id"]]
            self.alert(alarm, "end", now, p, {"reason": f"patient discharged by {record['user']}"})
        self.publish(stale)
        # the stay's alerts: the patient's since its admission (those of an earlier stay are archived)
        stay_alerts = [{**a, "details": dict(a.get("details") or {})} for a in self.alerts
                       if a["patient_id"] == pid and a["alert_id"] not in self.archived_alerts]
        self.archived_alerts |= {a["alert_id"] for a in stay_alerts}
        settings = self.settings.pop(pid)
        self.discharges.appendleft({
            **record, "alarms_ended": [a["alarm_id"] for a in ended],
            "stream_id": f"{record['discharged_at_ms']}-0", "info": self.info.pop(pid, None),
            "alarm_settings": settings.applied})
        self.stays[record["request_id"]] = {
            "alerts": stay_alerts,
            "alarm_settings_history": [dict(c) for c in settings.history],
        }
        listed = {d["request_id"] for d in self.discharges}
        for gone in [rid for rid in self.stays if rid not in listed]:
            del self.stays[gone]  # trimmed from the discharge log: its archive goes too
        self.discharged[pid] = p.sc
        logger.info("patient %s discharged (%d alarms ended)", pid, len(ended))

    def readmit(self, pid: str) -> tuple[int, dict[str, Any]]:
        """Data under a discharged id again: a new admission (no details, default settings)."""
        sc = self.discharged.pop(pid, None)
        if sc is None:
            return 404, {"error": f"{pid!r} is not discharged"}
        now = self.sim_t()
        p = Patient(pid, sc, random.Random(self.rng.random()), next_beat_t=now + 0.5,
                    next_k=math.ceil(now * FS_HZ), last_send=now)
        p.sent_k = p.next_k
        p.emitted_beats = int(now * 1000)
        self.patients[pid] = p
        self.settings[pid] = AlarmSettings()
        logger.info("patient %s admitted again", pid)
        return 200, {"patient": pid, "admitted": True}

    # -- no bedside data from any bed (broker, Kafka feed or network down), for the tests --
    def feed_state(self) -> dict[str, Any]:
        return {"receiving": self.receiving, "last_data_ms": self.last_data_ms}

    def feed_frame(self) -> dict[str, Any]:
        return {"type": "feed", **self.feed_state()}

    def broadcast_all(self, frame: dict[str, Any]) -> None:
        """A never-dropped frame to every WebSocket, whatever it subscribed to (as the gateway's)."""
        broadcast(self.sockets, json.dumps(frame, separators=(",", ":")))

    def set_feed(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        body = json.loads(raw or b"{}")
        receiving = body.get("receiving")
        if not isinstance(receiving, bool):
            return 422, {"error": "receiving must be true or false"}
        if receiving == self.receiving:
            return 200, self.feed_state()
        self.receiving = receiving
        if receiving:
            # data again from now on: the samples and beats of the outage never arrive (a gap)
            now = self.sim_t()
            for p in self.patients.values():
                p.next_k = p.sent_k = math.ceil(now * FS_HZ)
                p.emitted_beats = max(p.emitted_beats, int(now * 1000))
                p.last_send = 0.0  # send at the next step
            self.announce_receiving = True
        else:
            self.announce_receiving = False
            self.broadcast_all(self.feed_frame())
        logger.info("bedside data %s", "flows again" if receiving else "stopped for every bed")
        return 200, self.feed_state()

    # -- a lost link, for the tests --
    def set_refuse(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        body = json.loads(raw or b"{}")
        self.refuse_ws = bool(body.get("refuse"))
        if self.refuse_ws:
            for ws in list(self.sockets):
                task = asyncio.get_running_loop().create_task(ws.close(1012, "fake gateway: link down"))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        logger.info("websocket %s", "refused" if self.refuse_ws else "accepted")
        return 200, {"refuse": self.refuse_ws, "open": len(self.sockets)}

    # -- alarm settings --
    def settings_answer(self, pid: str) -> dict[str, Any]:
        st = self.settings[pid]
        return {
            "patient_id": pid,
            "effective": st.effective(),
            "applied": st.applied,
            "defaults": SETTINGS_DEFAULTS,
            "ranges": SETTINGS_RANGES,
            "optional_alarms": OPTIONAL_ALARMS,
            "pending": st.pending[-1][1] if st.pending else None,
            # as the gateway: only the newest change's refusal is news
            "refused": st.refused if st.history and st.refused
            and st.refused["request_id"] == st.history[0]["request_id"] else None,
            "history": list(st.history),
        }

    def set_refuse_settings(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        body = json.loads(raw or b"{}")
        reason = body.get("refuse")
        if reason not in (None, "unknown_patient", "invalid_field"):
            return 422, {"error": "refuse must be null, 'unknown_patient' or 'invalid_field'"}
        detail = str(body.get("detail") or "")
        self.refuse_settings = None if reason is None else {"reason": reason, "detail": detail}
        logger.info("alarm settings: the next change is %s", f"refused ({reason})" if reason else "applied")
        return 200, {"refuse": reason}

    def post_settings(self, pid: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        if pid not in self.patients:
            return 404, {"error": "unknown patient"}
        body, invalid = _json_body(raw)
        if invalid is not None:
            return 422, invalid
        status, checked = check_settings(body)
        if status:
            return status, checked
        entry = {**checked, "request_id": uuid.uuid4().hex, "set_at_ms": int(time.time() * 1000)}
        st = self.settings[pid]
        st.history.appendleft(entry)
        refusal, self.refuse_settings = self.refuse_settings, None
        if refusal is not None:
            details = {
                "unknown_patient": f"alarm settings for {pid!r}, whose stream this detector has not seen",
                "invalid_field": "the detector does not accept these values",
            }
            refusal = {"request_id": entry["request_id"], "reason": refusal["reason"],
                       "detail": refusal["detail"] or details[refusal["reason"]]}
        st.pending.append((self.sim_t() + SETTINGS_APPLY_S, entry, refusal))
        logger.info("alarm settings for %s sent: %s", pid, json.dumps(entry))
        return 202, {"request_id": entry["request_id"], "status": "sent", "settings": entry}

    def apply_settings(self, p: Patient, now: float) -> None:
        """As the detector does: apply due changes in order; end the alarms they switch off."""
        st = self.settings[p.pid]
        while st.pending and st.pending[0][0] <= now:
            _, entry, refusal = st.pending.pop(0)
            if refusal is not None:  # dead-lettered; the applied settings stay
                st.refused = refusal
                logger.info("alarm settings for %s refused: %s", p.pid, json.dumps(refusal))
                continue
            st.applied = entry
            for alarm in [a for a in self.active.values() if a["patient_id"] == p.pid]:
                if alarm["alarm_type"] in entry["disabled"]:
                    del self.active[alarm["alarm_id"]]
                    reason = f"turned off for this patient by {entry['user']}"
                    self.alert(alarm, "end", now, p, {"reason": reason})

    def publish(self, frame: dict[str, Any]) -> None:
        broadcast(self.clients, json.dumps(frame, separators=(",", ":")))

    def ack(self, alarm_id: str, user: str) -> dict[str, Any]:
        self.acked[alarm_id] = user or "?"
        frame = {
            "type": "acked",
            "alarm_id": alarm_id,
            "user": self.acked[alarm_id],
            "at_ms": int(time.time() * 1000),
        }
        self.publish(frame)
        return frame

    async def run_sim(self) -> None:
        last_state = 0.0
        while True:
            self.step()
            now = self.sim_t()
            if now - last_state >= 1.0:
                last_state = now
                for p in self.patients.values():
                    self.publish(self.state_frame(p))
            await asyncio.sleep(0.05)

    # -- WebSocket --
    async def handler(self, ws: ServerConnection) -> None:
        self.sockets.add(ws)
        try:
            await self.serve_socket(ws)
        finally:
            self.sockets.discard(ws)

    async def serve_socket(self, ws: ServerConnection) -> None:
        await ws.send(
            json.dumps(
                {"type": "hello", "server_time_ms": int(time.time() * 1000), "patients": list(self.patients),
                 "feed": self.feed_state()}
            )
        )
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                except json.JSONDecodeError:
                    await ws.send(json.dumps({"type": "error", "error": "not JSON"}))
                    continue
                if msg.get("type") == "subscribe":
                    await self.subscribe(ws, msg)
                elif msg.get("type") == "ack" and msg.get("alarm_id"):
                    self.ack(str(msg["alarm_id"]), str(msg.get("user") or "?"))
                else:
                    await ws.send(
                        json.dumps({"type": "error", "error": f"unknown message {msg.get('type')!r}"})
                    )
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(ws)

    async def subscribe(self, ws: ServerConnection, msg: dict[str, Any]) -> None:
        """Backlog first (20 s of waveform, recent beats, missed alerts), then live frames."""
        last = msg.get("last_alert_id")
        logger.info("subscribe %s", json.dumps(msg))
        ids = [a["id"] for a in self.alerts]
        missed = self.alerts[ids.index(last) + 1 :] if last in ids else []
        for p in self.patients.values():
            back = [(k, v) for k, v in p.wave if k >= p.sent_k - 20 * FS_HZ and k < p.sent_k]
            if back:
                await ws.send(json.dumps(self.wave_frame(p, back)))
            for beat in p.sent_beats:
                await ws.send(json.dumps(beat))
            await ws.send(json.dumps(self.state_frame(p)))
        for a in missed:
            await ws.send(json.dumps(a))
        self.clients.add(ws)

    # -- HTTP GET (static files and REST) --
    def authorised(self, headers: Headers) -> bool:
        return not self.token or headers.get("Authorization", "") == f"Bearer {self.token}"

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if url.path == "/ws":
            if self.token and query.get("token", [""])[0] != self.token:
                return connection.respond(HTTPStatus.UNAUTHORIZED, "bad token\n")
            if self.refuse_ws:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "link down (test)\n")
            return None
        if url.path.startswith("/api/"):
            if not self.authorised(request.headers):
                return json_response(401, {"detail": "missing or bad bearer token"})
            return self.rest_get(url.path, query)
        return self.static(url.path)

    def rest_get(self, path: str, query: dict[str, list[str]]) -> Response:
        if path == "/api/patients":
            rows = []
            for p in self.patients.values():
                st = self.state_frame(p)
                rows.append(
                    {
                        "patient_id": p.pid,
                        "heart_rate_bpm": st["heart_rate_bpm"],
                        "active_alarms": st["active_alarms"],
                        "info": st["info"],
                    }
                )
            return json_response(200, rows)
        if path.startswith("/api/patients/") and path.endswith("/alarm-settings"):
            pid = unquote(path.removeprefix("/api/patients/").removesuffix("/alarm-settings"))
            if pid not in self.patients:
                return json_response(404, {"error": "unknown patient"})
            return json_response(200, self.settings_answer(pid))
        if path.startswith("/api/patients/") and path.endswith("/info"):
            pid = unquote(path.removeprefix("/api/patients/").removesuffix("/info"))
            if pid not in self.patients:
                return json_response(404, {"error": "unknown patient"})
            return json_response(200, self.info_answer(pid))
        if path.startswith("/api/patients/") and path.endswith("/beats"):
            bed = self.patients.get(unquote(path.removeprefix("/api/patients/").removesuffix("/beats")))
            if bed is None:
                return json_response(404, {"error": "unknown patient"})
            seconds = float(query.get("seconds", ["600"])[0])
            beats = [{k: v for k, v in b.items() if k not in ("type", "patient_id")} for b in bed.sent_beats]
            newest = beats[-1]["t_s"] if beats else 0.0
            return json_response(200, {"patient_id": bed.pid,
                                       "beats": [b for b in beats if b["t_s"] >= newest - seconds]})
        if path.startswith("/api/alerts/") and path.endswith("/strip"):
            return self.strip(unquote(path.removeprefix("/api/alerts/").removesuffix("/strip")))
        if path.startswith("/api/patients/"):
            p = self.patients.get(unquote(path.removeprefix("/api/patients/")))
            if p is None:
                return json_response(404, {"error": "unknown patient"})
            st = self.state_frame(p)
            recent = [{k: v for k, v in b.items() if k != "type"} for b in list(p.sent_beats)[-20:]]
            body = {k: v for k, v in st.items() if k != "type"}
            return json_response(200, {**body, "recent_beats": recent})
        if path == "/api/alerts":
            pid = query.get("patient", [None])[0]
            count = int(query.get("count", ["100"])[0])
            rows = [a for a in self.alerts if pid is None
                    or (a["patient_id"] == pid and a["alert_id"] not in self.archived_alerts)][-count:]
            return json_response(200, {"alerts": rows})
        if path == "/api/discharges":
            raw = query.get("count", ["50"])[0]
            if not raw.isdigit() or not 1 <= int(raw) <= 500:
                problem = {"loc": ["query", "count"], "msg": "Input should be 1-500", "type": "int_range"}
                return json_response(422, {"detail": [problem]})
            return json_response(200, {"discharges": list(self.discharges)[: int(raw)]})
        if path.startswith("/api/discharges/"):
            return self.discharged_stay(unquote(path.removeprefix("/api/discharges/")))
        return json_response(404, {"detail": f"no route {path}"})

    def discharged_stay(self, request_id: str) -> Response:
        """One discharge's archive, as the gateway's: the row, the stay's alerts, its limit changes."""
        row = next((d for d in self.discharges if d["request_id"] == request_id), None)
        stay = self.stays.get(request_id)
        if row is None or stay is None:
            return json_response(404, {"error": "no archive of this discharge: unknown, or older than "
                                                "ECGMON_ARCHIVE_DAYS"})
        return json_response(200, {**row, **stay})

    def strip(self, alert_id: str) -> Response:
        """10 s before to 5 s after an onset, cut from the last minute of trace, as the gateway's."""
        a = next((a for a in self.alerts if a["alert_id"] == alert_id and a["phase"] == "onset"), None)
        p = self.patients.get(a["patient_id"]) if a else None
        t = a["t_s"] if a else 0.0
        run = [(k, v) for k, v in (p.wave if p else []) if t - 10 <= k / FS_HZ < t + 5]
        if a is None or p is None or not run or t + 5 > p.sent_k / FS_HZ:
            return json_response(404, {"error": "no strip recorded for this alert (the fake keeps 60 s)"})
        k0 = run[0][0]
        return json_response(200, {
            **{k: a[k] for k in ("alert_id", "alarm_id", "patient_id", "alarm_type", "priority",
                                 "technical", "message", "onset_t_s")},
            "alert_t_s": t, "window_t_s": [t - 10, t + 5], "lead": "MLII", "fs_hz": FS_HZ,
            "first_sample_index": k0, "t_s": k0 / FS_HZ, "mv": [round(v, 3) for _, v in run],
            "beats": [{"t_s": b["t_s"], "class": b["class"]} for b in p.sent_beats
                      if t - 10 <= b["t_s"] < t + 5],
            "complete": len(run) >= 15 * FS_HZ - 1,
        })

    def static(self, path: str) -> Response:
        rel = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/").lstrip("/")
        target = (self.web_dir / unquote(rel)).resolve()
        if not target.is_relative_to(self.web_dir.resolve()) or not target.is_file():
            return json_response(404, {"detail": "not found"})
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix == ".js":
            ctype = "text/javascript"
        return raw_response(200, target.read_bytes(), f"{ctype}; charset=utf-8", cache="no-cache")

    # -- HTTP POST (front end) --
    def handle_post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        if self.token and headers.get("authorization", "") != f"Bearer {self.token}":
            return 401, {"detail": "missing or bad bearer token"}
        if path.startswith("/api/alarms/") and path.endswith("/ack"):
            alarm_id = unquote(path[len("/api/alarms/") : -len("/ack")])
            user = str(json.loads(body or b"{}").get("user") or "?")
            return 200, self.ack(alarm_id, user)
        if path.startswith("/api/patients/") and path.endswith("/alarm-settings"):
            return self.post_settings(unquote(path[len("/api/patients/") : -len("/alarm-settings")]), body)
        if path.startswith("/api/patients/") and path.endswith("/info"):
            return self.post_info(unquote(path[len("/api/patients/") : -len("/info")]), body)
        if path.startswith("/api/patients/") and path.endswith("/discharge"):
            return self.post_discharge(unquote(path[len("/api/patients/") : -len("/discharge")]), body)
        if path == "/api/_fake/discharge":
            self.refuse_discharge = bool(json.loads(body or b"{}").get("refuse"))
            return 200, {"refuse": self.refuse_discharge}
        if path == "/api/_fake/readmit":
            return self.readmit(str(json.loads(body or b"{}").get("patient", "")))
        if path == "/api/_fake/expire-archive":
            request_id = str(json.loads(body or b"{}").get("request_id", ""))
            if self.stays.pop(request_id, None) is None:
                return 404, {"error": f"no archive of {request_id!r}"}
            return 200, {"request_id": request_id, "expired": True}
        if path == "/api/_fake/websocket":
            return self.set_refuse(body)
        if path == "/api/_fake/feed":
            return self.set_feed(body)
        if path == "/api/_fake/alarm-settings":
            return self.set_refuse_settings(body)
        if path == "/api/analyze":
            return analyze(headers.get("content-type", ""), body)
        return 404, {"detail": f"no route {path}"}


def raw_response(status: int, body: bytes, ctype: str, cache: str = "no-store") -> Response:
    headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", cache)])
    return Response(status, HTTPStatus(status).phrase, headers, body)


def json_response(status: int, obj: Any) -> Response:
    return raw_response(status, json.dumps(obj).encode(), "application/json")


# ---- POST /api/analyze: a plausible answer built from the uploaded CSV ---------------------------


def analyze(content_type: str, body: bytes) -> tuple[int, dict[str, Any]]:
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, str] = {}
    files: list[tuple[str, bytes]] = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename:
            files.append((filename, payload))
        elif name:
            fields[str(name)] = payload.decode(errors="replace")
    if not files:
        return 422, {"detail": "no files"}
    csv = next((data for name, data in files if name.lower().endswith((".csv", ".txt"))), None)
    fs = float(fields.get("fs_hz") or 360.0)
    if csv is not None:
        lines = csv.decode(errors="replace").strip().splitlines()
        lead_names = [c.strip() for c in lines[0].split(",")]
        sig = []
        for line in lines[1:]:
            with contextlib.suppress(ValueError, IndexError):
                sig.append(float(line.split(",")[0]))
    else:  # a WFDB upload: no decoder here, so synthesise 30 s
        lead_names = ["MLII", "V5"]
        p = Patient("upload", Scenario(75, "pac"), random.Random(3))
        p.schedule(30.0)
        sig = [p.value(i / fs) for i in range(int(30 * fs))]
    beats = detect_peaks(sig, fs)
    counts: dict[str, int] = {}
    for b in beats:
        counts[b["class"]] = counts.get(b["class"], 0) + 1
    rr = [b["t_s"] - a["t_s"] for a, b in zip(beats, beats[1:], strict=False)]
    hr = 60.0 / (sum(rr) / len(rr)) if rr else None
    first_v = next((b for b in beats if b["class"] == "V"), None)
    alarms = []
    if first_v is not None:
        t = first_v["t_s"]
        alarms = [
            {
                "alarm_type": "ventricular_couplet",
                "priority": "low",
                "phase": phase,
                "technical": False,
                "onset_t_s": t,
                "t_s": t + dt,
                "heart_rate_bpm": hr,
                "message": "Premature ventricular beats",
            }
            for phase, dt in (("onset", 0.0), ("end", 8.0))
        ]
    step = max(1, round(fs / 125))
    return 200, {
        "fs_hz": fs,
        "n_samples": len(sig),
        "lead_names": lead_names,
        "beats": beats,
        "alarms": alarms,
        "summary": {"heart_rate_bpm": hr, "counts": counts},
        "signal_preview": {"fs_hz": fs / step, "mv": [sig[: int(20 * fs) : step]]},
    }


def detect_peaks(sig: list[float], fs: float) -> list[dict[str, Any]]:
    """Local maxima above 60% of the range, at least 0.3 s apart; every fifth one called V."""
    if not sig:
        return []
    lo, hi = min(sig), max(sig)
    thr = lo + 0.6 * (hi - lo)
    out: list[dict[str, Any]] = []
    last = -fs
    for i in range(1, len(sig) - 1):
        if sig[i] > thr and sig[i] >= sig[i - 1] and sig[i] > sig[i + 1] and i - last > 0.3 * fs:
            cls = "V" if len(out) % 5 == 4 else "N"
            out.append({"sample_index": i, "t_s": round(i / fs, 4), "class": cls, "confidence": 0.9})
            last = i
    return out


# ---- the TCP front end --------------------------------------------------------------------------


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.close()


async def front(
    gw: FakeGateway, inner_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        first = await reader.readline()
    except ConnectionError:
        writer.close()
        return
    if first.startswith(b"POST "):
        await answer_post(gw, first, reader, writer)
        return
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", inner_port)
    except OSError:
        writer.close()
        return
    up_writer.write(first)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def answer_post(
    gw: FakeGateway, first: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    path = first.split()[1].decode()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    try:
        status, obj = gw.handle_post(urlsplit(path).path, headers, body)
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        status, obj = 400, {"detail": f"bad request: {exc}"}
    data = json.dumps(obj).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + data)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def main_async(args: argparse.Namespace) -> None:
    gw = FakeGateway(args.token, Path(args.web_dir), args.patients, alarms=not args.no_alarms)
    async with serve(gw.handler, "127.0.0.1", 0, process_request=gw.process_request) as inner:
        inner_port = inner.sockets[0].getsockname()[1]
        outer = await asyncio.start_server(lambda r, w: front(gw, inner_port, r, w), args.host, args.port)
        port = outer.sockets[0].getsockname()[1]  # the real one when --port 0
        logger.info("fake gateway on http://%s:%d/ (token %r)", args.host, port, args.token)
        sim = asyncio.create_task(gw.run_sim())
        try:
            async with outer:
                if args.duration > 0:
                    await asyncio.sleep(args.duration)
                else:
                    await outer.serve_forever()
        finally:
            sim.cancel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765, help="0 = any free port (logged)")
    ap.add_argument("--token", default="demo", help="bearer token the dashboard must send ('' = no auth)")
    ap.add_argument("--web-dir", default=str(WEB_DIR))
    ap.add_argument("--patients", type=int, default=10, help="number of beds (10 scripted, the rest sinus)")
    ap.add_argument("--no-alarms", action="store_true", help="leave the scripted alarms out")
    ap.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0 = run forever)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
