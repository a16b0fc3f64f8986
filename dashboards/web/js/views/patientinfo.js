// The patient view's title (bed label, name, id; who entered them and when), its note badge and
// the "Edit details" form (bed label, name, note; "Clear details…" empties all three, which does
// not discharge the patient: see discharge.js). Saving is a POST to /api/patients/{id}/info;
// every station shows the answer with the next state frame.

import { AuthError, getPatientInfo, getUser, setPatientInfo } from "../api.js";
import { validateUser } from "../alarmsettings.js";
import {
  INFO_FIELDS,
  INFO_LIMITS,
  counterText,
  hasDetails,
  infoErrorField,
  infoErrorText,
  originText,
  sameDetails,
  titleParts,
  validateInfo,
} from "../patientinfo.js";
import { el } from "../util.js";

const FIELDS = Object.keys(INFO_LIMITS);
let panels = 0;

export class PatientInfoPanel {
  constructor(store, actions, patient) {
    this.store = store;
    this.actions = actions;
    this.p = patient;
    this.prefix = `patient-info-${++panels}`;
    this.inputs = {};
    this.counters = {};
    this.errors = {};
    this.saving = false;
    this.loadError = "";
    this.onInfo = (ev) => ev.detail.patient === this.p && this.changed();
    this.build();
  }

  id(key) {
    return `${this.prefix}-${key}`;
  }

  build() {
    this.main = el("span", { class: "bed" }, this.p.id);
    this.name = el("span", { class: "pname" });
    this.sub = el("span", { class: "pv-sub muted" });
    /** The page's h1: bed label and name (or the id), with the id and who entered them below. */
    this.title = el(
      "div",
      { class: "pv-title" },
      el("h1", {}, (this.kind = el("span", { class: "pv-kind" }, "Patient ")), this.main, this.name),
      this.sub,
    );
    this.note = el("span", { class: "note-flag big", hidden: true });
    this.editBtn = el(
      "button",
      {
        type: "button",
        class: "link-btn",
        "aria-expanded": "false",
        "aria-controls": this.id("form"),
        onclick: () => this.open(),
      },
      "Edit details",
    );
    this.message = el("p", { class: "status-line form-message", role: "alert" });
    this.origin = el("p", { class: "muted info-origin" });
    this.saveBtn = el("button", { type: "submit", class: "primary" }, "Save");
    this.clearBtn = el(
      "button",
      { type: "button", class: "secondary danger", onclick: () => this.askClear(true) },
      "Clear details…",
    );
    this.confirm = el(
      "div",
      { class: "info-confirm", hidden: true, role: "group", "aria-label": "Confirm clearing the details" },
      el(
        "span",
        {},
        "Clear the bed label, name and note of this patient on every station? (This does not discharge the patient.)",
      ),
      el("button", { type: "button", class: "primary danger", onclick: () => this.clear() }, "Clear details"),
      el("button", { type: "button", class: "secondary", onclick: () => this.askClear(false) }, "Keep them"),
    );
    this.form = el(
      "form",
      {
        class: "card info-form",
        id: this.id("form"),
        hidden: true,
        novalidate: true,
        "aria-label": "Edit the patient's details",
        onsubmit: (ev) => {
          ev.preventDefault();
          if (!this.saving) this.save();
        },
        oninput: () => this.check(),
        onkeydown: (ev) => {
          if (ev.key !== "Escape") return;
          ev.stopPropagation(); // Escape cancels the form here, it does not leave the patient
          this.close();
        },
      },
      el("h2", {}, "Patient details"),
      this.origin,
      el("div", { class: "info-fields" }, ...FIELDS.map((f) => this.field(f))),
      this.message,
      el(
        "div",
        { class: "form-actions settings-actions" },
        this.saveBtn,
        el("button", { type: "button", class: "secondary", onclick: () => this.close() }, "Cancel"),
        this.clearBtn,
      ),
      this.confirm,
    );
    this.render();
  }

  field(f) {
    const { label, example } = INFO_FIELDS[f];
    const input = el("input", {
      type: "text",
      id: this.id(f),
      name: f,
      autocomplete: "off",
      spellcheck: f === "note" ? "true" : "false",
      "aria-describedby": `${this.id(f)}-hint ${this.id(f)}-err`,
    });
    this.inputs[f] = input;
    this.counters[f] = el("span", { class: "counter" });
    this.errors[f] = el("span", { class: "field-error", id: `${this.id(f)}-err` });
    return el(
      "div",
      { class: `settings-field info-field info-${f}` },
      el("label", { for: input.id }, el("span", {}, label)),
      input,
      el("small", { class: "muted", id: `${this.id(f)}-hint` }, `${example} · `, this.counters[f]),
      this.errors[f],
    );
  }

  mount() {
    this.store.addEventListener("info", this.onInfo);
    this.load();
  }

  unmount() {
    this.gone = true;
    this.store.removeEventListener("info", this.onInfo);
  }

  async load() {
    try {
      const info = await getPatientInfo(this.p.id);
      if (this.gone) return;
      this.loadError = "";
      this.store.setInfo(this.p, info);
    } catch (err) {
      if (this.gone) return;
      if (err instanceof AuthError) this.actions.authFailed();
      this.loadError = infoErrorText(err, "load");
    }
    this.render();
  }

  /** The details changed (a state frame, another station, our own save). */
  changed() {
    this.render();
    if (this.form.hidden || this.saving) return;
    if (!sameDetails(this.p.info, this.openedWith)) {
      const who = this.p.info?.updated_by ?? "another user";
      this.say("warn", `Changed meanwhile by ${who}: Save replaces their details with yours.`);
    }
  }

  // ---- rendering -------------------------------------------------------------------------

  render() {
    const info = this.p.info;
    const t = titleParts(this.p.id, info);
    this.kind.textContent = info?.bed ? "Bed " : "Patient ";
    this.main.textContent = t.main;
    this.name.textContent = t.name;
    this.name.hidden = !t.name;
    const origin = info?.updated_by ? originText(info) : "";
    const sub = [t.id, hasDetails(info) ? origin : ""].filter(Boolean).join(" · ");
    this.sub.textContent = sub || (this.loadError && info === undefined ? this.loadError : "");
    this.sub.hidden = !this.sub.textContent;
    const note = info?.note || "";
    this.note.hidden = !note;
    this.note.textContent = note;
    this.note.title = note ? `Note: ${note}` : "";
    this.origin.textContent = info === undefined && this.loadError ? this.loadError : originText(info);
    this.clearBtn.disabled = !hasDetails(info);
  }

  // ---- the form --------------------------------------------------------------------------

  open() {
    const info = this.p.info;
    for (const f of FIELDS) this.inputs[f].value = info?.[f] ?? "";
    this.openedWith = info ?? null;
    this.askClear(false);
    this.say("", "");
    this.check();
    this.form.hidden = false;
    this.editBtn.hidden = true;
    this.editBtn.setAttribute("aria-expanded", "true");
    this.inputs.bed.focus();
  }

  close() {
    this.form.hidden = true;
    this.editBtn.hidden = false;
    this.editBtn.setAttribute("aria-expanded", "false");
    this.editBtn.focus();
  }

  /** Validate what is typed (limits as the gateway's), show counters and messages. */
  check() {
    const typed = Object.fromEntries(FIELDS.map((f) => [f, this.inputs[f].value]));
    const res = validateInfo(typed);
    this.showErrors(res.errors);
    for (const f of FIELDS) this.counters[f].textContent = counterText(f, typed[f]);
    return res;
  }

  showErrors(errors) {
    for (const f of FIELDS) {
      this.errors[f].textContent = errors[f] ?? "";
      if (errors[f]) this.inputs[f].setAttribute("aria-invalid", "true");
      else this.inputs[f].removeAttribute("aria-invalid");
    }
  }

  say(kind, text) {
    this.message.className = `status-line form-message ${kind}`;
    this.message.textContent = text;
  }

  askClear(show) {
    this.confirm.hidden = !show;
    this.clearBtn.hidden = show;
    if (show) this.confirm.querySelector("button")?.focus();
  }

  async save() {
    const res = this.check();
    const userError = validateUser(getUser());
    if (!res.ok || userError) {
      this.say("error", userError || "Not saved: correct the fields marked in red.");
      const first = FIELDS.find((f) => res.errors[f]);
      if (first) this.inputs[first].focus();
      return;
    }
    if (sameDetails(res.info, this.p.info) && sameDetails(res.info, this.openedWith)) {
      this.say("note", "No change: these are the details on record.");
      return;
    }
    await this.send(res.info, "Saving…");
  }

  /** Empty the three fields (after the inline confirmation); the patient stays monitored. */
  async clear() {
    const userError = validateUser(getUser());
    if (userError) {
      this.say("error", userError);
      return;
    }
    await this.send({ bed: "", name: "", note: "" }, "Clearing…");
  }

  async send(details, busyText) {
    this.saving = true;
    this.saveBtn.disabled = true;
    this.say("busy", busyText);
    try {
      const ans = await setPatientInfo(this.p.id, { user: getUser().trim(), ...details });
      if (this.gone) return;
      this.store.setInfo(this.p, ans); // every station gets it with the next state frame
      this.say("", "");
      this.askClear(false);
      this.close();
    } catch (err) {
      if (err instanceof AuthError) this.actions.authFailed();
      this.say("error", infoErrorText(err, "save"));
      const field = err?.status === 422 ? infoErrorField(err.detail) : null;
      if (field && field in this.inputs) {
        this.showErrors({ [field]: String(err.detail) });
        this.inputs[field].focus();
      }
    } finally {
      this.saving = false;
      this.saveBtn.disabled = false;
    }
  }
}
