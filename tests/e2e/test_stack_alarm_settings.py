"""A nurse's change of a patient's alarm limits, and a discharge, through the whole running
stack (`ecgmon up`): the gateway sends them on the patient's stream, the detector applies them
and says so.

Fails, never skips, when the stack cannot start.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import EcgmonStack

pytestmark = [pytest.mark.integration, pytest.mark.data]

PATIENT = "mitdb-203"  # atrial flutter / fibrillation from its first minutes


def _wait(what: str, probe: Any, stack: EcgmonStack, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout_s:.0f} s:\n{stack.log_tail()}", pytrace=False)


def test_a_change_of_alarm_limits_is_applied_by_the_running_detector(ecgmon_stack: EcgmonStack) -> None:
    stack = ecgmon_stack
    _wait(f"{PATIENT} known to the gateway",
          lambda: PATIENT in [p["patient_id"] for p in stack.get_json("/api/patients")["patients"]], stack)
    url = f"/api/patients/{PATIENT}/alarm-settings"
    assert stack.get_json(url)["applied"] is None
    status, body = stack.post_json(url, {"user": "nurse e2e", "hr_low_bpm": 50, "hr_high_bpm": 150,
                                         "pause_s": 3.0, "disabled": ["atrial_fibrillation"]})
    assert status == 202, body

    def applied() -> Any:
        view = stack.get_json(url)
        return view if view["applied"] is not None else None

    view = _wait("the detector applying the change", applied, stack)
    assert view["applied"]["request_id"] == body["request_id"] and view["pending"] is None
    assert view["effective"] == {"hr_low_bpm": 50.0, "hr_high_bpm": 150.0, "pause_s": 3.0,
                                 "disabled": ["atrial_fibrillation"]}
    assert view["history"][0] == body["settings"]
    state = next(p for p in stack.get_json("/api/patients")["patients"] if p["patient_id"] == PATIENT)
    assert state["alarm_settings"]["request_id"] == body["request_id"]
    # switched off: no AF alarm stays active for the patient
    detail = stack.get_json(f"/api/patients/{PATIENT}")
    assert "atrial_fibrillation" not in {a["alarm_type"] for a in detail["active_alarms"]}
    status, refused = stack.post_json(url, {"user": "nurse e2e", "hr_low_bpm": 50, "hr_high_bpm": 150,
                                            "pause_s": 3.0, "disabled": ["asystole"]})
    assert status == 422 and "asystole cannot be switched off" in refused["error"]


def test_a_discharge_ends_the_alarms_archives_the_stay_and_the_streaming_bed_is_readmitted(
    ecgmon_stack: EcgmonStack,
) -> None:
    stack = ecgmon_stack

    def alarming() -> Any:
        rows = stack.get_json("/api/patients")["patients"]
        return next((r for r in rows if r["patient_id"] != PATIENT and r["active_alarms"]), None)

    row = _wait("a patient with an active alarm", alarming, stack, timeout_s=120)
    pid = row["patient_id"]
    status, _ = stack.post_json(f"/api/patients/{pid}/info", {"user": "nurse e2e", "bed": "7",
                                                             "name": "E2E Patient"})
    assert status == 200
    before = {a["alarm_id"] for a in stack.get_json(f"/api/patients/{pid}")["active_alarms"]}
    status, sent = stack.post_json(f"/api/patients/{pid}/discharge", {"user": "nurse e2e"})
    assert status == 202, sent

    def archived() -> Any:
        found = [d for d in stack.get_json("/api/discharges")["discharges"]
                 if d["request_id"] == sent["request_id"]]
        return found[0] if found else None

    record = _wait("the detector archiving the stay", archived, stack)
    assert (record["patient_id"], record["user"], record["info"]["name"]) == (pid, "nurse e2e", "E2E Patient")
    # the replayed bed streams on: it comes back as a new admission, without the stay's alarms
    # or details
    back = _wait(f"{pid} readmitted", lambda: pid in [p["patient_id"] for p in stack.get_json(
        "/api/patients")["patients"]], stack)
    assert back
    now = stack.get_json(f"/api/patients/{pid}")
    assert not before & {a["alarm_id"] for a in now["active_alarms"]}, (before, now["active_alarms"])
    assert stack.get_json(f"/api/patients/{pid}/info")["name"] == ""
