// Discharge (POST /api/patients/{id}/discharge, the `discharged` frame, GET /api/discharges):
// the texts shown and the archive's rows, without the DOM.
//
// A discharge ends a patient's monitoring: the detector ends its active alarms, the gateway drops
// it from every station, its details and alarm limits are archived. Data that arrives later under
// the same id is a new admission (a fresh tile: no details, the ward's default limits).
// Names are personal data: they go on screen only, never into the page title, URLs or logs.

import { fmtWhen } from "./alarmsettings.js";
import { normInfo } from "./patientinfo.js";

/**
 * After a `discharged` frame, frames of that id are the ended stay's for this long and dropped:
 * the gateway sends the frame ahead of the ones already queued for the client (a state frame, the
 * last waveform), and its state poll may send one more. Data after it is a new admission.
 */
export const DISCHARGE_QUIET_MS = 3000;

/** The gateway has not confirmed a discharge sent this long ago: say so. */
export const DISCHARGE_CONFIRM_MS = 10_000;

const str = (v) => (typeof v === "string" ? v : "");
const isNum = (v) => typeof v === "number" && Number.isFinite(v);

/**
 * The patient as a nurse names it: "Bed 12 (J. Doe)", "Bed 12", "J. Doe", else "Patient 203"
 * (info: the ward's details, null or undefined when none).
 */
export function patientLabel(id, info) {
  const bed = str(info?.bed).trim();
  const name = str(info?.name).trim();
  if (bed && name) return `Bed ${bed} (${name})`;
  if (bed) return `Bed ${bed}`;
  if (name) return name;
  return `Patient ${id}`;
}

/** The short notice after a discharge: "Bed 12 (J. Doe) discharged by nurse a at 14:02:05". */
export function dischargeNotice(record, nowMs = Date.now()) {
  const who = str(record?.user).trim() || "another user";
  const at = isNum(record?.at_ms) ? ` at ${fmtWhen(record.at_ms, nowMs)}` : "";
  return `${patientLabel(record?.patient_id, record?.info)} discharged by ${who}${at}`;
}

/**
 * What the confirmation says: {question, id (shown small when the label is not the id),
 * consequences: [text]}. activeAlarms: how many alarms of the patient are active now.
 */
export function confirmTexts(id, info, activeAlarms = 0) {
  const label = patientLabel(id, info);
  const named = label !== `Patient ${id}`;
  const alarms =
    activeAlarms > 0
      ? `Its active alarms end (${activeAlarms} now) and are no longer sounded.`
      : "Its alarms end (none is active now).";
  return {
    question: named ? `Discharge ${label}?` : `Discharge patient ${id}?`,
    id: named ? `id ${id}` : "",
    consequences: [
      alarms,
      "It leaves the central station: its tile goes on every station.",
      "Its bed label, name, note and alarm limits are archived (Recent discharges, on the station).",
      `ECG that arrives later under id ${id} is a new patient: no details, the ward's default alarm limits.`,
    ],
  };
}

/** What to tell the user when the POST failed (err: ApiError with status and the gateway's detail). */
export function dischargeErrorText(err) {
  const status = err?.status;
  const detail = err?.detail ?? err?.message ?? String(err);
  if (err?.name === "AuthError") return "Not discharged: the gateway rejected the sign-in. Sign in again.";
  if (status === 0) return "Not discharged: the gateway is unreachable. Check the connection and try again.";
  if (status === 404 && /unknown patient/i.test(detail)) {
    return `Not discharged: the gateway does not know this patient (${detail}).`;
  }
  // the gateway's 503 says it already: "the discharge was not sent: Kafka did not take it; try again"
  const text = /\bnot sent\b/i.test(detail)
    ? `${detail[0].toUpperCase()}${detail.slice(1)}`
    : `Not discharged: ${detail}`;
  return `${text.replace(/[.\s]+$/, "")}. The patient is still monitored.`;
}

/** A row of GET /api/discharges as the dashboard shows it; null when it names no patient. */
export function normDischarge(row) {
  if (!row || typeof row !== "object" || row.patient_id === undefined || row.patient_id === null) return null;
  return {
    patient_id: String(row.patient_id),
    request_id: str(row.request_id) || null,
    user: str(row.user) || null,
    at_ms: isNum(row.discharged_at_ms) ? row.discharged_at_ms : isNum(row.at_ms) ? row.at_ms : null,
    alarms_ended: Array.isArray(row.alarms_ended) ? row.alarms_ended.map(String) : [],
    info: normInfo(row.info),
  };
}

/** The rows of a GET /api/discharges answer ({discharges: [...]}, newest first), normalised. */
export function dischargeRows(answer) {
  const list = Array.isArray(answer) ? answer : answer?.discharges;
  return Array.isArray(list) ? list.map(normDischarge).filter(Boolean) : [];
}

/** Why the list could not be loaded. */
export function dischargesErrorText(err) {
  const status = err?.status;
  const detail = err?.detail ?? err?.message ?? String(err);
  if (err?.name === "AuthError") return "Recent discharges unavailable: the gateway rejected the sign-in.";
  if (status === 0) return "Recent discharges unavailable: the gateway is unreachable.";
  if (status === 404) return `Recent discharges unavailable: this gateway does not keep them (${detail}).`;
  return `Recent discharges unavailable: ${detail}`;
}

// ---- a discharged patient's stay: GET /api/discharges/{request_id}, its alarms as CSV ----------

/** The columns of the stay's alarm CSV, in order (one row per alert event: onset, update, end). */
export const ALARM_CSV_COLUMNS = Object.freeze([
  "alert_id",
  "alarm_id",
  "alarm_type",
  "priority",
  "phase",
  "technical",
  "onset_t_s",
  "t_s",
  "heart_rate_bpm",
  "message",
  "reason",
]);

/**
 * One CSV field (RFC 4180): null and undefined are empty, numbers and booleans as JSON writes
 * them; a field with a comma, a double quote, a line break or a leading/trailing space is quoted,
 * its quotes doubled.
 */
export function csvField(value) {
  if (value === undefined || value === null) return "";
  let s = typeof value === "number" ? (Number.isFinite(value) ? String(value) : "") : String(value);
  // text a spreadsheet would run as a formula (a user name "=HYPERLINK(...)" in `reason`) is
  // kept as text with a leading apostrophe (OWASP's CSV-injection advice); numbers stay numbers
  if (typeof value !== "number" && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** An alert frame of the stay as a CSV row's values (reason: `details.reason`, empty if none). */
export function alarmCsvValues(alert) {
  const a = alert && typeof alert === "object" ? alert : {};
  const reason = a.details && typeof a.details === "object" ? a.details.reason : undefined;
  return ALARM_CSV_COLUMNS.map((col) => (col === "reason" ? reason : a[col]));
}

/**
 * The stay's alarm events as CSV text: the header row, then one row per alert frame in the order
 * given (the gateway's: oldest first), CRLF line ends. An empty stay is the header only.
 */
export function alarmsCsv(alerts) {
  const rows = (Array.isArray(alerts) ? alerts : []).map((a) => alarmCsvValues(a).map(csvField).join(","));
  return [ALARM_CSV_COLUMNS.join(","), ...rows].map((line) => `${line}\r\n`).join("");
}

const pad2 = (n) => String(n).padStart(2, "0");

/**
 * The file name: "ecgmon-<patient_id>-<YYYYMMDD-HHMM of the discharge, local time>-alarms.csv";
 * characters a file name should not hold become "_". The id only: names never go into files' names.
 */
export function alarmsCsvName(patientId, atMs) {
  const d = isNum(atMs) ? new Date(atMs) : null;
  const when = d
    ? `${d.getFullYear()}${pad2(d.getMonth() + 1)}${pad2(d.getDate())}-${pad2(d.getHours())}${pad2(d.getMinutes())}`
    : "undated";
  const id = String(patientId ?? "unknown").replace(/[^\w.-]+/g, "_");
  return `ecgmon-${id}-${when}-alarms.csv`;
}

/** The alert frames of a GET /api/discharges/{request_id} answer; null when it has none (not a stay). */
export function stayAlerts(answer) {
  return Array.isArray(answer?.alerts) ? answer.alerts.filter((a) => a && typeof a === "object") : null;
}

/** "1 alarm event", "12 alarm events". */
export function alarmEventsText(n) {
  return `${n} alarm event${n === 1 ? "" : "s"}`;
}

/** Why the stay's alarms could not be downloaded (err: ApiError with status and the gateway's detail). */
export function stayErrorText(err) {
  const status = err?.status;
  const detail = String(err?.detail ?? err?.message ?? err).replace(/[.\s]+$/, "");
  if (err?.name === "AuthError") return "Alarms not downloaded: the gateway rejected the sign-in.";
  if (status === 0) return "Alarms not downloaded: the gateway is unreachable.";
  // FastAPI's own 404 for a route it does not have: an older gateway
  if (status === 404 && detail === "Not Found") {
    return "Alarms not downloaded: this gateway does not serve archived stays (Not Found).";
  }
  if (status === 404) return `Archive not found: ${detail}. Nothing downloaded.`;
  return `Alarms not downloaded: ${detail}.`;
}
