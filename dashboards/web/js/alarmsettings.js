// Per-patient alarm settings (GET/POST /api/patients/{id}/alarm-settings): the contract's
// defaults and ranges, form validation, and the texts shown for a setting. DOM-free.

export const DEFAULT_SETTINGS = Object.freeze({ hr_low_bpm: 40, hr_high_bpm: 140, pause_s: 2.0, disabled: [] });

export const DEFAULT_RANGES = Object.freeze({
  hr_low_bpm: [15, 120],
  hr_high_bpm: [60, 300],
  min_gap_bpm: 10,
  pause_s: [1.5, 3.5],
});

export const OPTIONAL_ALARMS = Object.freeze([
  "atrial_fibrillation",
  "bigeminy",
  "trigeminy",
  "ventricular_couplet",
  "ventricular_run",
  "pause",
]);

const NAMES = {
  atrial_fibrillation: "Atrial fibrillation",
  bigeminy: "Bigeminy",
  trigeminy: "Trigeminy",
  ventricular_couplet: "Ventricular couplet",
  ventricular_run: "Ventricular run",
  pause: "Pause",
};

const SHORT_NAMES = { atrial_fibrillation: "AF", ventricular_couplet: "Couplet", ventricular_run: "V-run" };

/** The limits a user can type: label, unit, input step and decimals shown. */
export const LIMIT_FIELDS = Object.freeze({
  hr_low_bpm: { label: "HR low", unit: "bpm", step: 1, digits: 0 },
  hr_high_bpm: { label: "HR high", unit: "bpm", step: 1, digits: 0 },
  pause_s: { label: "Pause", unit: "s", step: 0.1, digits: 1 },
});

export const LETHAL_NOTE =
  "Asystole, ventricular fibrillation, ventricular tachycardia, extreme bradycardia and extreme " +
  "tachycardia alarms, and technical alarms, cannot be switched off. The HR low and HR high limits " +
  "are the extreme bradycardia and tachycardia limits.";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const EPS = 1e-6;

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

/** "atrial_fibrillation" -> "Atrial fibrillation" (unknown types humanised). */
export function alarmName(type) {
  const s = String(type ?? "");
  if (NAMES[s]) return NAMES[s];
  const words = s.replace(/[_-]+/g, " ").trim();
  return words ? words[0].toUpperCase() + words.slice(1) : "Alarm";
}

/** A limit as shown: "50", "50.5" (bpm), "2.0" (s). */
export function fmtLimit(field, v) {
  if (!isNum(v)) return "—";
  const digits = LIMIT_FIELDS[field]?.digits ?? 1;
  if (digits === 0) return Number.isInteger(v) ? String(v) : String(Math.round(v * 10) / 10);
  return v.toFixed(digits);
}

/** Parse a form value ("" or text from a number input, or a number) to a number or null. */
function parseValue(v) {
  if (isNum(v)) return v;
  const s = String(v ?? "").trim();
  if (!s || !/^[+-]?(\d+\.?\d*|\.\d+)$/.test(s)) return null;
  return Number(s);
}

/** Is v a whole multiple of step (0.1 s for the pause, 1 bpm for the rates)? */
function onStep(v, step) {
  return Math.abs(v / step - Math.round(v / step)) < EPS * 100;
}

/**
 * Check a form's values against the contract's ranges (GET `ranges`, else the defaults).
 * input: {hr_low_bpm, hr_high_bpm, pause_s: string|number, disabled: string[]}.
 * Returns {ok, errors: {field: message}, settings} with settings ready to POST (without user).
 */
export function validateSettings(input, ranges = DEFAULT_RANGES, optional = OPTIONAL_ALARMS) {
  const r = { ...DEFAULT_RANGES, ...(ranges || {}) };
  const errors = {};
  const settings = {};
  for (const [field, meta] of Object.entries(LIMIT_FIELDS)) {
    const raw = input?.[field];
    const v = parseValue(raw);
    const [lo, hi] = r[field];
    const range = `${fmtLimit(field, lo)}–${fmtLimit(field, hi)} ${meta.unit}`;
    if (v === null) {
      errors[field] = String(raw ?? "").trim() ? `${meta.label}: enter a number (${range}).` : `${meta.label} is required (${range}).`;
    } else if (v < lo - EPS || v > hi + EPS) {
      errors[field] = `${meta.label} must be ${range}.`;
    } else if (!onStep(v, meta.step)) {
      errors[field] = meta.step === 1 ? `${meta.label} must be a whole number of bpm.` : `${meta.label} goes in steps of ${meta.step} s.`;
    } else {
      settings[field] = meta.step === 1 ? Math.round(v) : Math.round(v / meta.step) * meta.step;
      if (field === "pause_s") settings[field] = Math.round(settings[field] * 10) / 10;
    }
  }
  const gap = r.min_gap_bpm ?? DEFAULT_RANGES.min_gap_bpm;
  if (!errors.hr_low_bpm && !errors.hr_high_bpm && settings.hr_high_bpm - settings.hr_low_bpm < gap - EPS) {
    errors.hr_high_bpm = `HR high must be at least ${gap} bpm above HR low (so ${settings.hr_low_bpm + gap} or more).`;
  }
  const allowed = new Set(optional?.length ? optional : OPTIONAL_ALARMS);
  const disabled = [...new Set(input?.disabled || [])];
  const bad = disabled.filter((t) => !allowed.has(t));
  if (bad.length) errors.disabled = `These alarms cannot be switched off: ${bad.map(alarmName).join(", ")}.`;
  settings.disabled = disabled.filter((t) => allowed.has(t));
  const ok = Object.keys(errors).length === 0;
  return { ok, errors, settings: ok ? settings : null };
}

/** The signed-in name as the contract takes it (1-100 printable characters), or a message. */
export function validateUser(user) {
  const u = String(user ?? "").trim();
  if (!u) return "No user name: sign out and sign in again with your name.";
  if (u.length > 100) return "Your user name is longer than 100 characters: sign in again with a shorter one.";
  if (/[\p{Cc}\p{Cf}]/u.test(u)) return "Your user name has unprintable characters: sign in again.";
  return "";
}

/** Same limits and the same alarms off (in any order)? null means the defaults. */
export function sameSettings(a, b, defaults = DEFAULT_SETTINGS) {
  const x = a ?? defaults;
  const y = b ?? defaults;
  for (const f of Object.keys(LIMIT_FIELDS)) {
    if (!isNum(x[f]) || !isNum(y[f]) || Math.abs(x[f] - y[f]) > EPS) return false;
  }
  const dx = new Set(x.disabled || []);
  const dy = new Set(y.disabled || []);
  return dx.size === dy.size && [...dx].every((t) => dy.has(t));
}

export function isDefault(settings, defaults = DEFAULT_SETTINGS) {
  return settings == null || sameSettings(settings, defaults, defaults);
}

/** The short note on a station tile ("HR 50–130 · AF alarm off"); "" for the defaults. */
export function indicatorText(settings, defaults = DEFAULT_SETTINGS) {
  if (isDefault(settings, defaults)) return "";
  const s = settings;
  const parts = [];
  const hrChanged = ["hr_low_bpm", "hr_high_bpm"].some((f) => Math.abs(s[f] - defaults[f]) > EPS);
  if (hrChanged) parts.push(`HR ${fmtLimit("hr_low_bpm", s.hr_low_bpm)}–${fmtLimit("hr_high_bpm", s.hr_high_bpm)}`);
  const off = (s.disabled || []).filter((t) => !(defaults.disabled || []).includes(t));
  if (Math.abs(s.pause_s - defaults.pause_s) > EPS && !off.includes("pause")) {
    parts.push(`Pause ${fmtLimit("pause_s", s.pause_s)} s`);
  }
  if (off.length === 1) parts.push(`${SHORT_NAMES[off[0]] ?? alarmName(off[0])} alarm off`);
  else if (off.length === 2) parts.push(`${off.map((t) => SHORT_NAMES[t] ?? alarmName(t)).join(", ")} alarms off`);
  else if (off.length > 2) parts.push(`${off.length} alarms off`);
  return parts.join(" · ");
}

/** The full text of a setting: "HR low 50 bpm · HR high 130 bpm · pause 2.5 s · off: Atrial fibrillation". */
export function describeSettings(s) {
  if (!s) return "";
  const off = (s.disabled || []).map(alarmName);
  return (
    `HR low ${fmtLimit("hr_low_bpm", s.hr_low_bpm)} bpm · HR high ${fmtLimit("hr_high_bpm", s.hr_high_bpm)} bpm` +
    ` · pause ${fmtLimit("pause_s", s.pause_s)} s · ${off.length ? `off: ${off.join(", ")}` : "all alarms on"}`
  );
}

/**
 * What a history entry changed from the one before it (prev; null when unknown, e.g. the
 * oldest of a truncated history: then the whole setting is described).
 */
export function changeText(entry, prev) {
  if (!entry) return "";
  if (!prev) return describeSettings(entry);
  if (isDefault(entry) && !isDefault(prev)) return "Reset to defaults";
  const parts = [];
  for (const [f, meta] of Object.entries(LIMIT_FIELDS)) {
    const [a, b] = [prev[f], entry[f]];
    if (isNum(a) && isNum(b) ? Math.abs(a - b) > EPS : a !== b) {
      parts.push(`${meta.label} ${fmtLimit(f, prev[f])} → ${fmtLimit(f, entry[f])} ${meta.unit}`);
    }
  }
  const was = new Set(prev.disabled || []);
  const now = new Set(entry.disabled || []);
  for (const t of new Set([...OPTIONAL_ALARMS, ...was, ...now])) {
    if (now.has(t) && !was.has(t)) parts.push(`${alarmName(t)} off`);
    if (!now.has(t) && was.has(t)) parts.push(`${alarmName(t)} on`);
  }
  return parts.length ? parts.join(" · ") : "No change (same settings sent again)";
}

/** The previous entry for each of a newest-first history (the defaults before the very first). */
export function historyWithChanges(history, complete = true, defaults = DEFAULT_SETTINGS) {
  const list = Array.isArray(history) ? history : [];
  return list.map((entry, i) => {
    const prev = i + 1 < list.length ? list[i + 1] : complete ? defaults : null;
    return { entry, text: changeText(entry, prev) };
  });
}

const pad = (n) => String(n).padStart(2, "0");

/** A wall time (ms) for people: "14:03:20" today, "7 Dec 14:03" this year, else with the year. */
export function fmtWhen(ms, nowMs = Date.now()) {
  if (!isNum(ms)) return "—";
  const d = new Date(ms);
  const now = new Date(nowMs);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (d.toDateString() === now.toDateString()) return `${time}:${pad(d.getSeconds())}`;
  const day = `${d.getDate()} ${MONTHS[d.getMonth()]}`;
  return d.getFullYear() === now.getFullYear() ? `${day} ${time}` : `${day} ${d.getFullYear()} ${time}`;
}

/** A field name a gateway error starts with ("hr_low_bpm must be 15-120 bpm"), else null. */
export function errorField(text) {
  const s = String(text ?? "");
  const m = s.match(/^\s*(hr_low_bpm|hr_high_bpm|pause_s|disabled|user)\b/);
  if (m) return m[1];
  return /cannot be switched off|unknown alarm type/.test(s) ? "disabled" : null;
}

/** What to tell the user when GET or POST failed (err: ApiError with status and detail). */
export function settingsErrorText(err, action = "save") {
  const status = err?.status;
  const detail = err?.detail ?? err?.message ?? String(err);
  const verb = action === "save" ? "Not saved" : "Alarm settings unavailable";
  if (status === 422) return `${verb}: the gateway refused the change: ${detail}`;
  if (status === 503 && action === "save") {
    return `${verb}: the gateway could not pass the change on to the monitor (${detail}). Nothing was changed; try again.`;
  }
  if (status === 404) {
    return /unknown patient/i.test(detail)
      ? `${verb}: the gateway does not know this patient.`
      : `${verb}: this gateway does not offer alarm settings (${detail}).`;
  }
  if (status === 0) return `${verb}: the gateway is unreachable. Check the connection and try again.`;
  if (err?.name === "AuthError") return `${verb}: the gateway rejected the sign-in. Sign in again.`;
  return `${verb}: ${err?.message ?? detail}`;
}

const REFUSAL_HINTS = {
  unknown_patient: "The monitor has no ECG stream of this patient: check that it is connected, then send the change again.",
  invalid_field: "The monitor does not accept these values: correct them and send the change again.",
};

/**
 * The card's message for a change the monitor refused (GET `refused`: {request_id, reason,
 * detail}); who is the user who sent it when it was not this page ("" for our own change).
 */
export function refusedText(refused, who = "") {
  const detail = String(refused?.detail ?? "").trim().replace(/[.\s]+$/, "");
  const what = who ? `the change by ${who}` : "this change";
  const head = `Not applied: the monitor refused ${what}${detail ? ` — ${detail}` : ""}.`;
  const hint = REFUSAL_HINTS[refused?.reason] ?? "";
  return [head, hint, "The settings in effect are unchanged."].filter(Boolean).join(" ");
}

/**
 * What became of the change requestId according to a GET answer (info): "applied", "refused"
 * (info.refused names it), "replaced" (a later change is in effect), or "waiting".
 */
export function changeOutcome(info, requestId) {
  if (!requestId) return "waiting";
  if (info?.applied?.request_id === requestId) return "applied";
  if (info?.refused?.request_id === requestId) return "refused";
  const history = info?.history || [];
  const mine = history.findIndex((h) => h.request_id === requestId);
  const now = history.findIndex((h) => h.request_id === info?.applied?.request_id);
  if (info?.pending?.request_id !== requestId && now >= 0 && (mine < 0 || now < mine)) return "replaced";
  return "waiting";
}

/** The tag of a history entry: "in effect", "waiting", "refused" or "" (ids of each, or null). */
export function historyTag(entry, { appliedId = null, waitingId = null, refusedId = null } = {}) {
  const id = entry?.request_id;
  if (!id) return "";
  if (id === appliedId) return "in effect";
  if (id === refusedId) return "refused";
  if (id === waitingId) return "waiting";
  return "";
}
