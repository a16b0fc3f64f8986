"""Session 25 study: beat families, the patient's morphology clusters, vote on each beat's class.

Bedside arrhythmia monitors sort a patient's beats into families (templates) by shape and label a
family as a whole, so one odd-looking call in a family of sinus beats is outvoted.  ecgmon's
networks label each beat alone (with the patient's running template as a second channel).  This
study asks whether a causal family vote helps on DS1 CV:

- *Families* (:func:`assign_families`), per patient in time order: a beat joins the family whose
  centroid correlates best with its window (Pearson, over the window's core, the centroid shifted
  up to ``SHIFT`` samples either way for R-peak jitter) when that correlation is at least the
  threshold C; otherwise it starts a family (at most ``MAX_FAMILIES``; when full, the one seen
  least recently is replaced).  A centroid is the running mean of its members' windows (weight
  at least ``CENTROID_RATE`` so it follows slow drift).
- *Vote* (:func:`family_vote`): a beat's class probabilities become ``(1 - W) p + W m``, m the
  mean probabilities of the earlier beats of its family, once it has ``MIN_MEMBERS`` of them;
  beats of smaller families keep their own.  Causal, as a live monitor needs.  ``--vote v``
  blends the V probability alone and rescales the others to keep their ratios, so the N/S split
  the S rule reads is the network's own (session 25's follow-up: the first run's vote on every
  class lost S beats to their N families).

The networks' outputs are the saved held-out ones (``ecgmon train --cv-predictions DIR``); the
windows are the same beats' (the feature cache ``ecgmon train`` wrote, or the records again).
C and W are chosen with the epoch and the S rule without each fold
(:func:`detector.training.variant_study.nested_variant_estimate`; W = 0 first, so ties keep the
outputs as they are).  Families are formed from every detected beat; the vote reads the beats the
CV scored (a detection matched to no reference beat has no saved output).  The adoption rule is
in BENCHMARKS.md (session 25).  Usage::

    python -m detector.training.family_study --data-dir ../shared/data/mitdb A.npz [B.npz ...]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from detector.core.classifier import AAMI_CLASSES
from detector.training.cv import CVPredictions, folds_for
from detector.training.data import DS1, BeatSet, load_beats
from detector.training.variant_study import VariantEstimate, nested_variant_estimate
from stream.errors import EcgmonError
from stream.schemas import BeatClass

SHIFT = 2  # samples at 128 Hz either way (16 ms) the centroid may slide to meet the beat
MAX_FAMILIES = 16
CENTROID_RATE = 1.0 / 32.0
MIN_MEMBERS = 3
THRESHOLDS = (0.90, 0.95, 0.98)
WEIGHTS = (0.25, 0.5, 0.75)


def assign_families(windows: npt.NDArray[np.floating], threshold: float, *, shift: int = SHIFT,
                    max_families: int = MAX_FAMILIES) -> npt.NDArray[np.int64]:
    """The family (0, 1, ... in order of creation; a replaced slot starts a new number) of each of
    one patient's beats, ``windows`` (beats, samples) in time order (module docstring)."""
    n, length = windows.shape
    m = length - 2 * shift
    if m < 2:
        raise ValueError(f"windows of {length} samples are too short for a shift of {shift}")
    cents = np.zeros((max_families, length))
    counts = np.zeros(max_families, np.int64)
    last_seen = np.full(max_families, -1, np.int64)
    ids = np.full(max_families, -1, np.int64)
    out = np.empty(n, np.int64)
    next_id = 0
    for i in range(n):
        w = windows[i].astype(np.float64)
        x = w[shift: shift + m] - w[shift: shift + m].mean()
        x /= np.linalg.norm(x) + 1e-9
        best, best_corr = -1, -np.inf
        live = np.flatnonzero(counts)
        if len(live):
            segs = np.stack([cents[live, shift + d: shift + d + m] for d in range(-shift, shift + 1)], axis=1)
            segs = segs - segs.mean(axis=2, keepdims=True)
            corr = ((segs @ x) / (np.linalg.norm(segs, axis=2) + 1e-9)).max(axis=1)
            j = int(np.argmax(corr))
            best, best_corr = int(live[j]), float(corr[j])
        if best >= 0 and best_corr >= threshold:
            counts[best] += 1
            cents[best] += max(1.0 / counts[best], CENTROID_RATE) * (w - cents[best])
        else:  # a new family, in a free slot or the least recently seen one's
            best = int(np.argmin(np.where(counts > 0, last_seen, -2)))
            cents[best], counts[best], ids[best] = w, 1, next_id
            next_id += 1
        last_seen[best] = i
        out[i] = ids[best]
    return out


def family_vote(probs: npt.NDArray[np.floating], families: npt.NDArray[np.int64], weight: float,
                min_members: int = MIN_MEMBERS, only: int | None = None) -> npt.NDArray[np.float32]:
    """``probs`` (beats, classes) with each beat's row blended with the mean of its family's earlier
    rows (module docstring); ``families`` unique across patients, rows in time order per patient.
    ``only``: blend that class's column alone and rescale the others to keep their ratios (the
    ``--vote v`` variant)."""
    n = len(families)
    order = np.argsort(families, kind="stable")
    f, p = families[order], probs[order].astype(np.float64)
    cum = np.cumsum(p, axis=0)
    first = np.maximum.accumulate(np.where(np.r_[True, f[1:] != f[:-1]], np.arange(n), 0))
    earlier = (cum - p) - (cum[first] - p[first])  # sum of the family's rows before each one
    count = (np.arange(n) - first)[:, None]
    mean = earlier / np.maximum(count, 1)
    voted = np.where(count >= min_members, (1.0 - weight) * p + weight * mean, p)
    if only is not None:
        col = voted[:, only]
        rest = np.clip(1.0 - p[:, only], 1e-12, None)
        voted = p * ((1.0 - col) / rest)[:, None]
        voted[:, only] = col
    out = np.empty_like(voted)
    out[order] = voted
    return out.astype(np.float32)


def cv_families(cv: CVPredictions, clean: BeatSet, noisy: BeatSet | None,
                thresholds: tuple[float, ...] = THRESHOLDS) -> dict[float, npt.NDArray[np.int64]]:
    """Family of each of ``cv``'s rows for each threshold, from the windows of the beats the CV held
    out (``clean`` and ``noisy``: every detected beat of the DS1 records and of their held-out noisy
    copies, as ``ecgmon train`` extracts them); ``ValueError`` unless those beats, put in the CV's
    order, carry the saved labels and RR features."""
    copies = [clean] if noisy is None else [clean, noisy]
    per_copy = []  # (families per threshold, record) per copy and record, all detected beats
    offset = 0
    for c, beats in enumerate(copies):
        for rec in dict.fromkeys(beats.record.tolist()):
            sel = beats.record == rec
            fams = {t: assign_families(beats.features.beats[sel, 0], t) + offset for t in thresholds}
            offset += max(int(max(f.max() for f in fams.values())) + 1, 0)
            per_copy.append((c, rec, sel, fams))
    rows: dict[float, list[npt.NDArray[np.int64]]] = {t: [] for t in thresholds}
    labels, rrs = [], []
    folds = folds_for(list(dict.fromkeys(clean.record.tolist())), len(np.unique(cv.fold)))
    for fold in folds:
        for c, beats in enumerate(copies):
            for cc, rec, sel, fams in per_copy:
                if cc != c or rec not in fold:
                    continue
                scored = beats.label[sel] >= 0
                labels.append(beats.label[sel][scored])
                rrs.append(beats.features.rr[sel][scored])
                for t in thresholds:
                    rows[t].append(fams[t][scored])
    label, rr = np.concatenate(labels), np.concatenate(rrs)
    if label.shape != cv.label.shape or not np.array_equal(label, cv.label) or not np.array_equal(rr, cv.rr):
        raise ValueError("the beats found are not the ones the CV held out (other records, folds, "
                         "noise copies or feature code than the run's)")
    return {t: np.concatenate(rows[t]) for t in thresholds}


def voted(cv: CVPredictions, families: npt.NDArray[np.int64], weight: float,
          only: int | None = None) -> CVPredictions:
    """``cv`` with every epoch's probabilities put through :func:`family_vote`."""
    return replace(cv, per_epoch=[family_vote(p, families, weight, only=only) for p in cv.per_epoch])


def nested_estimate(cv: CVPredictions, families: dict[float, npt.NDArray[np.int64]],
                    weights: tuple[float, ...] = WEIGHTS, only: int | None = None) -> VariantEstimate:
    """(C, W), the epoch and the S rule chosen without each fold; (0, 0) is no vote."""
    variants = [((0.0, 0.0), cv)] + [((t, w), voted(cv, f, w, only)) for t, f in families.items()
                                     for w in weights]
    return nested_variant_estimate(variants)


def _held_out_beats(data_dir: Path, cache: Path, noise_dir: Path | None,
                    with_noise: bool) -> tuple[BeatSet, BeatSet | None]:
    """Every detected beat of the DS1 records and, ``with_noise``, of their held-out noisy copies
    (the feature cache ``ecgmon train`` wrote, or the records again)."""
    clean, _ = load_beats(data_dir, list(DS1), "auto", cache)
    if not with_noise:
        return clean, None
    from detector.training.noise import load_noise, load_noisy_beats

    noise = load_noise(noise_dir or data_dir.resolve().parent / "nstdb")
    return clean, load_noisy_beats(data_dir, noise, list(DS1), held_out=True, cache_dir=cache)


def main(argv: list[str] | None = None) -> int:
    from stream import settings as settings_mod

    parser = argparse.ArgumentParser(
        prog="python -m detector.training.family_study",
        description="Nested DS1 CV estimate of a causal beat-family vote (morphology clusters per patient; "
        "a beat's probabilities blended with its family's earlier beats'), the correlation threshold and "
        "the vote's weight chosen with the epoch and the S rule without each fold, against no vote "
        "(training's selection), on outputs `ecgmon train --cv-predictions DIR` saved.")
    parser.add_argument("predictions", type=Path, nargs="+", help="<family>_cv.npz files")
    parser.add_argument("--noise-dir", type=Path, default=None,
                        help="nstdb folder of the run's held-out noisy copies "
                        "(default: nstdb beside --data-dir)")
    parser.add_argument("--vote", choices=("all", "v"), default="all",
                        help="what the family votes on: every class's probability, or the V probability "
                        "alone, the others rescaled to keep their ratios (the S rule's N/S split unchanged; "
                        "a follow-up of session 25's first run) [default all]")
    settings_mod.add_flags(parser, ["data_dir", "cache_dir"])
    args = parser.parse_args(argv)
    try:
        settings = settings_mod.load(args)
    except EcgmonError as exc:
        parser.error(str(exc))
    if settings.data_dir is None:
        parser.error("--data-dir (ECGMON_DATA_DIR): the MIT-BIH folder the run was trained on")
    cvs = [(path, CVPredictions.load_argument(parser, path)) for path in args.predictions]
    try:
        clean, noisy = _held_out_beats(settings.data_dir, settings.cache_dir / "beats", args.noise_dir,
                                       any(cv.noisy.any() for _, cv in cvs))
    except EcgmonError as exc:  # a record or the noise missing: say which, as `ecgmon train` does
        parser.error(str(exc))
    for path, cv in cvs:
        try:
            fams = cv_families(cv, clean, noisy if cv.noisy.any() else None)
        except ValueError as exc:
            parser.error(f"{path}: {exc}")
        print(f"{path}:")  # noqa: T201 - the study's output
        print(nested_variant_estimate([((0.0, 0.0), cv)]).summary(  # noqa: T201
            "no vote (training's selection)", "(C, W)"))
        only = None if args.vote == "all" else AAMI_CLASSES.index(BeatClass.V)
        print(nested_estimate(cv, fams, only=only).summary(  # noqa: T201
            f"vote on {args.vote}, C from {list(THRESHOLDS)}, W from {list(WEIGHTS)}", "(C, W)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
