// Client-side state of every patient, fed by WebSocket frames and REST answers.
// Emits events: "hello", "patients", "beat", "alert", "alarms", "state", "settings", "alarm-defaults", "info",
// "onset-high", "discharged", "feed".
//
// A `discharged` frame removes the patient (tile, active alarms, so nothing sounds for it); the
// frames of its ended stay that come after it (queued ones, late alarm ends) are dropped, and data
// that arrives later under the same id is a new admission: a fresh patient (see discharge.js).

import { DISCHARGE_QUIET_MS } from "./discharge.js";
import { normFeed } from "./feed.js";
import { compareBeds, normInfo } from "./patientinfo.js";
import { AutoScale } from "./trace.js";
import { Playout, Ring } from "./ring.js";
import { isNum } from "./util.js";

const BEAT_KEEP_S = 12 * 60; // heart-rate trend covers 10 min
const BEAT_KEEP_MAX = 3000;
const ALERT_KEEP = 500;
const RING_SECONDS = 32;
const ENDED_STAY_ALARMS_KEEP = 5000; // alarm ids of discharged stays, whose late frames are dropped
const DISCHARGES_KEEP = 500;
// technical by name when a frame does not say (state frames' active lists): no_data is the
// gateway's alarm for a bedside monitor that stopped sending
const TECH_TYPES = new Set(["signal_inoperable", "lead_off", "leads_off", "no_signal", "noise", "gap", "no_data"]);

function isTechnical(a, known) {
  if (a.technical === true || known?.technical === true) return true;
  if (a.technical === false) return false;
  return TECH_TYPES.has(String(a.alarm_type || known?.alarm_type || "").toLowerCase());
}

/** Redis stream ids "ms-seq" in order. */
export function streamIdLess(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = b.split("-").map(Number);
  return am < bm || (am === bm && as < bs);
}

class Patient {
  constructor(id) {
    this.id = id;
    this.ring = null;
    this.playout = new Playout();
    this.scale = new AutoScale();
    this.lead = "";
    this.hr = null;
    this.lastClass = null;
    this.beats = []; // [{t, cls, conf, hr}]
    this.active = new Map(); // alarm_id -> alarm
    this.alerts = []; // history, newest last
    this.alertKeys = new Set();
    this.ended = new Map(); // alarm_id -> wall ms when its "end" arrived
    this.alarmInfo = new Map(); // alarm_id -> {onset_t_s, message, technical} from alert frames
    this.lastDataWall = 0;
    this.known = false;
    // The alarm settings the monitor applies (the `applied` of the alarm-settings API): null for
    // the defaults, undefined until a state frame says (a gateway without the feature never does).
    this.alarmSettings = undefined;
    this.settingsSig = "";
    // What the ward entered (bed label, name, note, who, when; see patientinfo.js): null for
    // none, undefined until a state frame or GET says (a gateway without the feature never does).
    this.info = undefined;
    this.infoSig = "";
  }

  get newestT() {
    return this.ring?.endTime ?? null;
  }

  /** Highest-priority unacknowledged alarm's display priority, or null. */
  get alarmLevel() {
    let best = null;
    const rank = { high: 3, medium: 2, low: 1, technical: 0 };
    for (const a of this.active.values()) {
      const p = a.technical ? "technical" : a.priority;
      if (best === null || (rank[p] ?? 0) > (rank[best] ?? 0)) best = p;
    }
    return best;
  }

  get unackedHigh() {
    for (const a of this.active.values()) {
      if (a.priority === "high" && !a.technical && !a.acknowledged_by) return true;
    }
    return false;
  }
}

export class Store extends EventTarget {
  constructor() {
    super();
    this.patients = new Map();
    this.lastAlertId = null;
    this.serverTimeOffsetMs = 0;
    // The deployment's alarm defaults (hello frame): what a bed's settings are compared with.
    this.alarmDefaults = null;
    // Discharged patients not admitted again: id -> {patient_id, request_id, user, at_ms, info,
    // alarms_ended, wall (performance.now() of the frame)}.
    this.discharged = new Map();
    this.dischargeIds = new Set(); // request ids seen: a discharge is applied once
    this.endedStayAlarms = new Set(); // alarm ids of discharged stays: never active again
    // Whether bedside data reaches the gateway (feed.js): {receiving, lastDataMs} from the hello
    // and `feed` frames, null when unknown (before the hello, a gateway without the watch).
    this.feed = null;
    this.clock = () => performance.now();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /**
   * The patient with this id, created on first use. known=false (a patient view opened from a
   * typed URL) keeps it off the station grid until the gateway mentions it.
   */
  patient(id, create = true, known = true) {
    const key = String(id);
    let p = this.patients.get(key);
    if (!p && create) {
      p = new Patient(key);
      this.patients.set(key, p);
    }
    if (p && known && !p.known) {
      p.known = true;
      this.emit("patients", { added: key });
    }
    return p;
  }

  /** Ids of the patients the gateway has mentioned, in bed order (the bed label, else the id). */
  ids() {
    return [...this.patients.values()]
      .filter((p) => p.known)
      .sort(compareBeds)
      .map((p) => p.id);
  }

  handle(msg) {
    if (!msg || typeof msg !== "object") return;
    switch (msg.type) {
      case "hello":
        if (isNum(msg.server_time_ms)) this.serverTimeOffsetMs = msg.server_time_ms - Date.now();
        if (msg.alarm_defaults && typeof msg.alarm_defaults === "object") {
          this.alarmDefaults = msg.alarm_defaults;
          this.emit("alarm-defaults", { defaults: msg.alarm_defaults });
        }
        this.setFeed(msg.feed); // the current state on every (re)connect; absent: unknown
        for (const id of msg.patients || []) if (this.admits(id)) this.patient(id);
        this.emit("hello", {
          patients: Array.isArray(msg.patients) ? msg.patients.map(String) : null,
          wall: this.clock(),
        });
        break;
      case "waveform":
        return this.admits(msg.patient_id) && this.onWaveform(msg);
      case "beat":
        return this.admits(msg.patient_id) && this.onBeat(msg);
      case "alert":
        return this.onAlert(msg, true);
      case "state":
        return this.admits(msg.patient_id) && this.onState(msg);
      case "acked":
        return this.onAcked(msg.alarm_id, msg.user);
      case "discharged":
        return this.onDischarged(msg);
      case "feed":
        return this.setFeed(msg);
      default:
        break;
    }
  }

  /** The gateway's feed state (a `feed` frame, the hello's `feed`); "feed" fires when it changes. */
  setFeed(raw) {
    const next = normFeed(raw);
    const prev = this.feed;
    this.feed = next;
    if (prev?.receiving === next?.receiving && prev?.lastDataMs === next?.lastDataMs) return;
    this.emit("feed", { feed: next });
  }

  /**
   * May data under this id be shown? Not for a discharged patient during DISCHARGE_QUIET_MS after
   * its `discharged` frame (queued frames of the ended stay); after that it is a new admission,
   * and the patient is created afresh.
   */
  admits(id) {
    if (id === undefined || id === null) return true;
    const gone = this.discharged.get(String(id));
    if (!gone) return true;
    if (this.clock() - gone.wall < DISCHARGE_QUIET_MS) return false;
    this.discharged.delete(String(id));
    return true;
  }

  /**
   * The patient was discharged (a `discharged` frame, or a discharge the station missed while it
   * was offline, with the archive's `info`): forget it and its active alarms; "patients",
   * "alarms" and "discharged" ({patient: the removed one or null, record}) fire.
   */
  onDischarged(msg) {
    if (msg.patient_id === undefined || msg.patient_id === null) return;
    const key = String(msg.patient_id);
    const requestId = msg.request_id ? String(msg.request_id) : null;
    if (requestId && this.dischargeIds.has(requestId)) return; // the same discharge again
    if (requestId) this.dischargeIds.add(requestId);
    if (this.dischargeIds.size > DISCHARGES_KEEP) this.dischargeIds.delete(this.dischargeIds.values().next().value);
    const p = this.patients.get(key) ?? null;
    const stayAlarms = p ? [...p.active.keys(), ...p.alarmInfo.keys(), ...p.alerts.map((a) => a.alarm_id)] : [];
    const record = {
      patient_id: key,
      request_id: requestId,
      user: typeof msg.user === "string" ? msg.user : null,
      at_ms: isNum(msg.at_ms) ? msg.at_ms : null,
      info: normInfo(msg.info) ?? p?.info ?? null, // the archive's (a missed discharge), else what was shown
      alarms_ended: p ? [...p.active.keys()] : [],
      wall: this.clock(),
    };
    for (const id of stayAlarms) if (id) this.endedStayAlarms.add(String(id));
    for (const id of this.endedStayAlarms) {
      if (this.endedStayAlarms.size <= ENDED_STAY_ALARMS_KEEP) break;
      this.endedStayAlarms.delete(id);
    }
    this.discharged.delete(key); // (re)inserted last: the map stays in discharge order
    this.discharged.set(key, record);
    if (this.discharged.size > DISCHARGES_KEEP) this.discharged.delete(this.discharged.keys().next().value);
    if (p) {
      this.patients.delete(key);
      const hadAlarms = p.active.size > 0;
      p.active = new Map();
      this.emit("patients", { removed: key });
      if (hadAlarms) this.emit("alarms", { patient: p, removed: true });
    }
    this.emit("discharged", { patient: p, record });
  }

  /**
   * Discharges this station missed (it was offline when they were sent): the rows of GET
   * /api/discharges (newest first) of patients it still shows although the gateway's hello no
   * longer lists them (`monitored`: the hello's ids) and that sent no data since (`sinceWall`,
   * the hello's clock). The newest per patient, not seen before.
   */
  missedDischarges(rows, monitored, sinceWall = Infinity) {
    const listed = new Set((monitored || []).map(String));
    const out = [];
    const done = new Set();
    for (const row of rows || []) {
      const id = row?.patient_id === undefined || row?.patient_id === null ? null : String(row.patient_id);
      if (id === null || done.has(id)) continue;
      done.add(id);
      const p = this.patients.get(id);
      if (listed.has(id) || !p?.known || p.lastDataWall > sinceWall) continue;
      if (row.request_id && this.dischargeIds.has(String(row.request_id))) continue;
      out.push(row);
    }
    return out;
  }

  /** Patients on the station that the gateway's hello (its monitored ids) does not list. */
  unlisted(monitored) {
    const listed = new Set((monitored || []).map(String));
    return this.ids().filter((id) => !listed.has(id));
  }

  onWaveform(msg) {
    if (msg.patient_id === undefined || !Array.isArray(msg.mv) || !isNum(msg.fs_hz) || msg.fs_hz <= 0) return;
    const p = this.patient(msg.patient_id);
    if (!p.ring || p.ring.fs !== msg.fs_hz) {
      p.ring = new Ring(msg.fs_hz, RING_SECONDS);
      p.playout.reset();
    }
    // One trace per patient: if several leads are streamed, keep the first one seen
    // (switch only when it has been silent for 5 s).
    const lead = msg.lead ? String(msg.lead) : "";
    if (lead && p.lead && lead !== p.lead && performance.now() - p.lastDataWall < 5000) return;
    if (lead && lead !== p.lead) {
      if (p.lead) {
        p.ring = new Ring(msg.fs_hz, RING_SECONDS);
        p.playout.reset();
      }
      p.lead = lead;
    }
    const t = isNum(msg.t_s) ? msg.t_s : isNum(msg.first_sample_index) ? msg.first_sample_index / msg.fs_hz : null;
    if (t === null) return;
    if (p.ring.push(t, msg.mv) === "reset") {
      p.playout.reset();
      p.beats = [];
    }
    p.playout.onData(p.ring.endTime, performance.now());
    p.lastDataWall = performance.now();
  }

  onBeat(msg) {
    if (msg.patient_id === undefined || !isNum(msg.t_s)) return;
    const p = this.patient(msg.patient_id);
    const last = p.beats[p.beats.length - 1];
    if (last && msg.t_s < last.t - 5) p.beats = []; // source restarted
    else if (last && msg.t_s <= last.t) return; // duplicate after a reconnect
    const beat = { t: msg.t_s, cls: String(msg.class || "U").toUpperCase(), conf: msg.confidence, hr: msg.hr_bpm };
    if (!isNum(beat.hr) && last && beat.t - last.t > 0.2 && beat.t - last.t < 3) beat.hr = 60 / (beat.t - last.t);
    p.beats.push(beat);
    const cutoff = beat.t - BEAT_KEEP_S;
    let drop = 0;
    while (drop < p.beats.length && (p.beats[drop].t < cutoff || p.beats.length - drop > BEAT_KEEP_MAX)) drop++;
    if (drop) p.beats.splice(0, drop);
    p.lastClass = beat.cls;
    if (isNum(msg.hr_bpm)) p.hr = msg.hr_bpm;
    this.emit("beat", { patient: p, beat });
  }

  /** An alert frame (live, or from the REST history when live=false). */
  onAlert(a, live) {
    if (a.patient_id === undefined) return;
    if (live && a.id !== undefined && a.id !== null) this.lastAlertId = String(a.id);
    // a discharged stay's alarms (their ends come after the discharge) are no one's any more; an
    // alarm alone does not admit a discharged patient again: its data does
    if (a.alarm_id && this.endedStayAlarms.has(String(a.alarm_id))) return;
    if (this.discharged.has(String(a.patient_id))) return;
    const p = live ? this.patient(a.patient_id) : this.patients.get(String(a.patient_id));
    if (!p) return; // history of a patient no longer (or not yet) on the station
    const key = String(a.alert_id ?? a.id ?? `${a.alarm_id}:${a.phase}:${a.t_s}`);
    if (!p.alertKeys.has(key)) {
      p.alertKeys.add(key);
      p.alerts.push({ ...a, _key: key });
      p.alerts.sort((x, y) => (x.t_s ?? 0) - (y.t_s ?? 0));
      if (p.alerts.length > ALERT_KEEP) p.alerts.splice(0, p.alerts.length - ALERT_KEEP);
    } else if (!live) {
      return;
    }
    const id = a.alarm_id;
    if (id) this.rememberInfo(p, a);
    if (!live || !id) return; // history only feeds the table; state frames own the active list
    if (a.phase === "end") {
      p.active.delete(id);
      p.ended.set(id, performance.now());
    } else {
      const prev = p.active.get(id);
      const isNew = !prev && !p.ended.has(id);
      p.active.set(id, {
        ...prev,
        alarm_id: id,
        alarm_type: a.alarm_type,
        priority: String(a.priority || prev?.priority || "low").toLowerCase(),
        technical: isTechnical(a, prev),
        onset_t_s: a.onset_t_s ?? prev?.onset_t_s,
        t_s: a.t_s,
        message: a.message ?? prev?.message,
        heart_rate_bpm: a.heart_rate_bpm,
        acknowledged_by: prev?.acknowledged_by ?? null,
      });
      const fresh = p.newestT === null || !isNum(a.t_s) || Math.abs(p.newestT - a.t_s) < 30;
      if (isNew && a.phase === "onset" && fresh && a.priority === "high" && !a.technical) {
        this.emit("onset-high", { patient: p, alert: a });
      }
    }
    if (isNum(a.heart_rate_bpm) && a.heart_rate_bpm > 0 && p.hr === null) p.hr = a.heart_rate_bpm;
    this.emit("alert", { patient: p, alert: a });
    this.emit("alarms", { patient: p });
  }

  rememberInfo(p, a) {
    const info = p.alarmInfo.get(a.alarm_id) || {};
    if (isNum(a.onset_t_s)) info.onset_t_s = a.onset_t_s;
    if (a.message) info.message = a.message;
    if (typeof a.technical === "boolean") info.technical = a.technical;
    p.alarmInfo.set(a.alarm_id, info);
    if (p.alarmInfo.size > 500) p.alarmInfo.delete(p.alarmInfo.keys().next().value);
    const active = p.active.get(a.alarm_id);
    if (active) {
      active.onset_t_s ??= info.onset_t_s;
      active.message ??= info.message;
      if (typeof info.technical === "boolean") active.technical = info.technical;
    }
  }

  onState(msg) {
    if (msg.patient_id === undefined) return;
    const p = this.patient(msg.patient_id);
    if (isNum(msg.heart_rate_bpm) || msg.heart_rate_bpm === null) p.hr = msg.heart_rate_bpm;
    if (msg.last_class) p.lastClass = String(msg.last_class).toUpperCase();
    if (Array.isArray(msg.active_alarms)) this.setActive(p, msg.active_alarms);
    if ("alarm_settings" in msg) this.setAlarmSettings(p, msg.alarm_settings);
    if ("info" in msg) this.setInfo(p, msg.info);
    this.emit("state", { patient: p });
  }

  /** The settings a state frame (or GET) reports as applied; "settings" fires when they change. */
  setAlarmSettings(p, settings) {
    const next = settings && typeof settings === "object" ? settings : null;
    const sig = next ? JSON.stringify(next) : "defaults";
    p.alarmSettings = next;
    if (sig === p.settingsSig) return;
    p.settingsSig = sig;
    this.emit("settings", { patient: p });
  }

  /** The bed label, name and note (state frame, GET row or answer); "info" fires when they change. */
  setInfo(p, info) {
    const next = normInfo(info);
    const sig = JSON.stringify(next);
    p.info = next;
    if (sig === p.infoSig) return;
    p.infoSig = sig;
    this.emit("info", { patient: p });
  }

  /** Replace the active list (state frames and GET /api/patients are authoritative). */
  setActive(p, list) {
    const now = performance.now();
    for (const [id, at] of p.ended) if (now - at > 5000) p.ended.delete(id);
    const next = new Map();
    for (const a of list) {
      if (!a?.alarm_id || p.ended.has(a.alarm_id) || this.endedStayAlarms.has(String(a.alarm_id))) continue;
      const prev = p.active.get(a.alarm_id) ?? p.alarmInfo.get(a.alarm_id);
      next.set(a.alarm_id, {
        ...prev,
        ...a,
        priority: String(a.priority || prev?.priority || "low").toLowerCase(),
        technical: isTechnical(a, prev),
        acknowledged_by: a.acknowledged_by ?? null,
        ackPending: !a.acknowledged_by && prev?.ackPending && now - prev.ackPending < 8000 ? prev.ackPending : 0,
      });
    }
    const changed =
      next.size !== p.active.size ||
      [...next].some(([id, a]) => {
        const b = p.active.get(id);
        return !b || b.acknowledged_by !== a.acknowledged_by || b.priority !== a.priority;
      });
    p.active = next;
    if (changed) this.emit("alarms", { patient: p });
  }

  onAcked(alarmId, user) {
    for (const p of this.patients.values()) {
      const a = p.active.get(alarmId);
      if (a) {
        a.acknowledged_by = user || "?";
        a.ackPending = 0;
        this.emit("alarms", { patient: p });
      }
    }
  }

  findAlarm(alarmId) {
    for (const p of this.patients.values()) {
      const a = p.active.get(alarmId);
      if (a) return a;
    }
    return null;
  }

  markAckPending(alarmId, pending = true) {
    for (const p of this.patients.values()) {
      const a = p.active.get(alarmId);
      if (a) {
        a.ackPending = pending ? performance.now() : 0;
        this.emit("alarms", { patient: p });
      }
    }
  }

  /** Seed from GET /api/patients. */
  loadPatients(list) {
    if (!Array.isArray(list)) list = list?.patients;
    if (!Array.isArray(list)) return;
    for (const row of list) {
      if (row?.patient_id === undefined || !this.admits(row.patient_id)) continue;
      const p = this.patient(row.patient_id);
      if (isNum(row.heart_rate_bpm)) p.hr = row.heart_rate_bpm;
      if (row.last_class) p.lastClass = String(row.last_class).toUpperCase();
      if (Array.isArray(row.active_alarms)) this.setActive(p, row.active_alarms);
      if ("alarm_settings" in row) this.setAlarmSettings(p, row.alarm_settings);
      if ("info" in row) this.setInfo(p, row.info);
    }
  }

  /** Merge beats from GET /api/patients/{id} (recent_beats) with the live ones. */
  loadBeats(patientId, beats) {
    if (!Array.isArray(beats)) return;
    const p = this.patients.get(String(patientId)); // not for a patient discharged meanwhile
    if (!p) return;
    const known = new Set(p.beats.map((b) => b.t.toFixed(3)));
    for (const b of beats) {
      if (!isNum(b?.t_s) || known.has(b.t_s.toFixed(3))) continue;
      p.beats.push({ t: b.t_s, cls: String(b.class || "U").toUpperCase(), conf: b.confidence, hr: b.hr_bpm });
    }
    p.beats.sort((a, b) => a.t - b.t);
  }

  /** Merge GET /api/alerts history into a patient's table. */
  loadAlerts(patientId, alerts) {
    if (!Array.isArray(alerts)) return;
    if (patientId === null && this.lastAlertId === null) {
      // The newest alert of the whole history: a reconnect before any live alert resumes there.
      const ids = alerts.map((a) => a.id).filter((id) => typeof id === "string" && /^\d+-\d+$/.test(id));
      if (ids.length) this.lastAlertId = ids.reduce((a, b) => (streamIdLess(a, b) ? b : a));
    }
    const touched = new Set();
    for (const a of alerts) {
      const alert = patientId === null ? a : { ...a, patient_id: a.patient_id ?? patientId };
      if (alert.patient_id === undefined) continue;
      this.onAlert(alert, false);
      const p = this.patients.get(String(alert.patient_id)); // history creates no patient
      if (p) touched.add(p);
    }
    for (const p of touched) {
      this.emit("alert", { patient: p, alert: null });
      this.emit("alarms", { patient: p });
    }
  }
}
