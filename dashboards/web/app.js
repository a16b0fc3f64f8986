// ecgmon central station: boot, login, hash routing, the animation loop, shared actions, the
// banners of a blind station (connection lost, no bedside data) and what follows a discharge
// (back to the station from that patient's view, a notice).

import { AuthError, clearToken, getAlerts, getDischarges, getPatients, getToken, getUser, postAck } from "./js/api.js";
import { AlarmSound, PATTERNS, alarmSnapshot, parseTiming } from "./js/alarmsound.js";
import { audioEnabled, audioLog, playPattern, setAudio } from "./js/audio.js";
import { Connection } from "./js/conn.js";
import { dischargeNotice } from "./js/discharge.js";
import { feedBannerText } from "./js/feed.js";
import { LinkWatch } from "./js/freshness.js";
import { Store } from "./js/store.js";
import { el, fmtDataTime, wallClock } from "./js/util.js";
import { AnalyzeView } from "./js/views/analyze.js";
import { showLogin } from "./js/views/login.js";
import { PatientView } from "./js/views/patient.js";
import { StationView } from "./js/views/station.js";

const SCALE_WINDOW_S = 6;
const SOUND_TICK_MS = 250;
const NOTICE_MS = 12_000; // a discharge notice stays a little longer than a toast

const store = new Store();
const conn = new Connection(store);
const main = document.getElementById("main");
const ui = {
  status: document.getElementById("conn-status"),
  clock: document.getElementById("clock"),
  summary: document.getElementById("alarm-summary"),
  audio: document.getElementById("audio-toggle"),
  pause: document.getElementById("audio-pause"),
  logout: document.getElementById("logout"),
  toast: document.getElementById("toast"),
  banner: document.getElementById("conn-banner"),
  bannerText: document.getElementById("conn-banner-text"),
  bannerRetry: document.getElementById("conn-banner-retry"),
  feedBanner: document.getElementById("feed-banner"),
  feedBannerText: document.getElementById("feed-banner-text"),
  feedBannerDetail: document.getElementById("feed-banner-detail"),
  nav: document.querySelectorAll("[data-route]"),
};

// Alarm tones: the intervals can be shortened for the browser tests (localStorage, read once).
const sound = new AlarmSound(parseTiming(localStorage.getItem("ecgmonAudioTiming")));
// The tiles go stale ("offline": NO DATA, last-known alarms) when the connection-loss alarm starts.
const linkWatch = new LinkWatch(sound.timing.connLossMs);
let view = null;
const perf = { frameMs: 0, frames: 0 }; // drawing cost, read by the browser tests
let loginOpen = false;
let lastAuthCheck = 0;

const actions = {
  openPatient(id) {
    location.hash = `#/patient/${encodeURIComponent(id)}`;
  },
  async ack(alarmId) {
    const user = getUser();
    store.markAckPending(alarmId);
    if (conn.send({ type: "ack", alarm_id: alarmId, user })) {
      setTimeout(() => {
        const a = store.findAlarm(alarmId);
        if (a?.ackPending && !a.acknowledged_by) {
          store.markAckPending(alarmId, false);
          toast("The gateway did not confirm the acknowledgement: try again.");
        }
      }, 6000);
      return;
    }
    try {
      await postAck(alarmId, user);
      store.onAcked(alarmId, user);
    } catch (err) {
      store.markAckPending(alarmId, false);
      if (err instanceof AuthError) actions.authFailed();
      toast(`Acknowledge failed: ${err.message}`);
    }
  },
  authFailed(message = "The gateway rejected the token. Sign in again.") {
    if (!loginOpen) login(message);
  },
};

function toast(text, ms = 5000, kind = "") {
  const node = el("div", { class: `toast-msg${kind ? ` ${kind}` : ""}`, role: "alert" }, text);
  ui.toast.append(node);
  setTimeout(() => node.remove(), ms);
}

// ---- discharges --------------------------------------------------------------------------

/** A patient was discharged (here or on another station): leave its view, say who and when. */
function onDischarged(ev) {
  const { record } = ev.detail;
  if (view instanceof PatientView && view.p.id === record.patient_id) {
    location.replace("#/"); // replaces the history entry: Back does not reopen the discharged patient
  }
  toast(dischargeNotice(record), NOTICE_MS, "notice");
}

/**
 * A hello that no longer lists a patient on the station: discharged while this station was
 * offline (it missed the frame)? The gateway's archive says; those go as if the frame had come.
 */
async function catchUpDischarges(ev) {
  const monitored = ev.detail.patients;
  if (!monitored || !store.unlisted(monitored).length) return;
  let rows;
  try {
    const res = await getDischarges(50);
    rows = Array.isArray(res) ? res : res?.discharges;
  } catch {
    return; // the tiles stay (NO SIGNAL): better than removing a monitored patient
  }
  for (const row of store.missedDischarges(rows, monitored, ev.detail.wall)) {
    store.handle({
      type: "discharged",
      patient_id: row.patient_id,
      request_id: row.request_id,
      user: row.user,
      at_ms: row.discharged_at_ms,
      info: row.info ?? null,
    });
  }
}

// ---- routing -------------------------------------------------------------------------

function route() {
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/patient\/(.+)$/);
  view?.unmount();
  if (m) {
    let id = m[1];
    try {
      id = decodeURIComponent(id);
    } catch {
      // a malformed escape: use the id as typed
    }
    view = new PatientView(main, store, actions, id);
  } else if (hash.startsWith("#/analyze")) {
    view = new AnalyzeView(main, store, actions);
  } else {
    view = new StationView(main, store, actions);
  }
  view.mount();
  const name = m ? "patient" : hash.startsWith("#/analyze") ? "analyze" : "station";
  for (const a of ui.nav) a.classList.toggle("active", a.dataset.route === name);
  document.body.dataset.view = name;
  window.scrollTo(0, 0);
}

// ---- animation loop: one clock for every trace ------------------------------------------

function loop(now) {
  const link = linkWatch.update(conn.downSince, now);
  for (const p of store.patients.values()) {
    p.displayT = p.playout.tick(now);
    if (p.ring && p.displayT !== null && !(now - (p.scaleWall ?? 0) < 1000)) {
      p.scale.update(p.ring.range(p.displayT - SCALE_WINDOW_S, p.displayT));
      p.scaleWall = now;
    }
  }
  try {
    view?.frame(now, link);
  } catch (err) {
    console.error(err); // keep the loop (and every other trace) alive
  }
  perf.frameMs += (performance.now() - now - perf.frameMs) * 0.05;
  perf.frames += 1;
  requestAnimationFrame(loop);
}

// ---- header: clock, connection status, alarm summary, audio ----------------------------

function renderStatus() {
  const s = conn.state;
  let text = { live: "LIVE", connecting: "CONNECTING…", offline: "OFFLINE" }[s] || s;
  if (s === "offline" && conn.retryAt && !conn.stopped) {
    const secs = Math.max(0, Math.ceil((conn.retryAt - performance.now()) / 1000));
    text = `OFFLINE · retry in ${secs} s`;
  }
  ui.status.textContent = text;
  ui.status.className = `conn conn-${s}`;
  document.body.dataset.conn = s;
  ui.status.title = s === "offline" ? "Click to reconnect now" : "WebSocket connection to the gateway";
}

function renderSummary() {
  const n = { high: 0, medium: 0, low: 0, technical: 0 };
  for (const p of store.patients.values()) {
    for (const a of p.active.values()) n[a.technical ? "technical" : a.priority] = (n[a.technical ? "technical" : a.priority] ?? 0) + 1;
  }
  const parts = [
    ["high", "HIGH"],
    ["medium", "MED"],
    ["low", "LOW"],
    ["technical", "TECH"],
  ]
    .filter(([k]) => n[k])
    .map(([k, label]) => el("span", { class: `sum prio-${k}` }, `${n[k]} ${label}`));
  ui.summary.replaceChildren(...(parts.length ? parts : [el("span", { class: "sum none" }, "No alarms")]));
  const connLost = !ui.banner.hidden;
  const feedLost = !ui.feedBanner.hidden;
  ui.summary.title = connLost
    ? "Last known alarms: no connection to the gateway"
    : feedLost
      ? "No ECG from any bedside monitor reaches the gateway"
      : "";
  // never a patient's name here: the title shows in task bars and browser history
  if (connLost) document.title = "(NO CONNECTION) ecgmon";
  else if (feedLost) document.title = "(NO BEDSIDE DATA) ecgmon";
  else document.title = n.high ? `(${n.high} HIGH) ecgmon` : "ecgmon · Central station";
}

/** The connection-loss alarm (decided in alarmsound.js): a banner until the connection is back. */
function renderConnectionLoss(lost) {
  if (lost) {
    const since = wallClock((conn.downSinceWall ?? Date.now()) + store.serverTimeOffsetMs);
    const text = `Connection to the gateway lost since ${since} — alarms are not being received`;
    if (ui.bannerText.textContent !== text) ui.bannerText.textContent = text;
    ui.bannerRetry.disabled = conn.state !== "offline";
  }
  if (ui.banner.hidden === !lost) return;
  ui.banner.hidden = !lost;
  document.body.classList.toggle("conn-lost", lost);
  renderSummary();
}

/**
 * The no-bedside-data alarm (feed.js, decided in alarmsound.js): the gateway receives ECG from
 * no bed at all, a fault upstream. A banner until it receives again (never with the connection one).
 */
function renderFeedLoss(blind) {
  if (blind) {
    const { title, detail } = feedBannerText(store.feed, Date.now() + store.serverTimeOffsetMs);
    if (ui.feedBannerText.textContent !== title) ui.feedBannerText.textContent = title;
    if (ui.feedBannerDetail.textContent !== detail) ui.feedBannerDetail.textContent = detail;
  }
  if (ui.feedBanner.hidden === !blind) return;
  ui.feedBanner.hidden = !blind;
  document.body.classList.toggle("feed-lost", blind);
  renderSummary();
}

function renderAudio() {
  const on = audioEnabled();
  ui.audio.textContent = on ? "AUDIO ON" : "AUDIO OFF";
  ui.audio.setAttribute("aria-pressed", String(on));
  ui.audio.classList.toggle("on", on);
  renderPause();
}

/** The pause control: offered while audio is on; while paused it counts down and resumes. */
function renderPause() {
  const on = audioEnabled();
  ui.pause.hidden = !on;
  const paused = on && sound.paused;
  const left = Math.ceil(sound.pauseLeftMs(performance.now()) / 1000);
  const text = paused ? `PAUSED ${fmtDataTime(left)}` : pauseLabel();
  if (ui.pause.textContent !== text) ui.pause.textContent = text;
  if (ui.pause.dataset.state === String(paused)) return;
  ui.pause.dataset.state = String(paused);
  ui.pause.classList.toggle("paused", paused);
  ui.pause.setAttribute("aria-pressed", String(paused));
  ui.pause.title = paused
    ? "Alarm tones paused (a new high-priority alarm ends the pause). Click to resume them now."
    : `Silence all alarm tones for ${pauseLabel(true)}; a new high-priority alarm ends the pause`;
}

function pauseLabel(long = false) {
  const s = Math.round(sound.timing.pauseMs / 1000);
  const text = s % 60 ? `${s} s` : `${s / 60} min`;
  return long ? text : `PAUSE ${text.toUpperCase()}`;
}

/** Decide what sounds now (alarmsound.js) and play it (audio.js). */
function soundTick() {
  // signed out (the connection stopped on purpose): no alarm, not even a last known feed state
  const feed = conn.stopped ? null : store.feed;
  const d = sound.update(alarmSnapshot(store.patients.values()), performance.now(), conn.downSince, feed);
  if (d.play) playPattern(PATTERNS[d.play], d.reason);
  renderConnectionLoss(d.connectionLost);
  renderFeedLoss(d.feedLost);
  if (d.pauseEnded === "new-high") toast("Audio pause ended: a new high-priority alarm.");
  renderPause();
  return d;
}

// ---- login -----------------------------------------------------------------------------

async function login(message = "") {
  loginOpen = true;
  conn.stop();
  store.setFeed(null); // unknown until the next hello
  const patients = await showLogin(document.body, message);
  loginOpen = false;
  if (patients) {
    store.loadPatients(patients);
    loadRecentAlerts();
  }
  conn.start();
}

async function checkAuthAfterFailure() {
  const now = performance.now();
  if (loginOpen || now - lastAuthCheck < 10000) return;
  lastAuthCheck = now;
  try {
    await getPatients();
  } catch (err) {
    if (err instanceof AuthError) actions.authFailed();
  }
}

/** Onset times and messages of alarms already active when the page opens. */
async function loadRecentAlerts() {
  try {
    const res = await getAlerts(null, 200, undefined, true);
    store.loadAlerts(null, Array.isArray(res) ? res : res?.alerts);
  } catch {
    // optional: live alert frames fill the same details
  }
}

async function boot() {
  window.addEventListener("hashchange", route);
  route();
  requestAnimationFrame(loop);
  conn.addEventListener("status", renderStatus);
  conn.addEventListener("failed", checkAuthAfterFailure);
  conn.addEventListener("server-error", (ev) => toast(`Gateway: ${ev.detail.error}`));
  store.addEventListener("alarms", renderSummary);
  store.addEventListener("onset-high", soundTick); // sound a new high at once, not at the next tick
  store.addEventListener("discharged", onDischarged);
  store.addEventListener("discharged", renderSummary);
  store.addEventListener("hello", catchUpDischarges);
  store.addEventListener("feed", soundTick); // the banner (and tone) at once, not at the next tick
  ui.status.addEventListener("click", () => conn.retryNow());
  ui.bannerRetry.addEventListener("click", () => conn.retryNow());
  ui.audio.addEventListener("click", () => {
    setAudio(!audioEnabled());
    sound.setEnabled(audioEnabled());
    if (audioEnabled() && !soundTick().play) playPattern(PATTERNS.confirm, "audio on");
    renderAudio();
  });
  ui.pause.addEventListener("click", () => {
    if (sound.paused) sound.cancelPause();
    else sound.pause(performance.now());
    soundTick();
  });
  setInterval(soundTick, SOUND_TICK_MS);
  ui.logout.addEventListener("click", () => {
    clearToken();
    login("Signed out.");
  });
  setInterval(() => {
    ui.clock.textContent = wallClock(Date.now() + store.serverTimeOffsetMs);
    renderStatus();
  }, 500);
  renderAudio();
  renderSummary();
  renderStatus();

  if (!getToken()) {
    await login();
    return;
  }
  try {
    store.loadPatients(await getPatients());
    loadRecentAlerts();
  } catch (err) {
    if (err instanceof AuthError) {
      await login("The stored token was rejected. Sign in again.");
      return;
    }
    toast(`Could not load patients (${err.message}); retrying over the live connection.`);
  }
  conn.start();
}

// For the browser tests and for poking at the state from the console.
window.ecgmon = { store, conn, perf, sound };
Object.defineProperty(window, "__ecgmonAudioLog", { get: audioLog }); // [{pattern, reason, atMs, ctx}]

boot();
