// Upload page (#/analyze): post a CSV or a WFDB record to POST /api/analyze and show the result.

import { postAnalyze } from "../api.js";
import { AutoScale, drawStrip, fitCanvas, robustRange } from "../trace.js";
import { BEAT_CLASSES, alarmLabel, displayPriority, el, fmtDataTime, fmtHr, fmtNum, isNum } from "../util.js";
import { countBars } from "./patient.js";

const PREVIEW_S = 20;
const MAX_EVENT_ROWS = 500;

export class AnalyzeView {
  constructor(root, store, actions) {
    this.root = root;
    this.actions = actions;
    this.result = null;
    this.abort = null;
    this.onResize = () => this.drawPlot();
  }

  mount() {
    this.files = el("input", {
      type: "file",
      name: "files",
      multiple: true,
      accept: ".csv,.hea,.dat,.atr",
      required: true,
    });
    this.fs = el("input", { type: "number", name: "fs_hz", min: "1", max: "10000", step: "any", placeholder: "e.g. 360" });
    this.status = el("p", { class: "status-line", role: "status" });
    this.submit = el("button", { type: "submit", class: "primary" }, "Analyse");
    this.out = el("div", { class: "analyze-out" });
    const form = el(
      "form",
      { class: "card analyze-form", onsubmit: (ev) => this.send(ev) },
      el("h1", {}, "Analyse a recording"),
      el(
        "p",
        { class: "muted" },
        "A CSV file (header row of lead names, one row per sample, in mV) with its sampling rate, ",
        "or a WFDB record: select its .hea and .dat files together.",
      ),
      el("label", {}, el("span", {}, "Files"), this.files),
      el("label", {}, el("span", {}, "Sampling rate (Hz)"), this.fs, el("small", { class: "muted" }, "for a CSV without a time column")),
      el("div", { class: "form-actions" }, this.submit),
      this.status,
    );
    this.root.replaceChildren(el("section", { class: "analyze-view" }, form, this.out));
    window.addEventListener("resize", this.onResize);
  }

  unmount() {
    window.removeEventListener("resize", this.onResize);
    this.abort?.abort();
  }

  frame() {}

  /** A message for the user, or null when the selection can be sent. */
  async validate(files) {
    if (!files.length) return "Choose a file first.";
    const names = files.map((f) => f.name.toLowerCase());
    const csvs = files.filter((f) => f.name.toLowerCase().endsWith(".csv"));
    const hea = names.filter((n) => n.endsWith(".hea"));
    for (const h of hea) {
      const base = h.slice(0, -4);
      if (!names.includes(`${base}.dat`)) return `WFDB record ${base}: select its .dat file together with the .hea.`;
    }
    if (hea.length) return null;
    if (csvs.length !== 1) return "Choose one .csv file, or a WFDB record's .hea and .dat files.";
    if (!this.fs.value) {
      // The gateway can take the rate from a leading time column; otherwise it needs fs_hz.
      const head = (await csvs[0].slice(0, 200).text()).split(/[,\r\n]/)[0].trim().toLowerCase();
      if (!["time", "t", "t_s", "time_s", "seconds"].includes(head)) {
        return "Enter the sampling rate (Hz): this CSV has no time column to take it from.";
      }
    }
    return null;
  }

  async send(ev) {
    ev.preventDefault();
    const files = [...this.files.files];
    const problem = await this.validate(files);
    if (problem) {
      this.setStatus(problem, "error");
      return;
    }
    const data = new FormData();
    for (const f of files) data.append("files", f, f.name);
    if (this.fs.value) data.append("fs_hz", this.fs.value);
    this.abort?.abort();
    this.abort = new AbortController();
    this.submit.disabled = true;
    this.setStatus(`Analysing ${files.map((f) => f.name).join(", ")}…`, "busy");
    try {
      const res = await postAnalyze(data, this.abort.signal);
      this.result = typeof res === "object" && res ? res : {};
      this.setStatus("", "");
      this.render();
    } catch (err) {
      if (err?.name === "AbortError") return;
      if (err?.name === "AuthError") this.actions.authFailed();
      this.setStatus(`Analysis failed: ${err.message}`, "error");
    } finally {
      this.submit.disabled = false;
    }
  }

  setStatus(text, kind) {
    this.status.textContent = text;
    this.status.className = `status-line ${kind}`;
  }

  render() {
    const r = this.result;
    const fs = isNum(r.fs_hz) ? r.fs_hz : null;
    const beats = (Array.isArray(r.beats) ? r.beats : [])
      .map((b) => ({
        t: isNum(b.t_s) ? b.t_s : fs && isNum(b.sample_index) ? b.sample_index / fs : null,
        cls: String(b.class ?? b.beat_class ?? "U").toUpperCase(),
      }))
      .filter((b) => b.t !== null);
    this.beats = beats;
    const counts = Object.fromEntries(BEAT_CLASSES.map((c) => [c, 0]));
    const given = r.summary?.counts;
    if (given && typeof given === "object") Object.assign(counts, given);
    else for (const b of beats) counts[b.cls] = (counts[b.cls] ?? 0) + 1;
    let hr = r.summary?.heart_rate_bpm;
    if (!isNum(hr) && beats.length > 1) hr = (60 * (beats.length - 1)) / (beats[beats.length - 1].t - beats[0].t);
    const duration = isNum(r.duration_s) ? r.duration_s : fs && isNum(r.n_samples) ? r.n_samples / fs : null;
    const ref = r.reference?.counts && typeof r.reference.counts === "object" ? r.reference.counts : null;
    const alarms = Array.isArray(r.alarms) ? r.alarms : [];
    const total = Object.values(counts).reduce((s, v) => s + (Number(v) || 0), 0);

    this.plot = el("canvas", { class: "analyze-plot", "aria-label": "First 20 seconds with beat labels" });
    const stat = (label, value) => el("div", { class: "stat" }, el("span", { class: "hr-label" }, label), value);
    this.out.replaceChildren(
      el(
        "div",
        { class: "pv-row" },
        el(
          "div",
          { class: "card stats" },
          el("h2", {}, "Summary", r.record ? el("span", { class: "muted" }, ` · ${r.record}`) : null),
          el(
            "div",
            { class: "stat-grid" },
            stat("Heart rate", el("span", { class: "hr mid" }, fmtHr(hr), el("small", {}, " bpm"))),
            stat("Beats", el("span", { class: "val" }, String(total))),
            stat("Duration", el("span", { class: "val" }, duration ? fmtDataTime(duration) : "—")),
            stat("Sampling", el("span", { class: "val" }, fs ? `${fmtNum(fs, 0)} Hz` : "—")),
            stat("Leads", el("span", { class: "val small" }, (r.lead_names || []).join(", ") || "—")),
          ),
        ),
        el(
          "div",
          { class: "card" },
          el("h2", {}, ref ? "Beats per class (vs .atr reference)" : "Beats per class"),
          el("div", { class: "counts" }, ...countBars(counts, ref)),
        ),
      ),
      el("div", { class: "card" }, el("h2", {}, `First ${PREVIEW_S} s`), this.plot),
      el(
        "div",
        { class: "card" },
        el("h2", {}, `Alarms · ${alarms.filter((a) => a.phase !== "end" && a.phase !== "update").length} onsets`),
        alarmSummary(alarms),
        alarms.length
          ? el(
              "details",
              { class: "events" },
              el("summary", {}, `All ${alarms.length} alarm events`),
              alarmTable(alarms.slice(0, MAX_EVENT_ROWS)),
              alarms.length > MAX_EVENT_ROWS ? el("p", { class: "muted" }, `First ${MAX_EVENT_ROWS} shown.`) : null,
            )
          : null,
      ),
    );
    this.drawPlot();
  }

  drawPlot() {
    const r = this.result;
    if (!r || !this.plot) return;
    const prev = r.signal_preview || {};
    const fs = isNum(prev.fs_hz) ? prev.fs_hz : r.fs_hz;
    let sig = Array.isArray(prev.mv) ? prev.mv : [];
    if (sig.length && Array.isArray(sig[0])) sig = sig[0];
    if (!isNum(fs) || fs <= 0 || sig.length < 2) {
      this.plot.replaceWith(el("p", { class: "muted" }, "No signal preview in the response."));
      return;
    }
    const n = Math.min(sig.length, Math.round(PREVIEW_S * fs));
    const rowS = this.plot.clientWidth < 600 ? 5 : 10;
    const rows = Math.max(1, Math.ceil(n / (rowS * fs)));
    const rowCss = 130;
    this.plot.style.height = `${rows * rowCss}px`;
    const { w, h, dpr } = fitCanvas(this.plot);
    const ctx = this.plot.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const scale = new AutoScale(1.2);
    scale.update(robustRange(sig.slice(0, n)), 1);
    const rowH = h / rows;
    for (let i = 0; i < rows; i++) {
      const i0 = Math.round(i * rowS * fs);
      const i1 = Math.round((i + 1) * rowS * fs);
      const box = { x0: 0, y0: i * rowH + 2 * dpr, w: (w * Math.min(n, i1) - w * i0) / (i1 - i0), h: rowH - 4 * dpr };
      drawStrip(ctx, box, sig, fs, i0, Math.min(n, i1), scale, { beats: this.beats, t0: 0, dpr });
    }
  }
}

/** One row per alarm type: priority, onsets, total time active (onset to end, by alarm_id). */
function alarmSummary(alarms) {
  if (!alarms.length) return el("p", { class: "muted" }, "No alarms.");
  const byType = new Map();
  const onsetAt = new Map();
  for (const a of alarms) {
    const key = a.alarm_type || "alarm";
    const row = byType.get(key) || { type: key, prio: displayPriority(a), onsets: 0, activeS: 0, first: null };
    if (a.phase === "onset" || !a.phase) {
      row.onsets += 1;
      if (row.first === null && isNum(a.onset_t_s)) row.first = a.onset_t_s;
      if (a.alarm_id && isNum(a.onset_t_s)) onsetAt.set(a.alarm_id, a.onset_t_s);
    } else if (a.phase === "end" && isNum(a.t_s)) {
      const start = onsetAt.get(a.alarm_id) ?? a.onset_t_s;
      if (isNum(start)) row.activeS += Math.max(0, a.t_s - start);
    }
    byType.set(key, row);
  }
  const rank = { high: 3, medium: 2, low: 1, technical: 0 };
  const rows = [...byType.values()].sort((a, b) => rank[b.prio] - rank[a.prio] || b.onsets - a.onsets);
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "alarm-table" },
      el("thead", {}, el("tr", {}, ...["Alarm", "Priority", "Onsets", "Time active", "First onset"].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        ...rows.map((r) =>
          el(
            "tr",
            {},
            el("td", {}, alarmLabel(r.type)),
            el("td", {}, el("span", { class: `prio-pill prio-${r.prio}` }, r.prio)),
            el("td", { class: "num" }, String(r.onsets)),
            el("td", { class: "num" }, r.activeS ? fmtDataTime(r.activeS) : "—"),
            el("td", { class: "num" }, fmtDataTime(r.first)),
          ),
        ),
      ),
    ),
  );
}

function alarmTable(alarms) {
  if (!alarms.length) return el("p", { class: "muted" }, "No alarms.");
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "alarm-table" },
      el("thead", {}, el("tr", {}, ...["Onset", "Time", "Alarm", "Priority", "Phase", "Message"].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        ...alarms.map((a) => {
          const prio = displayPriority(a);
          return el(
            "tr",
            {},
            el("td", { class: "num" }, fmtDataTime(a.onset_t_s)),
            el("td", { class: "num" }, fmtDataTime(a.t_s)),
            el("td", {}, alarmLabel(a.alarm_type)),
            el("td", {}, el("span", { class: `prio-pill prio-${prio}` }, prio)),
            el("td", {}, a.phase || ""),
            el("td", { class: "msg" }, a.message || ""),
          );
        }),
      ),
    ),
  );
}
