// The patient view's "Alarm settings" card: the limits the monitor applies for this patient,
// a form to change them, the change history, and the round trip "sent" -> "applied" (a state
// frame, or a re-GET, carrying the request_id the POST answered) or "refused" (a re-GET whose
// `refused` names it: the monitor did not accept it).

import { AuthError, getAlarmSettings, getUser, setAlarmSettings } from "../api.js";
import {
  DEFAULT_RANGES,
  DEFAULT_SETTINGS,
  LIMIT_FIELDS,
  alarmName,
  changeOutcome,
  errorField,
  fmtLimit,
  fmtWhen,
  historyTag,
  historyWithChanges,
  isDefault,
  refusedText,
  sameSettings,
  settingsErrorText,
  validateUser,
} from "../alarmsettings.js";
import { el } from "../util.js";
import { SettingsForm } from "./settingsform.js";

const POLL_MS = 3000; // re-GET while a change waits: covers a WebSocket that is down
const SLOW_APPLY_MS = 15000; // then say that the monitor has not applied it yet
const HISTORY_SHOWN = 5;
const HISTORY_MAX = 50; // the gateway keeps this many: a full list may not reach the defaults
const TAG_KIND = { "in effect": "ok", waiting: "busy", refused: "error" };

let panels = 0;

export class AlarmSettingsPanel {
  constructor(store, actions, patient) {
    this.store = store;
    this.actions = actions;
    this.p = patient;
    this.info = null; // the last GET answer
    this.loadError = "";
    this.waitFor = null; // {requestId, entry, mine, since}: a change sent, not yet applied
    this.showAll = false;
    this.prefix = `alarm-settings-${++panels}`;
    this.onSettings = (ev) => ev.detail.patient === this.p && this.liveUpdate();
    this.build();
  }

  id(key) {
    return `${this.prefix}-${key}`;
  }

  build() {
    this.origin = el("p", { class: "settings-origin muted" }, "loading…");
    this.form = new SettingsForm(this.prefix, this.p.id, {
      onSave: () => this.save(),
      onClose: () => this.closeForm(),
      onDefaults: () => this.fillDefaults(),
    });
    this.editBtn = el(
      "button",
      {
        type: "button",
        class: "link-btn",
        disabled: true,
        "aria-expanded": "false",
        "aria-controls": this.form.root.id,
        onclick: () => this.openForm(),
      },
      "Change…",
    );
    this.summary = el("dl", { class: "settings-summary" });
    this.status = el("p", { class: "status-line settings-status", role: "status", "aria-live": "polite" });
    this.historyCount = el("span", { class: "muted" }, "");
    this.historyList = el("ol", { class: "settings-history" });
    this.historyMore = el("button", {
      type: "button",
      class: "link-btn",
      hidden: true,
      onclick: () => {
        this.showAll = !this.showAll;
        this.renderHistory();
      },
    });
    this.root = el(
      "section",
      { class: "card settings-card", "aria-labelledby": this.id("title"), dataset: { panel: "alarm-settings" } },
      el("div", { class: "card-head" }, el("h2", { id: this.id("title") }, "Alarm settings"), this.editBtn),
      this.origin,
      this.summary,
      this.status,
      this.form.root,
      el("h3", { class: "settings-history-title" }, "Changes ", this.historyCount),
      this.historyList,
      this.historyMore,
    );
    this.renderAll();
  }

  mount() {
    this.store.addEventListener("settings", this.onSettings);
    this.load();
  }

  unmount() {
    this.gone = true;
    clearTimeout(this.pollTimer);
    clearTimeout(this.reloadTimer);
    this.store.removeEventListener("settings", this.onSettings);
  }

  // ---- data ------------------------------------------------------------------------------

  defaults() {
    return this.info?.defaults ?? DEFAULT_SETTINGS;
  }

  ranges() {
    return { ...DEFAULT_RANGES, ...(this.info?.ranges || {}) };
  }

  /** The applied object (who, when, request_id): live state frames first, else the last GET. */
  applied() {
    return this.p.alarmSettings !== undefined ? this.p.alarmSettings : (this.info?.applied ?? null);
  }

  effective() {
    return this.applied() ?? this.info?.effective ?? this.defaults();
  }

  async load() {
    clearTimeout(this.pollTimer);
    const ask = (this.ask = (this.ask ?? 0) + 1); // a later load wins over a slow answer
    try {
      const info = await getAlarmSettings(this.p.id);
      if (ask !== this.ask || this.gone) return;
      this.info = info && typeof info === "object" ? info : {};
      this.loadError = "";
      this.form.setOptional(this.info.optional_alarms);
      this.form.setLimits(this.ranges(), this.defaults());
      if (this.info.applied !== undefined) this.store.setAlarmSettings(this.p, this.info.applied);
      this.followPending();
    } catch (err) {
      if (ask !== this.ask || this.gone) return;
      if (err instanceof AuthError) this.actions.authFailed();
      this.loadError = settingsErrorText(err, "load");
    }
    this.renderAll();
    if (this.waitFor) {
      this.renderWaiting();
      this.pollTimer = setTimeout(() => this.load(), POLL_MS);
    }
  }

  /** After a GET: start waiting for a pending change, or settle the one waited for. */
  followPending() {
    const { pending, applied, refused } = this.info;
    if (!this.waitFor && pending?.request_id) this.wait(pending, false);
    const w = this.waitFor;
    if (!w) {
      // the newest change was refused (before this page opened, or elsewhere): still news
      if (refused?.request_id && this.shownRefusal !== refused.request_id) {
        const entry = (this.info.history || []).find((h) => h.request_id === refused.request_id);
        this.markRefused(refused, entry?.user ?? "another user");
      }
      return;
    }
    const outcome = changeOutcome(this.info, w.requestId);
    if (outcome === "applied") return this.markApplied();
    if (outcome === "refused") return this.markRefused(refused, w.mine ? "" : (w.entry.user ?? "?"));
    if (outcome === "replaced") {
      this.waitFor = null;
      this.setStatus("warn", `Replaced by a later change by ${applied.user ?? "another user"} (${fmtWhen(applied.set_at_ms)}).`);
    }
  }

  /** The monitor refused the change (GET `refused`): say so and why; stop waiting for it. */
  markRefused(refused, who) {
    this.waitFor = null;
    this.shownRefusal = refused.request_id;
    clearTimeout(this.pollTimer);
    this.setStatus("error", refusedText(refused, who));
    this.renderHistory();
  }

  wait(entry, mine = true) {
    this.waitFor = { requestId: entry.request_id, entry, mine, since: performance.now() };
    this.renderWaiting();
    if (this.p.alarmSettings?.request_id === entry.request_id) this.markApplied();
  }

  markApplied() {
    if (!this.waitFor) return;
    const { entry, mine } = this.waitFor;
    this.waitFor = null;
    clearTimeout(this.pollTimer);
    const who = mine ? "" : ` the change by ${entry.user ?? "?"}`;
    this.setStatus("ok", `Applied${who} at ${fmtWhen(Date.now())}: the monitor uses these settings now.`);
    this.renderHistory();
  }

  /** A state frame brought other settings: maybe ours applied, maybe another user's change. */
  liveUpdate() {
    const rid = this.p.alarmSettings?.request_id;
    if (this.waitFor && rid === this.waitFor.requestId) this.markApplied();
    this.renderAll();
    const known = !rid || (this.info?.history || []).some((h) => h.request_id === rid);
    if (!known && this.info) {
      clearTimeout(this.reloadTimer);
      this.reloadTimer = setTimeout(() => this.load(), 300); // fetch its history entry
    }
  }

  // ---- form ------------------------------------------------------------------------------

  openForm() {
    this.form.open(this.effective());
    this.editBtn.hidden = true;
    this.editBtn.setAttribute("aria-expanded", "true");
  }

  closeForm() {
    this.form.close();
    this.editBtn.hidden = false;
    this.editBtn.setAttribute("aria-expanded", "false");
    this.editBtn.focus();
  }

  fillDefaults() {
    this.form.fill(this.defaults());
    this.form.say("note", "Defaults filled in: Save to apply them to this patient.");
  }

  async save() {
    const form = this.form;
    form.tried = true;
    const res = form.check();
    const userError = validateUser(getUser());
    if (!res.ok || userError) {
      form.say("error", userError || "Not saved: correct the fields marked in red.");
      form.focusFirstError(res.errors);
      return;
    }
    if (!this.waitFor && sameSettings(res.settings, this.effective(), this.defaults())) {
      form.say("note", "No change: these are the settings in effect.");
      return;
    }
    const user = getUser().trim();
    form.saveBtn.disabled = true;
    form.say("busy", "Sending…");
    try {
      const ans = await setAlarmSettings(this.p.id, { user, ...res.settings });
      if (this.gone) return;
      const entry = { ...res.settings, user, set_at_ms: Date.now(), ...(ans?.settings || {}) };
      entry.request_id = ans?.request_id ?? entry.request_id;
      if (this.info) {
        this.info.history = [entry, ...(this.info.history || [])].slice(0, HISTORY_MAX);
        this.info.pending = entry;
        this.info.refused = null; // only the newest change's refusal is news
      }
      form.say("", "");
      this.closeForm();
      this.wait(entry);
      this.renderAll();
      if (this.waitFor) this.pollTimer = setTimeout(() => this.load(), POLL_MS);
    } catch (err) {
      if (err instanceof AuthError) this.actions.authFailed();
      form.say("error", settingsErrorText(err, "save"));
      const field = err?.status === 422 ? errorField(err.detail) : null;
      if (field && (field in form.errors || field === "disabled")) {
        form.showErrors({ [field]: String(err.detail) });
        form.focusFirstError({ [field]: true });
      }
    } finally {
      form.saveBtn.disabled = false;
    }
  }

  // ---- rendering -------------------------------------------------------------------------

  setStatus(kind, text) {
    this.status.className = `status-line settings-status ${kind}`;
    this.status.textContent = text;
  }

  renderWaiting() {
    const w = this.waitFor;
    if (!w) return;
    const who = w.mine ? "" : ` by ${w.entry.user ?? "?"}`;
    if (performance.now() - w.since < SLOW_APPLY_MS) {
      this.setStatus("busy", `Sent${who}, waiting for the monitor to apply…`);
    } else {
      this.setStatus(
        "warn",
        `Sent${who} at ${fmtWhen(w.entry.set_at_ms)}, not applied yet: the monitor applies it when ` +
          "this patient's ECG reaches it. Still waiting…",
      );
    }
  }

  renderAll() {
    this.editBtn.disabled = !this.info;
    this.renderOrigin();
    this.renderSummary();
    this.renderHistory();
  }

  renderOrigin() {
    if (!this.info) {
      const retry = el("button", { type: "button", class: "link-btn", onclick: () => this.load() }, "Retry");
      this.origin.className = `settings-origin ${this.loadError ? "error" : "muted"}`;
      this.origin.replaceChildren(this.loadError || "loading…", this.loadError ? " " : "", this.loadError ? retry : "");
      return;
    }
    const a = this.applied();
    this.origin.className = "settings-origin muted";
    let text;
    if (!a) text = "Defaults: never changed for this patient.";
    else if (isDefault(a, this.defaults())) text = `Defaults, reset by ${a.user ?? "?"} · ${fmtWhen(a.set_at_ms)}`;
    else text = `Changed by ${a.user ?? "?"} · ${fmtWhen(a.set_at_ms)}`;
    this.origin.replaceChildren(text, this.loadError ? ` (refresh failed: ${this.loadError})` : "");
  }

  renderSummary() {
    const s = this.effective();
    const d = this.defaults();
    const off = s.disabled || [];
    const item = (label, value, def, changed) =>
      el(
        "div",
        { class: `settings-item${changed ? " changed" : ""}` },
        el("dt", {}, label),
        el("dd", {}, value, changed ? el("small", {}, `default ${def}`) : null),
      );
    const limit = (f) => {
      const { label, unit } = LIMIT_FIELDS[f];
      const changed = Math.abs((s[f] ?? 0) - (d[f] ?? 0)) > 1e-6;
      return item(label, `${fmtLimit(f, s[f])} ${unit}`, fmtLimit(f, d[f]), changed);
    };
    this.summary.replaceChildren(
      limit("hr_low_bpm"),
      limit("hr_high_bpm"),
      limit("pause_s"),
      item("Alarms off", off.length ? off.map(alarmName).join(", ") : "none", "none", off.length > 0),
    );
  }

  renderHistory() {
    const list = this.info?.history || [];
    this.historyCount.textContent = list.length ? `(${list.length})` : "";
    if (!list.length) {
      this.historyList.replaceChildren(el("li", { class: "muted" }, this.info ? "No changes yet." : "—"));
      this.historyMore.hidden = true;
      return;
    }
    const rows = historyWithChanges(list, list.length < HISTORY_MAX, this.defaults());
    const ids = {
      appliedId: this.applied()?.request_id ?? null,
      waitingId: this.waitFor?.requestId ?? this.info?.pending?.request_id ?? null,
      refusedId: this.info?.refused?.request_id ?? null,
    };
    const shown = this.showAll ? rows : rows.slice(0, HISTORY_SHOWN);
    this.historyList.replaceChildren(
      ...shown.map(({ entry, text }) => {
        const at = Number.isFinite(entry.set_at_ms) ? new Date(entry.set_at_ms).toISOString() : null;
        const label = historyTag(entry, ids);
        const tag = label ? el("span", { class: `tag ${TAG_KIND[label]}` }, label) : null;
        return el(
          "li",
          { dataset: { requestId: entry.request_id ?? "" } },
          el("time", { datetime: at }, fmtWhen(entry.set_at_ms)),
          el("span", { class: "who" }, entry.user ?? "?"),
          el("span", { class: "what" }, text),
          tag,
        );
      }),
    );
    this.historyMore.hidden = rows.length <= HISTORY_SHOWN;
    this.historyMore.textContent = this.showAll ? "Show fewer" : `Show all ${rows.length}`;
  }
}
