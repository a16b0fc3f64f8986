// The patient view's alarm strip card: the ECG the gateway recorded around an alarm's onset
// (GET /api/alerts/{alert_id}/strip, 10 s before to 5 s after), drawn with its beats, and saved
// as PNG + JSON on request.

import { getStrip } from "../api.js";
import { AutoScale, drawStrip, fitCanvas, robustRange } from "../trace.js";
import { alarmLabel, cssVar, el, fmtDataTime, isNum } from "../util.js";

export class AlarmStripCard {
  constructor(patient, actions) {
    this.p = patient;
    this.actions = actions;
    this.eventTitle = el("h2", {}, "Alarm strip");
    this.eventNote = el("span", { class: "muted event-note" }, "");
    this.eventCanvas = el("canvas", { class: "strip event-strip", "aria-label": "ECG around the alarm" });
    this.root = el(
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
            { type: "button", class: "link-btn", disabled: true, onclick: () => this.save() },
            "Save PNG + JSON",
          )),
          el("button", { type: "button", class: "link-btn", onclick: () => this.close() }, "Close"),
        ),
      ),
      this.eventNote,
      this.eventCanvas,
    );
  }

  /** An active alarm's strip: the one of its onset alert (live, or from the alarm history). */
  showAlarm(alarm) {
    const onset = this.p.alerts.find((a) => a.alarm_id === alarm.alarm_id && a.phase === "onset" && a.alert_id);
    if (onset) {
      this.show(onset);
      return;
    }
    this.stripAsk = (this.stripAsk ?? 0) + 1;
    this.root.hidden = false;
    this.eventStrip = null;
    this.eventSave.disabled = true;
    this.eventTitle.textContent = `Alarm strip · ${alarmLabel(alarm.alarm_type)}`;
    this.eventNote.textContent = "The onset of this alarm is not in the loaded alarm history yet.";
    this.draw();
  }

  /** The ECG the gateway recorded around an alarm's onset: 10 s before to 5 s after it. */
  async show(alert) {
    this.root.hidden = false;
    this.eventTitle.textContent = `Alarm strip · ${alarmLabel(alert.alarm_type)} at ${fmtDataTime(alert.t_s)}`;
    this.eventNote.textContent = "loading…";
    this.eventStrip = null;
    this.eventSave.disabled = true;
    this.draw();
    this.root.scrollIntoView?.({ block: "nearest" });
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
    this.draw();
  }

  /** Download the strip as drawn (PNG) and as recorded (JSON), named by patient and alert. */
  save() {
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

  close() {
    this.stripAsk = (this.stripAsk ?? 0) + 1;
    this.root.hidden = true;
    this.eventStrip = null;
  }

  draw() {
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

  /** Redraw at the canvas's size while shown. */
  redraw() {
    if (!this.root.hidden) this.draw();
  }
}
