// Active-alarm badges with an Acknowledge button, shared by the station and patient views.
// opts.lastKnown (no connection to the gateway): the badges stay, marked as the last known ones.

import { PRIORITY_RANK, alarmLabel, displayPriority, el, fmtDataTime, isNum } from "../util.js";

const PRIORITY_TEXT = { high: "HIGH", medium: "MED", low: "LOW", technical: "TECH" };

export function sortedAlarms(patient) {
  return [...patient.active.values()].sort((a, b) => {
    const r = (PRIORITY_RANK[displayPriority(b)] ?? 0) - (PRIORITY_RANK[displayPriority(a)] ?? 0);
    return r || (a.onset_t_s ?? 0) - (b.onset_t_s ?? 0);
  });
}

/** One badge; onAck(alarmId) is called by its button. */
export function alarmBadge(alarm, patient, onAck, opts = {}) {
  const { compact = false, lastKnown = false } = opts;
  const prio = displayPriority(alarm);
  const acked = Boolean(alarm.acknowledged_by);
  const since =
    isNum(alarm.onset_t_s) && patient.newestT !== null ? Math.max(0, patient.newestT - alarm.onset_t_s) : null;
  const action = acked
    ? el("span", { class: "ack-by", title: `Acknowledged by ${alarm.acknowledged_by}` }, `ACK ${alarm.acknowledged_by}`)
    : el(
        "button",
        {
          class: "ack-btn",
          type: "button",
          disabled: Boolean(alarm.ackPending),
          title: "Acknowledge this alarm",
          onclick: (ev) => {
            ev.stopPropagation();
            onAck(alarm.alarm_id);
          },
        },
        alarm.ackPending ? "…" : "ACK",
      );
  return el(
    "div",
    {
      class: `alarm-badge prio-${prio}${acked ? " acked" : ""}${lastKnown ? " last-known" : ""}`,
      role: "status",
      title: `${lastKnown ? "Last known (no connection to the gateway): " : ""}${alarm.message || alarmLabel(alarm.alarm_type)}`,
      dataset: { alarmId: alarm.alarm_id },
    },
    el("span", { class: "prio" }, PRIORITY_TEXT[prio] || prio.toUpperCase()),
    el("span", { class: "name" }, alarmLabel(alarm.alarm_type)),
    compact ? null : el("span", { class: "since", title: "Time since onset" }, since === null ? "" : fmtDataTime(since)),
    opts.onStrip
      ? el(
          "button",
          {
            class: "link-btn strip-btn",
            type: "button",
            title: "The ECG around this alarm's onset",
            onclick: (ev) => {
              ev.stopPropagation();
              opts.onStrip(alarm);
            },
          },
          "Strip",
        )
      : null,
    action,
  );
}

/** Re-render only when the set of alarms or their state changed (keeps buttons clickable). */
export function renderAlarmBadges(container, patient, onAck, opts = {}) {
  const alarms = sortedAlarms(patient);
  const sig = alarms
    .map((a) => `${a.alarm_id}|${displayPriority(a)}|${a.acknowledged_by ?? ""}|${a.ackPending ? 1 : 0}`)
    .join(";") + (opts.lastKnown ? ";last-known" : "");
  if (container.dataset.sig === sig && container.childElementCount) {
    refreshSince(container, patient);
    return;
  }
  container.dataset.sig = sig;
  if (!alarms.length) {
    const text = opts.emptyText ?? "No active alarms";
    container.replaceChildren(el("span", { class: "no-alarms" }, opts.lastKnown ? `Last known: ${text.toLowerCase()}` : text));
    return;
  }
  const badges = alarms.map((a) => alarmBadge(a, patient, onAck, opts));
  const label = el("span", { class: "last-known-label", title: "No connection to the gateway: these alarms may have changed" },
    "LAST KNOWN");
  container.replaceChildren(...(opts.lastKnown ? [label] : []), ...badges);
}

/** Update the "time since onset" labels in place. */
export function refreshSince(container, patient) {
  if (patient.newestT === null) return;
  for (const badge of container.querySelectorAll(".alarm-badge")) {
    const onset = patient.active.get(badge.dataset.alarmId)?.onset_t_s;
    const node = badge.querySelector(".since");
    if (node && isNum(onset)) node.textContent = fmtDataTime(Math.max(0, patient.newestT - onset));
  }
}
