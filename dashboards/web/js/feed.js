// Whether bedside data reaches the gateway at all, without the DOM.
//
// When every bedside monitor the gateway watches (two or more) stops sending at once, the fault is
// upstream (the hospital network, the message broker, the gateway's Kafka feed), not at the beds:
// the gateway then raises no per-bed `no_data` alarm but tells every client
// {"type": "feed", "receiving": false, "last_data_ms"} (wall ms of the last data from any bed, or
// null), and {"receiving": true, ...} with the next data; its hello carries the same state
// (`feed`, null when its no-data watch is off). Meanwhile the station is blind: a banner on every
// view and a technical alarm of medium priority (alarmsound.js), as for a lost connection. While
// the connection itself is lost the feed state is unknown: the connection-loss alarm takes over.

import { fmtWhen } from "./alarmsettings.js";

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

/**
 * The gateway's feed state (a `feed` frame or the hello's `feed`) as {receiving, lastDataMs},
 * or null when it says nothing usable (no watch, an older gateway): nothing is shown then.
 */
export function normFeed(raw) {
  if (!raw || typeof raw !== "object" || typeof raw.receiving !== "boolean") return null;
  return { receiving: raw.receiving, lastDataMs: isNum(raw.last_data_ms) ? raw.last_data_ms : null };
}

/**
 * The technical alarm of a station that receives no bedside data ({id, priority: "medium", acked:
 * false, technical: true}) while the feed says `receiving: false`, else null. Its id is the
 * outage's last data time, so the same outage reported again (the hello after a reconnect) is not
 * a new alarm, and a new outage is.
 */
export function feedLossAlarm(feed) {
  if (!feed || feed.receiving !== false) return null;
  const since = isNum(feed.lastDataMs) ? Math.round(feed.lastDataMs) : "none";
  return { id: `feed-lost:${since}`, priority: "medium", acked: false, technical: true };
}

/**
 * What the banner says: {title, detail}. nowMs: the gateway's clock (Date.now() plus the offset
 * of the hello), to say the time alone today and the date on another day.
 */
export function feedBannerText(feed, nowMs = Date.now()) {
  const title = isNum(feed?.lastDataMs)
    ? `No ECG from any bedside monitor since ${fmtWhen(feed.lastDataMs, nowMs)}`
    : "No ECG from any bedside monitor received yet";
  return {
    title,
    detail: "The fault is in the network or the message broker, not at the patients. Beds are not being monitored from here.",
  };
}
