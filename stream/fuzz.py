"""Mutation fuzzer of the wire decoder: ``python -m stream.fuzz --cases 100000``.

Valid payloads of every message kind are mutated (truncation, bit flips, byte
overwrites, inserted and deleted runs, random bytes, a swapped kind byte, a body
spliced onto another kind's header) and fed to :func:`stream.serde.decode` and
:func:`stream.serde.decode_as`.  The only exception allowed is
:class:`~stream.errors.DecodeError` with a reason from ``serde.REASONS``; a
payload that decodes must encode again.  Deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from stream import serde
from stream.errors import DecodeError
from stream.schemas import (
    AlarmPhase,
    AlarmPriority,
    AlarmSettings,
    Alert,
    Beat,
    BeatClass,
    DeadLetter,
    Discharge,
    Message,
    SampleChunk,
)

KINDS: tuple[type[Message], ...] = (SampleChunk, Beat, Alert, DeadLetter, AlarmSettings, Discharge)


def seeds() -> list[bytes]:
    """One valid encoded payload of each message kind (two chunk shapes)."""
    samples = (np.arange(180, dtype=np.int16).reshape(90, 2) * 7 - 300).astype(np.int16)
    chunk = SampleChunk("mitdb-203", "203", ("MLII", "V1"), 360.0, (200.0, 200.0), (1024, 1024),
                        7200, samples, 1_700_000_000_000_000_000)
    one = SampleChunk("p-1", "x", ("I",), 250.0, (1000.0,), (0,), 0,
                      np.zeros((1, 1), dtype=np.int16), 1)
    beat = Beat("mitdb-203", 7290, 360.0, BeatClass.V, 0.93, 0.71, 2, 1)
    alert = Alert("mitdb-203", "ventricular_tachycardia", AlarmPriority.HIGH, AlarmPhase.ONSET,
                  7000, 7290, 360.0, 160.0, "VT 5 beats at 160 bpm", 3, 1,
                  details=(("beats", "5"),))
    dead = DeadLetter("t.samples", 3, 42, b"mitdb-203", "truncated", "ends early", b"EG\x01", 4)
    settings = AlarmSettings("mitdb-203", "r-1", "nurse a", 5, 50.0, 130.0, 2.5,
                             ("atrial_fibrillation", "bigeminy"))
    discharge = Discharge("mitdb-203", "d-1", "nurse a", 6)
    return [serde.encode(m) for m in (chunk, one, beat, alert, dead, settings, discharge)]


def _truncate(rng: random.Random, b: bytes, _: list[bytes]) -> bytes:
    return b[: rng.randrange(len(b))]


def _flip_bits(rng: random.Random, b: bytes, _: list[bytes]) -> bytes:
    out = bytearray(b)
    for _i in range(rng.randint(1, 8)):
        pos = rng.randrange(len(out))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def _overwrite(rng: random.Random, b: bytes, _: list[bytes]) -> bytes:
    """Overwrite a run with 0x00, 0xFF or random bytes (hits length prefixes and floats)."""
    out = bytearray(b)
    pos, n = rng.randrange(len(out)), rng.randint(1, 8)
    fill = rng.choice((b"\x00", b"\xff", None))
    for i in range(pos, min(len(out), pos + n)):
        out[i] = rng.randrange(256) if fill is None else fill[0]
    return bytes(out)


def _insert_delete(rng: random.Random, b: bytes, _: list[bytes]) -> bytes:
    pos = rng.randrange(len(b))
    if rng.random() < 0.5:
        return b[:pos] + rng.randbytes(rng.randint(1, 16)) + b[pos:]
    return b[:pos] + b[pos + rng.randint(1, 16):]


def _random_bytes(rng: random.Random, b: bytes, _: list[bytes]) -> bytes:
    body = rng.randbytes(rng.randint(0, 256))
    return body if rng.random() < 0.5 else b[:4] + body  # random, or a valid header + noise


def _wrong_kind(rng: random.Random, b: bytes, _: list[bytes]) -> bytes:
    return b[:3] + bytes([rng.choice((0, 1, 2, 3, 4, 5, 6, 255))]) + b[4:]


def _splice(rng: random.Random, b: bytes, pool: list[bytes]) -> bytes:
    other = rng.choice(pool)
    return b[: rng.randrange(len(b))] + other[rng.randrange(len(other)):]


def _trailing(rng: random.Random, b: bytes, _: list[bytes]) -> bytes:
    return b + rng.randbytes(rng.randint(1, 8))


MUTATIONS: dict[str, Callable[[random.Random, bytes, list[bytes]], bytes]] = {
    "truncate": _truncate, "flip_bits": _flip_bits, "overwrite": _overwrite,
    "insert_delete": _insert_delete, "random_bytes": _random_bytes, "wrong_kind": _wrong_kind,
    "splice": _splice, "trailing": _trailing,
}


@dataclass
class FuzzReport:
    cases: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    decoded: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def cases_per_s(self) -> float:
        return self.cases / self.seconds if self.seconds > 0 else 0.0


def check(payload: bytes, report: FuzzReport, wanted: type[Message]) -> None:
    """Decode ``payload``; record anything but DecodeError (or a non-re-encodable success)."""
    started = time.perf_counter()
    try:
        message = serde.decode(payload)
        serde.decode_as(payload, wanted)  # type: ignore[type-var]
    except DecodeError as exc:
        if exc.reason not in serde.REASONS:
            report.failures.append(f"unknown reason {exc.reason!r} for {payload.hex()}")
        report.reasons[exc.reason] += 1
    except Exception as exc:  # noqa: BLE001 - the point of a fuzzer: catch and report anything
        report.failures.append(f"{type(exc).__name__}: {exc} for {payload[:512].hex()}")
    else:
        report.decoded += 1
        try:
            serde.encode(message)
        except Exception as exc:  # noqa: BLE001
            report.failures.append(f"decoded but not re-encodable ({exc}): {payload.hex()}")
    report.slowest_s = max(report.slowest_s, time.perf_counter() - started)


def run(cases: int, seed: int = 0, max_failures: int = 20) -> FuzzReport:
    rng = random.Random(seed)
    pool = seeds()
    names = sorted(MUTATIONS)
    report = FuzzReport()
    started = time.perf_counter()
    for _ in range(cases):
        payload = rng.choice(pool)
        for _step in range(rng.choice((1, 1, 1, 2, 3))):
            payload = MUTATIONS[rng.choice(names)](rng, payload, pool) or b"\x00"
        check(payload, report, rng.choice(KINDS))
        report.cases += 1
        if len(report.failures) >= max_failures:
            break
    report.seconds = time.perf_counter() - started
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.fuzz", description=__doc__)
    parser.add_argument("--cases", type=int, default=100_000, help="payloads to try")
    parser.add_argument("--seed", type=int, default=0, help="random seed (runs are repeatable)")
    args = parser.parse_args(argv)
    r = run(args.cases, args.seed)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.reasons.items()))
    sys.stdout.write(
        f"{r.cases} cases in {r.seconds:.1f} s ({r.cases_per_s:,.0f} cases/s), slowest "
        f"{r.slowest_s * 1e3:.2f} ms; decoded {r.decoded}; DecodeError reasons: {reasons}\n"
    )
    for failure in r.failures:
        sys.stdout.write(f"FAIL {failure}\n")
    return 1 if r.failures else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
