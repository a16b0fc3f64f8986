// WebSocket connection: subscribe on open, resume from the last alert id, reconnect
// with exponential backoff and jitter, and a watchdog for silent connections.
// Emits "status" events: {state: "connecting"|"live"|"offline", retryInMs, attempts}
// and "failed" when a connection closed before it ever opened (maybe a rejected token).
// downSince / downSinceWall: when the live connection was lost (performance.now() and
// Date.now()), null while live or while stopped on purpose (signed out): the connection-loss
// alarm of alarmsound.js reads it.

import { wsUrl } from "./api.js";

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const SILENCE_MS = 12000; // state frames arrive about once a second

export class Connection extends EventTarget {
  constructor(store) {
    super();
    this.store = store;
    this.ws = null;
    this.attempts = 0;
    this.timer = null;
    this.watchdog = null;
    this.stopped = true;
    this.state = "offline";
    this.retryAt = null;
    this.lastMessageWall = 0;
    this.downSince = null;
    this.downSinceWall = null;
  }

  setState(state, extra = {}) {
    this.state = state;
    if (state === "live" || this.stopped) {
      this.downSince = null;
      this.downSinceWall = null;
    } else if (this.downSince === null) {
      this.downSince = performance.now();
      this.downSinceWall = Date.now();
    }
    this.dispatchEvent(new CustomEvent("status", { detail: { state, attempts: this.attempts, ...extra } }));
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      ws.close(1000, "client stop");
    }
    this.setState("offline");
  }

  /** Send a JSON frame; false when not connected (the caller falls back to REST). */
  send(obj) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  connect() {
    clearTimeout(this.timer);
    this.setState("connecting");
    let opened = false;
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      opened = true;
      this.lastMessageWall = performance.now();
      ws.send(
        JSON.stringify({
          type: "subscribe",
          patients: ["*"],
          waveform: true,
          last_alert_id: this.store.lastAlertId ?? null,
        }),
      );
      clearInterval(this.watchdog);
      this.watchdog = setInterval(() => {
        if (performance.now() - this.lastMessageWall > SILENCE_MS) ws.close(4000, "silent");
      }, 2000);
    };
    ws.onmessage = (ev) => {
      this.lastMessageWall = performance.now();
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (this.state !== "live") {
        this.attempts = 0; // the server talks: the connection is good
        this.setState("live");
      }
      if (msg?.type === "error") {
        this.dispatchEvent(new CustomEvent("server-error", { detail: msg }));
      }
      this.store.handle(msg);
    };
    ws.onerror = () => {}; // onclose follows and handles it
    ws.onclose = (ev) => {
      clearInterval(this.watchdog);
      if (this.ws === ws) this.ws = null;
      if (this.stopped) return;
      if (!opened || ev.code === 1008 || ev.code === 4401 || ev.code === 4403) {
        this.dispatchEvent(new CustomEvent("failed", { detail: { code: ev.code, opened } }));
      }
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempts);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempts += 1;
    this.retryAt = performance.now() + delay;
    this.setState("offline", { retryInMs: delay });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Reconnect now (user clicked the status pill). */
  retryNow() {
    if (this.stopped || this.state !== "offline") return;
    this.connect();
  }
}
