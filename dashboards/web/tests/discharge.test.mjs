// The store's handling of a discharge and the texts shown: node --test dashboards/web/tests/
import assert from "node:assert/strict";
import { test } from "node:test";

import { AlarmSound, alarmSnapshot } from "../js/alarmsound.js";
import { ApiError } from "../js/api.js";
import {
  ALARM_CSV_COLUMNS,
  DISCHARGE_QUIET_MS,
  alarmEventsText,
  alarmsCsv,
  alarmsCsvName,
  confirmTexts,
  csvField,
  dischargeErrorText,
  dischargeNotice,
  dischargeRows,
  patientLabel,
  stayAlerts,
  stayErrorText,
} from "../js/discharge.js";
import { Store } from "../js/store.js";

const FS = 120;
const wave = (id, t) => ({ type: "waveform", patient_id: id, lead: "MLII", fs_hz: FS, t_s: t, mv: Array(60).fill(0.1) });
const INFO = { bed: "12", name: "J. Doe", note: "pacemaker", updated_by: "kim", updated_at_ms: 5 };
const VT = { alarm_id: "203:vt:1", alarm_type: "ventricular_tachycardia", priority: "high", acknowledged_by: null };
const AF = { alarm_id: "203:af:2", alarm_type: "atrial_fibrillation", priority: "medium", acknowledged_by: null };
const SETTINGS = { hr_low_bpm: 50, hr_high_bpm: 130, pause_s: 2, disabled: [], user: "kim", request_id: "r1" };

/** A store with a fake clock (ms), patient 203 (bed 12, two alarms, own limits) and patient 100. */
function admitted() {
  const st = new Store();
  let now = 1000;
  st.clock = () => now;
  const advance = (ms) => (now += ms);
  st.handle({ type: "hello", patients: ["100", "203"] });
  st.handle(wave("203", 10));
  st.handle({ type: "alert", id: "1-0", alert_id: "a1", patient_id: "203", phase: "onset", onset_t_s: 9, t_s: 9, ...VT });
  st.handle({ type: "state", patient_id: "203", heart_rate_bpm: 160, active_alarms: [VT, AF], alarm_settings: SETTINGS, info: INFO });
  st.handle({ type: "state", patient_id: "100", heart_rate_bpm: 70, active_alarms: [], info: null });
  return { st, advance };
}

const discharged = { type: "discharged", patient_id: "203", request_id: "d1", user: "nurse a", at_ms: Date.UTC(2024, 0, 1, 14, 2) };

test("discharge: the patient, its tile and its alarms go; the tones have nothing of it to sound", () => {
  const { st } = admitted();
  const fired = [];
  for (const type of ["patients", "alarms", "discharged"]) st.addEventListener(type, (ev) => fired.push([type, ev.detail]));
  const sound = new AlarmSound();
  sound.setEnabled(true);
  assert.equal(sound.update(alarmSnapshot(st.patients.values()), 0).play, "high"); // the VT sounds
  assert.deepEqual(st.ids(), ["203", "100"]); // bed "12" before the id "100"

  st.handle(discharged);
  assert.deepEqual(st.ids(), ["100"]);
  assert.equal(st.patients.has("203"), false);
  assert.equal(st.findAlarm(VT.alarm_id), null);
  assert.deepEqual(alarmSnapshot(st.patients.values()), []);
  const d = sound.update(alarmSnapshot(st.patients.values()), 20_000);
  assert.equal(d.play, null); // no repeat of the VT burst: it is not anyone's alarm any more
  assert.equal(d.level, null);
  assert.deepEqual(fired.map(([type]) => type), ["patients", "alarms", "discharged"]);
  assert.deepEqual(fired[0][1], { removed: "203" });
  const { record, patient } = fired[2][1];
  assert.equal(patient.id, "203");
  assert.deepEqual(
    { ...record, wall: undefined },
    { patient_id: "203", request_id: "d1", user: "nurse a", at_ms: discharged.at_ms, info: INFO, alarms_ended: [VT.alarm_id, AF.alarm_id], wall: undefined },
  );
  assert.equal(st.discharged.get("203").user, "nurse a");
  // the same discharge again (a replay) changes nothing
  st.handle(discharged);
  assert.equal(fired.length, 3);
});

test("discharge: the ended stay's late frames do not bring it back; its alarm ends are dropped", () => {
  const { st, advance } = admitted();
  st.handle(discharged);
  // the gateway sends the discharged frame ahead of frames already queued; the detector's ends
  st.handle({ type: "alert", id: "2-0", alert_id: "a2", patient_id: "203", phase: "end", t_s: 12, details: { reason: "patient discharged by nurse a" }, ...VT });
  st.handle({ type: "alert", id: "3-0", alert_id: "a3", patient_id: "203", phase: "end", t_s: 12, ...AF });
  st.handle({ type: "state", patient_id: "203", heart_rate_bpm: 160, active_alarms: [VT, AF], info: INFO });
  st.handle(wave("203", 10.5));
  st.handle({ type: "beat", patient_id: "203", t_s: 10.4, class: "V", hr_bpm: 160 });
  st.handle({ type: "acked", alarm_id: VT.alarm_id, user: "kim" });
  assert.equal(st.patients.has("203"), false);
  assert.deepEqual(st.ids(), ["100"]);
  assert.equal(st.lastAlertId, "3-0"); // a reconnect still resumes after them
  // the alarm history (REST) of that patient creates nothing either
  st.loadAlerts(null, [{ id: "1-0", alert_id: "a1", patient_id: "203", phase: "onset", t_s: 9, ...VT }]);
  assert.equal(st.patients.has("203"), false);
  advance(DISCHARGE_QUIET_MS + 1);
  // an alarm end that comes even later (a slow detector) still belongs to the ended stay
  st.handle({ type: "alert", id: "4-0", alert_id: "a4", patient_id: "203", phase: "end", t_s: 13, ...AF });
  assert.equal(st.patients.has("203"), false);
});

test("discharge: data after it is a new admission: a fresh patient without the old details, limits or alarms", () => {
  const { st, advance } = admitted();
  st.handle(discharged);
  advance(DISCHARGE_QUIET_MS + 1);
  const added = [];
  st.addEventListener("patients", (ev) => added.push(ev.detail));
  // the new stay's first state frame: the gateway's defaults, no details, no alarms
  st.handle({ type: "state", patient_id: "203", heart_rate_bpm: 75, active_alarms: [], alarm_settings: null, info: null });
  assert.deepEqual(added, [{ added: "203" }]);
  assert.deepEqual(st.ids(), ["100", "203"]);
  const p = st.patient("203");
  assert.equal(p.info, null);
  assert.equal(p.alarmSettings, null);
  assert.equal(p.active.size, 0);
  assert.equal(p.alerts.length, 0);
  assert.equal(p.ring, null); // no trace of the ended stay
  assert.equal(p.hr, 75);
  assert.equal(st.discharged.has("203"), false);
  // a state frame that still lists an alarm of the ended stay does not revive it; new ones count
  const newVt = { ...VT, alarm_id: "203:vt:99" };
  st.handle({ type: "state", patient_id: "203", active_alarms: [VT, newVt] });
  assert.deepEqual([...p.active.keys()], ["203:vt:99"]);
  // a second discharge of the new stay works the same
  st.handle({ ...discharged, request_id: "d2" });
  assert.equal(st.patients.has("203"), false);
});

test("discharge: a waveform frame after the quiet time admits the patient again too", () => {
  const { st, advance } = admitted();
  st.handle(discharged);
  st.handle(wave("203", 11)); // queued: dropped
  assert.equal(st.patients.has("203"), false);
  advance(DISCHARGE_QUIET_MS + 1);
  st.handle(wave("203", 500));
  const p = st.patients.get("203");
  assert.ok(p?.known);
  assert.equal(p.info, undefined); // unknown until its state frame says
  assert.equal(p.ring.t0, 500);
});

test("discharge: one the station missed while offline is found in the archive, once", () => {
  const { st } = admitted();
  const rows = [
    { patient_id: "203", request_id: "d9", user: "kim", discharged_at_ms: 5, alarms_ended: [], info: { bed: "12", name: "J. Doe", note: "" } },
    { patient_id: "203", request_id: "d8", user: "old", discharged_at_ms: 1, info: null }, // an older stay
    { patient_id: "100", request_id: "d7", user: "kim", discharged_at_ms: 3, info: null }, // still monitored
  ];
  assert.deepEqual(st.unlisted(["100"]), ["203"]);
  assert.deepEqual(st.unlisted(["100", "203"]), []);
  assert.deepEqual(st.missedDischarges(rows, ["100"]).map((r) => r.request_id), ["d9"]);
  assert.deepEqual(st.missedDischarges(rows, ["100", "203"]), []);
  // data since the hello: it is monitored (admitted again meanwhile): not removed
  assert.deepEqual(st.missedDischarges(rows, ["100"], -1), []);
  st.handle({ type: "discharged", ...rows[0], at_ms: 5 });
  assert.equal(st.patients.has("203"), false);
  assert.deepEqual(st.missedDischarges(rows, ["100"]), []);
});

test("discharge: the patient named as a nurse does, the notice, the confirmation, errors", () => {
  assert.equal(patientLabel("203", INFO), "Bed 12 (J. Doe)");
  assert.equal(patientLabel("203", { bed: "12", name: "" }), "Bed 12");
  assert.equal(patientLabel("203", { bed: "", name: "J. Doe" }), "J. Doe");
  assert.equal(patientLabel("203", null), "Patient 203");
  const at = new Date(2024, 0, 1, 14, 2, 5).getTime();
  assert.equal(
    dischargeNotice({ patient_id: "203", info: INFO, user: "nurse a", at_ms: at }, at + 60_000),
    "Bed 12 (J. Doe) discharged by nurse a at 14:02:05",
  );
  assert.equal(dischargeNotice({ patient_id: "203", info: null, user: "kim" }), "Patient 203 discharged by kim");
  const t = confirmTexts("203", INFO, 2);
  assert.equal(t.question, "Discharge Bed 12 (J. Doe)?");
  assert.equal(t.id, "id 203");
  assert.match(t.consequences.join(" "), /active alarms end \(2 now\).*leaves the central station.*archived.*new patient/);
  assert.equal(confirmTexts("203", null, 0).id, "");
  assert.equal(confirmTexts("203", null, 0).question, "Discharge patient 203?");
  const kafka = "the discharge was not sent: Kafka did not take it; try again";
  assert.equal(
    dischargeErrorText(new ApiError(`503: ${kafka}`, 503, kafka)),
    "The discharge was not sent: Kafka did not take it; try again. The patient is still monitored.",
  );
  assert.equal(
    dischargeErrorText(new ApiError("422: user must be 1-100 printable characters", 422, "user must be 1-100 printable characters")),
    "Not discharged: user must be 1-100 printable characters. The patient is still monitored.",
  );
  assert.match(dischargeErrorText(new ApiError("404: unknown patient", 404, "unknown patient")), /does not know this patient/);
  assert.match(dischargeErrorText(new ApiError("x", 0, "x")), /unreachable/);
  assert.deepEqual(
    dischargeRows({ discharges: [{ patient_id: 7, request_id: "r", user: "kim", discharged_at_ms: 9, alarms_ended: ["a"], info: null }, { user: "x" }] }),
    [{ patient_id: "7", request_id: "r", user: "kim", at_ms: 9, alarms_ended: ["a"], info: null }],
  );
});

// ---- the archived stay's alarms as CSV (GET /api/discharges/{request_id}) ---------------------

const HEADER = "alert_id,alarm_id,alarm_type,priority,phase,technical,onset_t_s,t_s,heart_rate_bpm,message,reason";

/** A minimal RFC 4180 reader: rows of fields (quoted fields may hold commas, quotes, line breaks). */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\r" && text[i + 1] === "\n") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      i++;
    } else field += c;
  }
  assert.equal(field, "", "text after the last CRLF");
  assert.equal(row.length, 0, "a row without its CRLF");
  return rows;
}

const STAY_ALERTS = [
  // the gateway's alert frames, oldest first
  { type: "alert", id: "1-0", alert_id: "a1", alarm_id: "203:vt:1", patient_id: "203", alarm_type: "ventricular_tachycardia",
    priority: "high", phase: "onset", technical: false, onset_t_s: 9.25, t_s: 9.25, heart_rate_bpm: 165.3,
    message: "VT: run of V beats > 120 bpm", details: {} },
  { type: "alert", id: "2-0", alert_id: "a2", alarm_id: "203:noise:2", patient_id: "203", alarm_type: "signal_inoperable",
    priority: "medium", phase: "update", technical: true, onset_t_s: 10, t_s: 20, heart_rate_bpm: 0,
    message: 'Leads off, "V1", check\nelectrodes', details: { reason: "" } },
  { type: "alert", id: "3-0", alert_id: "a3", alarm_id: "203:vt:1", patient_id: "203", alarm_type: "ventricular_tachycardia",
    priority: "high", phase: "end", technical: false, onset_t_s: 9.25, t_s: 30.5, heart_rate_bpm: 150,
    message: "VT: run of V beats > 120 bpm", details: { reason: 'patient discharged by Kim "K", RN' } },
];

test("stay CSV: the header first, the columns in order, one row per alert event, CRLF", () => {
  assert.deepEqual([...ALARM_CSV_COLUMNS], HEADER.split(","));
  const text = alarmsCsv(STAY_ALERTS);
  assert.ok(text.startsWith(`${HEADER}\r\n`), text);
  assert.ok(text.endsWith("\r\n"));
  const rows = parseCsv(text);
  assert.equal(rows.length, 4);
  assert.deepEqual(rows[0], HEADER.split(","));
  assert.ok(rows.every((r) => r.length === 11), rows);
  // the frames' own fields (type, id, patient_id, details) are not columns; reason is details.reason
  assert.deepEqual(rows[1], ["a1", "203:vt:1", "ventricular_tachycardia", "high", "onset", "false", "9.25", "9.25",
    "165.3", "VT: run of V beats > 120 bpm", ""]);
  assert.deepEqual(rows[2], ["a2", "203:noise:2", "signal_inoperable", "medium", "update", "true", "10", "20", "0",
    'Leads off, "V1", check\nelectrodes', ""]);
  assert.deepEqual(rows[3].slice(0, 6), ["a3", "203:vt:1", "ventricular_tachycardia", "high", "end", "false"]);
  assert.equal(rows[3][10], 'patient discharged by Kim "K", RN');
  // in the gateway's order (oldest first), not re-sorted
  assert.deepEqual(rows.slice(1).map((r) => r[0]), ["a1", "a2", "a3"]);
});

test("stay CSV: fields with commas, quotes, line breaks or edge spaces are quoted, quotes doubled", () => {
  assert.equal(csvField("plain"), "plain");
  assert.equal(csvField("a,b"), '"a,b"');
  assert.equal(csvField('say "hi"'), '"say ""hi"""');
  assert.equal(csvField("two\nlines"), '"two\nlines"');
  assert.equal(csvField("cr\rhere"), '"cr\rhere"');
  assert.equal(csvField(" padded "), '" padded "');
  assert.equal(csvField("Müller – 心拍"), "Müller – 心拍"); // UTF-8 text as is
  assert.equal(csvField(null), "");
  assert.equal(csvField(undefined), "");
  assert.equal(csvField(0), "0");
  assert.equal(csvField(-1.5), "-1.5");
  assert.equal(csvField(Number.NaN), "");
  assert.equal(csvField(false), "false");
  // text a spreadsheet would run as a formula stays text; numbers stay numbers
  assert.equal(csvField('=HYPERLINK("x")'), `"'=HYPERLINK(""x"")"`);
  assert.equal(csvField("+1"), "'+1");
  assert.equal(csvField("@sum"), "'@sum");
  assert.equal(csvField("-2"), "'-2");
  const line = alarmsCsv([{ alert_id: "x", message: 'a, "b"\nc', details: { reason: "r,1" } }]).split("\r\n")[1];
  assert.equal(line, 'x,,,,,,,,,"a, ""b""\nc","r,1"'); // missing fields are empty
});

test("stay CSV: reason is details.reason, empty without details or reason", () => {
  const reasons = (alerts) => parseCsv(alarmsCsv(alerts)).slice(1).map((r) => r[10]);
  assert.deepEqual(
    reasons([
      { alert_id: "1", details: { reason: "turned off for this patient by kim" } },
      { alert_id: "2", details: {} },
      { alert_id: "3" },
      { alert_id: "4", details: null },
      { alert_id: "5", reason: "not from details", details: { other: "x" } },
    ]),
    ["turned off for this patient by kim", "", "", "", ""],
  );
});

test("stay CSV: an empty stay is the header only", () => {
  assert.equal(alarmsCsv([]), `${HEADER}\r\n`);
  assert.equal(alarmsCsv(undefined), `${HEADER}\r\n`);
  assert.deepEqual(stayAlerts({ alerts: [] }), []);
});

test("stay CSV: the file is named by the id and the discharge's local date and minute", () => {
  const at = new Date(2024, 0, 5, 9, 7, 59).getTime();
  assert.equal(alarmsCsvName("203", at), "ecgmon-203-20240105-0907-alarms.csv");
  assert.equal(alarmsCsvName("mitdb-203", new Date(2024, 11, 31, 23, 59).getTime()),
    "ecgmon-mitdb-203-20241231-2359-alarms.csv");
  assert.equal(alarmsCsvName("bed 3/ICU", at), "ecgmon-bed_3_ICU-20240105-0907-alarms.csv");
  assert.equal(alarmsCsvName("203", null), "ecgmon-203-undated-alarms.csv");
});

test("stay: its alerts, the count shown, what an error says", () => {
  assert.equal(stayAlerts({ alerts: [STAY_ALERTS[0], null, 3] }).length, 1);
  assert.equal(stayAlerts({ discharges: [] }), null); // not a stay
  assert.equal(stayAlerts(null), null);
  assert.equal(alarmEventsText(1), "1 alarm event");
  assert.equal(alarmEventsText(0), "0 alarm events");
  assert.equal(alarmEventsText(12), "12 alarm events");
  const gone = "no archive of this discharge: unknown, or older than ECGMON_ARCHIVE_DAYS";
  assert.equal(
    stayErrorText(new ApiError(`404: ${gone}`, 404, gone)),
    `Archive not found: ${gone}. Nothing downloaded.`,
  );
  assert.match(stayErrorText(new ApiError("404: Not Found", 404, "Not Found")), /does not serve archived stays/);
  assert.match(stayErrorText(new ApiError("x", 0, "x")), /unreachable/);
  assert.equal(stayErrorText(new ApiError("503: Redis is down", 503, "Redis is down")),
    "Alarms not downloaded: Redis is down.");
  assert.match(stayErrorText(Object.assign(new Error("no"), { name: "AuthError" })), /rejected the sign-in/);
});
