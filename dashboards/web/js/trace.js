// Canvas drawing: sweep-mode live traces, static strips with beat labels, sparklines.

import { beatColor, cssVar, isNum } from "./util.js";

/** Match the canvas backing store to its CSS size; returns {w, h, dpr} in device pixels. */
export function fitCanvas(canvas) {
  const dpr = Math.min(3, window.devicePixelRatio || 1);
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  return { w, h, dpr };
}

/**
 * Vertical scale that follows the signal slowly (like a monitor's auto gain), so a
 * wandering baseline or a tall QRS never leaves the trace area for long.
 */
export class AutoScale {
  constructor(minSpanMv = 1.6) {
    this.minSpan = minSpanMv;
    this.center = null;
    this.span = minSpanMv;
    this.version = 0; // bumped on every change, so painters know to redraw
  }

  update(range, ease = 0.25) {
    if (!range) return;
    const [lo, hi, min, max] = range;
    // Whole peaks in view, but a lone artefact spike cannot shrink the trace to a line.
    const r = hi - lo;
    const lo2 = Math.max(min, lo - r);
    const hi2 = Math.min(max, hi + r);
    const span = Math.max(this.minSpan, (hi2 - lo2) * 1.12);
    const center = (hi2 + lo2) / 2;
    if (this.center === null) {
      this.center = center;
      this.span = span;
    } else {
      // Hysteresis: ignore small changes, so a steady trace keeps a steady gain.
      if (Math.abs(center - this.center) < 0.04 * this.span && Math.abs(span - this.span) < 0.06 * this.span) return;
      this.center += (center - this.center) * ease;
      this.span += (span - this.span) * ease;
    }
    this.version += 1;
  }

  y(v, h, pad = 0.06) {
    const c = this.center ?? 0;
    return h / 2 - ((v - c) / this.span) * h * (1 - 2 * pad);
  }
}

/** 1 s major / 0.2 s minor grid for a strip of spanS seconds (drawn in canvas pixels). */
export function drawTimeGrid(ctx, x0, y0, w, h, spanS, scale) {
  ctx.save();
  const minor = cssVar("--grid-minor", "rgba(0,255,120,0.06)");
  const major = cssVar("--grid-major", "rgba(0,255,120,0.16)");
  for (let i = 0; i <= spanS * 5; i++) {
    const x = Math.round(x0 + (i / (spanS * 5)) * w) + 0.5;
    ctx.strokeStyle = i % 5 === 0 ? major : minor;
    ctx.beginPath();
    ctx.moveTo(x, y0);
    ctx.lineTo(x, y0 + h);
    ctx.stroke();
  }
  if (scale) {
    // Horizontal lines every 0.5 mV around the current centre.
    const c = scale.center ?? 0;
    for (let mv = Math.floor((c - scale.span) * 2) / 2; mv <= c + scale.span; mv += 0.5) {
      const y = Math.round(y0 + scale.y(mv, h)) + 0.5;
      if (y < y0 || y > y0 + h) continue;
      ctx.strokeStyle = Math.abs(mv % 1) < 1e-6 ? major : minor;
      ctx.beginPath();
      ctx.moveTo(x0, y);
      ctx.lineTo(x0 + w, y);
      ctx.stroke();
    }
  }
  ctx.restore();
}

/**
 * Sweep ("erase bar") trace: time t is drawn at x = (t mod sweepS) / sweepS * w; the newest
 * sample is the cursor and a gap of eraseS seconds ahead of it hides the previous sweep.
 * rows > 1 wraps one sweep over several lines (a 20 s strip on a phone).
 * beats: optional [{t, cls}] drawn as class letters above the trace.
 */
export function drawSweep(ctx, w, h, ring, displayT, scale, opts) {
  const { sweepS, eraseS = sweepS * 0.04, color, lineWidth = 1.5, beats = null, dpr = 1, rows = 1 } = opts;
  const showHead = opts.head !== false;
  if (displayT === null || ring.t0 === null) return;
  const rowH = h / rows;
  const pad = beats ? 26 * dpr : 0; // room for the class letters
  const traceH = rowH - pad;
  const pos = (t) => {
    const f = ((((t % sweepS) + sweepS) % sweepS) / sweepS) * rows;
    const row = Math.min(rows - 1, Math.floor(f));
    return [(f - row) * w, row * rowH];
  };
  const tFrom = displayT - sweepS + eraseS;
  const kFrom = Math.max(ring.start, Math.ceil((tFrom - ring.t0) * ring.fs));
  const kTo = Math.min(ring.end - 1, Math.floor((displayT - ring.t0) * ring.fs));
  ctx.save();
  ctx.lineJoin = "round";
  ctx.lineCap = "round";
  ctx.strokeStyle = color;
  ctx.lineWidth = lineWidth * dpr;
  ctx.beginPath();
  let pen = false;
  let prevX = -1;
  let prevRow = -1;
  let head = null;
  for (let k = kFrom; k <= kTo; k++) {
    const v = ring.value(k);
    if (!Number.isFinite(v)) {
      pen = false;
      continue;
    }
    const [x, y0] = pos(ring.timeOf(k));
    const y = y0 + pad + Math.max(0, Math.min(traceH, scale.y(v, traceH))); // clip like a monitor
    if (!pen || x < prevX || y0 !== prevRow) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
    pen = true;
    prevX = x;
    prevRow = y0;
    head = [x, y];
  }
  ctx.stroke();
  if (showHead && head && kTo >= ring.end - 2) {
    ctx.fillStyle = cssVar("--trace-head", "#d8ffe0");
    ctx.beginPath();
    ctx.arc(head[0], head[1], 2.2 * dpr, 0, Math.PI * 2);
    ctx.fill();
  }
  // Labels only over the trace: beats loaded from the history may predate the first sample this
  // page holds (the gateway sends its last 20 s on subscribe, but one that has just started has
  // none, and the strip then fills within one sweep; a letter over blank paper would mislead).
  if (beats) drawBeatMarks(ctx, beats, Math.max(tFrom, ring.timeOf(ring.start)), displayT, pos, dpr);
  ctx.restore();
}

/** Class letters above the trace at each beat; posOf(t) -> [x, rowTop]. */
function drawBeatMarks(ctx, beats, tFrom, tTo, posOf, dpr) {
  ctx.font = `bold ${Math.round(13 * dpr)}px system-ui, sans-serif`;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  ctx.lineWidth = 1 * dpr;
  let lastX = -Infinity;
  let lastRow = null;
  for (const b of beats) {
    if (b.t < tFrom || b.t > tTo) continue;
    const [x, y0] = posOf(b.t);
    const col = beatColor(b.cls);
    const crowded = y0 === lastRow && Math.abs(x - lastX) < 11 * dpr;
    ctx.fillStyle = col;
    if (!crowded) {
      ctx.fillText(b.cls, x, y0 + 3 * dpr);
      lastX = x;
      lastRow = y0;
    }
    ctx.strokeStyle = col;
    ctx.globalAlpha = 0.5;
    ctx.beginPath();
    ctx.moveTo(x, y0 + 18 * dpr);
    ctx.lineTo(x, y0 + 26 * dpr);
    ctx.stroke();
    ctx.globalAlpha = 1;
  }
}

/**
 * Static strip of samples[i0, i1) in a box, beats [{t, cls}] labelled at their positions;
 * t0 is the time of samples[0].
 */
export function drawStrip(ctx, box, samples, fs, i0, i1, scale, opts = {}) {
  const { x0, y0, w, h } = box;
  const { color = cssVar("--trace", "#3f6"), beats = [], t0 = 0, dpr = 1 } = opts;
  const n = i1 - i0;
  if (n <= 1) return;
  const pad = beats.length ? 24 * dpr : 0; // room for the class letters
  drawTimeGrid(ctx, x0, y0 + pad, w, h - pad, n / fs, scale);
  ctx.save();
  ctx.beginPath();
  ctx.rect(x0, y0, w, h);
  ctx.clip();
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.3 * dpr;
  ctx.lineJoin = "round";
  ctx.beginPath();
  let pen = false;
  for (let i = i0; i < i1 && i < samples.length; i++) {
    const v = Number(samples[i]);
    if (!Number.isFinite(v)) {
      pen = false;
      continue;
    }
    const x = x0 + ((i - i0) / n) * w;
    const y = y0 + pad + Math.max(0, Math.min(h - pad, scale.y(v, h - pad)));
    if (pen) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
    pen = true;
  }
  ctx.stroke();
  const tA = t0 + i0 / fs;
  const tB = t0 + i1 / fs;
  drawBeatMarks(ctx, beats, tA, tB, (t) => [x0 + ((t - tA) / (tB - tA)) * w, y0], dpr);
  // Seconds label at the start of the row.
  ctx.fillStyle = cssVar("--muted", "#8a9");
  ctx.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
  ctx.textAlign = "left";
  ctx.textBaseline = "bottom";
  ctx.fillText(`${(tA - t0).toFixed(0)} s`, x0 + 3 * dpr, y0 + h - 2 * dpr);
  ctx.restore();
}

/** [2nd percentile, 98th, min, max] of an array of samples, for an AutoScale; null if < 8. */
export function robustRange(values) {
  const v = values.map(Number).filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length < 8) return null;
  const q = (p) => v[Math.min(v.length - 1, Math.floor(p * v.length))];
  return [q(0.02), q(0.98), v[0], v[v.length - 1]];
}

/** Trend line of points [{t, v}] over [tFrom, tTo], with min/max labels. */
export function drawSparkline(ctx, w, h, points, tFrom, tTo, opts = {}) {
  const { color = cssVar("--trace", "#3f6"), dpr = 1, lo = 40, hi = 160 } = opts;
  ctx.clearRect(0, 0, w, h);
  const vals = points.filter((p) => p.t >= tFrom && p.t <= tTo && isNum(p.v));
  const pad = 6 * dpr;
  const vmin = Math.min(lo, ...vals.map((p) => p.v));
  const vmax = Math.max(hi, ...vals.map((p) => p.v));
  const yOf = (v) => h - pad - ((v - vmin) / (vmax - vmin || 1)) * (h - 2 * pad);
  const xOf = (t) => ((t - tFrom) / (tTo - tFrom || 1)) * w;
  ctx.save();
  ctx.font = `${Math.round(10 * dpr)}px system-ui, sans-serif`;
  ctx.fillStyle = cssVar("--muted", "#8a9");
  ctx.strokeStyle = cssVar("--grid-major", "rgba(0,255,120,0.16)");
  for (const ref of [60, 100, 150]) {
    if (ref < vmin || ref > vmax) continue;
    const y = Math.round(yOf(ref)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(0, y);
    ctx.lineTo(w, y);
    ctx.stroke();
    ctx.fillText(String(ref), 2 * dpr, y - 2 * dpr);
  }
  ctx.textBaseline = "bottom";
  ctx.fillText(opts.leftLabel ?? "", 2 * dpr, h - 1 * dpr);
  ctx.textAlign = "right";
  ctx.fillText(opts.rightLabel ?? "", w - 2 * dpr, h - 1 * dpr);
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5 * dpr;
  ctx.beginPath();
  let prevT = null;
  for (const p of vals) {
    const x = xOf(p.t);
    const y = yOf(p.v);
    if (prevT === null || p.t - prevT > 10) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
    prevT = p.t;
  }
  ctx.stroke();
  ctx.restore();
}
