// A station offline must not look live: node --test dashboards/web/tests/
import assert from "node:assert/strict";
import { test } from "node:test";

import { CONNECTION_LOSS_DELAY_MS } from "../js/alarmsound.js";
import { LinkWatch, NO_SIGNAL_MS, RECONNECT_GRACE_MS, bedFreshness, staleLook } from "../js/freshness.js";

const LIVE = { offline: false, backAtMs: null };

test("freshness: a bed is live while its waveform moves, no signal after 5 s or before any", () => {
  assert.equal(NO_SIGNAL_MS, 5000);
  assert.equal(bedFreshness(10_000, 12_000, LIVE), "live");
  assert.equal(bedFreshness(10_000, 15_000, LIVE), "live"); // exactly 5 s: still live
  assert.equal(bedFreshness(10_000, 15_001, LIVE), "no-signal");
  assert.equal(bedFreshness(0, 1_000, LIVE), "no-signal"); // never a frame
  assert.equal(bedFreshness(null, 1_000, undefined), "no-signal");
});

test("freshness: offline when the connection has been down longer than the connection-loss delay", () => {
  const watch = new LinkWatch();
  assert.equal(watch.delayMs, CONNECTION_LOSS_DELAY_MS);
  // connected: not offline
  assert.deepEqual(watch.update(null, 1_000), { offline: false, backAtMs: null });
  // down at 20 s: a blip of 10 s is not offline yet (the bed says no signal after 5 s as before)
  const early = watch.update(20_000, 30_000);
  assert.equal(early.offline, false);
  assert.equal(bedFreshness(19_900, 30_000, early), "no-signal");
  assert.equal(bedFreshness(29_000, 30_000, early), "live");
  // past 10 s: every bed is offline, even one whose last frame is recent
  const down = watch.update(20_000, 30_001);
  assert.equal(down.offline, true);
  assert.equal(bedFreshness(29_999, 30_001, down), "offline");
  assert.equal(bedFreshness(0, 30_001, down), "offline");
  assert.equal(watch.update(20_000, 90_000).offline, true);
});

test("freshness: back online, a bed stays offline until its first fresh frame (5 s at most)", () => {
  const watch = new LinkWatch(1_500); // shortened for the browser tests
  watch.update(10_000, 12_000); // down since 10 s, offline from 11.5 s
  const back = watch.update(null, 40_000);
  assert.deepEqual(back, { offline: false, backAtMs: 40_000 });
  assert.equal(bedFreshness(9_000, 40_100, back), "offline"); // old data only
  assert.equal(bedFreshness(40_000, 40_100, back), "offline"); // not after the reconnection
  assert.equal(bedFreshness(40_050, 40_100, back), "live"); // a fresh frame: normal again
  // a bed that sends nothing after the reconnection: no signal once the grace is over
  assert.equal(RECONNECT_GRACE_MS, 5_000);
  assert.equal(bedFreshness(9_000, 44_999, back), "offline");
  assert.equal(bedFreshness(9_000, 45_000, back), "no-signal");
  // the next updates keep the reconnection time; a blip (down, not for long) does not reset it
  assert.equal(watch.update(null, 41_000).backAtMs, 40_000);
  assert.equal(watch.update(41_000, 42_000).backAtMs, 40_000);
  // a new outage: offline again, and a new reconnection time after it
  assert.equal(watch.update(41_000, 43_000).offline, true);
  assert.equal(watch.update(null, 50_000).backAtMs, 50_000);
});

test("freshness: what each state shows", () => {
  assert.deepEqual(staleLook("live"), { stale: false, frozen: false, lastKnown: false });
  assert.deepEqual(staleLook("no-signal"), { stale: true, frozen: false, lastKnown: false });
  assert.deepEqual(staleLook("offline"), { stale: true, frozen: true, lastKnown: true });
});
