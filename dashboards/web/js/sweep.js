// Incremental sweep painter for the station tiles: after one full draw, each frame only
// adds the few new samples and clears the erase bar ahead of them, so thirty tiles cost
// little even without a GPU. A full redraw happens on resize, gain change or a jump.

import { drawSweep, fitCanvas } from "./trace.js";

export class SweepPainter {
  constructor(canvas, { sweepS = 6, eraseS = 0.25, color = "#3f6", lineWidth = 1.6 } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.opts = { sweepS, eraseS, color, lineWidth };
    this.invalidate();
  }

  /** Force a full redraw on the next paint (resize, visibility change). */
  invalidate() {
    this.key = null;
    this.lastK = null;
  }

  paint(ring, displayT, scale) {
    const { w, h, dpr } = fitCanvas(this.canvas);
    const ctx = this.ctx;
    if (!ring || ring.t0 === null || displayT === null) {
      if (this.key !== "empty") ctx.clearRect(0, 0, w, h);
      this.key = "empty";
      return;
    }
    const kTo = Math.min(ring.end - 1, Math.floor((displayT - ring.t0) * ring.fs));
    const key = `${w}x${h}|${scale.version}|${ring.t0}|${ring.fs}`;
    const stepK = this.lastK === null ? Infinity : kTo - this.lastK;
    if (key !== this.key || stepK < 0 || stepK > ring.fs * 2 || kTo < ring.start) {
      ctx.clearRect(0, 0, w, h);
      drawSweep(ctx, w, h, ring, displayT, scale, { ...this.opts, dpr, head: false });
      this.key = key;
      this.lastK = kTo;
      return;
    }
    if (stepK === 0) return;
    this.extend(ring, this.lastK, kTo, scale, w, h, dpr);
    this.lastK = kTo;
  }

  extend(ring, kFrom, kTo, scale, w, h, dpr) {
    const { sweepS, eraseS, color, lineWidth } = this.opts;
    const ctx = this.ctx;
    const xOf = (t) => ((((t % sweepS) + sweepS) % sweepS) / sweepS) * w;
    // Erase bar: clear from just past the new head to eraseS seconds ahead of it.
    const lw = lineWidth * dpr;
    const xHead = xOf(ring.timeOf(kTo));
    const xEnd = xOf(ring.timeOf(kTo) + eraseS);
    const x0 = Math.ceil(xHead + lw);
    if (xEnd >= x0) ctx.clearRect(x0, 0, xEnd - x0 + 1, h);
    else {
      ctx.clearRect(x0, 0, w - x0, h); // the bar wraps to the left edge
      ctx.clearRect(0, 0, xEnd + 1, h);
    }
    ctx.save();
    ctx.lineJoin = "round";
    ctx.lineCap = "round";
    ctx.strokeStyle = color;
    ctx.lineWidth = lw;
    ctx.beginPath();
    let pen = false;
    let prevX = -1;
    for (let k = kFrom; k <= kTo; k++) {
      const v = ring.value(k);
      if (!Number.isFinite(v)) {
        pen = false;
        continue;
      }
      const x = xOf(ring.timeOf(k));
      const y = Math.max(0, Math.min(h, scale.y(v, h)));
      if (!pen || x < prevX) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
      pen = true;
      prevX = x;
    }
    ctx.stroke();
    ctx.restore();
  }
}
