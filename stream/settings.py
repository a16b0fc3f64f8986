"""The one settings object, built once in ``main()`` from flags and ``ECGMON_*`` variables.

Every field declares its environment variable and help text in one place
(:func:`_f`).  A subcommand exposes the fields it uses as flags with
:func:`add_flags`; :func:`load` merges flag > environment > default and
validates.  Nothing here reads ``os.environ`` at import time.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.errors import ConfigError
from stream.schemas import ALARM_LIMIT_RANGES, MIN_HR_GAP_BPM, OPTIONAL_ALARM_TYPES

ENV_PREFIX = "ECGMON_"
# the deployment's alarm defaults: flags of every command that runs the detector or the gateway
ALARM_FLAGS = ("alarm_hr_low_bpm", "alarm_hr_high_bpm", "alarm_pause_s", "alarms_off")
_REPO_DIR = Path(__file__).resolve().parents[1]


def _f(default: Any, help: str, *, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ecgmon"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of ecgmon.  Flag ``--foo-bar`` <-> env ``ECGMON_FOO_BAR`` <-> field ``foo_bar``."""

    # services
    kafka_bootstrap: str | None = _f(
        None, "Kafka bootstrap servers host:port[,host:port]; unset = start a local broker"
    )
    redis_url: str | None = _f(None, "Redis URL (redis://host:port/db); unset = start a local one")
    redis_prefix: str = _f("ecgmon", "prefix of every Redis key the alert store writes")
    redis_maxlen: int = _f(100_000, "alerts kept per Redis stream (all patients, and each patient)")
    archive_days: float = _f(
        90.0, "days a discharged patient's archived stay (its alerts, limit changes, the record) "
        "stays readable in Redis (GET /api/discharges/{request_id})")
    kafka_idempotence: bool = _f(
        True, "idempotent Kafka producer (Apache Kafka; off for the bundled memory broker)"
    )
    topic_prefix: str = _f("ecgmon", "prefix of every Kafka topic name")
    partitions: int = _f(
        6, "partitions per topic when ecgmon creates topics (the unit of scale-out: at most this "
        "many detect processes share a topic; BENCHMARKS.md sizes a real cluster)")
    replication_factor: int = _f(1, "replication factor when ecgmon creates topics")
    retention_s: float = _f(
        6 * 3600.0, "retention of topics ecgmon creates, seconds (a looping demo never ends)"
    )
    fetch_max_wait_ms: int = _f(
        50, "consumer fetch wait when no records are there (ms): short enough for latency, "
        "long enough not to poll the broker needlessly (aiokafka default 500)")
    linger_ms: int = _f(5, "producer batching delay in ms")
    poll_interval_ms: int = _f(
        0, "least time between two polls of a detector: fewer, larger batches (less broker "
        "and per-batch CPU at hundreds of patients) for at most this much more latency"
    )
    batch_bytes: int = _f(
        512 * 1024, "producer batch size per partition in bytes (bigger = more throughput)"
    )
    connect_attempts: int = _f(5, "attempts to reach Kafka before giving up")
    connect_backoff_s: float = _f(0.5, "first retry delay when connecting, doubled each attempt")
    # data
    data_dir: Path | None = _f(
        None, "folder with WFDB records (e.g. ../shared/data/mitdb); unset = PhysioNet cache"
    )
    cache_dir: Path = field(
        default_factory=_default_cache_dir,
        metadata={"help": "download cache for PhysioNet records", "choices": None},
    )
    physionet_db: str = _f("mitdb", "PhysioNet database to download records from")
    # replay
    records: str = _f(
        "100,105,119,203,207,208,210,233", "comma-separated record names to replay"
    )
    speed: str = _f("1", "pacing: 1 = real time, N = N times real time, max = as fast as possible")
    chunk_s: float = _f(0.25, "seconds of signal per message")
    start_s: float = _f(0.0, "start offset into each record, seconds")
    loop: bool = _f(False, "start a record again when it ends")
    patients: int = _f(0, "virtual patients (0 = one per record; more = records reused)")
    stagger_s: float = _f(137.0, "offset between virtual patients that share a record, seconds")
    duration_s: float = _f(0.0, "seconds of each record to replay (0 = to its end)")
    progress_s: float = _f(5.0, "seconds between progress reports (0 = none)")
    # observability
    log_level: str = _f(
        "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    log_format: str = _f("json", "log line format", choices=("json", "text"))
    metrics_port: int = _f(0, "port of the Prometheus /metrics endpoint (0 = none)")
    metrics_host: str = _f(
        "127.0.0.1", "address /metrics listens on (0.0.0.0 in a container, for Prometheus)"
    )
    # classifier
    model: str = _f(
        "cnn", "beat classifier: a model name in detector/models (cnn, resnet, inception, lstm, mlp) "
        "or a path to an .onnx file; one whose model card records missed VF episodes in the DS1 "
        "alarm check logs a warning when loaded"
    )
    # alarms: the defaults of every patient (a nurse changes one patient's in the dashboard)
    alarm_hr_low_bpm: float = _f(
        40.0, "low heart-rate limit of every patient (the extreme bradycardia alarm), bpm, 15-120")
    alarm_hr_high_bpm: float = _f(
        140.0, "high heart-rate limit of every patient (the extreme tachycardia alarm), bpm, "
        "60-300 and at least 10 above the low limit")
    alarm_pause_s: float = _f(2.0, "pause limit of every patient: an RR longer than this, s, 1.5-3.5")
    alarms_off: str = _f(
        "", "comma-separated optional alarms off for every patient (atrial_fibrillation, bigeminy, "
        "trigeminy, ventricular_couplet, ventricular_run, pause); the others cannot be switched off")
    # gateway
    http_host: str = _f("127.0.0.1", "address the gateway listens on")
    http_port: int = _f(8080, "port of the gateway (dashboard, REST, WebSocket)")
    auth_token: str | None = _f(
        None, "bearer token clients of the gateway must send (REST header, WebSocket ?token=)"
    )
    dev_no_auth: bool = _f(False, "development only: run the gateway without a token")
    web_dir: Path = _f(_REPO_DIR / "dashboards" / "web", "folder of the web dashboard's files")
    upload_max_bytes: int = _f(50 * 1024 * 1024, "largest /api/analyze upload in bytes")
    analyze_timeout_s: float = _f(60.0, "time limit of one /api/analyze run, seconds")
    ws_queue_size: int = _f(256, "frames queued per WebSocket client before waveform is dropped")
    waveform_history_s: float = _f(
        20.0, "seconds of each patient's trace the gateway keeps and sends to a client when it "
        "subscribes, so a strip opened later is full at once (0 = none)")
    cors_origins: str = _f("", "comma-separated origins allowed by CORS (empty = same origin)")
    no_data_alarm_s: float = _f(
        15.0, "seconds without chunks from a patient's bedside monitor before the gateway raises "
        "a technical no_data alarm (0 = none)")

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``topic("samples") -> "ecgmon.samples"``."""
        return f"{self.topic_prefix}.{name}"

    @property
    def speed_factor(self) -> float | None:
        """Pacing factor (1.0 = real time), or None for as fast as possible."""
        return None if self.speed == "max" else float(self.speed)

    @property
    def record_list(self) -> list[str]:
        return [r.strip() for r in self.records.split(",") if r.strip()]

    @property
    def alarms_off_list(self) -> list[str]:
        return [a.strip() for a in self.alarms_off.split(",") if a.strip()]


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def to_env(s: Settings) -> dict[str, str]:
    """The settings as ``ECGMON_*`` variables, e.g. for a child process; unset fields are left out."""
    out: dict[str, str] = {}
    for name in _fields():
        value = getattr(s, name)
        if value is None:
            continue
        out[env_name(name)] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(Settings)}


def _base_type(annotation: Any) -> type:
    hint = typing.get_type_hints(Settings)[annotation] if isinstance(annotation, str) else annotation
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.cast(type, hint)


def _convert(name: str, raw: str, source: str) -> Any:
    kind = _base_type(name)
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        return kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}: cannot read {raw!r} as {kind.__name__} ({exc})") from None


def add_flags(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Add ``--flag`` options for the named settings; help names the env var and default."""
    fields = _fields()
    for name in names:
        f = fields[name]
        factory: Any = f.default_factory
        default: Any = factory() if f.default is dataclasses.MISSING else f.default
        kind = _base_type(name)
        flag = "--" + name.replace("_", "-")
        meta = f.metadata
        shown = "unset" if default is None else default
        help_text = f"{meta['help']} [env {env_name(name)}; default {shown}]"
        if kind is bool:
            parser.add_argument(
                flag, dest=name, default=None, action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        else:
            parser.add_argument(
                flag, dest=name, default=None, metavar=name.upper(), choices=meta["choices"],
                help=help_text,
            )


def load(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings: explicit overrides > flags > ``ECGMON_*`` env > defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, f in _fields().items():
        raw_env = env.get(env_name(name))
        if raw_env is not None and raw_env != "":
            values[name] = _convert(name, raw_env, env_name(name))
        flag_value = getattr(args, name, None) if args is not None else None
        if flag_value is not None:
            if isinstance(flag_value, str):
                flag = "--" + name.replace("_", "-")
                flag_value = _convert(name, flag_value, f"{flag} (env {env_name(name)})")
            values[name] = flag_value
        choices = f.metadata["choices"]
        if choices and name in values and values[name] not in choices:
            raise ConfigError(f"{env_name(name)}={values[name]!r}: choose one of {choices}")
    values.update(overrides)
    settings = Settings(**values)
    validate(settings)
    return settings


def _require(ok: bool, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r}: {rule} ({env_name(name)} / --{name.replace('_', '-')})")


def validate(s: Settings) -> None:
    """Reject impossible combinations with a message that says what to change."""
    for name in ("partitions", "replication_factor", "connect_attempts", "batch_bytes", "retention_s"):
        _require(getattr(s, name) >= 1, name, getattr(s, name), "need at least 1")
    for name in ("fetch_max_wait_ms", "linger_ms", "patients"):
        _require(getattr(s, name) >= 0, name, getattr(s, name), "must be >= 0")
    for name in ("start_s", "stagger_s", "duration_s", "progress_s", "connect_backoff_s"):
        value = getattr(s, name)
        _require(math.isfinite(value) and value >= 0, name, value, "must be a finite number >= 0")
    _require(
        math.isfinite(s.chunk_s) and 0 < s.chunk_s <= 60, "chunk_s", s.chunk_s,
        "choose 0 < chunk_s <= 60",
    )
    for name in ("upload_max_bytes", "ws_queue_size"):
        _require(getattr(s, name) >= 1, name, getattr(s, name), "need at least 1")
    _require(math.isfinite(s.waveform_history_s) and 0 <= s.waveform_history_s <= 600,
             "waveform_history_s", s.waveform_history_s, "choose 0 <= waveform_history_s <= 600")
    _require(1 <= s.archive_days <= 3650, "archive_days", s.archive_days, "choose 1-3650 days")
    _require(s.no_data_alarm_s == 0 or 3 <= s.no_data_alarm_s <= 3600, "no_data_alarm_s",
             s.no_data_alarm_s, "choose 0 (none) or 3-3600 s")
    _require(math.isfinite(s.analyze_timeout_s) and s.analyze_timeout_s > 0, "analyze_timeout_s",
             s.analyze_timeout_s, "must be a finite number > 0")
    for name in ("metrics_port", "http_port"):
        value = getattr(s, name)
        _require(0 <= value <= 65535, name, value, "not a TCP port (0..65535)")
    if s.speed != "max":
        try:
            ok = math.isfinite(float(s.speed)) and float(s.speed) > 0
        except ValueError:
            ok = False
        _require(ok, "speed", s.speed, "use a positive number (1 = real time) or 'max'")
    _require(bool(s.record_list), "records", s.records, "name at least one record, e.g. 100,203")
    for name, (lo, hi) in ALARM_LIMIT_RANGES.items():
        value = getattr(s, f"alarm_{name}")
        _require(math.isfinite(value) and lo <= value <= hi, f"alarm_{name}", value, f"choose {lo:g}-{hi:g}")
    _require(s.alarm_hr_high_bpm - s.alarm_hr_low_bpm >= MIN_HR_GAP_BPM, "alarm_hr_high_bpm",
             s.alarm_hr_high_bpm, f"must be at least {MIN_HR_GAP_BPM:g} above alarm_hr_low_bpm "
             f"({s.alarm_hr_low_bpm:g})")
    unknown = [a for a in s.alarms_off_list if a not in OPTIONAL_ALARM_TYPES]
    _require(not unknown, "alarms_off", s.alarms_off,
             f"{', '.join(unknown)}: only these can be off: {', '.join(OPTIONAL_ALARM_TYPES)}")
    _require(bool(s.topic_prefix.strip()), "topic_prefix", s.topic_prefix, "must not be empty")
    if s.data_dir is not None and not s.data_dir.is_dir():
        raise ConfigError(
            f"data_dir={s.data_dir} is not a folder; point {env_name('data_dir')} or --data-dir "
            "at a folder of WFDB records, or unset it to download from PhysioNet"
        )
