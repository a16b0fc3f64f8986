"""Model cards: the JSON card and its Markdown rendering (torch-free, so the runtime's
``python -m detector.bench_models --record`` can update them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_card(path_json: Path, card: dict[str, Any]) -> None:
    """Write the model card as JSON and as Markdown beside it."""
    path_json.write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    path_json.with_suffix(".md").write_text(card_markdown(card))


def card_markdown(card: dict[str, Any]) -> str:
    lines = [f"# Beat model `{card['name']}` ({card['family']})", "", card.get("summary", ""), ""]
    data = card["data"]
    lines += [
        "## Data", "",
        f"- Database: {data['database']}; R-peaks: {data['peak_source']}; lead(s): {data['leads']}",
        f"- Training patients (all of DS1): {', '.join(data['train_records'])}",
        f"- Cross-validation folds (DS1 patients held out together; epoch count, S rule, offsets and "
        f"model selection): {' | '.join(', '.join(f) for f in data['cv_folds'])}",
        f"- Test patients (DS2, never used for training or selection): {', '.join(data['test_records'])}",
        f"- Paced records excluded: {', '.join(data['excluded_records'])}",
        f"- Training beats per class: {data['train_beats_per_class']}",
        *([f"- Noise stress: {data['noise']['method']} ({data['noise']['database']})"]
          if "noise" in data else []),
        "",
        "## Model", "",
        f"- Parameters: {card['n_params']}; ONNX: {card['onnx_bytes']} bytes, sha256 `{card['onnx_sha256']}`",
        *([f"- ONNX graph rewritten after training ({card['onnx_lift']['date']}, "
           f"`{card['onnx_lift']['command']}`): its 1-D convolutions and pools as 2-D ones, the same "
           f"weights, outputs equal to float rounding; sha256 as trained "
           f"`{card['onnx_lift']['sha256_before']}`"
           + (f". {card['onnx_lift']['check']}" if "check" in card["onnx_lift"] else "")]
          if "onnx_lift" in card else []),
        f"- Inference: {card['us_per_beat_batch64_1thread']:.1f} us/beat (batch 64, 1 onnxruntime thread)"
        + _inference_check(card.get("inference_check")),
        f"- Training: {card['training_seconds']:.0f} s on CPU for the final model ({card['epochs_trained']} "
        f"epochs), {card['training_with_cv_seconds']:.0f} s with the cross-validation",
        f"- Detector code (sha256 over detector/core/*.py) when scored: `{card.get('detector_sha256', '?')}`",
        f"- Hyper-parameters: `{json.dumps(card['hyperparameters'])}`",
        "",
    ]
    lines += _cv_lines(card["cv"], "ds2_auroc" in card)
    if "ds1_vf_alarm_check" in card:
        vf = card["ds1_vf_alarm_check"]
        lines += [f"DS1 alarm check (default-model safety rule): with detected beats and this model, "
                  f"{vf['vf_detected']} of {vf['vf_episodes']} ventricular fibrillation episodes of "
                  f"{vf['records']} raised an alarm ({vf['date']}; `{vf['command']}`).", ""]
    if "ds2_looks" in card:
        lines += [f"DS2 looked at: {card['ds2_looks']}", ""]
    if "ds2" in card and "classes" in card["ds2"]:
        ds2 = card["ds2"]
        lines += ["## DS2 (inter-patient test, our detector, 150 ms matching, bxb counting)", "",
                  "| class | Se | +P | F1 |", "|---|---|---|---|"]
        for c, m in ds2["classes"].items():
            lines.append(f"| {c} | {100 * m['se']:.1f} | {100 * m['ppv']:.1f} | {100 * m['f1']:.1f} |")
        lines += ["", *_ec57_lines(ds2), f"Accuracy on matched beats: {100 * ds2['accuracy']:.2f} %; "
                  f"missed beats {ds2['missed_beats']}, extra beats {ds2['extra_beats']}.", ""]
        lines += ["Confusion (rows reference, columns ecgmon): " + ", ".join(ds2["labels"]), "", "```"]
        lines += [" ".join(f"{v:6d}" for v in row) for row in ds2["confusion"]]
        lines += ["```", ""]
    if "ds2_noise_stress" in card:
        ns = card["ds2_noise_stress"]
        lines += ["## DS2 under held-out noise", "", f"`{ns['command']}` ({ns['date']}): every DS2 record "
                  "stressed with nstdb em / ma noise from the half of the noise records training never "
                  "uses.", "",
                  "| class | Se | +P | F1 |", "|---|---|---|---|"]
        for c, m in ns["classes"].items():
            lines.append(f"| {c} | {100 * m['se']:.1f} | {100 * m['ppv']:.1f} | {100 * m['f1']:.1f} |")
        lines += ["", *_ec57_lines(ns), f"Accuracy on matched beats: {100 * ns['accuracy']:.2f} %; "
                  f"missed beats {ns['missed_beats']}, extra beats {ns['extra_beats']}.", ""]
    if "ds2_auroc" in card:
        auc = card["ds2_auroc"]
        lines += ["## DS2 anomaly score", "", f"AUROC abnormal (S, V, F, Q) vs N: {auc:.4f}", ""]
    lines += ["## Reproduce", "", f"`{card['reproduce']['train']}`", "",
              f"`{card['reproduce']['eval']}`", "",
              "The evaluation is expected to give the figures above on other CPUs too (the shipped "
              "default's DS2 confusion came out cell for cell on the Intel Xeon it was trained on and "
              "on an AMD EPYC). Training repeats bit for "
              "bit only on the CPU model it ran on: PyTorch's CPU kernels round differently on other "
              "processors, and from the first epoch the networks, and the epoch the CV chooses, differ.",
              "", "Record file sha256 (mitdb 1.0.0) are in the JSON card.", ""]
    return "\n".join(lines)


def _inference_check(check: dict[str, Any] | None) -> str:
    """The idle-machine measurement of ``python -m detector.bench_models --record``, if made."""
    if not check:
        return " while training"
    recordings = check.get("recordings", [])
    each = ", ".join(f"{r['utc']}: {r['median']:.1f}" for r in recordings)
    apart = f" at least {check['min_spacing_s'] / 60:g} minutes apart" if "min_spacing_s" in check else ""
    spread = (f"; the slowest median of {len(recordings)} recordings{apart} ({each})"
              if len(recordings) > 1 else "")
    return (f" while training; idle: {check['us_per_beat']:.1f} (median of {check['runs']} runs, "
            f"{check['min']:.1f}-{check['max']:.1f}{spread}; {check['date']}, `{check['command']}`), "
            f"{'within' if check['us_per_beat'] <= check['budget_us'] else 'over'} the default "
            f"model's budget of {check['budget_us']:.0f} us")


def _ec57_lines(figures: dict[str, Any]) -> list[str]:
    """The EC57 (bxb) VEB and SVEB figures of an evaluation, when it has them, and their intervals
    over the patients when it has those."""
    e = figures.get("ec57")
    if not e:
        return []
    iv = figures.get("ec57_intervals")
    return [f"EC57 (bxb) VEB Se / +P {100 * e['veb']['se']:.1f} / {100 * e['veb']['ppv']:.1f}, SVEB "
            f"{100 * e['sveb']['se']:.1f} / {100 * e['sveb']['ppv']:.1f} (F and Q beats called V and Q "
            "beats called S are not false positives there; the table counts them)."
            + ("" if iv is None else f" {interval_sentence(iv)}: how far the figures move when "
               "other patients like these are drawn (`ecgmon eval beats` prints them too).")
            + _average_sentence(figures.get("ec57_average")), ""]


def _average_sentence(avg: dict[str, Any] | None) -> str:
    """EC57's average statistics (each patient alike), when the evaluation has them."""
    if not avg:
        return ""

    def fig(key: str, stat: str) -> str:
        v = avg[key][stat]
        return f"{'-' if v is None else f'{100 * v:.1f}'} ({avg[key][f'{stat}_records']})"

    return (" Averaged over the patients instead (EC57's average statistics: the mean of the records' "
            "figures, each record alike, over the records that have one; their number in brackets): "
            f"VEB Se {fig('veb', 'se')} / +P {fig('veb', 'ppv')}, SVEB Se {fig('sveb', 'se')} / +P "
            f"{fig('sveb', 'ppv')} %. A record with a few false calls and no true one counts 0 there.")


def interval_sentence(iv: dict[str, Any], percent: bool = True) -> str:
    """One line for :func:`detector.eval_beats.patient_intervals`' result, in percent (cards) or
    as fractions (``ecgmon eval beats``' table)."""
    def span(pair: list[float]) -> str:
        return f"{100 * pair[0]:.1f}-{100 * pair[1]:.1f}" if percent else f"{pair[0]:.3f}-{pair[1]:.3f}"

    return (f"{100 * iv['level']:.0f} % intervals over the {iv['records']} patients (records resampled "
            f"{iv['resamples']} times): VEB Se {span(iv['veb']['se'])}, +P {span(iv['veb']['ppv'])}; "
            f"SVEB Se {span(iv['sveb']['se'])}, +P {span(iv['sveb']['ppv'])}" + (" %" if percent else ""))


def _cv_lines(cv: dict[str, Any], anomaly: bool) -> list[str]:
    """The card's DS1 cross-validation section (pooled held-out figures)."""
    lines = ["## DS1 leave-patients-out cross-validation", ""]
    per_epoch = ", ".join(f"{s:.3f}" for s in cv["score_per_epoch"])
    if anomaly:
        return lines + [f"Pooled held-out AUROC abnormal vs N per epoch: {per_epoch}; chosen epoch "
                        f"{cv['best_epoch']} (AUROC {cv['score']:.4f}).", ""]
    rule = cv.get("s_rule")
    if rule:
        assist = ""
        if rule.get("assist_prematurity_max", 0.0) > 0.0:
            assist = (f" (or < {rule['assist_prematurity_max']} when the network gives S more than "
                      f"{rule['assist_s_share_min']} of its N-or-S probability)")
        if rule.get("pause_prematurity_max", 0.0) > 0.0:
            assist += (f" (or < {rule['pause_prematurity_max']} when the next RR is at least "
                       f"{rule['pause_ratio_min']} times the previous one, {rule['pause_feature']}: the "
                       "pause after an atrial premature beat)")
        veto = ""
        if rule.get("veto_s_share_max", 0.0) > 0.0:
            veto = (f" with the network giving S at least {rule['veto_s_share_max']} of its N-or-S "
                    "probability")
        chosen = (f"chosen epoch {cv['best_epoch']}; S rule: a beat the network calls N or S is S when "
                  f"{rule['prematurity_feature']} < {rule['prematurity_max']}{veto}{assist} and "
                  f"{rule['irregularity_feature']} < {rule['irregularity_max']}; V logit offset "
                  f"{rule['v_offset']}.")
        if "ec57_selection" in cv:
            chosen += (" The scores count false positives as EC57 (bxb) does: F and Q beats called V "
                       "and Q beats called S are none.")
        each = "each with its own S rule and V offset"
    else:
        chosen = f"chosen epoch {cv['best_epoch']}, logit offsets N S V F Q {cv['logit_bias']}."
        each = "each with its own logit offsets"
    noisy = cv.get("metrics_noisy")
    if noisy:
        clean_e = ", ".join(f"{s:.3f}" for s in cv["clean_score_per_epoch"])
        noisy_e = ", ".join(f"{s:.3f}" for s in cv["noisy_score_per_epoch"])
        lines += [f"Score per epoch = mean of the pooled held-out mean F1 of N, S, V on clean beats "
                  f"({clean_e}) and on the held-out noise-stressed copy ({noisy_e}), {each}: {per_epoch}; "
                  f"{chosen}", ""]
        lines += ["| class | Se | +P | F1 | Se / +P of the network alone | noise-stressed Se / +P |",
                  "|---|---|---|---|---|---|"]
    else:
        lines += [f"Pooled held-out mean F1 of N, S, V per epoch ({each}): {per_epoch}; {chosen}", "",
                  "| class | Se | +P | F1 | Se / +P of the network alone |", "|---|---|---|---|---|"]
    for c, m in cv["metrics"].items():
        raw = cv["metrics_without_bias"][c]
        row = (f"| {c} | {100 * m['se']:.1f} | {100 * m['ppv']:.1f} | {100 * m['f1']:.1f} | "
               f"{100 * raw['se']:.1f} / {100 * raw['ppv']:.1f} |")
        if noisy:
            row += f" {100 * noisy[c]['se']:.1f} / {100 * noisy[c]['ppv']:.1f} |"
        lines.append(row)
    lines += ["", "(Held-out beats matched to reference beats: no missed or extra beats here.)", ""]
    nested, whole = cv.get("nested_rule"), cv.get("nested_selection")
    if nested:
        lines += [f"The S rule and V offset above were chosen on the same pooled outputs they are scored "
                  f"on, so those figures are optimistic. Chosen on the other folds' outputs and applied "
                  f"to each fold in turn, the folds pooled (epoch {nested['epoch']}): score "
                  f"{nested['score']:.4f}; {_se_ppv(nested['metrics'], 'SVN')}.", ""]
    if whole:
        lines += [f"With the epoch chosen that way too (epochs chosen without each fold: "
                  f"{', '.join(map(str, whole['epochs_without_each_fold']))}): score {whole['score']:.4f}; "
                  f"{_se_ppv(whole['metrics'], 'SV')}; counted as EC57 counts, as DS2 is below, V +P "
                  f"{100 * whole['metrics_ec57']['V']['ppv']:.1f}. This is the DS1 estimate of the whole "
                  f"selection to compare with DS2.", ""]
    return lines


def _se_ppv(m: dict[str, dict[str, float]], classes: str) -> str:
    """'clean S Se / +P 63.5 / 72.1, V 90.3 / 85.4, ...' for ``classes``."""
    parts = [f"{c} {100 * m[c]['se']:.1f} / {100 * m[c]['ppv']:.1f}" for c in classes]
    return f"clean {parts[0][0]} Se / +P{parts[0][1:]}" + "".join(f", {p}" for p in parts[1:])
