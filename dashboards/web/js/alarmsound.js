// What the central station should sound now (IEC 60601-1-8 spirit), without WebAudio or the DOM:
// driven by a snapshot of the active alarms and a clock (ms), so node tests can run it.
//
// - The sound level is the highest priority among the active, unacknowledged alarms of every
//   patient (technical alarms count at their priority). HIGH repeats its burst every
//   HIGH_BURST_INTERVAL_MS, MEDIUM (only when no HIGH) every MEDIUM_BURST_INTERVAL_MS; the
//   first burst of a level is due at once. Acknowledging or ending an alarm stops its part.
// - A new unacknowledged alarm (a new alarm_id) at the sound level or above sounds at once and
//   restarts that level's cycle. A new LOW alarm gives one short tone when nothing higher
//   sounds; LOW never repeats.
// - Audio pause silences everything for AUDIO_PAUSE_MS; it ends early when cancelled or when a
//   new HIGH alarm starts (a paused station must not hide a new life-threatening alarm).
// - Bursts are at least MIN_BURST_GAP_MS apart, so two never overlap.
// - A live connection to the gateway down for more than CONNECTION_LOSS_DELAY_MS is a technical
//   alarm of medium priority (IEC 60601-1-8: a failed link to the central station): it sounds and
//   repeats as any MEDIUM (a HIGH wins, the pause applies) until the connection is back.
// - So is a gateway that receives no bedside data from any bed (its `feed` frame, see feed.js):
//   at once (the gateway has waited already) until it receives again. While the connection-loss
//   alarm is on, the feed state is unknown and only the connection loss counts.

import { feedLossAlarm } from "./feed.js";

export const HIGH_BURST_INTERVAL_MS = 10_000; // IEC 60601-1-8 allows 2.5-15 s for high priority
export const MEDIUM_BURST_INTERVAL_MS = 20_000; // and 2.5-30 s for medium
export const AUDIO_PAUSE_MS = 120_000;
export const MIN_BURST_GAP_MS = 2_000;
export const CONNECTION_LOSS_DELAY_MS = 10_000; // the reconnect logic retries meanwhile
const SEEN_KEEP_MS = 60_000; // an alarm id absent this long is forgotten (ids are unique per onset)

/** The tone patterns: square-wave pulses at freqHz, starting at offsets (s) from the burst start. */
export const PATTERNS = {
  high: { name: "high", freqHz: 880, pulseS: 0.15, offsetsS: [0, 0.2, 0.4, 0.9, 1.1] }, // 3 + 2
  medium: { name: "medium", freqHz: 660, pulseS: 0.2, offsetsS: [0, 0.35, 0.7] }, // 3, slower
  low: { name: "low", freqHz: 523, pulseS: 0.2, offsetsS: [0] }, // 1
  confirm: { name: "confirm", freqHz: 880, pulseS: 0.15, offsetsS: [0] }, // "audio is on"
};

const RANK = { high: 3, medium: 2, low: 1 };

export const DEFAULT_TIMING = Object.freeze({
  highMs: HIGH_BURST_INTERVAL_MS,
  mediumMs: MEDIUM_BURST_INTERVAL_MS,
  pauseMs: AUDIO_PAUSE_MS,
  minGapMs: MIN_BURST_GAP_MS,
  connLossMs: CONNECTION_LOSS_DELAY_MS,
});

/**
 * Timing overrides for tests from a JSON text (localStorage "ecgmonAudioTiming"), e.g.
 * {"highMs": 2500, "pauseMs": 6000}; unknown keys and values that are not positive numbers are
 * ignored, so a bad text gives the defaults.
 */
export function parseTiming(text) {
  let raw;
  try {
    raw = JSON.parse(text ?? "null");
  } catch {
    return {};
  }
  const out = {};
  if (!raw || typeof raw !== "object") return out;
  for (const key of Object.keys(DEFAULT_TIMING)) {
    const v = raw[key];
    if (typeof v === "number" && Number.isFinite(v) && v > 0) out[key] = v;
  }
  return out;
}

function soundPriority(priority) {
  const p = String(priority || "").toLowerCase();
  return p in RANK ? p : "low";
}

/** The active alarms of every patient as [{id, priority, acked}] (a technical alarm at its priority). */
export function alarmSnapshot(patients) {
  const out = [];
  for (const p of patients) {
    for (const a of p.active.values()) {
      if (!a?.alarm_id) continue;
      out.push({ id: a.alarm_id, priority: soundPriority(a.priority), acked: Boolean(a.acknowledged_by) });
    }
  }
  return out;
}

/**
 * The technical alarm of a lost gateway connection ({id, priority: "medium", acked: false,
 * technical: true}) once it has been down (not connected) since downSinceMs for more than
 * delayMs, else null. downSinceMs is null while connected (or not meant to be). Each loss has
 * its own id, so a new loss is a new alarm.
 */
export function connectionLossAlarm(downSinceMs, nowMs, delayMs = CONNECTION_LOSS_DELAY_MS) {
  if (typeof downSinceMs !== "number" || !Number.isFinite(downSinceMs)) return null;
  if (!(nowMs - downSinceMs > delayMs)) return null;
  return { id: `connection-lost:${Math.round(downSinceMs)}`, priority: "medium", acked: false, technical: true };
}

/** The level that repeats now: "high", "medium" or null (LOW never repeats). */
export function soundLevel(alarms) {
  let best = null;
  for (const a of alarms) {
    if (a.acked || a.priority === "low") continue;
    if (best === null || RANK[a.priority] > RANK[best]) best = a.priority;
  }
  return best;
}

export class AlarmSound {
  constructor(timing = {}) {
    this.timing = { ...DEFAULT_TIMING, ...timing };
    this.enabled = false;
    this.pausedUntil = null;
    this.lastBurst = {}; // level -> ms of its last burst in the current cycle
    this.lastAnyMs = -Infinity;
    this.seen = new Map(); // alarm_id -> ms it was last in a snapshot
    this.pending = new Map(); // new unacknowledged alarm_id -> priority, until a sound covers it
  }

  /** Audio on or off; either way any pause ends and the next burst is due at once. */
  setEnabled(on) {
    this.enabled = Boolean(on);
    this.pausedUntil = null;
    this.lastBurst = {};
    this.pending.clear();
  }

  get paused() {
    return this.pausedUntil !== null;
  }

  /** Start (or restart) the audio pause; false when audio is off. */
  pause(nowMs) {
    if (!this.enabled) return false;
    this.pausedUntil = nowMs + this.timing.pauseMs;
    this.pending.clear();
    return true;
  }

  /** End the pause now: whatever is unacknowledged sounds at once. */
  cancelPause() {
    if (this.pausedUntil === null) return;
    this.pausedUntil = null;
    this.lastBurst = {};
  }

  pauseLeftMs(nowMs) {
    return this.pausedUntil === null ? 0 : Math.max(0, this.pausedUntil - nowMs);
  }

  /**
   * Feed the current alarms ({id, priority, acked}, see alarmSnapshot) at nowMs, since when
   * the live connection is down (null while connected) and the gateway's feed state (normFeed of
   * feed.js, null when unknown); call it often (every ~250 ms) whether audio is on or not. Returns
   * {play: pattern name or null, reason ("onset", "first", "repeat"), level, pauseEnded: null |
   * "expired" | "new-high", nextDueMs: when the level's next burst is due, connectionLost: the
   * connection-loss alarm is on, feedLost: the no-bedside-data alarm is on (show them, audio on
   * or off; never both)}.
   */
  update(alarms, nowMs, connDownSinceMs = null, feed = null) {
    const lost = connectionLossAlarm(connDownSinceMs, nowMs, this.timing.connLossMs);
    const blind = lost ? null : feedLossAlarm(feed); // the connection loss takes precedence
    if (lost || blind) alarms = [...alarms, lost ?? blind];
    const fresh = this.noteNew(alarms, nowMs);
    const level = soundLevel(alarms);
    if (level === null) this.lastBurst = {}; // nothing repeats: the cycle is over
    const out = { play: null, reason: "", level, pauseEnded: null, nextDueMs: null };
    out.connectionLost = Boolean(lost);
    out.feedLost = Boolean(blind);
    if (!this.enabled) {
      this.pending.clear();
      return out;
    }
    if (this.pausedUntil !== null) {
      if (fresh.some((a) => a.priority === "high")) out.pauseEnded = "new-high";
      else if (nowMs >= this.pausedUntil) out.pauseEnded = "expired";
      if (!out.pauseEnded) {
        this.pending.clear();
        return out;
      }
      this.cancelPause();
    }
    [out.play, out.reason] = this.decide(level, nowMs);
    if (level) out.nextDueMs = this.dueMs(level, nowMs);
    return out;
  }

  /** Remember every id; the new unacknowledged ones are returned and kept pending. */
  noteNew(alarms, nowMs) {
    const fresh = [];
    for (const a of alarms) {
      if (!this.seen.has(a.id) && !a.acked) fresh.push(a);
      this.seen.set(a.id, nowMs);
    }
    for (const [id, at] of this.seen) if (nowMs - at > SEEN_KEEP_MS) this.seen.delete(id);
    for (const a of fresh) this.pending.set(a.id, a.priority);
    // a pending onset acknowledged or ended before it could sound is dropped
    const open = new Set(alarms.filter((a) => !a.acked).map((a) => a.id));
    for (const id of this.pending.keys()) if (!open.has(id)) this.pending.delete(id);
    return fresh;
  }

  dueMs(level, nowMs) {
    const interval = level === "high" ? this.timing.highMs : this.timing.mediumMs;
    const last = this.lastBurst[level];
    const due = last === undefined ? nowMs : last + interval;
    return Math.max(due, this.lastAnyMs + this.timing.minGapMs);
  }

  decide(level, nowMs) {
    let onset = null; // the highest priority among the pending new alarms
    for (const p of this.pending.values()) if (onset === null || RANK[p] > RANK[onset]) onset = p;
    const gapOk = nowMs - this.lastAnyMs >= this.timing.minGapMs;
    let play = null;
    let reason = "";
    if (level && onset && RANK[onset] >= RANK[level]) {
      if (gapOk) [play, reason] = [level, "onset"]; // a new alarm at the level or above: cycle restarts
    } else if (level) {
      const first = this.lastBurst[level] === undefined;
      if (nowMs >= this.dueMs(level, nowMs)) [play, reason] = [level, first ? "first" : "repeat"];
    } else if (onset === "low") {
      if (gapOk) [play, reason] = ["low", "onset"];
    }
    if (play === null) {
      if (level) for (const [id, p] of this.pending) if (p === "low") this.pending.delete(id); // covered
      return [null, ""];
    }
    this.pending.clear();
    if (play !== "low") this.lastBurst[play] = nowMs;
    this.lastAnyMs = nowMs;
    return [play, reason];
  }
}
