// Optional audible cue for new high-priority alarms: a WebAudio oscillator burst
// (IEC 60601-1-8-like 3+2 pulse pattern), no audio files. Off by default.

let ctx = null;
let enabled = false;
let lastBeepMs = 0;

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
  if (enabled) beepHigh(true);
}

/** Play the high-priority burst (rate-limited to one per 2 s). */
export function beepHigh(force = false) {
  if ((!enabled && !force) || !ctx) return;
  const nowMs = performance.now();
  if (!force && nowMs - lastBeepMs < 2000) return;
  lastBeepMs = nowMs;
  const pulses = force ? [0] : [0, 0.2, 0.4, 0.9, 1.1];
  const t0 = ctx.currentTime + 0.02;
  for (const off of pulses) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0, t0 + off);
    gain.gain.linearRampToValueAtTime(0.12, t0 + off + 0.01);
    gain.gain.setValueAtTime(0.12, t0 + off + 0.13);
    gain.gain.linearRampToValueAtTime(0, t0 + off + 0.15);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t0 + off);
    osc.stop(t0 + off + 0.16);
  }
}
