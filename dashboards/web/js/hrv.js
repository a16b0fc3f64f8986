// Time-domain heart-rate variability from beat times (Task Force of the ESC/NASPE, 1996).
// Pure functions: no DOM, so they can be checked with node.

/**
 * Mean RR, SDNN, RMSSD (ms) and pNN50 (%) over beats [{t, cls}] sorted by t.
 * Successive differences are taken only between adjacent intervals (both kept).
 */
export function hrvSummary(beats, opts = {}) {
  const { minRr = 0.3, maxRr = 2.0 } = opts;
  const rr = [];
  const adjacent = []; // adjacent[i]: rr[i] directly follows rr[i-1]
  let prevKeptEnd = null;
  for (let i = 1; i < beats.length; i++) {
    const a = beats[i - 1];
    const b = beats[i];
    const ok = !((a.cls && a.cls !== "N") || (b.cls && b.cls !== "N"));
    const v = b.t - a.t;
    if (ok && v >= minRr && v <= maxRr) {
      adjacent.push(prevKeptEnd === i - 1);
      rr.push(v);
      prevKeptEnd = i;
    }
  }
  const n = rr.length;
  if (n < 2) return { n, meanRrMs: null, sdnnMs: null, rmssdMs: null, pnn50: null, meanHr: null };
  const mean = rr.reduce((s, v) => s + v, 0) / n;
  const sdnn = Math.sqrt(rr.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1));
  let sumSq = 0;
  let diffs = 0;
  let over50 = 0;
  for (let i = 1; i < n; i++) {
    if (!adjacent[i]) continue;
    const d = rr[i] - rr[i - 1];
    sumSq += d * d;
    diffs += 1;
    if (Math.abs(d) > 0.05 + 1e-9) over50 += 1; // tolerance for float noise
  }
  return {
    n,
    meanRrMs: mean * 1000,
    sdnnMs: sdnn * 1000,
    rmssdMs: diffs ? Math.sqrt(sumSq / diffs) * 1000 : null,
    pnn50: diffs ? (100 * over50) / diffs : null,
    meanHr: 60 / mean,
  };
}
