// Per-patient waveform ring buffer on a uniform time grid, and the playout clock
// that turns bursty frame arrival into a steadily advancing display time.

/**
 * Samples on a uniform grid: absolute slot k holds the sample at time t0 + k / fs.
 * Gaps are filled with NaN (the trace breaks there); overlapping samples are dropped.
 */
export class Ring {
  constructor(fsHz, seconds = 32) {
    this.fs = fsHz;
    this.cap = Math.max(16, Math.ceil(fsHz * seconds));
    this.buf = new Float32Array(this.cap).fill(NaN);
    this.t0 = null; // time of slot 0
    this.end = 0; // next slot to write (exclusive end)
  }

  get start() {
    return Math.max(0, this.end - this.cap);
  }

  /** Time just after the last stored sample, or null when empty. */
  get endTime() {
    return this.t0 === null ? null : this.t0 + this.end / this.fs;
  }

  timeOf(k) {
    return this.t0 + k / this.fs;
  }

  slotAt(t) {
    return Math.round((t - this.t0) * this.fs);
  }

  value(k) {
    return k >= this.start && k < this.end ? this.buf[k % this.cap] : NaN;
  }

  reset(t0) {
    this.buf.fill(NaN);
    this.t0 = t0;
    this.end = 0;
  }

  /**
   * Append samples whose first sample is at time tFirst. Returns "reset" when the
   * stream jumped back in time (a restarted replay) and the buffer was cleared.
   */
  push(tFirst, mv) {
    let result = "ok";
    if (this.t0 === null) this.reset(tFirst);
    let k = this.slotAt(tFirst);
    if (k + mv.length < this.end - this.fs * 2) {
      // More than 2 s in the past and not an overlap: the source restarted.
      this.reset(tFirst);
      k = 0;
      result = "reset";
    }
    if (k > this.end + this.cap) {
      // A gap longer than the buffer: start over at the new time.
      this.reset(tFirst);
      k = 0;
    }
    for (let j = this.end; j < k; j++) this.buf[j % this.cap] = NaN; // gap
    const skip = Math.max(0, this.end - k); // overlap already stored
    for (let i = skip; i < mv.length; i++) {
      const v = Number(mv[i]);
      this.buf[(k + i) % this.cap] = Number.isFinite(v) ? v : NaN;
    }
    this.end = Math.max(this.end, k + mv.length);
    return result;
  }

  /** Robust [low, high] of the samples in [tFrom, tTo) (2nd/98th percentile). */
  range(tFrom, tTo) {
    if (this.t0 === null) return null;
    const a = Math.max(this.start, this.slotAt(tFrom));
    const b = Math.min(this.end, this.slotAt(tTo));
    const vals = [];
    const step = Math.max(1, Math.floor((b - a) / 600));
    for (let k = a; k < b; k += step) {
      const v = this.buf[k % this.cap];
      if (Number.isFinite(v)) vals.push(v);
    }
    if (vals.length < 8) return null;
    vals.sort((x, y) => x - y);
    const q = (p) => vals[Math.min(vals.length - 1, Math.floor(p * vals.length))];
    return [q(0.02), q(0.98), vals[0], vals[vals.length - 1]];
  }
}

/**
 * Display clock for one stream. Frames arrive in bursts; the display runs a little
 * behind the extrapolated live edge, at the stream's own speed (1x live, faster for a
 * fast replay) with a gentle correction, and holds (never runs past the newest sample)
 * when data stops.
 */
export class Playout {
  constructor() {
    this.displayT = null;
    this.newestT = null;
    this.arrivalWall = 0;
    this.burstGap = 0.5; // decaying maximum of wall time between arrivals, s
    this.lastTickWall = null;
    this.speed = 1; // data seconds per wall second, measured over ~10 s
    this.history = []; // [wall s, newest data t] per burst
  }

  /** How far behind the live edge to run, in data seconds. */
  get targetLag() {
    return Math.min(4 * this.speed, Math.max(0.35, (this.burstGap * 1.25 + 0.15) * this.speed));
  }

  onData(newestT, nowWallMs) {
    const now = nowWallMs / 1000;
    if (this.newestT !== null && this.arrivalWall) {
      const gap = now - this.arrivalWall;
      if (gap < 3) this.burstGap = Math.max(gap, this.burstGap * 0.97); // longer: a pause, not jitter
    }
    this.arrivalWall = now;
    this.newestT = this.newestT === null ? newestT : Math.max(this.newestT, newestT);
    this.measureSpeed(now);
    if (this.displayT === null) this.displayT = newestT - this.targetLag;
  }

  measureSpeed(now) {
    let h = this.history;
    const last = h[h.length - 1];
    if (last && (now - last[0] > 3 || this.newestT - last[1] > 10 * this.speed * Math.max(1, now - last[0]))) {
      h = this.history = []; // a pause or a jump in the stream says nothing about its speed
    }
    if (last && h.length && now - last[0] < 0.05) last[1] = this.newestT; // one burst, several frames
    else h.push([now, this.newestT]);
    while (h.length > 2 && now - h[1][0] >= 10) h.shift();
    const [w0, t0] = h[0];
    if (now - w0 >= 6) {
      const s = Math.min(50, Math.max(0.25, (this.newestT - t0) / (now - w0)));
      this.speed = Math.abs(s - 1) < 0.15 ? 1 : s; // live streams are 1x; ignore burst jitter
    }
  }

  reset() {
    this.displayT = null;
    this.newestT = null;
    this.arrivalWall = 0;
    this.history = [];
    this.speed = 1;
  }

  /** Advance to wall time nowWallMs; returns the display time (or null before data). */
  tick(nowWallMs) {
    const now = nowWallMs / 1000;
    const dt = this.lastTickWall === null ? 0 : Math.min(1, Math.max(0, now - this.lastTickWall));
    this.lastTickWall = now;
    if (this.displayT === null || this.newestT === null) return this.displayT;
    // Live edge extrapolated from the last burst, capped so a stalled stream does not run on.
    const sinceArrival = Math.min(now - this.arrivalWall, this.burstGap * 2 + 0.5);
    const liveT = this.newestT + Math.max(0, sinceArrival) * this.speed;
    const lag = liveT - this.displayT;
    const target = this.targetLag;
    if (lag > target + 3 * this.speed || lag < -1) {
      this.displayT = liveT - target; // tab was hidden, or a jump in the stream
    } else {
      const err = (lag - target) / this.speed; // in wall seconds
      this.displayT += dt * this.speed * (1 + Math.max(-0.25, Math.min(0.25, err * 0.6)));
    }
    if (this.displayT > this.newestT) this.displayT = this.newestT; // starved: hold
    return this.displayT;
  }
}
