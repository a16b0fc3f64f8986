// No bedside data reaches the gateway (feed.js): the store's feed state, the banner's text and the
// technical alarm of alarmsound.js. node --test dashboards/web/tests/
import assert from "node:assert/strict";
import { test } from "node:test";

import { fmtWhen } from "../js/alarmsettings.js";
import { AlarmSound, alarmSnapshot, parseTiming } from "../js/alarmsound.js";
import { feedBannerText, feedLossAlarm, normFeed } from "../js/feed.js";
import { Store } from "../js/store.js";

const LAST_MS = new Date(2025, 2, 4, 14, 2, 5).getTime(); // the last chunk from any bed (local time)
const hello = (feed) => ({ type: "hello", server_time_ms: Date.now(), patients: ["100", "203"], ...feed });
const feedFrame = (receiving, last = LAST_MS) => ({ type: "feed", receiving, last_data_ms: last });

function audioOn(timing) {
  const s = new AlarmSound(timing);
  s.setEnabled(true);
  return s;
}

/** Run the sound logic every 250 ms; feedAt(t) and downAt(t) give the feed state and downSince. */
function run(sound, { feedAt, downAt = () => null, alarmsAt = () => [], from = 0, to }) {
  const played = [];
  const shown = []; // [t, "feed" | "connection" | "none"] each time the banner changes
  for (let t = from; t < to; t += 250) {
    const d = sound.update(alarmsAt(t), t, downAt(t), feedAt(t));
    if (d.play) played.push([t, d.play, d.reason]);
    assert.ok(!(d.feedLost && d.connectionLost), `two banners at ${t}`);
    const banner = d.connectionLost ? "connection" : d.feedLost ? "feed" : "none";
    if (shown.at(-1)?.[1] !== banner) shown.push([t, banner]);
  }
  return { played, shown };
}

test("feed: the gateway's state as the station keeps it; anything else is unknown", () => {
  assert.deepEqual(normFeed({ receiving: false, last_data_ms: LAST_MS }), { receiving: false, lastDataMs: LAST_MS });
  assert.deepEqual(normFeed(feedFrame(true)), { receiving: true, lastDataMs: LAST_MS });
  assert.deepEqual(normFeed({ receiving: false, last_data_ms: null }), { receiving: false, lastDataMs: null });
  for (const raw of [null, undefined, {}, { receiving: "false" }, "x", { last_data_ms: 5 }]) {
    assert.equal(normFeed(raw), null, JSON.stringify(raw));
  }
  assert.equal(feedLossAlarm(null), null);
  assert.equal(feedLossAlarm(normFeed(feedFrame(true))), null);
  assert.deepEqual(feedLossAlarm(normFeed(feedFrame(false))), {
    id: `feed-lost:${LAST_MS}`,
    priority: "medium",
    acked: false,
    technical: true,
  });
  assert.equal(feedLossAlarm(normFeed(feedFrame(false, null))).id, "feed-lost:none");
});

test("feed: the banner says since when no ECG came, and that the beds are not monitored from here", () => {
  const today = feedBannerText(normFeed(feedFrame(false)), LAST_MS + 60_000);
  assert.equal(today.title, `No ECG from any bedside monitor since ${fmtWhen(LAST_MS, LAST_MS)}`);
  assert.match(today.title, /since \d\d:\d\d:\d\d$/);
  assert.match(today.detail, /network or the message broker, not at the patients/);
  assert.match(today.detail, /Beds are not being monitored from here\.$/);
  const days = feedBannerText(normFeed(feedFrame(false)), LAST_MS + 3 * 86_400_000);
  assert.match(days.title, /since 4 Mar \d\d:\d\d$/); // another day: the date too
  const never = feedBannerText(normFeed(feedFrame(false, null)));
  assert.equal(never.title, "No ECG from any bedside monitor received yet");
});

test("feed: a hello saying receiving false shows it; feed frames toggle it; no per-bed alarm", () => {
  const store = new Store();
  const events = [];
  store.addEventListener("feed", (ev) => events.push(ev.detail.feed));
  assert.equal(store.feed, null); // before the hello: unknown, nothing shown
  store.handle(hello({ feed: { receiving: false, last_data_ms: LAST_MS } }));
  assert.deepEqual(store.feed, { receiving: false, lastDataMs: LAST_MS });
  const sound = audioOn();
  let d = sound.update(alarmSnapshot(store.patients.values()), 1_000, null, store.feed);
  assert.equal(d.feedLost, true);
  assert.equal(d.connectionLost, false);
  assert.deepEqual([d.play, d.reason], ["medium", "onset"]); // at once: the gateway waited already
  // the beds themselves get no alarm: the station's alarms are only the feed's technical one
  assert.deepEqual(alarmSnapshot(store.patients.values()), []);
  assert.equal(store.ids().length, 2);

  store.handle(feedFrame(true, LAST_MS + 20_000));
  assert.deepEqual(store.feed, { receiving: true, lastDataMs: LAST_MS + 20_000 });
  d = sound.update([], 2_000, null, store.feed);
  assert.equal(d.feedLost, false);
  assert.equal(d.play, null);
  assert.equal(d.level, null);

  store.handle(feedFrame(false, LAST_MS + 60_000)); // down again: a new outage
  d = sound.update([], 5_000, null, store.feed);
  assert.equal(d.feedLost, true);
  assert.deepEqual([d.play, d.reason], ["medium", "onset"]);
  store.handle(feedFrame(false, LAST_MS + 60_000)); // the same state again: no event
  assert.equal(events.length, 3);

  // a hello without `feed` (an older gateway) or with null (the watch off): nothing to show
  store.handle(hello({}));
  assert.equal(store.feed, null);
  store.handle(feedFrame(false));
  store.handle(hello({ feed: null }));
  assert.equal(store.feed, null);
  assert.equal(sound.update([], 6_000, null, store.feed).feedLost, false);
});

test("feed: the medium tone while no data comes, repeating, until the gateway receives again", () => {
  const sound = audioOn();
  const down = normFeed(feedFrame(false));
  const up = normFeed(feedFrame(true, LAST_MS + 60_000));
  const { played, shown } = run(sound, { feedAt: (t) => (t >= 5_000 && t < 50_000 ? down : up), to: 80_000 });
  assert.deepEqual(played, [
    [5_000, "medium", "onset"],
    [25_000, "medium", "repeat"],
    [45_000, "medium", "repeat"],
  ]);
  assert.deepEqual(shown, [
    [0, "none"],
    [5_000, "feed"],
    [50_000, "none"],
  ]);
  // audio off: silent, but the banner shows
  const off = new AlarmSound();
  const d = off.update([], 1_000, null, down);
  assert.equal(d.play, null);
  assert.equal(d.feedLost, true);
});

test("feed: a high alarm wins over it, the audio pause silences it, as for a lost connection", () => {
  const timing = parseTiming('{"mediumMs": 4000, "pauseMs": 6000}');
  const down = normFeed(feedFrame(false));
  const high = { id: "203:vt:1", priority: "high", acked: false };
  const sound = audioOn(timing);
  const { played } = run(sound, {
    feedAt: () => down,
    alarmsAt: (t) => [t < 12_000 ? high : { ...high, acked: true }],
    to: 20_000,
  });
  assert.deepEqual(played, [
    [0, "high", "onset"],
    [10_000, "high", "repeat"],
    [12_000, "medium", "first"], // the high is acknowledged: the feed alarm sounds at once
    [16_000, "medium", "repeat"],
  ]);
  const paused = audioOn(timing);
  paused.pause(0);
  const p = run(paused, { feedAt: () => down, to: 10_000 });
  assert.deepEqual(p.played, [[6_000, "medium", "first"]]); // silent for the pause, then sounds
  assert.equal(p.shown[0][1], "feed"); // shown during the pause all the same
});

test("feed: a lost connection hides it behind the connection banner; the reconnect's hello says it again", () => {
  const store = new Store();
  const sound = audioOn(parseTiming('{"connLossMs": 1500, "mediumMs": 4000}'));
  store.handle(hello({ feed: { receiving: false, last_data_ms: LAST_MS } }));
  // the link to the gateway is down from 3 s to 9 s; the hello on reconnecting says the feed is
  // still down (the same outage, so not a new alarm); at 20 s it is down again, and the hello
  // after that says the gateway receives again
  const downAt = (t) => (t >= 3_000 && t < 9_000 ? 3_000 : t >= 20_000 && t < 25_000 ? 20_000 : null);
  const hooks = {
    9_000: () => store.handle(hello({ feed: { receiving: false, last_data_ms: LAST_MS } })),
    25_000: () => store.handle(hello({ feed: { receiving: true, last_data_ms: LAST_MS + 30_000 } })),
  };
  const { played, shown } = run(sound, {
    feedAt: (t) => {
      hooks[t]?.();
      return store.feed;
    },
    downAt,
    to: 40_000,
  });
  assert.deepEqual(shown, [
    [0, "feed"],
    [4_750, "connection"], // after connLossMs: the feed state is unknown, the connection banner only
    [9_000, "feed"], // back: the hello says no data still
    [21_750, "connection"],
    [25_000, "none"], // back: the hello says the gateway receives again
  ]);
  assert.deepEqual(played, [
    [0, "medium", "onset"],
    [4_000, "medium", "repeat"],
    [6_000, "medium", "onset"], // the connection loss is a new alarm (2 s after the last burst)
    [10_000, "medium", "repeat"], // the same outage of the feed again: the cycle goes on
    [14_000, "medium", "repeat"],
    [18_000, "medium", "repeat"],
    [21_750, "medium", "onset"], // lost again: a new connection-loss alarm
  ]);
  // before the connection-loss delay the feed's banner stays: the last known state of the gateway
  assert.equal(sound.update([], 50_000, 49_000, normFeed(feedFrame(false))).feedLost, true);
});
