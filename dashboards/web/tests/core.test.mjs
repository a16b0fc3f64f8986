// Unit tests of the DOM-free modules: node --test dashboards/web/tests/
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  changeText,
  errorField,
  fmtWhen,
  historyWithChanges,
  indicatorText,
  settingsErrorText,
  validateSettings,
  validateUser,
} from "../js/alarmsettings.js";
import {
  AUDIO_PAUSE_MS,
  AlarmSound,
  CONNECTION_LOSS_DELAY_MS,
  HIGH_BURST_INTERVAL_MS,
  MEDIUM_BURST_INTERVAL_MS,
  PATTERNS,
  alarmSnapshot,
  connectionLossAlarm,
  parseTiming,
} from "../js/alarmsound.js";
import { ApiError } from "../js/api.js";
import { hrvSummary } from "../js/hrv.js";
import {
  bedKey,
  charCount,
  compareBeds,
  counterText,
  hasDetails,
  infoErrorField,
  infoErrorText,
  isPrintableLine,
  normInfo,
  originText,
  sameDetails,
  shortNote,
  titleParts,
  validateInfo,
} from "../js/patientinfo.js";
import { Playout, Ring } from "../js/ring.js";
import { Store } from "../js/store.js";

const FS = 120;
const samples = (n, v = 0.5) => Array.from({ length: n }, () => v);

test("ring stores contiguous frames on one time grid", () => {
  const r = new Ring(FS, 10);
  r.push(1.0, samples(60, 0.25));
  r.push(1.5, samples(60, 0.5));
  assert.equal(r.end, 120);
  assert.ok(Math.abs(r.endTime - 2.0) < 1e-9);
  assert.equal(r.value(59), 0.25);
  assert.equal(r.value(60), 0.5);
});

test("ring fills a gap with NaN and drops overlapping samples", () => {
  const r = new Ring(FS, 10);
  r.push(0, samples(120, 1));
  r.push(1.5, samples(60, 2)); // 0.5 s gap
  assert.ok(Number.isNaN(r.value(130)));
  assert.equal(r.value(180), 2);
  r.push(1.75, samples(60, 3)); // its first 30 samples are already stored: kept as they were
  assert.equal(r.value(239), 2);
  assert.equal(r.value(240), 3);
  assert.equal(r.end, 270);
});

test("ring resets when the source restarts in the past", () => {
  const r = new Ring(FS, 10);
  r.push(100, samples(240));
  assert.equal(r.push(0, samples(60)), "reset");
  assert.equal(r.t0, 0);
  assert.equal(r.end, 60);
});

test("ring keeps only its capacity and reports a robust range", () => {
  const r = new Ring(FS, 2);
  for (let i = 0; i < 10; i++) r.push(i * 0.5, samples(60, i));
  assert.equal(r.start, r.end - r.cap);
  assert.ok(Number.isNaN(r.value(0)));
  const [lo, hi] = r.range(3.5, 5);
  assert.ok(lo >= 7 && hi <= 9);
});

test("playout advances smoothly at ~1x through 1 s bursts and never passes the data", () => {
  const p = new Playout();
  let newest = 0;
  let wall = 0;
  const shown = [];
  for (let frame = 0; frame < 60 * 30; frame++) {
    wall = frame * (1000 / 60);
    if (frame % 60 === 0) {
      newest += 1; // a 1 s burst of data arrives once a second
      p.onData(newest, wall);
    }
    const t = p.tick(wall);
    assert.ok(t <= newest + 1e-9, "display ran past the newest sample");
    shown.push(t);
  }
  const late = shown.slice(60 * 10); // after settling
  const steps = late.slice(1).map((t, i) => (t - late[i]) * 60);
  assert.ok(Math.min(...steps) > 0.7, `held or slowed: ${Math.min(...steps)}`);
  assert.ok(Math.max(...steps) < 1.3, `jumped: ${Math.max(...steps)}`);
});

test("playout follows a 10x replay without jumps once it has measured the speed", () => {
  const p = new Playout();
  let newest = 0;
  const shown = [];
  for (let frame = 0; frame < 60 * 20; frame++) {
    const wall = frame * (1000 / 60);
    if (frame % 6 === 0) {
      newest += 1; // 1 s of data every 0.1 s of wall time
      p.onData(newest, wall);
    }
    const t = p.tick(wall);
    assert.ok(t <= newest + 1e-9);
    shown.push(t);
  }
  assert.ok(Math.abs(p.speed - 10) < 0.5, `speed ${p.speed}`);
  const late = shown.slice(60 * 12);
  const rates = late.slice(1).map((t, i) => (t - late[i]) * 60);
  assert.ok(Math.min(...rates) > 7 && Math.max(...rates) < 13, `${Math.min(...rates)}..${Math.max(...rates)}`);
});

test("playout holds when data stops and jumps after a long pause", () => {
  const p = new Playout();
  p.onData(10, 0);
  p.tick(0);
  for (let w = 0; w <= 5000; w += 16) p.tick(w);
  assert.equal(p.displayT, 10);
  p.onData(60, 6000); // stream comes back 50 s later
  p.tick(6016);
  assert.ok(p.displayT > 55);
});

test("HRV: known RR series", () => {
  const rr = [0.8, 0.85, 0.8, 0.9, 0.8, 0.75, 0.8];
  const beats = [{ t: 0, cls: "N" }];
  for (const v of rr) beats.push({ t: beats[beats.length - 1].t + v, cls: "N" });
  const s = hrvSummary(beats);
  assert.equal(s.n, 7);
  assert.ok(Math.abs(s.meanRrMs - 814.2857) < 1e-3);
  assert.ok(Math.abs(s.rmssdMs - 70.7107) < 1e-3);
  assert.ok(Math.abs(s.pnn50 - 33.333) < 1e-2);
});

test("HRV skips intervals touching ectopic beats and implausible RR", () => {
  const beats = [0, 0.8, 1.6, 2.1, 3.2, 4.0, 9.0, 9.8].map((t) => ({ t, cls: "N" }));
  beats[3].cls = "V";
  const s = hrvSummary(beats);
  assert.equal(s.n, 4); // 0-0.8, 0.8-1.6, 3.2-4.0, 9.0-9.8 (not around the V, not the 5 s gap)
  assert.equal(s.rmssdMs, 0); // only 0-0.8 and 0.8-1.6 are successive
});

test("HRV of too few beats is empty, not NaN", () => {
  const s = hrvSummary([{ t: 0, cls: "N" }, { t: 1, cls: "N" }]);
  assert.equal(s.sdnnMs, null);
  assert.equal(s.rmssdMs, null);
});

test("store: alerts open and close alarms; state frames are authoritative; acked marks them", () => {
  const st = new Store();
  const onsets = [];
  st.addEventListener("onset-high", (e) => onsets.push(e.detail.alert.alarm_id));
  const base = { type: "alert", patient_id: "7", alarm_type: "ventricular_tachycardia", priority: "high" };
  st.handle({ ...base, id: "1-0", alert_id: "a1", alarm_id: "7:vt:1", phase: "onset", onset_t_s: 5, t_s: 5 });
  assert.equal(st.lastAlertId, "1-0");
  const p = st.patient("7");
  assert.ok(p.unackedHigh);
  assert.deepEqual(onsets, ["7:vt:1"]);
  st.handle({ type: "acked", alarm_id: "7:vt:1", user: "kim", at_ms: 1 });
  assert.equal(p.active.get("7:vt:1").acknowledged_by, "kim");
  assert.ok(!p.unackedHigh);
  st.handle({ type: "state", patient_id: "7", heart_rate_bpm: 150, last_class: "V", active_alarms: [
    { alarm_id: "7:vt:1", alarm_type: "ventricular_tachycardia", priority: "high", acknowledged_by: "kim" },
    { alarm_id: "7:pause:9", alarm_type: "pause", priority: "medium", acknowledged_by: null },
  ] });
  assert.equal(p.active.size, 2);
  assert.equal(p.active.get("7:vt:1").onset_t_s, 5); // kept from the alert frame
  assert.equal(p.hr, 150);
  st.handle({ ...base, id: "2-0", alert_id: "a2", alarm_id: "7:vt:1", phase: "end", onset_t_s: 5, t_s: 30 });
  assert.ok(!p.active.has("7:vt:1"));
  assert.equal(st.lastAlertId, "2-0");
  // A state frame produced just before the end must not bring it back.
  st.handle({ type: "state", patient_id: "7", active_alarms: [
    { alarm_id: "7:vt:1", alarm_type: "ventricular_tachycardia", priority: "high", acknowledged_by: "kim" },
  ] });
  assert.ok(!p.active.has("7:vt:1"));
  // History (REST) feeds the table only.
  st.loadAlerts("7", [{ ...base, alert_id: "old", alarm_id: "7:vt:0", phase: "onset", t_s: 1 }]);
  assert.ok(!p.active.has("7:vt:0"));
  assert.equal(p.alerts.length, 3);
});

test("store: the gateway's no_data alarm is technical even in a state frame's active list", () => {
  const st = new Store();
  st.handle({ type: "state", patient_id: "8", active_alarms: [
    { alarm_id: "8:no_data:360", alarm_type: "no_data", priority: "medium", acknowledged_by: null },
    { alarm_id: "8:pause:9", alarm_type: "pause", priority: "medium", acknowledged_by: null },
  ] });
  const p = st.patient("8");
  assert.equal(p.active.get("8:no_data:360").technical, true);
  assert.equal(p.active.get("8:pause:9").technical, false);
});

test("store: the newest id of the global alert history seeds last_alert_id, live ids win", () => {
  const st = new Store();
  const a = { patient_id: "1", alarm_id: "1:x:1", alarm_type: "pause", priority: "medium", phase: "onset", t_s: 1 };
  st.loadAlerts(null, [{ ...a, id: "1700000000000-2", alert_id: "a" }, { ...a, id: "1700000000000-10", alert_id: "b" }, { ...a, id: "999-0", alert_id: "c" }]);
  assert.equal(st.lastAlertId, "1700000000000-10");
  st.handle({ type: "alert", ...a, id: "1700000000001-0", alert_id: "d" });
  assert.equal(st.lastAlertId, "1700000000001-0");
  st.loadAlerts(null, [{ ...a, id: "1800000000000-0", alert_id: "e" }]);
  assert.equal(st.lastAlertId, "1700000000001-0");
});

test("store: waveform frames with gaps and beats with duplicates", () => {
  const st = new Store();
  st.handle({ type: "waveform", patient_id: "1", lead: "MLII", fs_hz: FS, first_sample_index: 0, t_s: 0, mv: samples(60) });
  st.handle({ type: "waveform", patient_id: "1", lead: "MLII", fs_hz: FS, first_sample_index: 120, t_s: 1, mv: samples(60) });
  const p = st.patient("1");
  assert.equal(p.ring.end, 180);
  assert.ok(Number.isNaN(p.ring.value(90)));
  for (const t of [1, 2, 2, 3]) st.handle({ type: "beat", patient_id: "1", sample_index: t * 360, t_s: t, class: "N", hr_bpm: 60 });
  assert.equal(p.beats.length, 3);
  assert.equal(p.lastClass, "N");
});

test("the sweep labels only the beats its ring holds samples for", async () => {
  // trace.js reads colours from CSS at draw time: stand-ins for the page's
  globalThis.document ??= { documentElement: {} };
  globalThis.getComputedStyle ??= () => ({ getPropertyValue: () => "" });
  const { drawSweep } = await import("../js/trace.js");
  const written = [];
  const noop = () => {};
  const ctx = new Proxy({ fillText: (text, x) => written.push([text, Math.round(x)]) },
    { get: (t, k) => (k in t ? t[k] : noop), set: () => true });
  const ring = new Ring(FS, 32);
  ring.push(10, samples(FS * 10)); // this page has samples from t = 10 s to 20 s
  const beats = [{ t: 4, cls: "V" }, { t: 9.5, cls: "S" }, { t: 12, cls: "N" }, { t: 19, cls: "N" }];
  const scale = { y: () => 0 };
  drawSweep(ctx, 2000, 200, ring, 20, scale, { sweepS: 20, beats, color: "#0f0" });
  assert.deepEqual(written.map(([c]) => c), ["N", "N"]); // 4 s and 9.5 s: history before the trace
  assert.deepEqual(written.map(([, x]) => x), [1200, 1900]); // x = (t mod 20 s) / 20 s x width
});

test("store: the history a subscribe brings fills the strip at once; live frames continue it", () => {
  const st = new Store();
  const history = samples(FS * 20, 0.25); // the gateway's last 20 s, sent ahead of live frames
  st.handle({ type: "waveform", patient_id: "1", lead: "MLII", fs_hz: FS, first_sample_index: FS * 100, t_s: 100, mv: history, history: true });
  st.handle({ type: "beat", patient_id: "1", sample_index: 360 * 119, t_s: 119, class: "N", hr_bpm: 60 });
  st.handle({ type: "waveform", patient_id: "1", lead: "MLII", fs_hz: FS, first_sample_index: FS * 120, t_s: 120, mv: samples(60, 0.5) });
  const p = st.patient("1");
  assert.equal(p.ring.end, FS * 20 + 60);
  assert.equal(p.ring.timeOf(p.ring.start), 100);
  assert.equal(p.ring.value(FS * 20 - 1), 0.25);
  assert.equal(p.ring.value(FS * 20), 0.5); // no gap where the history ends
  assert.ok(p.playout.displayT > 119 && p.playout.displayT <= 120.5); // drawn from the first frame
  // A second subscribe on the same connection brings the history again: already stored, kept.
  st.handle({ type: "waveform", patient_id: "1", lead: "MLII", fs_hz: FS, first_sample_index: FS * 100 + 60, t_s: 100.5, mv: samples(FS * 20, 0.9), history: true });
  assert.equal(p.ring.end, FS * 20 + 60);
  assert.equal(p.ring.value(FS * 20), 0.5);
  assert.equal(p.beats.length, 1);
});

// ---- alarm settings ---------------------------------------------------------------------

const form = (o = {}) => ({ hr_low_bpm: "50", hr_high_bpm: "130", pause_s: "2.5", disabled: [], ...o });

test("alarm settings: a valid form becomes the POST body, numbers parsed", () => {
  const r = validateSettings(form({ disabled: ["atrial_fibrillation", "atrial_fibrillation"] }));
  assert.equal(r.ok, true);
  assert.deepEqual(r.errors, {});
  assert.deepEqual(r.settings, { hr_low_bpm: 50, hr_high_bpm: 130, pause_s: 2.5, disabled: ["atrial_fibrillation"] });
  // the edges of the ranges are allowed, and so is a gap of exactly 10 bpm
  assert.equal(validateSettings(form({ hr_low_bpm: "15", hr_high_bpm: "60", pause_s: "1.5" })).ok, true);
  assert.equal(validateSettings(form({ hr_low_bpm: "110", hr_high_bpm: "120", pause_s: "3.5" })).ok, true);
});

test("alarm settings: out of range, empty, not a number, off step, too small a gap", () => {
  const e = (o) => validateSettings(form(o)).errors;
  assert.match(e({ hr_low_bpm: "14" }).hr_low_bpm, /HR low must be 15–120 bpm/);
  assert.match(e({ hr_low_bpm: "121", hr_high_bpm: "200" }).hr_low_bpm, /15–120/);
  assert.match(e({ hr_high_bpm: "301" }).hr_high_bpm, /HR high must be 60–300 bpm/);
  assert.match(e({ hr_high_bpm: "59", hr_low_bpm: "20" }).hr_high_bpm, /60–300/);
  assert.match(e({ pause_s: "3.6" }).pause_s, /Pause must be 1\.5–3\.5 s/);
  assert.match(e({ pause_s: "1.4" }).pause_s, /1\.5–3\.5/);
  assert.match(e({ pause_s: "2.55" }).pause_s, /steps of 0\.1 s/);
  assert.match(e({ hr_low_bpm: "" }).hr_low_bpm, /required/);
  assert.match(e({ hr_low_bpm: "abc" }).hr_low_bpm, /enter a number/);
  assert.match(e({ hr_low_bpm: "50.5" }).hr_low_bpm, /whole number/);
  const gap = e({ hr_low_bpm: "60", hr_high_bpm: "69" });
  assert.deepEqual(Object.keys(gap), ["hr_high_bpm"]);
  assert.match(gap.hr_high_bpm, /at least 10 bpm above HR low \(so 70 or more\)/);
  assert.equal(validateSettings(form({ hr_low_bpm: "60", hr_high_bpm: "69" })).settings, null);
});

test("alarm settings: ranges and optional alarms come from the gateway when it sends them", () => {
  const ranges = { hr_low_bpm: [30, 100], hr_high_bpm: [60, 250], min_gap_bpm: 20, pause_s: [2, 3] };
  const r = validateSettings(form({ hr_low_bpm: "25", hr_high_bpm: "140", pause_s: "2.5" }), ranges);
  assert.match(r.errors.hr_low_bpm, /30–100/);
  assert.match(validateSettings(form({ hr_high_bpm: "65" }), ranges).errors.hr_high_bpm, /at least 20 bpm/);
  const lethal = validateSettings(form({ disabled: ["ventricular_fibrillation", "bigeminy"] }));
  assert.equal(lethal.ok, false);
  assert.match(lethal.errors.disabled, /cannot be switched off: Ventricular fibrillation/);
  assert.equal(validateSettings(form({ disabled: ["bigeminy"] }), undefined, ["pause"]).ok, false);
});

test("alarm settings: the signed-in user name as the contract takes it", () => {
  assert.equal(validateUser("nurse a"), "");
  assert.match(validateUser("  "), /No user name/);
  assert.match(validateUser("x".repeat(101)), /longer than 100/);
  assert.match(validateUser("a\u0007b"), /unprintable/);
});

test("alarm settings: the station tile's indicator, empty for the defaults", () => {
  const base = { hr_low_bpm: 40, hr_high_bpm: 140, pause_s: 2.0, disabled: [] };
  assert.equal(indicatorText(null), "");
  assert.equal(indicatorText(undefined), "");
  assert.equal(indicatorText({ ...base, request_id: "r", user: "kim" }), ""); // reset to the defaults
  assert.equal(indicatorText({ ...base, hr_low_bpm: 50, hr_high_bpm: 130 }), "HR 50–130");
  assert.equal(indicatorText({ ...base, disabled: ["atrial_fibrillation"] }), "AF alarm off");
  assert.equal(
    indicatorText({ hr_low_bpm: 50, hr_high_bpm: 140, pause_s: 2.5, disabled: ["atrial_fibrillation", "bigeminy"] }),
    "HR 50–140 · Pause 2.5 s · AF, Bigeminy alarms off",
  );
  // a pause limit does not matter while the pause alarm is off
  assert.equal(indicatorText({ ...base, pause_s: 3, disabled: ["pause", "trigeminy", "ventricular_run"] }), "3 alarms off");
});

test("alarm settings: history texts say what each change changed", () => {
  const defaults = { hr_low_bpm: 40, hr_high_bpm: 140, pause_s: 2.0, disabled: [] };
  const first = { hr_low_bpm: 50, hr_high_bpm: 130, pause_s: 2.0, disabled: ["atrial_fibrillation"], user: "a", request_id: "1" };
  const second = { ...first, pause_s: 2.5, disabled: ["bigeminy"], user: "b", request_id: "2" };
  const third = { ...defaults, user: "c", request_id: "3" };
  const rows = historyWithChanges([third, second, first]); // newest first, as the gateway sends it
  assert.deepEqual(rows.map((r) => r.text), [
    "Reset to defaults",
    "Pause 2.0 → 2.5 s · Atrial fibrillation on · Bigeminy off",
    "HR low 40 → 50 bpm · HR high 140 → 130 bpm · Atrial fibrillation off",
  ]);
  // the oldest of a full (truncated) history is described whole: what came before is unknown
  assert.equal(
    historyWithChanges([first], false)[0].text,
    "HR low 50 bpm · HR high 130 bpm · pause 2.0 s · off: Atrial fibrillation",
  );
  assert.equal(changeText(first, first), "No change (same settings sent again)");
});

test("alarm settings: times of changes, today and on other days", () => {
  const now = new Date(2025, 11, 7, 16, 0, 0).getTime();
  assert.equal(fmtWhen(new Date(2025, 11, 7, 9, 5, 7).getTime(), now), "09:05:07");
  assert.equal(fmtWhen(new Date(2025, 11, 6, 23, 59, 1).getTime(), now), "6 Dec 23:59");
  assert.equal(fmtWhen(new Date(2024, 0, 2, 8, 0).getTime(), now), "2 Jan 2024 08:00");
  assert.equal(fmtWhen(null, now), "—");
});

test("alarm settings: gateway errors for the user, and the field a 422 names", () => {
  const refused = new ApiError("422: hr_low_bpm must be 15-120 bpm", 422, "hr_low_bpm must be 15-120 bpm");
  assert.equal(settingsErrorText(refused), "Not saved: the gateway refused the change: hr_low_bpm must be 15-120 bpm");
  assert.equal(errorField(refused.detail), "hr_low_bpm");
  assert.equal(errorField("pause_s: Field required"), "pause_s");
  assert.equal(errorField("Kafka is down"), null);
  assert.equal(errorField("'asystole' cannot be switched off; optional alarms: ..."), "disabled");
  const down = settingsErrorText(new ApiError("503: broker unavailable", 503, "broker unavailable"));
  assert.match(down, /could not pass the change on to the monitor \(broker unavailable\)\. Nothing was changed/);
  assert.match(settingsErrorText(new ApiError("x", 0, "x")), /unreachable/);
  assert.equal(
    settingsErrorText(new ApiError("404: unknown patient", 404, "unknown patient"), "load"),
    "Alarm settings unavailable: the gateway does not know this patient.",
  );
  assert.match(settingsErrorText(new ApiError("404: no route", 404, "no route"), "load"), /does not offer alarm settings/);
  assert.equal(settingsErrorText(new ApiError("503: busy", 503, "busy"), "load"), "Alarm settings unavailable: 503: busy");
});

test("alarm settings: the indicator compares with the deployment's defaults from the hello frame", () => {
  const st = new Store();
  const seen = [];
  st.addEventListener("alarm-defaults", (e) => seen.push(e.detail.defaults.hr_low_bpm));
  const ward = { hr_low_bpm: 50, hr_high_bpm: 120, pause_s: 2.0, disabled: ["pause"] };
  st.handle({ type: "hello", server_time_ms: Date.now(), patients: [], alarm_defaults: ward });
  assert.deepEqual(st.alarmDefaults, ward);
  assert.deepEqual(seen, [50]);
  assert.equal(indicatorText(null, st.alarmDefaults), ""); // on the ward's defaults
  assert.equal(indicatorText({ ...ward, request_id: "r" }, st.alarmDefaults), "");
  const built = { hr_low_bpm: 40, hr_high_bpm: 140, pause_s: 2.0, disabled: [] };
  assert.equal(indicatorText(built, st.alarmDefaults), "HR 40–140"); // the code's are not this ward's
});

test("store: state frames carry the applied alarm settings; 'settings' fires only on a change", () => {
  const st = new Store();
  const seen = [];
  st.addEventListener("settings", (e) => seen.push(e.detail.patient.alarmSettings?.request_id ?? null));
  st.handle({ type: "state", patient_id: "9", active_alarms: [] }); // a gateway without the feature
  const p = st.patient("9");
  assert.equal(p.alarmSettings, undefined);
  assert.deepEqual(seen, []);
  st.handle({ type: "state", patient_id: "9", active_alarms: [], alarm_settings: null });
  assert.equal(p.alarmSettings, null);
  const applied = { hr_low_bpm: 50, hr_high_bpm: 130, pause_s: 2.5, disabled: [], request_id: "r1", user: "a", set_at_ms: 1 };
  st.handle({ type: "state", patient_id: "9", active_alarms: [], alarm_settings: applied });
  st.handle({ type: "state", patient_id: "9", active_alarms: [], alarm_settings: { ...applied } });
  assert.deepEqual(seen, [null, "r1"]);
  assert.equal(p.alarmSettings.request_id, "r1");
  st.loadPatients([{ patient_id: "9", alarm_settings: null }]);
  assert.deepEqual(seen, [null, "r1", null]);
});

// ---- alarm sound: what sounds when (alarmsound.js) ----------------------------------------

const HIGH_A = { id: "203:vt:1", priority: "high", acked: false };
const HIGH_B = { id: "210:brady:1", priority: "high", acked: false };
const MED = { id: "200:af:1", priority: "medium", acked: false };
const LOW = { id: "106:big:1", priority: "low", acked: false };
const acked = (a) => ({ ...a, acked: true });

/** Run the sound logic every 250 ms from fromMs to toMs; alarmsAt(t) gives the snapshot. */
function runSound(sound, alarmsAt, fromMs, toMs, hooks = {}) {
  const played = [];
  for (let t = fromMs; t < toMs; t += 250) {
    hooks[t]?.(sound, t);
    const d = sound.update(alarmsAt(t), t);
    if (d.play) played.push({ t, play: d.play, reason: d.reason, pauseEnded: d.pauseEnded });
  }
  return played;
}

function audioOn(timing) {
  const s = new AlarmSound(timing);
  s.setEnabled(true);
  return s;
}

test("alarm sound: an unacknowledged high repeats every 10 s until acknowledged, then stops", () => {
  assert.equal(HIGH_BURST_INTERVAL_MS, 10_000);
  const sound = audioOn();
  const played = runSound(sound, (t) => [t < 25_000 ? HIGH_A : acked(HIGH_A)], 0, 60_000);
  assert.deepEqual(played.map((e) => [e.t, e.play, e.reason]), [
    [0, "high", "onset"],
    [10_000, "high", "repeat"],
    [20_000, "high", "repeat"],
  ]);
  assert.equal(PATTERNS.high.freqHz, 880);
  assert.deepEqual(PATTERNS.high.offsetsS, [0, 0.2, 0.4, 0.9, 1.1]); // 3 + 2 pulses
});

test("alarm sound: an alarm that ends stops its bursts; one that comes back is new", () => {
  const sound = audioOn();
  const played = runSound(sound, (t) => (t < 15_000 ? [HIGH_A] : t < 40_000 ? [] : [HIGH_B]), 0, 45_000);
  assert.deepEqual(played.map((e) => [e.t, e.reason]), [[0, "onset"], [10_000, "repeat"], [40_000, "onset"]]);
});

test("alarm sound: medium repeats every 20 s, and only when no high is unacknowledged", () => {
  assert.equal(MEDIUM_BURST_INTERVAL_MS, 20_000);
  const sound = audioOn();
  // high and medium at once; the high is acknowledged at 15 s
  const played = runSound(sound, (t) => [MED, t < 15_000 ? HIGH_A : acked(HIGH_A)], 0, 60_000);
  assert.deepEqual(played.map((e) => [e.t, e.play]), [
    [0, "high"],
    [10_000, "high"],
    [15_000, "medium"], // never sounded in this cycle: at once
    [35_000, "medium"],
    [55_000, "medium"],
  ]);
  assert.equal(PATTERNS.medium.offsetsS.length, 3);
  assert.ok(PATTERNS.medium.freqHz < PATTERNS.high.freqHz);
});

test("alarm sound: a new high sounds at once and restarts the cycle; bursts never overlap", () => {
  const sound = audioOn();
  const played = runSound(sound, (t) => (t < 4_000 ? [HIGH_A] : [HIGH_A, HIGH_B]), 0, 30_000);
  assert.deepEqual(played.map((e) => [e.t, e.reason]), [
    [0, "onset"],
    [4_000, "onset"],
    [14_000, "repeat"], // 10 s after the new onset, not after the first burst
    [24_000, "repeat"],
  ]);
  // a new high 1 s after a burst waits for the 2 s gap, then sounds (not 10 s later)
  const s2 = audioOn();
  const p2 = runSound(s2, (t) => (t < 1_000 ? [HIGH_A] : [HIGH_A, HIGH_B]), 0, 5_000);
  assert.deepEqual(p2.map((e) => [e.t, e.reason]), [[0, "onset"], [2_000, "onset"]]);
});

test("alarm sound: low gives one tone at its onset, never repeats, and is covered by a higher sound", () => {
  const sound = audioOn();
  const lowOnly = runSound(sound, (t) => (t < 5_000 ? [] : [LOW]), 0, 60_000);
  assert.deepEqual(lowOnly.map((e) => [e.t, e.play]), [[5_000, "low"]]);
  const s2 = audioOn();
  const withHigh = runSound(s2, (t) => (t < 5_000 ? [HIGH_A] : [HIGH_A, { ...LOW, id: "106:big:2" }]), 0, 12_000);
  assert.deepEqual(withHigh.map((e) => e.play), ["high", "high"]);
  // a low acknowledged before it could sound makes no sound
  const s3 = audioOn();
  assert.deepEqual(runSound(s3, () => [acked(LOW)], 0, 5_000), []);
});

test("alarm sound: nothing while audio is off; switching it on sounds what is unacknowledged at once", () => {
  const sound = new AlarmSound();
  assert.deepEqual(runSound(sound, () => [HIGH_A, LOW], 0, 30_000), []);
  sound.setEnabled(true);
  const played = runSound(sound, () => [HIGH_A, LOW], 30_000, 41_000);
  // the alarms were seen while audio was off: no onset, the cycle's first burst (and no low tone)
  assert.deepEqual(played.map((e) => [e.t, e.play, e.reason]), [[30_000, "high", "first"], [40_000, "high", "repeat"]]);
  sound.setEnabled(false);
  assert.deepEqual(runSound(sound, () => [HIGH_A], 41_000, 70_000), []);
});

test("alarm sound: the pause silences everything for 2 min, then what is unacknowledged sounds", () => {
  assert.equal(AUDIO_PAUSE_MS, 120_000);
  const sound = audioOn();
  const played = runSound(sound, (t) => (t < 50_000 ? [HIGH_A, MED] : [HIGH_A, MED, LOW]), 0, 140_000, {
    3_000: (s, t) => assert.ok(s.pause(t)),
    60_000: (s, t) => assert.equal(s.pauseLeftMs(t), 63_000),
  });
  assert.deepEqual(played.map((e) => [e.t, e.reason, e.pauseEnded]), [
    [0, "onset", null],
    [123_000, "first", "expired"],
    [133_000, "repeat", null],
  ]);
  assert.ok(!sound.paused);
});

test("alarm sound: cancelling the pause sounds at once; the pause needs audio on", () => {
  const sound = audioOn();
  const played = runSound(sound, () => [MED], 0, 30_000, {
    1_000: (s, t) => s.pause(t),
    9_000: (s) => s.cancelPause(),
  });
  assert.deepEqual(played.map((e) => [e.t, e.play]), [[0, "medium"], [9_000, "medium"], [29_000, "medium"]]);
  const off = new AlarmSound();
  assert.equal(off.pause(0), false);
  assert.ok(!off.paused);
});

test("alarm sound: a new high ends the pause and sounds; a new medium or low does not", () => {
  const sound = audioOn();
  const played = runSound(
    sound,
    (t) => [HIGH_A, ...(t >= 20_000 ? [MED] : []), ...(t >= 25_000 ? [LOW] : []), ...(t >= 40_000 ? [HIGH_B] : [])],
    0,
    45_000,
    { 1_000: (s, t) => s.pause(t) },
  );
  assert.deepEqual(played.map((e) => [e.t, e.play, e.reason, e.pauseEnded]), [
    [0, "high", "onset", null],
    [40_000, "high", "onset", "new-high"],
  ]);
  assert.ok(!sound.paused);
  // an acknowledged new high (someone else handled it) does not end the pause
  const s2 = audioOn();
  assert.deepEqual(runSound(s2, (t) => (t < 5_000 ? [] : [acked(HIGH_B)]), 0, 10_000, { 0: (s, t) => s.pause(t) }), []);
  assert.ok(s2.paused);
});

test("alarm sound: technical alarms count at their priority; acks and ends come from the store", () => {
  const st = new Store();
  const alert = { type: "alert", phase: "onset", t_s: 5, onset_t_s: 5 };
  st.handle({ ...alert, patient_id: "105", alarm_id: "105:lead_off:1", alarm_type: "lead_off", priority: "high",
    technical: true });
  st.handle({ ...alert, patient_id: "106", alarm_id: "106:noise:1", alarm_type: "noise", priority: "medium",
    technical: true });
  const snap = () => alarmSnapshot(st.patients.values());
  assert.deepEqual(snap(), [
    { id: "105:lead_off:1", priority: "high", acked: false },
    { id: "106:noise:1", priority: "medium", acked: false },
  ]);
  const sound = audioOn();
  const played = [];
  for (let t = 0; t < 50_000; t += 250) {
    if (t === 12_000) st.handle({ type: "acked", alarm_id: "105:lead_off:1", user: "kim" });
    if (t === 40_000) st.handle({ type: "state", patient_id: "106", active_alarms: [] }); // ended
    const d = sound.update(snap(), t);
    if (d.play) played.push([t, d.play]);
  }
  assert.deepEqual(played, [[0, "high"], [10_000, "high"], [12_000, "medium"], [32_000, "medium"]]);
});

test("alarm sound: timing overrides for tests take positive numbers only", () => {
  assert.deepEqual(parseTiming('{"highMs": 2500, "pauseMs": 6000, "bogus": 1}'), { highMs: 2500, pauseMs: 6000 });
  assert.deepEqual(parseTiming('{"highMs": -1, "mediumMs": "3000"}'), {});
  assert.deepEqual(parseTiming("not json"), {});
  assert.deepEqual(parseTiming(null), {});
  const sound = audioOn(parseTiming('{"highMs": 2500}'));
  const played = runSound(sound, () => [HIGH_A], 0, 6_000);
  assert.deepEqual(played.map((e) => e.t), [0, 2_500, 5_000]);
});

// ---- patient details: bed label, name, note ------------------------------------------------

const bedOrder = (rows) => rows.map(([id, bed]) => ({ id, info: bed === undefined ? null : normInfo({ bed }) }))
  .sort(compareBeds)
  .map((r) => r.id);

test("patient details: bed order is natural on the bed label, else on the id", () => {
  assert.deepEqual(bedOrder([["a", "10"], ["b", "2"], ["c", "1"]]), ["c", "b", "a"]);
  assert.deepEqual(bedOrder([["x", "ICU-10"], ["y", "ICU-2"], ["z", "icu-1"]]), ["z", "y", "x"]);
  // no label: the id is the key ("mitdb-203" sorts among labels as its id would)
  assert.deepEqual(bedOrder([["mitdb-210", undefined], ["mitdb-100", undefined], ["mitdb-203", "1"]]), [
    "mitdb-203",
    "mitdb-100",
    "mitdb-210",
  ]);
  // a label cleared at discharge ("" after trimming) falls back to the id; equal labels: by id
  assert.deepEqual(bedOrder([["20", ""], ["3", "  "], ["9", "5"], ["8", "5"]]), ["3", "8", "9", "20"]);
  assert.equal(bedKey("203", null), "203");
  assert.equal(bedKey("203", { bed: "ICU-2" }), "ICU-2");
});

test("patient details: the store keeps info from state frames and GET rows; the station order follows", () => {
  const st = new Store();
  const fired = [];
  st.addEventListener("info", (ev) => fired.push(ev.detail.patient.id));
  st.loadPatients([
    { patient_id: "100", info: null },
    { patient_id: "203", info: { bed: "2", name: "Ada L", note: "", updated_by: "kim", updated_at_ms: 5 } },
    { patient_id: "119" }, // a gateway without the feature: info stays unknown
  ]);
  assert.equal(st.patient("100").info, null);
  assert.equal(st.patient("119").info, undefined);
  assert.deepEqual(st.patient("203").info, { bed: "2", name: "Ada L", note: "", updated_by: "kim", updated_at_ms: 5 });
  assert.deepEqual(st.ids(), ["203", "100", "119"]); // "2" before "100"
  assert.deepEqual(fired, ["100", "203"]);
  const info = { bed: "10", name: "Ada L", note: "pacemaker", updated_by: "kim", updated_at_ms: 9 };
  st.handle({ type: "state", patient_id: "203", active_alarms: [], info });
  st.handle({ type: "state", patient_id: "203", active_alarms: [], info }); // no change: no event
  st.handle({ type: "state", patient_id: "100", active_alarms: [] }); // no `info` key: kept as it was
  assert.deepEqual(fired, ["100", "203", "203"]);
  assert.equal(st.patient("203").info.note, "pacemaker");
  assert.equal(st.patient("100").info, null);
  assert.deepEqual(st.ids(), ["203", "100", "119"]); // "10" before "100"
  st.handle({ type: "state", patient_id: "203", info: { ...info, bed: "", name: "", note: "" } }); // discharged
  assert.deepEqual(st.ids(), ["100", "119", "203"]);
  assert.ok(!hasDetails(st.patient("203").info));
});

test("patient details: the form checks the gateway's limits, counting characters as it does", () => {
  const ok = validateInfo({ bed: " ICU-3 ", name: "Zoë Brontë", note: "pacemaker; allergic to 💊" });
  assert.deepEqual(ok, { ok: true, errors: {}, info: { bed: "ICU-3", name: "Zoë Brontë", note: "pacemaker; allergic to 💊" } });
  assert.deepEqual(validateInfo({}).info, { bed: "", name: "", note: "" }); // all empty: clears
  assert.equal(charCount("💊💊"), 2); // code points, not UTF-16 units (the gateway counts 2)
  assert.ok(validateInfo({ bed: "💊".repeat(16) }).ok);
  const long = validateInfo({ bed: "B".repeat(17), name: "n".repeat(101), note: "x".repeat(200) });
  assert.equal(long.ok, false);
  assert.equal(long.info, null);
  assert.equal(long.errors.bed, "Bed label: at most 16 characters (17 now).");
  assert.equal(long.errors.name, "Name: at most 100 characters (101 now).");
  assert.equal(long.errors.note, undefined);
  assert.ok(validateInfo({ bed: `  ${"B".repeat(16)}  ` }).ok); // spaces around are trimmed first
  const bad = validateInfo({ name: "Ada\tL", note: "line 1\nline 2", bed: "1\u00a02" });
  assert.deepEqual(Object.keys(bad.errors).sort(), ["bed", "name", "note"]);
  assert.match(bad.errors.note, /one line of text/);
  assert.ok(isPrintableLine("Dr. O'Brien – 3rd floor"));
  assert.ok(!isPrintableLine("a\u200bb")); // a zero-width space is a format character
  assert.equal(counterText("bed", " ICU-3 "), "5 / 16");
});

test("patient details: what tiles and the header show, and who changed them", () => {
  assert.deepEqual(titleParts("mitdb-203", null), { main: "mitdb-203", name: "", id: "", tooltip: "Patient mitdb-203" });
  const info = normInfo({ bed: "12", name: "Ada Lovelace", note: "pacemaker", updated_by: "kim", updated_at_ms: 0 });
  assert.deepEqual(titleParts("mitdb-203", info), {
    main: "12",
    name: "Ada Lovelace",
    id: "mitdb-203",
    tooltip: "Bed 12 · Ada Lovelace · id mitdb-203",
  });
  // a name without a bed label: the id stays the title
  assert.equal(titleParts("203", normInfo({ name: "Ada" })).main, "203");
  assert.equal(shortNote("pacemaker"), "pacemaker");
  assert.equal(shortNote("x".repeat(40), 10), `${"x".repeat(9)}…`);
  assert.equal(charCount(shortNote("💊".repeat(40), 10)), 10);
  assert.equal(normInfo(null), null);
  assert.deepEqual(normInfo({ bed: 3, name: " Ada ", note: null }), {
    bed: "",
    name: "Ada",
    note: "",
    updated_by: null,
    updated_at_ms: null,
  });
  const at = new Date(2024, 4, 7, 14, 3, 20).getTime();
  assert.equal(originText({ ...info, updated_at_ms: at }, at + 1000), "Changed by kim · 14:03:20");
  assert.equal(originText({ bed: "", name: "", note: "", updated_by: "kim", updated_at_ms: at }, at), "Cleared by kim · 14:03:20");
  assert.equal(originText(null), "No details entered for this patient.");
  assert.ok(sameDetails(null, { bed: "", name: "", note: "" }));
  assert.ok(!sameDetails(info, { ...info, note: "" }));
});

test("patient details: gateway errors for the user, and the field a 422 names", () => {
  // FastAPI's detail list, as api.js renders it, and the gateway's own {error}
  assert.equal(infoErrorField("bed: String should have at most 16 characters"), "bed");
  assert.equal(infoErrorField("note must be printable text on one line"), "note");
  assert.equal(infoErrorField("something else"), null);
  const e422 = new ApiError("422: name must be printable text on one line", 422, "name must be printable text on one line");
  assert.equal(infoErrorText(e422), "Not saved: the gateway refused the details: name must be printable text on one line");
  assert.equal(infoErrorText(new ApiError("404: unknown patient", 404, "unknown patient")), "Not saved: the gateway does not know this patient.");
  assert.match(infoErrorText(new ApiError("x", 0, "x")), /unreachable/);
  assert.match(infoErrorText(new ApiError("503: redis down", 503, "redis down"), "load"), /^Patient details unavailable/);
});

// ---- a lost gateway connection is a technical alarm of medium priority ------------------------

test("connection loss: silent for 10 s, then the medium tone repeating until reconnected", () => {
  assert.equal(CONNECTION_LOSS_DELAY_MS, 10_000);
  assert.equal(connectionLossAlarm(null, 50_000), null); // connected
  assert.equal(connectionLossAlarm(1_000, 11_000), null); // exactly 10 s: not yet
  assert.deepEqual(connectionLossAlarm(1_000, 11_001), {
    id: "connection-lost:1000",
    priority: "medium",
    acked: false,
    technical: true,
  });
  const sound = audioOn();
  const down = (t) => (t >= 5_000 && t < 50_000 ? 5_000 : null); // lost at 5 s, back at 50 s
  const played = [];
  const lost = [];
  for (let t = 0; t < 80_000; t += 250) {
    const d = sound.update([], t, down(t));
    if (d.play) played.push([t, d.play, d.reason]);
    if (d.connectionLost !== (lost.length % 2 === 1)) lost.push(t);
  }
  assert.deepEqual(played, [
    [15_250, "medium", "onset"], // the first tick after 10 s down
    [35_250, "medium", "repeat"],
  ]);
  assert.deepEqual(lost, [15_250, 50_000]); // the banner: on after 10 s, off on reconnect
});

test("connection loss: a high alarm wins over it; the audio pause silences it", () => {
  const sound = audioOn();
  // lost from 0; an unacknowledged high (stale on screen) until it is acknowledged at 30 s
  const played = runSoundDown(sound, (t) => [t < 30_000 ? HIGH_A : acked(HIGH_A)], () => 0, 0, 60_000);
  assert.deepEqual(played, [
    [0, "high", "onset"],
    [10_000, "high", "repeat"],
    [20_000, "high", "repeat"],
    [30_000, "medium", "first"], // the high is handled: the connection loss sounds at once
    [50_000, "medium", "repeat"],
  ]);
  const paused = audioOn();
  const p2 = runSoundDown(paused, () => [], () => 0, 0, 40_000, { 5_000: (s, t) => s.pause(t) });
  assert.deepEqual(p2, []); // paused before it sounded: the 2 min pause covers it
  const p3 = runSoundDown(paused, () => [], () => 0, 40_000, 130_000);
  assert.deepEqual(p3, [[125_000, "medium", "first"]]); // the pause is over, still lost
  // with audio off nothing sounds, but the station still knows (the banner shows)
  const off = new AlarmSound();
  const d = off.update([], 20_000, 0);
  assert.equal(d.play, null);
  assert.equal(d.connectionLost, true);
});

test("connection loss: each loss is a new alarm; the delay can be shortened for tests", () => {
  assert.deepEqual(parseTiming('{"connLossMs": 1500}'), { connLossMs: 1500 });
  const sound = audioOn(parseTiming('{"connLossMs": 1500, "mediumMs": 4000}'));
  const down = (t) => (t < 6_000 ? 0 : t < 8_000 ? null : 8_000);
  const played = runSoundDown(sound, () => [], down, 0, 15_000);
  assert.deepEqual(played, [
    [1_750, "medium", "onset"],
    [5_750, "medium", "repeat"],
    [9_750, "medium", "onset"], // lost again at 8 s: a new alarm after 1.5 s
    [13_750, "medium", "repeat"],
  ]);
});

function runSoundDown(sound, alarmsAt, downAt, fromMs, toMs, hooks = {}) {
  const played = [];
  for (let t = fromMs; t < toMs; t += 250) {
    hooks[t]?.(sound, t);
    const d = sound.update(alarmsAt(t), t, downAt(t));
    if (d.play) played.push([t, d.play, d.reason]);
  }
  return played;
}
