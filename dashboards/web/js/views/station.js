// Central-station grid: one tile per patient with a sweeping trace, HR, beat class, alarms; a
// discharged patient's tile goes; "Recent discharges" lists the newest discharges.

import { describeSettings, fmtWhen, indicatorText } from "../alarmsettings.js";
import { bedFreshness, staleLook } from "../freshness.js";
import { shortNote, titleParts } from "../patientinfo.js";
import { SweepPainter } from "../sweep.js";
import { BEAT_NAMES, PRIORITY_RANK, cssVar, el, patientHr } from "../util.js";
import { refreshSince, renderAlarmBadges } from "./alarms.js";
import { RecentDischarges } from "./discharge.js";

const SWEEP_S = 6;

class Tile {
  constructor(patient, actions) {
    this.p = patient;
    this.actions = actions;
    this.visible = true;
    this.canvas = el("canvas", { class: "trace", "aria-label": `ECG trace, patient ${patient.id}` });
    this.hr = el("div", { class: "hr" }, "---");
    this.cls = el("span", { class: "beat-chip" }, "–");
    this.lead = el("span", { class: "lead" }, "");
    this.settingsFlag = el("span", { class: "settings-flag", hidden: true });
    this.bed = el("span", { class: "bed" }, patient.id);
    this.name = el("span", { class: "pname", hidden: true });
    this.pid = el("span", { class: "pid", hidden: true });
    this.title = el("span", { class: "tile-title" }, this.bed, this.name, this.pid);
    this.noteFlag = el("span", { class: "note-flag", hidden: true });
    this.alarms = el("div", { class: "tile-alarms" });
    this.nodata = nodataOverlay();
    this.freshness = null;
    this.lastKnown = false;
    this.root = el(
      "article",
      {
        class: "tile",
        tabindex: "0",
        dataset: { patient: patient.id },
        onclick: () => actions.openPatient(patient.id),
        onkeydown: (ev) => {
          if (ev.key === "Enter" && ev.target === ev.currentTarget) actions.openPatient(patient.id);
        },
      },
      el("header", { class: "tile-head" }, this.title, this.noteFlag, this.lead, this.settingsFlag, this.cls),
      el(
        "div",
        { class: "tile-body" },
        el("div", { class: "trace-wrap" }, this.canvas, this.nodata),
        el("div", { class: "vitals" }, el("div", { class: "hr-label" }, "HR ", el("small", {}, "bpm")), this.hr),
      ),
      this.alarms,
    );
    this.painter = new SweepPainter(this.canvas, {
      sweepS: SWEEP_S,
      eraseS: 0.25,
      color: cssVar("--trace", "#3f6"),
      lineWidth: 1.6,
    });
    this.updateNumbers();
    this.updateAlarms();
    this.updateSettings();
    this.updateInfo();
  }

  /** Bed label and name when the ward entered them (the id small), else the id; the note as a badge. */
  updateInfo() {
    const info = this.p.info;
    const t = titleParts(this.p.id, info);
    this.bed.textContent = t.main;
    this.name.textContent = t.name;
    this.name.hidden = !t.name;
    this.pid.textContent = t.id;
    this.pid.hidden = !t.id;
    this.title.title = t.tooltip;
    const note = info?.note || "";
    this.noteFlag.hidden = !note;
    this.noteFlag.textContent = shortNote(note);
    this.noteFlag.title = note ? `Note: ${note}` : "";
  }

  /** A small note when this patient's alarm settings differ from the defaults (null = defaults). */
  updateSettings() {
    const s = this.p.alarmSettings;
    const text = indicatorText(s, this.actions.alarmDefaults?.() ?? undefined);
    this.settingsFlag.hidden = !text;
    this.settingsFlag.textContent = text;
    this.settingsFlag.title = text
      ? `Alarm settings for this patient: ${describeSettings(s)} (by ${s.user ?? "?"}, ${fmtWhen(s.set_at_ms)})`
      : "";
  }

  setVisible(visible) {
    if (visible && !this.visible) this.painter.invalidate();
    this.visible = visible;
  }

  updateNumbers() {
    const text = patientHr(this.p);
    if (this.hr.textContent !== text) this.hr.textContent = text;
    const c = this.p.lastClass || "–";
    if (this.cls.textContent !== c) {
      this.cls.textContent = c;
      this.cls.className = `beat-chip cls-${c}`;
      this.cls.title = BEAT_NAMES[c] ? `Last beat: ${BEAT_NAMES[c]}` : "Last beat";
    }
    if (this.lead.textContent !== this.p.lead) this.lead.textContent = this.p.lead;
  }

  updateAlarms() {
    this.updateNumbers(); // HR 0 reads as 0 only during asystole
    renderAlarmBadges(this.alarms, this.p, this.actions.ack, { compact: false, lastKnown: this.lastKnown });
    this.root.dataset.level = this.p.alarmLevel || "none";
    this.root.classList.toggle("flash-high", this.p.unackedHigh);
  }

  /** Live, no signal, or offline (freshness.js): the overlay, the grey, last-known alarms. */
  setFreshness(freshness) {
    if (freshness === this.freshness) return;
    this.freshness = freshness;
    const look = staleLook(freshness);
    this.nodata.hidden = !look.stale;
    this.root.classList.toggle("stale", look.stale);
    this.root.classList.toggle("offline", look.frozen);
    this.root.dataset.freshness = freshness;
    if (!look.frozen) this.painter.invalidate(); // redraw at once what came meanwhile
    if (this.lastKnown !== look.lastKnown) {
      this.lastKnown = look.lastKnown;
      this.updateAlarms();
    }
  }

  draw(now, link) {
    this.setFreshness(bedFreshness(this.p.lastDataWall, now, link));
    if (!this.visible || this.freshness === "offline") return; // offline: the trace stops
    this.painter.paint(this.p.ring, this.p.displayT ?? null, this.p.scale);
  }
}

/** NO SIGNAL (this bed sends nothing), CONNECTION LOST (the station's link is down), or NO DATA. */
export function nodataOverlay() {
  return el(
    "div",
    { class: "nodata", hidden: true },
    el("span", { class: "no-signal" }, "NO SIGNAL"),
    el("span", { class: "no-data" }, "NO DATA"),
    el("span", { class: "conn-lost" }, "CONNECTION LOST"),
  );
}

function readSortMode() {
  try {
    return localStorage.getItem("ecgmonSort") === "alarm" ? "alarm" : "bed";
  } catch {
    return "bed";
  }
}

export class StationView {
  constructor(root, store, actions) {
    this.root = root;
    this.store = store;
    // tiles compare a bed's alarm settings with the deployment's defaults (hello frame)
    this.actions = { ...actions, alarmDefaults: () => store.alarmDefaults };
    this.tiles = new Map();
    this.grid = el("section", { class: "station-grid", "aria-label": "Central station" });
    this.empty = el("p", { class: "empty" }, "Waiting for patients from the gateway…");
    this.observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const tile = this.tiles.get(e.target.dataset.patient);
        if (tile) tile.setVisible(e.isIntersecting);
      }
    });
    this.sortMode = readSortMode();
    this.sortButtons = ["bed", "alarm"].map((mode) =>
      el(
        "button",
        { type: "button", class: "seg", dataset: { mode }, onclick: () => this.setSort(mode) },
        mode === "bed" ? "Bed" : "Alarms first",
      ),
    );
    this.discharges = new RecentDischarges(store, actions);
    this.toolbar = el(
      "div",
      { class: "station-tools" },
      this.discharges.button,
      el("span", { class: "muted" }, "Order"),
      el("div", { class: "segmented", role: "group", "aria-label": "Tile order" }, ...this.sortButtons),
    );
    this.listeners = {
      patients: () => this.sync(),
      alarms: (ev) => {
        this.tiles.get(ev.detail.patient.id)?.updateAlarms();
        if (this.sortMode === "alarm") this.sync();
      },
      state: (ev) => this.tiles.get(ev.detail.patient.id)?.updateNumbers(),
      settings: (ev) => this.tiles.get(ev.detail.patient.id)?.updateSettings(),
      "alarm-defaults": () => {
        for (const tile of this.tiles.values()) tile.updateSettings();
      },
      info: (ev) => {
        this.tiles.get(ev.detail.patient.id)?.updateInfo();
        this.sync(); // the bed label is the bed order
      },
      beat: (ev) => this.tiles.get(ev.detail.patient.id)?.updateNumbers(),
    };
  }

  mount() {
    this.root.replaceChildren(this.toolbar, this.discharges.root, this.grid, this.empty);
    this.discharges.mount();
    this.setSort(this.sortMode);
    for (const [type, fn] of Object.entries(this.listeners)) this.store.addEventListener(type, fn);
    this.sync();
    this.sinceRefresh = 0;
  }

  unmount() {
    for (const [type, fn] of Object.entries(this.listeners)) this.store.removeEventListener(type, fn);
    this.observer.disconnect();
    this.discharges.unmount();
  }

  setSort(mode) {
    this.sortMode = mode;
    try {
      localStorage.setItem("ecgmonSort", mode);
    } catch {
      // private mode: the choice just is not remembered
    }
    for (const b of this.sortButtons) b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
    this.sync();
  }

  /** Bed order, or unacknowledged high first, then by priority (bed order within). */
  orderedIds() {
    const ids = this.store.ids();
    if (this.sortMode !== "alarm") return ids;
    const score = (id) => {
      const p = this.store.patient(id);
      return (p.unackedHigh ? 10 : 0) + (PRIORITY_RANK[p.alarmLevel] ?? -1);
    };
    return ids.map((id, i) => [id, score(id), i]).sort((a, b) => b[1] - a[1] || a[2] - b[2]).map((x) => x[0]);
  }

  sync() {
    const ids = this.orderedIds();
    const shown = new Set(ids);
    for (const [id, tile] of this.tiles) {
      if (shown.has(id) && this.store.patients.get(id) === tile.p) continue;
      this.observer.unobserve(tile.root); // discharged (a later admission gets a new tile)
      this.tiles.delete(id);
    }
    for (const id of ids) {
      if (this.tiles.has(id)) continue;
      const tile = new Tile(this.store.patient(id), this.actions);
      this.tiles.set(id, tile);
      this.observer.observe(tile.root);
    }
    const nodes = ids.map((id) => this.tiles.get(id).root);
    const same = nodes.length === this.grid.children.length && nodes.every((n, i) => this.grid.children[i] === n);
    if (!same) this.grid.replaceChildren(...nodes);
    this.empty.hidden = ids.length > 0;
  }

  frame(now, link) {
    for (const tile of this.tiles.values()) tile.draw(now, link);
    // Refresh the "since onset" timers on badges about once a second.
    if (now - this.sinceRefresh > 1000) {
      this.sinceRefresh = now;
      for (const tile of this.tiles.values()) if (tile.p.active.size) refreshSince(tile.alarms, tile.p);
    }
  }
}
