// Small shared helpers: DOM building, formatting, clinical colour tables.

export const BEAT_CLASSES = ["N", "S", "V", "F", "Q", "U"];

export const BEAT_NAMES = {
  N: "Normal",
  S: "Supraventricular ectopic",
  V: "Ventricular ectopic",
  F: "Fusion",
  Q: "Unclassifiable",
  U: "Unknown",
};

export const PRIORITY_RANK = { high: 3, medium: 2, low: 1, technical: 0 };

/** Create an element: el("div", {class: "x", onclick: f}, child, "text", ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      node.className = value;
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(key, "");
    } else {
      node.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function isNum(v) {
  return typeof v === "number" && Number.isFinite(v);
}

/** "ventricular_tachycardia" -> "VENTRICULAR TACHYCARDIA" */
export function alarmLabel(type) {
  return String(type || "alarm").replace(/[_-]+/g, " ").toUpperCase();
}

/** The display priority: technical alarms are shown grey/white whatever their priority. */
export function displayPriority(alarm) {
  if (alarm && (alarm.technical === true || alarm.priority === "technical")) return "technical";
  const p = String(alarm?.priority || "").toLowerCase();
  return p in PRIORITY_RANK ? p : "low";
}

/** Data time in seconds -> "h:mm:ss" (or "m:ss"). */
export function fmtDataTime(t) {
  if (!isNum(t)) return "—";
  const s = Math.max(0, Math.floor(t));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export function fmtHr(v) {
  return isNum(v) && v > 0 ? String(Math.round(v)) : "---";
}

/** HR for a patient: 0 is shown as 0 only during asystole (otherwise it means "unknown"). */
export function patientHr(p) {
  if (p.hr === 0 && [...p.active.values()].some((a) => a.alarm_type === "asystole")) return "0";
  return fmtHr(p.hr);
}

export function fmtNum(v, digits = 0, unit = "") {
  return isNum(v) ? `${v.toFixed(digits)}${unit}` : "—";
}

export function wallClock(ms = Date.now()) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** Natural sort for patient ids ("2" < "10" < "bed-3"). */
export function naturalCompare(a, b) {
  return String(a).localeCompare(String(b), undefined, { numeric: true, sensitivity: "base" });
}

/** Read a CSS custom property from :root (colours live in style.css). */
const cssCache = new Map();
export function cssVar(name, fallback) {
  if (!cssCache.has(name)) {
    cssCache.set(name, getComputedStyle(document.documentElement).getPropertyValue(name).trim());
  }
  return cssCache.get(name) || fallback;
}

export function beatColor(cls) {
  return cssVar(`--beat-${String(cls || "U").toUpperCase()}`, "#ccc");
}
