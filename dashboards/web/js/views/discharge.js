// Discharge in the patient view ("Discharge patient…": an inline confirmation, the POST, waiting
// for the gateway's `discharged` frame) and the station's "Recent discharges" list, whose rows
// download the archived stay's alarm events as CSV.

import { AuthError, getDischargeStay, getDischarges, getUser, postDischarge } from "../api.js";
import { fmtWhen, validateUser } from "../alarmsettings.js";
import {
  DISCHARGE_CONFIRM_MS,
  alarmEventsText,
  alarmsCsv,
  alarmsCsvName,
  confirmTexts,
  dischargeErrorText,
  dischargeRows,
  dischargesErrorText,
  patientLabel,
  stayAlerts,
  stayErrorText,
} from "../discharge.js";
import { el } from "../util.js";

const DISCHARGES_SHOWN = 20;
const COLUMNS = ["Time", "Patient", "Discharged by", "Alarms ended", "Stay's alarms"];
const RELOAD_AFTER_MS = 1500; // the detector archives a discharge about when the frame comes
let panels = 0;

/**
 * The patient view's discharge action: `button` (for the header) opens `root`, a confirmation
 * naming the patient and saying what happens. Discharge posts it with the signed-in name; on 202
 * it says so and waits for the `discharged` frame (app.js then returns to the station); an
 * error is shown and the view stays.
 */
export class DischargePanel {
  constructor(store, actions, patient) {
    this.store = store;
    this.actions = actions;
    this.p = patient;
    this.sending = false;
    this.sent = null; // the 202 answer while waiting for the frame
    this.prefix = `discharge-${++panels}`;
    this.onChange = (ev) => ev.detail.patient === this.p && this.render();
    this.build();
  }

  build() {
    this.button = el(
      "button",
      {
        type: "button",
        class: "link-btn danger discharge-btn",
        "aria-expanded": "false",
        "aria-controls": `${this.prefix}-confirm`,
        onclick: () => this.open(),
      },
      "Discharge patient…",
    );
    this.question = el("p", { class: "discharge-question", id: `${this.prefix}-q` });
    this.consequences = el("ul", { class: "discharge-consequences" });
    this.who = el("p", { class: "muted discharge-who" });
    this.status = el("p", { class: "status-line discharge-status", role: "status", "aria-live": "polite" });
    this.confirmBtn = el(
      "button",
      { type: "button", class: "primary danger", onclick: () => this.send() },
      "Discharge",
    );
    this.cancelBtn = el("button", { type: "button", class: "secondary", onclick: () => this.close() }, "Cancel");
    this.actionsRow = el("div", { class: "form-actions settings-actions" }, this.confirmBtn, this.cancelBtn);
    this.root = el(
      "section",
      {
        class: "card discharge-confirm",
        id: `${this.prefix}-confirm`,
        hidden: true,
        role: "group",
        "aria-labelledby": `${this.prefix}-q`,
        onkeydown: (ev) => {
          // Escape cancels the confirmation here, it does not leave the patient
          if (ev.key !== "Escape" || this.sending || this.sent) return;
          ev.stopPropagation();
          this.close();
        },
      },
      el("h2", {}, "Discharge patient"),
      this.question,
      this.consequences,
      this.who,
      this.status,
      this.actionsRow,
    );
    this.render();
  }

  mount() {
    this.store.addEventListener("info", this.onChange);
    this.store.addEventListener("alarms", this.onChange);
  }

  unmount() {
    this.gone = true;
    clearTimeout(this.slowTimer);
    this.store.removeEventListener("info", this.onChange);
    this.store.removeEventListener("alarms", this.onChange);
  }

  /** The question and what happens, with the patient's current details and alarms. */
  render() {
    const t = confirmTexts(this.p.id, this.p.info, this.p.active.size);
    this.question.replaceChildren(t.question, ...(t.id ? [el("small", { class: "muted" }, ` ${t.id}`)] : []));
    this.consequences.replaceChildren(...t.consequences.map((c) => el("li", {}, c)));
    this.who.textContent = `Discharged in your name: ${getUser().trim() || "?"}.`;
    this.renderButton();
  }

  /** Offered for a patient the gateway reports (a typed URL of another id gets a disabled one). */
  renderButton() {
    if (this.button.disabled === !this.p.known && this.button.title) return;
    this.button.disabled = !this.p.known;
    this.button.title = this.p.known
      ? "End this patient's monitoring on every station"
      : "The gateway does not report this patient";
  }

  open() {
    this.render();
    this.say("", "");
    this.root.hidden = false;
    this.button.hidden = true;
    this.button.setAttribute("aria-expanded", "true");
    this.cancelBtn.focus(); // not the irreversible button: Enter must not discharge by accident
  }

  close() {
    this.root.hidden = true;
    this.button.hidden = false;
    this.button.setAttribute("aria-expanded", "false");
    this.button.focus();
  }

  say(kind, text) {
    this.status.className = `status-line discharge-status ${kind}`;
    this.status.textContent = text;
  }

  async send() {
    if (this.sending || this.sent) return;
    const user = getUser().trim();
    const userError = validateUser(user);
    if (userError) {
      this.say("error", userError);
      return;
    }
    this.sending = true;
    this.confirmBtn.disabled = true;
    this.cancelBtn.disabled = true;
    this.say("busy", "Discharging…");
    try {
      const ans = await postDischarge(this.p.id, user);
      if (this.gone) return;
      this.sent = ans ?? {};
      this.actionsRow.hidden = true;
      const at = fmtWhen(ans?.discharged_at_ms ?? Date.now());
      this.say("busy", `Discharge sent by ${ans?.user ?? user} at ${at}: waiting for the gateway to confirm…`);
      this.slowTimer = setTimeout(() => {
        if (this.gone) return;
        this.say(
          "warn",
          `Discharge sent at ${at}, but the gateway has not confirmed it yet: the patient stays on ` +
            "screen until it does. Check Recent discharges on the station before sending it again.",
        );
      }, DISCHARGE_CONFIRM_MS);
    } catch (err) {
      if (this.gone) return;
      if (err instanceof AuthError) this.actions.authFailed();
      this.say("error", dischargeErrorText(err));
      this.confirmBtn.disabled = false;
      this.cancelBtn.disabled = false;
    } finally {
      this.sending = false;
    }
  }
}

/** Save a Blob as a file named `name` (the browser's download). */
function saveFile(blob, name) {
  const a = el("a", { href: URL.createObjectURL(blob), download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/**
 * The station's "Recent discharges": a toggle button (`button`) and a card (`root`) with the list.
 * Each row's "Alarms (CSV)" fetches the archived stay and downloads its alarm events.
 */
export class RecentDischarges {
  constructor(store, actions) {
    this.store = store;
    this.actions = actions;
    this.prefix = `discharges-${++panels}`;
    this.shown = []; // the rows on screen
    this.eventCounts = new Map(); // request_id -> how many alarm events the stay had (once fetched)
    this.fetching = new Set(); // request_ids whose stay is being fetched
    this.onDischarged = () => {
      if (this.root.hidden) return;
      clearTimeout(this.reloadTimer);
      this.reloadTimer = setTimeout(() => this.load(), RELOAD_AFTER_MS);
    };
    this.button = el(
      "button",
      {
        type: "button",
        class: "link-btn discharges-toggle",
        "aria-expanded": "false",
        "aria-controls": `${this.prefix}-card`,
        onclick: () => this.toggle(),
      },
      "Recent discharges",
    );
    this.status = el("p", { class: "status-line discharges-status", role: "status" });
    this.exportStatus = el("p", { class: "status-line discharges-export", role: "status", "aria-live": "polite" });
    this.rows = el("tbody");
    this.table = el(
      "table",
      { class: "alarm-table discharges-table" },
      el("thead", {}, el("tr", {}, ...COLUMNS.map((h) => el("th", {}, h)))),
      this.rows,
    );
    this.root = el(
      "section",
      { class: "card discharges-card", id: `${this.prefix}-card`, hidden: true, "aria-labelledby": `${this.prefix}-h` },
      el(
        "div",
        { class: "card-head" },
        el("h2", { id: `${this.prefix}-h` }, "Recent discharges"),
        el("div", { class: "btn-row" },
          el("button", { type: "button", class: "link-btn", onclick: () => this.load() }, "Refresh"),
          el("button", { type: "button", class: "link-btn", onclick: () => this.toggle(false) }, "Close"),
        ),
      ),
      this.status,
      this.exportStatus,
      el("div", { class: "table-wrap" }, this.table),
    );
  }

  mount() {
    this.store.addEventListener("discharged", this.onDischarged);
  }

  unmount() {
    this.gone = true;
    clearTimeout(this.reloadTimer);
    this.store.removeEventListener("discharged", this.onDischarged);
  }

  toggle(show = this.root.hidden) {
    this.root.hidden = !show;
    this.button.setAttribute("aria-expanded", String(show));
    if (show) {
      this.say("", "");
      this.load();
    }
  }

  async load() {
    const ask = (this.ask = (this.ask ?? 0) + 1);
    if (!this.rows.childElementCount) this.status.textContent = "loading…";
    try {
      const rows = dischargeRows(await getDischarges(DISCHARGES_SHOWN));
      if (this.gone || ask !== this.ask) return;
      this.render(rows);
    } catch (err) {
      if (this.gone || ask !== this.ask) return;
      if (err instanceof AuthError) this.actions.authFailed();
      this.status.className = "status-line discharges-status error";
      this.status.textContent = dischargesErrorText(err);
    }
  }

  render(rows) {
    this.status.className = "status-line discharges-status note";
    const last = rows.length >= DISCHARGES_SHOWN ? ` (the last ${DISCHARGES_SHOWN})` : "";
    this.status.textContent = rows.length ? `Newest first${last}.` : "No discharges recorded.";
    this.table.hidden = !rows.length;
    this.shown = rows;
    this.renderRows();
  }

  renderRows() {
    this.rows.replaceChildren(
      ...this.shown.map((r) => {
        const label = patientLabel(r.patient_id, r.info);
        const named = label !== `Patient ${r.patient_id}`;
        return el(
          "tr",
          { dataset: { requestId: r.request_id ?? "", patient: r.patient_id } },
          el("td", { class: "num" }, fmtWhen(r.at_ms)),
          el("td", {}, label, named ? el("small", { class: "muted" }, ` · id ${r.patient_id}`) : null),
          el("td", {}, r.user ?? "?"),
          el("td", { class: "num" }, String(r.alarms_ended.length)),
          this.stayCell(r),
        );
      }),
    );
  }

  /** The row's "Alarms (CSV)" and, once fetched, how many alarm events the stay had. */
  stayCell(r) {
    const rid = r.request_id;
    const count = rid ? this.eventCounts.get(rid) : undefined;
    const busy = Boolean(rid) && this.fetching.has(rid);
    return el(
      "td",
      { class: "stay-cell" },
      el(
        "button",
        {
          type: "button",
          class: "link-btn stay-csv-btn",
          disabled: !rid, // not while fetching: a disabled button drops the keyboard focus
          "aria-disabled": busy ? "true" : false,
          "aria-busy": busy ? "true" : false,
          title: rid
            ? "Download this stay's alarm events (onsets, updates, ends) as CSV"
            : "The gateway gave no request id for this discharge",
          onclick: () => this.downloadAlarms(r),
        },
        "Alarms (CSV)",
      ),
      count === undefined ? null : el("small", { class: "muted stay-count" }, ` ${alarmEventsText(count)}`),
    );
  }

  /** Show the stay cell of `rid`'s row as it is now (busy, its count), keeping the button's focus. */
  updateStayCell(rid) {
    const i = this.shown.findIndex((r) => r.request_id === rid);
    const tr = i < 0 ? null : this.rows.children[i];
    const old = tr?.lastElementChild;
    if (!old) return;
    const focused = old.contains(document.activeElement);
    const cell = this.stayCell(this.shown[i]);
    old.replaceWith(cell);
    if (focused) cell.querySelector("button")?.focus();
  }

  say(kind, text) {
    this.exportStatus.className = `status-line discharges-export ${kind}`;
    this.exportStatus.textContent = text;
  }

  /** Fetch the stay (GET /api/discharges/{request_id}) and download its alarm events as CSV. */
  async downloadAlarms(row) {
    const rid = row.request_id;
    if (!rid || this.fetching.has(rid)) return;
    this.fetching.add(rid);
    this.updateStayCell(rid);
    const label = patientLabel(row.patient_id, row.info);
    this.say("busy", `Fetching the alarms of ${label}'s stay…`);
    try {
      const stay = await getDischargeStay(rid);
      if (this.gone) return;
      const alerts = stayAlerts(stay);
      if (alerts === null) throw new Error("the gateway's answer holds no alarm events");
      const at = typeof stay?.discharged_at_ms === "number" ? stay.discharged_at_ms : row.at_ms;
      const name = alarmsCsvName(row.patient_id, at);
      saveFile(new Blob([alarmsCsv(alerts)], { type: "text/csv;charset=utf-8" }), name);
      this.eventCounts.set(rid, alerts.length);
      this.say("ok", `Downloaded ${name}: ${alarmEventsText(alerts.length)} of ${label}'s stay.`);
    } catch (err) {
      if (this.gone) return;
      if (err instanceof AuthError) this.actions.authFailed();
      this.say("error", stayErrorText(err));
    } finally {
      this.fetching.delete(rid);
      if (!this.gone) this.updateStayCell(rid);
    }
  }
}
