// How current each bed's data on screen is, without the DOM: a central station must never show
// a frozen trace, an old heart rate or old alarms as if they were live.
//
// - "offline": the WebSocket to the gateway has been down for more than the connection-loss
//   delay (the moment the banner and the technical tone of alarmsound.js start). Nothing on
//   screen is current: the trace stops, HR and trace are greyed, the tile says NO DATA and the
//   alarm badges are the last known ones. After the connection is back a bed stays "offline"
//   until a fresh waveform frame of it arrives (at most RECONNECT_GRACE_MS, then the usual rule).
// - "no-signal": connected, but this bed's waveform has not moved for NO_SIGNAL_MS (or never).
// - "live".

import { CONNECTION_LOSS_DELAY_MS, connectionLossAlarm } from "./alarmsound.js";

export const NO_SIGNAL_MS = 5000; // a bed whose waveform stopped this long (connection up)
export const RECONNECT_GRACE_MS = 5000; // back online: wait this long for a bed's first fresh frame

/**
 * The station's link to the gateway as the tiles need it: update(downSinceMs, nowMs) with the
 * connection's downSince (null while connected) returns {offline, backAtMs}: offline while it
 * has been down for more than delayMs; backAtMs = when the last such outage ended (null before).
 */
export class LinkWatch {
  constructor(delayMs = CONNECTION_LOSS_DELAY_MS) {
    this.delayMs = delayMs;
    this.outage = false;
    this.backAtMs = null;
  }

  update(downSinceMs, nowMs) {
    const offline = connectionLossAlarm(downSinceMs, nowMs, this.delayMs) !== null;
    if (offline) {
      this.outage = true;
      this.backAtMs = null;
    } else if (this.outage) {
      this.outage = false; // back (or down again, but not for long yet)
      this.backAtMs = nowMs;
    }
    return { offline, backAtMs: this.backAtMs };
  }
}

/**
 * A bed's freshness: "live", "no-signal" or "offline" (see above). lastDataMs: when its last
 * waveform frame arrived (0 or null: never); link: what LinkWatch.update returned.
 */
export function bedFreshness(lastDataMs, nowMs, link, noSignalMs = NO_SIGNAL_MS, graceMs = RECONNECT_GRACE_MS) {
  const seen = typeof lastDataMs === "number" && lastDataMs > 0;
  if (link?.offline) return "offline";
  const back = link?.backAtMs;
  if (typeof back === "number" && nowMs - back < graceMs && !(seen && lastDataMs > back)) return "offline";
  if (!seen || nowMs - lastDataMs > noSignalMs) return "no-signal";
  return "live";
}

/** What a bed shows for a freshness: {stale (grey HR, overlay), frozen (draw no new trace), lastKnown (alarms)}. */
export function staleLook(freshness) {
  const offline = freshness === "offline";
  return { stale: freshness !== "live", frozen: offline, lastKnown: offline };
}
