// Plays the alarm tone patterns of alarmsound.js with a WebAudio oscillator, no audio files.
// Off by default; what to play and when is decided by alarmsound.js. Every pattern played is
// logged (time and name) for the browser tests.

const LOG_KEEP = 200;
const GAIN = 0.12;

let ctx = null;
let enabled = false;
const log = [];

export function audioEnabled() {
  return enabled;
}

/** Must be called from a user gesture (a click) so browsers allow the AudioContext. */
export function setAudio(on) {
  enabled = Boolean(on);
  if (enabled && !ctx) {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (AC) ctx = new AC();
  }
  if (enabled && ctx?.state === "suspended") ctx.resume();
}

/** Play one pattern ({name, freqHz, pulseS, offsetsS}) now, if audio is on. */
export function playPattern(pattern, reason = "") {
  if (!enabled) return;
  log.push({ pattern: pattern.name, reason, atMs: performance.now(), ctx: ctx?.state ?? "none" });
  if (log.length > LOG_KEEP) log.splice(0, log.length - LOG_KEEP);
  if (!ctx) return;
  const t0 = ctx.currentTime + 0.02;
  const ramp = 0.01;
  for (const off of pattern.offsetsS) {
    const start = t0 + off;
    const end = start + pattern.pulseS;
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = pattern.freqHz;
    gain.gain.setValueAtTime(0, start);
    gain.gain.linearRampToValueAtTime(GAIN, start + ramp);
    gain.gain.setValueAtTime(GAIN, end - 2 * ramp);
    gain.gain.linearRampToValueAtTime(0, end);
    osc.connect(gain).connect(ctx.destination);
    osc.start(start);
    osc.stop(end + ramp);
  }
}

/** The patterns played so far, oldest first: [{pattern, reason, atMs, ctx}] (a copy). */
export function audioLog() {
  return log.map((e) => ({ ...e }));
}
