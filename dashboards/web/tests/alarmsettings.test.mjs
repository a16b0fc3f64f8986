// A change of alarm limits the monitor refused: node --test dashboards/web/tests/
import assert from "node:assert/strict";
import { test } from "node:test";

import { changeOutcome, historyTag, refusedText } from "../js/alarmsettings.js";

const entry = (id, user = "nurse") => ({ request_id: id, user, hr_low_bpm: 50, hr_high_bpm: 130, pause_s: 2, disabled: [] });

test("alarm settings: a refused change is said with the monitor's reason and detail", () => {
  const unknown = { request_id: "r1", reason: "unknown_patient", detail: "alarm settings for '200', whose stream this detector has not seen" };
  assert.equal(
    refusedText(unknown),
    "Not applied: the monitor refused this change — alarm settings for '200', whose stream this detector has " +
      "not seen. The monitor has no ECG stream of this patient: check that it is connected, then send the " +
      "change again. The settings in effect are unchanged.",
  );
  const invalid = { request_id: "r2", reason: "invalid_field", detail: "hr_low_bpm must be 15-120 bpm, got 10.  " };
  assert.equal(
    refusedText(invalid, "Dr Who"),
    "Not applied: the monitor refused the change by Dr Who — hr_low_bpm must be 15-120 bpm, got 10. The monitor " +
      "does not accept these values: correct them and send the change again. The settings in effect are unchanged.",
  );
  // an unknown reason, no detail: still plain
  assert.equal(
    refusedText({ request_id: "r3", reason: "other" }),
    "Not applied: the monitor refused this change. The settings in effect are unchanged.",
  );
});

test("alarm settings: what became of a change, from the GET answer", () => {
  const base = { applied: null, pending: null, refused: null, history: [entry("r1")] };
  assert.equal(changeOutcome({ ...base, pending: entry("r1") }, "r1"), "waiting");
  assert.equal(changeOutcome({ ...base, applied: entry("r1") }, "r1"), "applied");
  const refused = { request_id: "r1", reason: "invalid_field", detail: "no" };
  assert.equal(changeOutcome({ ...base, refused }, "r1"), "refused");
  // another change's refusal says nothing about this one
  assert.equal(changeOutcome({ ...base, refused: { ...refused, request_id: "r0" } }, "r1"), "waiting");
  // a later change is in effect: this one was replaced
  const later = { ...base, applied: entry("r2", "other"), history: [entry("r2", "other"), entry("r1")] };
  assert.equal(changeOutcome(later, "r1"), "replaced");
  assert.equal(changeOutcome(base, null), "waiting");
});

test("alarm settings: history tags: in effect, waiting, refused", () => {
  const ids = { appliedId: "a", waitingId: "w", refusedId: "r" };
  assert.equal(historyTag(entry("a"), ids), "in effect");
  assert.equal(historyTag(entry("w"), ids), "waiting");
  assert.equal(historyTag(entry("r"), ids), "refused");
  assert.equal(historyTag(entry("x"), ids), "");
  assert.equal(historyTag({}, ids), "");
  // a refused change is never also "waiting"
  assert.equal(historyTag(entry("r"), { waitingId: "r", refusedId: "r" }), "refused");
});
