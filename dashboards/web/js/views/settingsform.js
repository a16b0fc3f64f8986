// The edit form of the alarm settings card: number inputs with the gateway's ranges, an
// ON/OFF checkbox per optional alarm, inline messages. The card owns loading and saving.

import {
  DEFAULT_RANGES,
  LETHAL_NOTE,
  LIMIT_FIELDS,
  OPTIONAL_ALARMS,
  alarmName,
  fmtLimit,
  validateSettings,
} from "../alarmsettings.js";
import { el } from "../util.js";

export class SettingsForm {
  /** prefix: unique id prefix; onSave(ev), onClose(), onDefaults() come from the card. */
  constructor(prefix, patientId, { onSave, onClose, onDefaults }) {
    this.prefix = prefix;
    this.inputs = {};
    this.hints = {};
    this.errors = {};
    this.switches = new Map();
    this.tried = false; // a Save was attempted: re-check the fields as they are typed
    this.ranges = DEFAULT_RANGES;
    this.optional = OPTIONAL_ALARMS;
    this.switchBox = el("div", { class: "settings-switches" });
    this.disabledError = el("p", { class: "field-error", id: this.id("disabled-err") });
    this.message = el("p", { class: "status-line form-message", role: "alert" });
    this.saveBtn = el("button", { type: "submit", class: "primary" }, "Save");
    this.root = el(
      "form",
      {
        class: "settings-form",
        id: this.id("form"),
        hidden: true,
        novalidate: true,
        "aria-label": `Change the alarm settings of patient ${patientId}`,
        onsubmit: (ev) => {
          ev.preventDefault();
          if (!this.saveBtn.disabled) onSave();
        },
        oninput: () => this.tried && this.check(),
        onkeydown: (ev) => {
          if (ev.key !== "Escape") return;
          ev.stopPropagation(); // Escape cancels the form here, it does not leave the patient
          onClose();
        },
      },
      el(
        "fieldset",
        {},
        el("legend", {}, "Limits"),
        el("div", { class: "settings-fields" }, ...Object.keys(LIMIT_FIELDS).map((f) => this.limitField(f))),
      ),
      el(
        "fieldset",
        {},
        el("legend", {}, "Optional alarms"),
        this.switchBox,
        this.disabledError,
        el("p", { class: "muted settings-note" }, LETHAL_NOTE),
      ),
      this.message,
      el(
        "div",
        { class: "form-actions settings-actions" },
        this.saveBtn,
        el("button", { type: "button", class: "secondary", onclick: onDefaults }, "Reset to defaults"),
        el("button", { type: "button", class: "secondary", onclick: onClose }, "Cancel"),
      ),
    );
    this.setOptional(OPTIONAL_ALARMS);
  }

  id(key) {
    return `${this.prefix}-${key}`;
  }

  limitField(field) {
    const meta = LIMIT_FIELDS[field];
    const [lo, hi] = DEFAULT_RANGES[field];
    const input = el("input", {
      type: "number",
      id: this.id(field),
      name: field,
      min: lo,
      max: hi,
      step: meta.step,
      inputmode: meta.step === 1 ? "numeric" : "decimal",
      required: true,
      "aria-describedby": `${this.id(field)}-hint ${this.id(field)}-err`,
    });
    this.inputs[field] = input;
    this.hints[field] = el("small", { class: "muted", id: `${this.id(field)}-hint` });
    this.errors[field] = el("span", { class: "field-error", id: `${this.id(field)}-err` });
    return el(
      "div",
      { class: "settings-field" },
      el("label", { for: input.id }, el("span", {}, `${meta.label} (${meta.unit})`)),
      input,
      this.hints[field],
      this.errors[field],
    );
  }

  /** One ON/OFF checkbox per optional alarm (the gateway's list, else the contract's). */
  setOptional(types) {
    const list = Array.isArray(types) && types.length ? types : OPTIONAL_ALARMS;
    this.optional = list;
    if (this.switches.size === list.length && list.every((t) => this.switches.has(t))) return;
    this.switches = new Map();
    this.switchBox.replaceChildren(
      ...list.map((t) => {
        const box = el("input", {
          type: "checkbox",
          id: this.id(`on-${t}`),
          name: "alarm_on",
          value: t,
          checked: true,
          "aria-describedby": this.id("disabled-err"),
          onchange: () => this.renderSwitch(t),
        });
        const state = el("span", { class: "onoff", "aria-hidden": "true" });
        this.switches.set(t, { box, state });
        this.renderSwitch(t);
        return el("label", { class: "switch", for: box.id }, box, el("span", { class: "switch-name" }, alarmName(t)), state);
      }),
    );
  }

  renderSwitch(type) {
    const s = this.switches.get(type);
    if (!s) return;
    s.state.textContent = s.box.checked ? "ON" : "OFF";
    s.state.className = `onoff ${s.box.checked ? "on" : "off"}`;
  }

  /** The gateway's ranges and defaults: input limits and the hint under each field. */
  setLimits(ranges, defaults) {
    this.ranges = ranges;
    for (const f of Object.keys(LIMIT_FIELDS)) {
      const [lo, hi] = ranges[f];
      this.inputs[f].min = lo;
      this.inputs[f].max = hi;
      const gap = f === "hr_high_bpm" ? `, ≥ HR low + ${ranges.min_gap_bpm}` : "";
      this.hints[f].textContent = `${fmtLimit(f, lo)}–${fmtLimit(f, hi)}${gap} · default ${fmtLimit(f, defaults[f])}`;
    }
  }

  get hidden() {
    return this.root.hidden;
  }

  open(settings) {
    this.tried = false;
    this.fill(settings);
    this.showErrors({});
    this.say("", "");
    this.root.hidden = false;
    this.inputs.hr_low_bpm.focus();
  }

  close() {
    this.root.hidden = true;
  }

  fill(s) {
    for (const f of Object.keys(LIMIT_FIELDS)) this.inputs[f].value = fmtLimit(f, s?.[f]).replace("—", "");
    const off = new Set(s?.disabled || []);
    for (const [t, { box }] of this.switches) {
      box.checked = !off.has(t);
      this.renderSwitch(t);
    }
    if (this.tried) this.check();
  }

  read() {
    const value = (input) => (input.validity?.badInput ? "?" : input.value);
    return {
      hr_low_bpm: value(this.inputs.hr_low_bpm),
      hr_high_bpm: value(this.inputs.hr_high_bpm),
      pause_s: value(this.inputs.pause_s),
      disabled: [...this.switches].filter(([, s]) => !s.box.checked).map(([t]) => t),
    };
  }

  /** Validate what is typed, show the messages; {ok, errors, settings}. */
  check() {
    const res = validateSettings(this.read(), this.ranges, this.optional);
    this.showErrors(res.errors);
    return res;
  }

  showErrors(errors) {
    for (const [f, node] of Object.entries(this.errors)) {
      node.textContent = errors[f] ?? "";
      if (errors[f]) this.inputs[f].setAttribute("aria-invalid", "true");
      else this.inputs[f].removeAttribute("aria-invalid");
    }
    this.disabledError.textContent = errors.disabled ?? "";
  }

  focusFirstError(errors) {
    const first = Object.keys(LIMIT_FIELDS).find((f) => errors[f]);
    if (first) this.inputs[first].focus();
  }

  /** The form's own message line: kind "", "note", "busy" or "error". */
  say(kind, text) {
    this.message.className = `status-line form-message ${kind}`;
    this.message.textContent = text;
  }
}
