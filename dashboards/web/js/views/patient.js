// Patient view (#/patient/<id>): 20 s strip with beat labels, HR trend, HRV, alarm settings,
// alarm history.

import { getAlerts, getBeats, getStrip } from "../api.js";
import { hrvSummary } from "../hrv.js";
import { AutoScale, drawSparkline, drawStrip, drawSweep, drawTimeGrid, fitCanvas, robustRange } from "../trace.js";
import {
  BEAT_CLASSES,
  BEAT_NAMES,
  alarmLabel,
  cssVar,
  displayPriority,
  el,
  fmtDataTime,
  fmtHr,
  fmtNum,
  isNum,
  patientHr,
} from "../util.js";
import { refreshSince, renderAlarmBadges } from "./alarms.js";
import { AlarmSettingsPanel } from "./alarmsettings.js";

const STRIP_S = 20;
const TREND_S = 10 * 60;
const HRV_S = 5 * 60;

export class PatientView {
  constructor(root, store, actions, patientId) {
    this.root = root;
    this.store = store;
    this.actions = actions;
    this.p = store.patient(patientId, true, false);
    this.onKey = (ev) => {
      if (ev.key === "Escape" && !ev.target.closest?.("input, textarea")) location.hash = "#/";
    };
    this.slowWall = 0;
    this.scale = new AutoScale(); // over the whole 20 s, not the station's 6 s
    this.historyStatus = el("span", { class: "muted" }, "loading…");
    this.listeners = {
      alarms: (ev) => ev.detail.patient === this.p && this.renderAlarms(),
      alert: (ev) => ev.detail.patient === this.p && this.renderHistory(),
      state: (ev) => ev.detail.patient === this.p && this.renderNumbers(),
      patients: () => this.renderNumbers(),
      beat: (ev) => ev.detail.patient === this.p && this.renderNumbers(),
    };
  }

  mount() {
    const p = this.p;
    this.hr = el("div", { class: "hr big" }, "---");
    this.cls = el("span", { class: "beat-chip" }, "–");
    this.lead = el("span", { class: "lead" }, "");
    this.alarms = el("div", { class: "tile-alarms wide" });
    this.strip = el("canvas", { class: "strip", "aria-label": "ECG strip, last 20 seconds" });
    this.settings = new AlarmSettingsPanel(this.store, this.actions, p);
    this.trend = el("canvas", { class: "spark", "aria-label": "Heart-rate trend, last 10 minutes" });
    this.hrv = el("dl", { class: "hrv" });
    this.counts = el("div", { class: "counts" });
    this.history = el("tbody");
    this.eventTitle = el("h2", {}, "Alarm strip");
    this.eventNote = el("span", { class: "muted event-note" }, "");
    this.eventCanvas = el("canvas", { class: "strip event-strip", "aria-label": "ECG around the alarm" });
    this.eventCard = el(
      "div",
      { class: "card event-card", hidden: true },
      el(
        "div",
        { class: "card-head" },
        this.eventTitle,
        el(
          "span",
          { class: "btn-row" },
          (this.eventSave = el(
            "button",
            { type: "button", class: "link-btn", disabled: true, onclick: () => this.saveStrip() },
            "Save PNG + JSON",
          )),
          el("button", { type: "button", class: "link-btn", onclick: () => this.closeStrip() }, "Close"),
        ),
      ),
      this.eventNote,
      this.eventCanvas,
    );
    this.panel = el(
      "section",
      { class: "patient-view" },
      el(
        "header",
        { class: "pv-head" },
        el("a", { href: "#/", class: "back" }, "← Station"),
        el("h1", {}, "Patient ", el("span", { class: "bed" }, p.id)),
        (this.unknown = el("span", { class: "muted", hidden: p.known }, "(not reported by the gateway yet)")),
        this.lead,
        el("div", { class: "pv-vitals" }, el("span", { class: "hr-label" }, "HR bpm"), this.hr),
        el("div", { class: "pv-class" }, el("span", { class: "hr-label" }, "Last beat"), this.cls),
      ),
      this.alarms,
      el("div", { class: "card strip-card" }, el("h2", {}, `ECG · ${STRIP_S} s`), this.strip),
      el(
        "div",
        { class: "pv-row" },
        el("div", { class: "card" }, el("h2", {}, "Heart-rate trend · 10 min"), this.trend),
        el("div", { class: "card" }, el("h2", {}, "HRV · last 5 min of normal beats"), this.hrv),
        el("div", { class: "card" }, el("h2", {}, "Beats · 10 min"), this.counts),
      ),
      this.eventCard,
      this.settings.root,
      el(
        "div",
        { class: "card" },
        el(
          "div",
          { class: "card-head" },
          el("h2", {}, "Alarm history ", this.historyStatus),
          el(
            "label",
            { class: "inline" },
            (this.showUpdates = el("input", { type: "checkbox", onchange: () => this.renderHistory() })),
            el("span", {}, "show updates"),
          ),
        ),
        el(
          "div",
          { class: "table-wrap" },
          el(
            "table",
            { class: "alarm-table" },
            el(
              "thead",
              {},
              el("tr", {}, ...["Time", "Phase", "Alarm", "Priority", "HR", "Message", "ECG"].map((h) => el("th", {}, h))),
            ),
            this.history,
          ),
        ),
      ),
    );
    this.root.replaceChildren(this.panel);
    for (const [type, fn] of Object.entries(this.listeners)) this.store.addEventListener(type, fn);
    document.addEventListener("keydown", this.onKey);
    this.renderNumbers();
    this.renderAlarms();
    this.renderHistory();
    this.renderSlow();
    this.loadHistory();
    this.settings.mount();
  }

  unmount() {
    this.settings?.unmount();
    for (const [type, fn] of Object.entries(this.listeners)) this.store.removeEventListener(type, fn);
    document.removeEventListener("keydown", this.onKey);
  }

  async loadHistory() {
    // The trend, HRV and counts cover 10 min: fill them from the detector's stored beats at once.
    getBeats(this.p.id, TREND_S)
      .then((res) => {
        this.store.loadBeats(this.p.id, res?.beats);
        this.renderSlow();
      })
      .catch(() => {}); // optional: live beats fill the same list
    try {
      const res = await getAlerts(this.p.id, 100);
      this.store.loadAlerts(this.p.id, Array.isArray(res) ? res : res?.alerts);
      this.historyStatus.textContent = "";
    } catch (err) {
      if (err?.name === "AuthError") this.actions.authFailed();
      this.historyStatus.textContent = `(history unavailable: ${err.message}; showing live alerts)`;
    }
  }

  /** An active alarm's strip: the one of its onset alert (live, or from the alarm history). */
  showAlarmStrip(alarm) {
    const onset = this.p.alerts.find((a) => a.alarm_id === alarm.alarm_id && a.phase === "onset" && a.alert_id);
    if (onset) {
      this.showStrip(onset);
      return;
    }
    this.stripAsk = (this.stripAsk ?? 0) + 1;
    this.eventCard.hidden = false;
    this.eventStrip = null;
    this.eventSave.disabled = true;
    this.eventTitle.textContent = `Alarm strip · ${alarmLabel(alarm.alarm_type)}`;
    this.eventNote.textContent = "The onset of this alarm is not in the loaded alarm history yet.";
    this.drawEventStrip();
  }

  /** The ECG the gateway recorded around an alarm's onset: 10 s before to 5 s after it. */
  async showStrip(alert) {
    this.eventCard.hidden = false;
    this.eventTitle.textContent = `Alarm strip · ${alarmLabel(alert.alarm_type)} at ${fmtDataTime(alert.t_s)}`;
    this.eventNote.textContent = "loading…";
    this.eventStrip = null;
    this.eventSave.disabled = true;
    this.drawEventStrip();
    this.eventCard.scrollIntoView?.({ block: "nearest" });
    const ask = (this.stripAsk = (this.stripAsk ?? 0) + 1); // a later click wins over a slow answer
    try {
      const strip = await getStrip(alert.alert_id);
      if (ask !== this.stripAsk) return;
      this.eventStrip = strip;
      this.eventSave.disabled = false;
      const note = strip.complete ? "" : "Incomplete: the trace had a gap, or the gateway had just started. ";
      this.eventNote.textContent =
        `${note}${strip.lead} · red line: alarm raised` +
        (strip.onset_t_s >= (strip.window_t_s?.[0] ?? strip.t_s)
          ? " · dashed: onset of the episode"
          : ` · episode began at ${fmtDataTime(strip.onset_t_s)}`);
    } catch (err) {
      if (ask !== this.stripAsk) return;
      if (err?.name === "AuthError") this.actions.authFailed();
      this.eventNote.textContent = err?.status === 404 ? "No strip recorded for this alarm (the gateway records one for each alarm onset it sees live)." : `Strip unavailable: ${err.message}`;
    }
    this.drawEventStrip();
  }

  /** Download the strip as drawn (PNG) and as recorded (JSON), named by patient and alert. */
  saveStrip() {
    const s = this.eventStrip;
    if (!s) return;
    const base = `ecgmon-${s.patient_id}-${s.alarm_type}-${Math.round(s.alert_t_s)}s`.replace(/[^\w.-]+/g, "_");
    const save = (blob, name) => {
      const a = el("a", { href: URL.createObjectURL(blob), download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    };
    // The canvas is transparent over the page's dark paper: give the file the same background,
    // and a caption saying whose ECG it is and when, since the file travels without the page.
    const head = Math.round(28 * (window.devicePixelRatio || 1));
    const out = el("canvas", { width: this.eventCanvas.width, height: this.eventCanvas.height + head });
    const ctx = out.getContext("2d");
    ctx.fillStyle = getComputedStyle(this.eventCanvas).backgroundColor || "#020504";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.drawImage(this.eventCanvas, 0, head);
    ctx.fillStyle = cssVar("--text", "#e8f0ea");
    ctx.font = `${Math.round(head * 0.5)}px system-ui, sans-serif`;
    ctx.textBaseline = "middle";
    const incomplete = s.complete ? "" : " · incomplete";
    ctx.fillText(
      `ecgmon · ${s.patient_id} · ${alarmLabel(s.alarm_type)} (${s.priority}) raised at ${fmtDataTime(s.alert_t_s)}` +
        ` · ${s.lead}, ${fmtDataTime(s.window_t_s?.[0] ?? s.t_s)} to ${fmtDataTime(s.window_t_s?.[1] ?? s.t_s)}` +
        ` · red: alarm, dashed: onset${incomplete}`,
      8,
      head / 2,
    );
    out.toBlob((png) => png && save(png, `${base}.png`), "image/png");
    save(new Blob([JSON.stringify(s, null, 1)], { type: "application/json" }), `${base}.json`);
  }

  closeStrip() {
    this.stripAsk = (this.stripAsk ?? 0) + 1;
    this.eventCard.hidden = true;
    this.eventStrip = null;
  }

  drawEventStrip() {
    // A phone gets the 15 s as two lines, as the live strip does.
    const rows = this.eventCanvas.clientWidth < 700 ? 2 : 1;
    this.eventCanvas.classList.toggle("two-rows", rows === 2);
    const { w, h, dpr } = fitCanvas(this.eventCanvas);
    const ctx = this.eventCanvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const s = this.eventStrip;
    if (!s || !Array.isArray(s.mv) || !isNum(s.fs_hz) || s.mv.length < 2) return;
    const scale = new AutoScale(1.2);
    scale.update(robustRange(s.mv), 1);
    const beats = (s.beats || []).map((b) => ({ t: b.t_s, cls: String(b.class || "U").toUpperCase() }));
    // The whole window at one time scale: an incomplete strip is drawn where its samples belong.
    const [wFrom, wTo] = Array.isArray(s.window_t_s) ? s.window_t_s : [s.t_s, s.t_s + s.mv.length / s.fs_hz];
    const rowS = (wTo - wFrom) / rows;
    const rowH = h / rows;
    const marks = [
      [s.alert_t_s, []],
      [s.onset_t_s, [6 * dpr, 4 * dpr]],
    ];
    for (let r = 0; r < rows; r++) {
      const tA = wFrom + r * rowS;
      const xOf = (t) => ((t - tA) / rowS) * w;
      const i0 = Math.max(0, Math.ceil((tA - s.t_s) * s.fs_hz));
      const i1 = Math.min(s.mv.length, Math.ceil((tA + rowS - s.t_s) * s.fs_hz));
      if (i1 - i0 > 1) {
        const x0 = xOf(s.t_s + i0 / s.fs_hz);
        const box = { x0, y0: r * rowH, w: xOf(s.t_s + i1 / s.fs_hz) - x0, h: rowH - 4 * dpr };
        drawStrip(ctx, box, s.mv, s.fs_hz, i0, i1, scale, { beats, t0: s.t_s, dpr });
      }
      ctx.save();
      ctx.strokeStyle = cssVar("--high", "#f33");
      ctx.lineWidth = 2 * dpr;
      for (const [t, dash] of marks) {
        if (!isNum(t) || t < tA || t > tA + rowS) continue;
        ctx.setLineDash(dash);
        ctx.beginPath();
        ctx.moveTo(Math.round(xOf(t)) + 0.5, r * rowH);
        ctx.lineTo(Math.round(xOf(t)) + 0.5, (r + 1) * rowH);
        ctx.stroke();
      }
      ctx.restore();
    }
  }

  renderNumbers() {
    this.unknown.hidden = this.p.known;
    this.hr.textContent = patientHr(this.p);
    const c = this.p.lastClass || "–";
    this.cls.textContent = c;
    this.cls.className = `beat-chip cls-${c}`;
    this.lead.textContent = this.p.lead;
  }

  renderAlarms() {
    renderAlarmBadges(this.alarms, this.p, this.actions.ack, { onStrip: (alarm) => this.showAlarmStrip(alarm) });
    this.panel?.classList.toggle("flash-high", this.p.unackedHigh);
  }

  renderHistory() {
    const all = this.showUpdates?.checked;
    const rows = [...this.p.alerts]
      .reverse()
      .filter((a) => all || a.phase !== "update")
      .slice(0, 200);
    if (!rows.length) {
      this.history.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No alarms recorded")));
      return;
    }
    this.history.replaceChildren(
      ...rows.map((a) => {
        const prio = displayPriority(a);
        return el(
          "tr",
          { class: `phase-${a.phase || "x"}`, "data-alert-id": a.alert_id ?? "" },
          el("td", { class: "num" }, fmtDataTime(a.t_s)),
          el("td", {}, a.phase || ""),
          el("td", {}, alarmLabel(a.alarm_type)),
          el("td", {}, el("span", { class: `prio-pill prio-${prio}` }, prio)),
          el("td", { class: "num" }, fmtHr(a.heart_rate_bpm)),
          // an alarm switched off for this patient ends with details.reason ("turned off … by <user>")
          el("td", { class: "msg" }, a.phase === "end" && a.details?.reason ? `Ended: ${a.details.reason}` : a.message || ""),
          el(
            "td",
            {},
            a.phase === "onset" && a.alert_id
              ? el("button", { type: "button", class: "link-btn", onclick: () => this.showStrip(a) }, "Strip")
              : "",
          ),
        );
      }),
    );
  }

  /** Trend, HRV and counts: cheap enough, but no need to redo them every frame. */
  renderSlow() {
    const beats = this.p.beats;
    const tEnd = beats.length ? beats[beats.length - 1].t : (this.p.newestT ?? 0);
    const { w, h, dpr } = fitCanvas(this.trend);
    const ctx = this.trend.getContext("2d");
    const pts = beats.filter((b) => isNum(b.hr)).map((b) => ({ t: b.t, v: b.hr }));
    drawSparkline(ctx, w, h, pts, tEnd - TREND_S, tEnd, { dpr, leftLabel: "−10 min", rightLabel: "now" });

    const recent = beats.filter((b) => b.t >= tEnd - HRV_S);
    const s = hrvSummary(recent);
    const item = (k, v, hint) => [el("dt", { title: hint }, k), el("dd", {}, v)];
    this.hrv.replaceChildren(
      ...item("Mean RR", fmtNum(s.meanRrMs, 0, " ms")),
      ...item("SDNN", fmtNum(s.sdnnMs, 1, " ms"), "Standard deviation of NN intervals"),
      ...item("RMSSD", fmtNum(s.rmssdMs, 1, " ms"), "Root mean square of successive differences"),
      ...item("pNN50", fmtNum(s.pnn50, 1, " %"), "Successive differences > 50 ms"),
      ...item("NN count", String(s.n)),
    );

    const counts = Object.fromEntries(BEAT_CLASSES.map((c) => [c, 0]));
    for (const b of beats) if (b.t >= tEnd - TREND_S) counts[b.cls] = (counts[b.cls] ?? 0) + 1;
    this.counts.replaceChildren(...countBars(counts));
    if (!this.eventCard.hidden) this.drawEventStrip(); // follows the canvas's size
  }

  frame(now) {
    // A phone gets the 20 s as two 10 s lines, like a printed rhythm strip.
    const rows = this.strip.clientWidth < 700 ? 2 : 1;
    this.strip.classList.toggle("two-rows", rows === 2);
    const { w, h, dpr } = fitCanvas(this.strip);
    const ctx = this.strip.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    for (let r = 0; r < rows; r++) drawTimeGrid(ctx, 0, (r * h) / rows, w, h / rows, STRIP_S / rows, null);
    if (this.p.ring) {
      drawSweep(ctx, w, h, this.p.ring, this.p.displayT ?? null, this.scale, {
        sweepS: STRIP_S,
        eraseS: 0.4,
        color: cssVar("--trace", "#3f6"),
        lineWidth: 1.4,
        beats: this.p.beats,
        dpr,
        rows,
      });
    }
    if (now - this.slowWall > 1000) {
      this.slowWall = now;
      if (this.p.ring && this.p.displayT !== null) {
        this.scale.update(this.p.ring.range(this.p.displayT - STRIP_S, this.p.displayT), 0.5);
      }
      this.renderSlow();
      refreshSince(this.alarms, this.p);
    }
  }
}

/** Horizontal bars of beat counts per class. */
export function countBars(counts, ref = null) {
  const total = Object.values(counts).reduce((s, v) => s + v, 0) || 1;
  return Object.entries(counts).map(([cls, n]) =>
    el(
      "div",
      { class: "count-row", title: BEAT_NAMES[cls] || cls },
      el("span", { class: `beat-chip small cls-${cls}` }, cls),
      el("span", { class: "bar" }, el("span", { class: `fill cls-${cls}`, style: `width:${(100 * n) / total}%` })),
      el("span", { class: "num" }, String(n), ref ? el("small", { class: "muted" }, ` / ${ref[cls] ?? 0}`) : null),
    ),
  );
}
