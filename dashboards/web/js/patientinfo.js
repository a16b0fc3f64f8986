// What the ward enters about a patient (GET/POST /api/patients/{id}/info): bed label, name and
// a note. The contract's limits, form validation, the texts shown and the bed order. DOM-free.
// Names are personal data: they go on screen only, never into the page title, URLs or logs.

import { fmtWhen } from "./alarmsettings.js";
import { naturalCompare } from "./util.js";

/** The gateway's limits, in characters (Unicode code points, as the gateway counts them). */
export const INFO_LIMITS = Object.freeze({ bed: 16, name: 100, note: 200 });

export const INFO_FIELDS = Object.freeze({
  bed: { label: "Bed label", example: "e.g. 12 or ICU-3" },
  name: { label: "Name", example: "as on the wristband" },
  note: { label: "Note", example: "e.g. pacemaker" },
});

const str = (v) => (typeof v === "string" ? v : "");
const isNum = (v) => typeof v === "number" && Number.isFinite(v);

/** Characters as the gateway counts them: an emoji or an accented letter is one. */
export function charCount(text) {
  return [...String(text ?? "")].length;
}

/** One line of printable text, as Python's str.isprintable(): no control, format or separator
 * characters other than the plain space (no tabs, line breaks, no-break spaces). */
export function isPrintableLine(text) {
  for (const c of String(text ?? "")) if (c !== " " && /[\p{C}\p{Z}]/u.test(c)) return false;
  return true;
}

/**
 * The details as the dashboard keeps them ({bed, name, note, updated_by, updated_at_ms}), from a
 * state frame's `info`, a GET /api/patients row or a GET/POST answer; null when there are none.
 */
export function normInfo(raw) {
  if (!raw || typeof raw !== "object") return null;
  return {
    bed: str(raw.bed).trim(),
    name: str(raw.name).trim(),
    note: str(raw.note).trim(),
    updated_by: typeof raw.updated_by === "string" ? raw.updated_by : null,
    updated_at_ms: isNum(raw.updated_at_ms) ? raw.updated_at_ms : null,
  };
}

/** Something to show: a bed label, a name or a note (details cleared are none). */
export function hasDetails(info) {
  return Boolean(info && (info.bed || info.name || info.note));
}

/** The key of the "Bed" order: the bed label when set, else the patient id. */
export function bedKey(id, info) {
  return info?.bed || String(id);
}

/** Bed order: natural ("2" before "10", "ICU-2" before "ICU-10"); the id breaks ties. */
export function compareBeds(a, b) {
  return naturalCompare(bedKey(a.id, a.info), bedKey(b.id, b.info)) || naturalCompare(a.id, b.id);
}

/**
 * What a tile or the patient header shows: {main, name, id} where main is the bed label (else
 * the id), name the patient's name ("" when none), id the patient id when it is not the main
 * text (shown small), and tooltip the whole of it.
 */
export function titleParts(id, info) {
  const pid = String(id);
  const bed = info?.bed || "";
  const name = info?.name || "";
  const main = bed || pid;
  const parts = [bed ? `Bed ${bed}` : `Patient ${pid}`, name, bed ? `id ${pid}` : ""].filter(Boolean);
  return { main, name, id: bed ? pid : "", tooltip: parts.join(" · ") };
}

/** The text of a note badge: at most `max` characters, with "…"; the full note goes in a tooltip. */
export function shortNote(note, max = 28) {
  const chars = [...String(note ?? "")];
  return chars.length <= max ? chars.join("") : `${chars.slice(0, max - 1).join("").trimEnd()}…`;
}

/**
 * Check what is typed in the details form ({bed, name, note}: strings). Returns {ok, errors:
 * {field: message}, info: {bed, name, note} trimmed, ready to POST with the user}.
 */
export function validateInfo(input) {
  const errors = {};
  const info = {};
  for (const [field, max] of Object.entries(INFO_LIMITS)) {
    const value = String(input?.[field] ?? "").trim();
    const n = charCount(value);
    const { label } = INFO_FIELDS[field];
    if (n > max) errors[field] = `${label}: at most ${max} characters (${n} now).`;
    else if (!isPrintableLine(value)) errors[field] = `${label}: one line of text, without tabs or special characters.`;
    info[field] = value;
  }
  const ok = Object.keys(errors).length === 0;
  return { ok, errors, info: ok ? info : null };
}

/** The counter under a field: "3 / 16". */
export function counterText(field, value) {
  return `${charCount(String(value ?? "").trim())} / ${INFO_LIMITS[field]}`;
}

/** Same bed, name and note? (null counts as all empty.) */
export function sameDetails(a, b) {
  return ["bed", "name", "note"].every((f) => (a?.[f] || "") === (b?.[f] || ""));
}

/** Who entered the details and when: "Entered by kim · 14:03:20", "Cleared by …", "No details entered". */
export function originText(info, nowMs = Date.now()) {
  if (!info?.updated_by) return "No details entered for this patient.";
  const when = isNum(info.updated_at_ms) ? ` · ${fmtWhen(info.updated_at_ms, nowMs)}` : "";
  return `${hasDetails(info) ? "Changed" : "Cleared"} by ${info.updated_by}${when}`;
}

/** The field a gateway 422 names ("bed: String should have at most 16 characters"), else null. */
export function infoErrorField(text) {
  const m = String(text ?? "").match(/^\s*(bed|name|note|user)\b/);
  return m ? m[1] : null;
}

/** What to tell the user when GET or POST failed (err: ApiError with status and detail). */
export function infoErrorText(err, action = "save") {
  const status = err?.status;
  const detail = err?.detail ?? err?.message ?? String(err);
  const verb = action === "save" ? "Not saved" : "Patient details unavailable";
  if (status === 422) return `${verb}: the gateway refused the details: ${detail}`;
  if (status === 404) {
    return /unknown patient/i.test(detail)
      ? `${verb}: the gateway does not know this patient.`
      : `${verb}: this gateway does not keep patient details (${detail}).`;
  }
  if (status === 503) return `${verb}: the gateway could not store them (${detail}). Nothing was changed; try again.`;
  if (status === 0) return `${verb}: the gateway is unreachable. Check the connection and try again.`;
  if (err?.name === "AuthError") return `${verb}: the gateway rejected the sign-in. Sign in again.`;
  return `${verb}: ${err?.message ?? detail}`;
}
