// REST client: bearer token from localStorage, one error type for "log in again".

const TOKEN_KEY = "ecgmonToken";
const USER_KEY = "ecgmonUser";

export class AuthError extends Error {
  constructor(message = "Not authorised") {
    super(message);
    this.name = "AuthError";
  }
}

export class ApiError extends Error {
  /** status 0: the gateway did not answer; detail: the server's own text (its `error`/`detail`). */
  constructor(message, status, detail = message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

export function setToken(token) {
  localStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  localStorage.removeItem(TOKEN_KEY);
}

export function getUser() {
  try {
    return localStorage.getItem(USER_KEY) || "clinician";
  } catch {
    return "clinician";
  }
}

export function setUser(user) {
  localStorage.setItem(USER_KEY, user || "clinician");
}

/** The WebSocket URL on the same host, token as a query parameter. */
export function wsUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/ws?token=${encodeURIComponent(getToken())}`;
}

async function errorText(res) {
  try {
    const body = await res.json();
    if (typeof body?.detail === "string") return body.detail;
    if (typeof body?.error === "string") return body.error;
    if (Array.isArray(body?.detail)) {
      // FastAPI's own 422: [{loc: ["body", "pause_s"], msg: "..."}]
      return body.detail.map((d) => `${d?.loc?.[d.loc.length - 1] ?? "body"}: ${d?.msg ?? "invalid"}`).join("; ");
    }
    return JSON.stringify(body?.detail ?? body);
  } catch {
    return res.statusText || `HTTP ${res.status}`;
  }
}

/** fetch() with the bearer token; throws AuthError on 401, ApiError on other failures. */
export async function api(path, { method = "GET", body, json, signal } = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal, cache: "no-store" });
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new ApiError(`Gateway unreachable (${err?.message || err})`, 0, String(err?.message || err));
  }
  if (res.status === 401) throw new AuthError(await errorText(res));
  if (!res.ok) {
    const text = await errorText(res);
    throw new ApiError(`${res.status}: ${text}`, res.status, text);
  }
  if (res.status === 204) return null;
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? res.json() : res.text();
}

export const getPatients = () => api("/api/patients");

/** The patient's beats of the last `seconds` (with the live frames' heart rate), oldest first. */
export const getBeats = (id, seconds) =>
  api(`/api/patients/${encodeURIComponent(id)}/beats?seconds=${encodeURIComponent(seconds)}`);

/** Alerts oldest first: the first `count` after `after`, or with `newest` the newest `count`. */
export function getAlerts(patientId, count = 100, after, newest = false) {
  const q = new URLSearchParams();
  if (patientId) q.set("patient", patientId);
  if (after) q.set("after", after);
  q.set("count", String(count));
  if (newest) q.set("newest", "true");
  return api(`/api/alerts?${q}`);
}

/** The ECG the gateway recorded around an alarm onset (404 if it recorded none). */
export const getStrip = (alertId) => api(`/api/alerts/${encodeURIComponent(alertId)}/strip`);

export function postAck(alarmId, user = getUser()) {
  return api(`/api/alarms/${encodeURIComponent(alarmId)}/ack`, { method: "POST", json: { user } });
}

/** One patient's alarm settings: effective, applied, defaults, ranges, optional_alarms, pending, history. */
export const getAlarmSettings = (id) => api(`/api/patients/${encodeURIComponent(id)}/alarm-settings`);

/**
 * Send a change: body {user, hr_low_bpm, hr_high_bpm, pause_s, disabled}. Answers 202
 * {request_id, status: "sent", settings}; the monitor applies it about a second later.
 */
export function setAlarmSettings(id, body) {
  return api(`/api/patients/${encodeURIComponent(id)}/alarm-settings`, { method: "POST", json: body });
}

/** What the ward entered: {patient_id, bed, name, note, updated_by, updated_at_ms} (empty when none). */
export const getPatientInfo = (id) => api(`/api/patients/${encodeURIComponent(id)}/info`);

/** Enter or change them: body {user, bed (<= 16), name (<= 100), note (<= 200)}; "" clears a field. */
export function setPatientInfo(id, body) {
  return api(`/api/patients/${encodeURIComponent(id)}/info`, { method: "POST", json: body });
}

/**
 * Discharge the patient: body {user}. Answers 202 {patient_id, request_id, user, discharged_at_ms,
 * status: "sent"}; every station gets a `discharged` frame about a second later.
 */
export function postDischarge(id, user = getUser()) {
  return api(`/api/patients/${encodeURIComponent(id)}/discharge`, { method: "POST", json: { user } });
}

/** The newest discharges, newest first: {discharges: [{patient_id, request_id, user, discharged_at_ms,
 * alarms_ended, stream_id, info, alarm_settings}]}. */
export const getDischarges = (count = 50) => api(`/api/discharges?count=${encodeURIComponent(count)}`);

/**
 * One discharge's archived stay: the row of GET /api/discharges plus `alerts` (the stay's alert
 * frames, oldest first) and `alarm_settings_history` (its limit changes, newest first); 404 when
 * unknown or older than the gateway keeps archives (ECGMON_ARCHIVE_DAYS).
 */
export const getDischargeStay = (requestId) => api(`/api/discharges/${encodeURIComponent(requestId)}`);

export function postAnalyze(formData, signal) {
  return api("/api/analyze", { method: "POST", body: formData, signal });
}
