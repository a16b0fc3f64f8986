"""``ecgmon eval qrs``: stream records through the QRS detector and score it the AAMI EC57 way.

Delay: ``delay_s`` is data time from the R-peak sample to the sample after which
the detector emits the beat (``decided_at_sample``: what a sample-by-sample
feed sees); ``delay_with_chunking_s`` adds the wait for the end of the
``--update-s`` chunk.  Throughput counts lead-samples per CPU second spent in
``QrsDetector.update``.

Scoring: every reference beat annotation (:data:`detector.evaluation.BEAT_SYMBOLS`)
over the whole record, 150 ms match window, greedy nearest pairing like WFDB
``bxb``; beats of either side inside ventricular flutter/fibrillation episodes
(``[`` ... ``]``) are left out, as EC57 4.3 prescribes (only mitdb 207 has
them).  The gross figures without that exclusion are reported too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detector.core.qrs import QrsDetector
from detector.evaluation import Counts, Reference, drop_excluded, load_reference, score
from detector.training.data import require_records
from stream import settings as settings_mod
from stream.errors import ConfigError
from stream.settings import Settings

MATCH_WINDOW_S = 0.15
NK_METHOD = "pantompkins1985"


@dataclass(slots=True)
class RecordResult:
    """Scores of one record, for ecgmon and for the neurokit2 reference."""

    name: str
    counts: Counts
    counts_all: Counts
    delays_s: npt.NDArray[np.float64]  # R-peak to decision (the sample after which it is emitted)
    chunk_delays_s: npt.NDArray[np.float64]  # R-peak to the end of the chunk that returned it
    lead_samples: int
    cpu_s: float
    reference: Counts | None = None
    quality_s: dict[str, float] = field(default_factory=dict)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ecgmon eval qrs``."""
    parser = sub.add_parser(
        "qrs", help="R-peak detection: Se, +P, DER, delay and throughput (AAMI EC57)",
        description="Stream WFDB records through the QRS detector in chunks and score it against "
        "the reference beat annotations (EC57: 150 ms window, gross and per record).",
    )
    settings_mod.add_flags(parser, ["data_dir"])
    parser.add_argument("--records", default=None,
                        help="comma-separated record names [env ECGMON_RECORDS when set; "
                        "default: every annotated record of the folder's RECORDS file]")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--annotations-out", type=Path, default=None,
                        help="write WFDB annotation files <record>.qrs (readable by bxb) here")
    parser.add_argument("--update-s", type=float, default=1.0,
                        help="seconds of signal per detector update call [1.0]")
    parser.add_argument("--leads", default="all", help="'all' or comma-separated lead numbers [all]")
    parser.add_argument("--no-reference", action="store_true",
                        help=f"skip the neurokit2 {NK_METHOD} reference column")
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Evaluate, print the tables, write JSON and annotations; 0 on success."""
    data_dir = settings.data_dir
    if data_dir is None:
        raise ConfigError("eval qrs needs local records: pass --data-dir (or set ECGMON_DATA_DIR)")
    default_records = Settings.__dataclass_fields__["records"].default
    chosen = args.records or (settings.records if settings.records != default_records else None)
    names = _record_names(data_dir, chosen)
    if not 0 < args.update_s <= 600:
        raise ConfigError(f"--update-s {args.update_s}: choose 0 < seconds <= 600")
    results = []
    for k, name in enumerate(names, 1):
        res = evaluate_record(data_dir / name, args.update_s, _leads(args.leads),
                              reference=not args.no_reference, annotations_out=args.annotations_out)
        results.append(res)
        c = res.counts
        sys.stderr.write(f"[{k}/{len(names)}] {name}: Se {c.se:.4f} +P {c.ppv:.4f} "
                         f"(TP {c.tp} FN {c.fn} FP {c.fp})\n")
    summary = summarise(results)
    sys.stdout.write(format_table(results, summary))
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def _record_names(data_dir: Path, records: str | None) -> list[str]:
    if records:
        names = [r.strip() for r in records.split(",") if r.strip()]
        require_records(data_dir, names)  # named ones must all be there: say which are not
    elif (data_dir / "RECORDS").is_file():
        names = (data_dir / "RECORDS").read_text().split()
    else:
        names = sorted(p.stem for p in data_dir.glob("*.hea"))
    with_ref = [n for n in names if (data_dir / f"{n}.atr").is_file()]
    if not with_ref:
        raise ConfigError(f"no records with .atr reference annotations in {data_dir}")
    return with_ref


def _leads(raw: str) -> list[int] | None:
    return None if raw == "all" else [int(v) for v in raw.split(",")]


@dataclass(slots=True)
class Streamed:
    """What streaming one record produced."""

    peaks: npt.NDArray[np.int64]
    delays_s: npt.NDArray[np.float64]
    chunk_delays_s: npt.NDArray[np.float64]
    cpu_s: float
    quality_s: dict[str, float]


def stream_record(x: npt.NDArray[np.float64], fs_hz: float, chunk_s: float) -> Streamed:
    """Stream ``x`` through a fresh detector in ``chunk_s`` chunks, timing ``update`` only."""
    det = QrsDetector(fs_hz, x.shape[1])
    step = max(1, int(round(chunk_s * fs_hz)))
    peaks: list[int] = []
    delays: list[int] = []
    chunk_delays: list[int] = []
    quality: dict[str, float] = {}
    cpu = 0.0
    for start in range(0, x.shape[0], step):
        chunk = x[start : start + step]
        t0 = time.process_time()
        res = det.update(chunk)
        cpu += time.process_time() - t0
        for pk in res.peaks:
            peaks.append(pk.sample_index)
            delays.append(pk.decided_at_sample - pk.sample_index)
            chunk_delays.append(pk.emitted_at_sample - pk.sample_index)
        for ev in res.quality:
            if ev.end_sample is not None:
                quality[ev.kind] = quality.get(ev.kind, 0.0) + (ev.end_sample - ev.start_sample) / fs_hz
    for ev in det.flush().quality:
        assert ev.end_sample is not None
        quality[ev.kind] = quality.get(ev.kind, 0.0) + (ev.end_sample - ev.start_sample) / fs_hz
    return Streamed(
        np.array(peaks, dtype=np.int64), np.array(delays, dtype=np.float64) / fs_hz,
        np.array(chunk_delays, dtype=np.float64) / fs_hz, cpu, quality,
    )


def evaluate_record(
    path: Path, chunk_s: float, leads: list[int] | None, *, reference: bool,
    annotations_out: Path | None,
) -> RecordResult:
    """Stream one record, score it, optionally score neurokit2 and write annotations."""
    import wfdb

    rec = wfdb.rdrecord(str(path))
    x = np.asarray(rec.p_signal, dtype=np.float64)
    if leads is not None:
        x = x[:, leads]
    fs = float(rec.fs)
    ref = load_reference(path)
    st = stream_record(x, fs, chunk_s)
    peaks = st.peaks
    window = int(round(MATCH_WINDOW_S * fs))
    res = RecordResult(
        name=path.name, counts=_score_ec57(ref, peaks, window),
        counts_all=score(ref.beats, peaks, window), delays_s=st.delays_s,
        chunk_delays_s=st.chunk_delays_s, lead_samples=int(x.size), cpu_s=st.cpu_s,
        quality_s=st.quality_s,
    )
    if reference:
        res.reference = _score_ec57(ref, neurokit_peaks(x[:, 0], fs), window)
    if annotations_out is not None:
        annotations_out.mkdir(parents=True, exist_ok=True)
        wfdb.wrann(path.name, "qrs", peaks, symbol=["N"] * len(peaks), fs=fs,
                   write_dir=str(annotations_out))
    return res


def _score_ec57(ref: Reference, peaks: npt.NDArray[np.int64], window: int) -> Counts:
    return score(drop_excluded(ref.beats, ref.excluded), drop_excluded(peaks, ref.excluded), window)


def neurokit_peaks(x: npt.NDArray[np.float64], fs_hz: float) -> npt.NDArray[np.int64]:
    """Offline neurokit2 Pan-Tompkins peaks on one lead (the reference column)."""
    import neurokit2 as nk

    clean = nk.ecg_clean(x, sampling_rate=int(fs_hz), method=NK_METHOD)
    found = nk.ecg_findpeaks(clean, sampling_rate=int(fs_hz), method=NK_METHOD)
    return np.asarray(found["ECG_R_Peaks"], dtype=np.int64)


def snr_db(name: str) -> int | None:
    """SNR of an nstdb record name (``118e_6`` -> -6), else None."""
    m = re.fullmatch(r"\d+e(_?)(\d+)", name)
    if m is None:
        return None
    return -int(m.group(2)) if m.group(1) else int(m.group(2))


def summarise(results: list[RecordResult]) -> dict[str, Any]:
    """The JSON document (fractions 0-1)."""
    cpu = sum(r.cpu_s for r in results)
    out: dict[str, Any] = {
        "gross": Counts.total(r.counts for r in results).as_dict(),
        "records": {r.name: r.counts.as_dict() for r in results},
        "delay_s": _percentiles([r.delays_s for r in results]),
        "delay_with_chunking_s": _percentiles([r.chunk_delays_s for r in results]),
        "samples_per_s": sum(r.lead_samples for r in results) / cpu if cpu > 0 else 0.0,
        "gross_without_vf_exclusion": Counts.total(r.counts_all for r in results).as_dict(),
        "unreadable_s": _sum_quality(results),
    }
    refs = [r for r in results if r.reference is not None]
    if refs:
        out["reference"] = {
            "method": f"neurokit2 {NK_METHOD}, offline, lead 0",
            "gross": Counts.total(r.reference for r in refs if r.reference).as_dict(),
            "records": {r.name: r.reference.as_dict() for r in refs if r.reference},
        }
    by_snr = _by_snr(results)
    if by_snr:
        out["by_snr_db"] = by_snr
    return out


def _percentiles(parts: list[npt.NDArray[np.float64]]) -> dict[str, float]:
    d = np.concatenate(parts) if parts else np.zeros(0)
    if d.size == 0:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    return {"p50": float(np.percentile(d, 50)), "p99": float(np.percentile(d, 99)), "max": float(d.max())}


def _sum_quality(results: list[RecordResult]) -> dict[str, float]:
    total: dict[str, float] = {}
    for r in results:
        for kind, secs in r.quality_s.items():
            total[kind] = total.get(kind, 0.0) + secs
    return total


def _by_snr(results: list[RecordResult]) -> dict[str, dict[str, Any]]:
    groups: dict[int, list[RecordResult]] = {}
    for r in results:
        snr = snr_db(r.name)
        if snr is not None:
            groups.setdefault(snr, []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for snr in sorted(groups, reverse=True):
        rs = groups[snr]
        entry: dict[str, Any] = Counts.total(r.counts for r in rs).as_dict()
        if all(r.reference is not None for r in rs):
            entry["reference"] = Counts.total(r.reference for r in rs if r.reference).as_dict()
        out[str(snr)] = entry
    return out


def format_table(results: list[RecordResult], summary: dict[str, Any]) -> str:
    """Per-record table, gross line, delay, throughput, and the table by SNR if any."""
    lines = [f"{'record':>8} {'TP':>6} {'FN':>5} {'FP':>5} {'Se%':>7} {'+P%':>7} {'DER%':>6}"
             f" | {'nk Se%':>7} {'nk +P%':>7}"]
    for r in results:
        lines.append(_row(r.name, r.counts, r.reference))
    g = Counts.total(r.counts for r in results)
    gref = None
    if all(r.reference is not None for r in results) and results:
        gref = Counts.total(r.reference for r in results if r.reference)
    lines.append(_row("gross", g, gref))
    d, dc = summary["delay_s"], summary["delay_with_chunking_s"]
    lines.append(f"delay s (R-peak to decision): p50 {d['p50']:.3f}  p99 {d['p99']:.3f}  max {d['max']:.3f}; "
                 f"to end of chunk: p50 {dc['p50']:.3f}  p99 {dc['p99']:.3f}")
    lines.append(f"throughput {summary['samples_per_s'] / 1e6:.2f} M lead-samples/s per core (detector only)")
    if "by_snr_db" in summary:
        lines.append(f"\n{'SNR dB':>6} {'Se%':>7} {'+P%':>7} {'DER%':>6} | {'nk Se%':>7} {'nk +P%':>7}")
        for snr, e in summary["by_snr_db"].items():
            ref = e.get("reference")
            tail = f" | {100 * ref['se']:7.2f} {100 * ref['ppv']:7.2f}" if ref else ""
            lines.append(f"{snr:>6} {100 * e['se']:7.2f} {100 * e['ppv']:7.2f} {100 * e['der']:6.2f}{tail}")
    return "\n".join(lines) + "\n"


def _row(name: str, c: Counts, ref: Counts | None) -> str:
    tail = f" | {100 * ref.se:7.2f} {100 * ref.ppv:7.2f}" if ref is not None else ""
    return (f"{name:>8} {c.tp:6d} {c.fn:5d} {c.fp:5d} {100 * c.se:7.2f} {100 * c.ppv:7.2f}"
            f" {100 * c.der:6.2f}{tail}")
