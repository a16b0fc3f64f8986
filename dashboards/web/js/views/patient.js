// Patient view (#/patient/<id>): bed, name and note, 20 s strip with beat labels, HR trend, HRV,
// alarm settings, alarm history, and the discharge action.

import { fmtWhen } from "../alarmsettings.js";
import { getAlerts, getBeats } from "../api.js";
import { bedFreshness, staleLook } from "../freshness.js";
import { hrvSummary } from "../hrv.js";
import { AutoScale, drawSparkline, drawSweep, drawTimeGrid, fitCanvas } from "../trace.js";
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
import { AlarmStripCard } from "./alarmstrip.js";
import { DischargePanel } from "./discharge.js";
import { PatientInfoPanel } from "./patientinfo.js";
import { nodataOverlay } from "./station.js";

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
    this.nodata = nodataOverlay();
    this.freshness = null;
    this.lastKnown = false;
    this.settings = new AlarmSettingsPanel(this.store, this.actions, p);
    this.details = new PatientInfoPanel(this.store, this.actions, p);
    this.discharge = new DischargePanel(this.store, this.actions, p);
    this.trend = el("canvas", { class: "spark", "aria-label": "Heart-rate trend, last 10 minutes" });
    this.hrv = el("dl", { class: "hrv" });
    this.counts = el("div", { class: "counts" });
    this.history = el("tbody");
    this.strips = new AlarmStripCard(this.p, this.actions);
    this.panel = el(
      "section",
      { class: "patient-view" },
      el(
        "header",
        { class: "pv-head" },
        el("a", { href: "#/", class: "back" }, "← Station"),
        this.details.title,
        this.details.note,
        (this.unknown = el("span", { class: "muted", hidden: p.known }, "(not reported by the gateway yet)")),
        this.lead,
        this.details.editBtn,
        this.discharge.button,
        el("div", { class: "pv-vitals" }, el("span", { class: "hr-label" }, "HR bpm"), this.hr),
        el("div", { class: "pv-class" }, el("span", { class: "hr-label" }, "Last beat"), this.cls),
      ),
      this.discharge.root,
      this.alarms,
      this.details.form,
      el(
        "div",
        { class: "card strip-card" },
        el("h2", {}, `ECG · ${STRIP_S} s`),
        el("div", { class: "trace-wrap" }, this.strip, this.nodata),
      ),
      el(
        "div",
        { class: "pv-row" },
        el("div", { class: "card" }, el("h2", {}, "Heart-rate trend · 10 min"), this.trend),
        el("div", { class: "card" }, el("h2", {}, "HRV · last 5 min of normal beats"), this.hrv),
        el("div", { class: "card" }, el("h2", {}, "Beats · 10 min"), this.counts),
      ),
      this.strips.root,
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
    this.details.mount();
    this.discharge.mount();
  }

  unmount() {
    this.settings?.unmount();
    this.details?.unmount();
    this.discharge?.unmount();
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
      const res = await getAlerts(this.p.id, 100, undefined, true);
      this.store.loadAlerts(this.p.id, Array.isArray(res) ? res : res?.alerts);
      this.historyStatus.textContent = "";
    } catch (err) {
      if (err?.name === "AuthError") this.actions.authFailed();
      this.historyStatus.textContent = `(history unavailable: ${err.message}; showing live alerts)`;
    }
  }

  renderNumbers() {
    this.unknown.hidden = this.p.known;
    // an id discharged (and not admitted again) says so, not "not reported yet"
    const gone = this.p.known ? null : this.store.discharged.get(this.p.id);
    const text = gone
      ? `(discharged by ${gone.user ?? "?"}${gone.at_ms ? ` at ${fmtWhen(gone.at_ms)}` : ""})`
      : "(not reported by the gateway yet)";
    if (this.unknown.textContent !== text) this.unknown.textContent = text;
    this.discharge.renderButton();
    this.hr.textContent = patientHr(this.p);
    const c = this.p.lastClass || "–";
    this.cls.textContent = c;
    this.cls.className = `beat-chip cls-${c}`;
    this.lead.textContent = this.p.lead;
  }

  renderAlarms() {
    renderAlarmBadges(this.alarms, this.p, this.actions.ack, {
      onStrip: (alarm) => this.strips.showAlarm(alarm),
      lastKnown: this.lastKnown,
    });
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
              ? el("button", { type: "button", class: "link-btn", onclick: () => this.strips.show(a) }, "Strip")
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
    this.strips.redraw(); // follows the canvas's size
  }

  /** Live, no signal, or offline (freshness.js), as the station's tiles. */
  setFreshness(freshness) {
    if (freshness === this.freshness) return;
    this.freshness = freshness;
    const look = staleLook(freshness);
    this.nodata.hidden = !look.stale;
    this.panel.classList.toggle("stale", look.stale);
    this.panel.classList.toggle("offline", look.frozen);
    this.panel.dataset.freshness = freshness;
    if (this.lastKnown !== look.lastKnown) {
      this.lastKnown = look.lastKnown;
      this.renderAlarms();
    }
  }

  frame(now, link) {
    this.setFreshness(bedFreshness(this.p.lastDataWall, now, link));
    // A phone gets the 20 s as two 10 s lines, like a printed rhythm strip.
    const rows = this.strip.clientWidth < 700 ? 2 : 1;
    this.strip.classList.toggle("two-rows", rows === 2);
    const { w, h, dpr } = fitCanvas(this.strip);
    // offline: the strip stops where the data stopped (drawn once, again only on a resize)
    const frozen = this.freshness === "offline" ? `${w}x${h}` : null;
    if (frozen && frozen === this.frozenAt) return;
    this.frozenAt = frozen;
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
