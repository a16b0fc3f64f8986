"""The dashboard in a real headless Chromium against a real `ecgmon up` (issue #6 "Must show").

Eight MIT-BIH patients replayed 5x faster than real time: the station shows a tile for
each, the traces sweep, an alarm badge appears, and ACK on it is confirmed on screen and
by the gateway's REST API.  A screenshot is saved (and copied to $ECGMON_SCREENSHOT).
Fails, never skips, when Chromium or the stack cannot start.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import EcgmonStack

pytestmark = [pytest.mark.e2e, pytest.mark.data, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USER = "e2e-nurse"
N_PATIENTS = 8
TILE = ".station-grid .tile"
UNACKED = ".alarm-badge:not(.acked):not(.prio-technical) .ack-btn:not([disabled])"

# Per patient: newest data time shown and a fingerprint of its tile's canvas.
TRACE_STATE_JS = """() => {
  const out = {};
  for (const tile of document.querySelectorAll('.station-grid .tile')) {
    const id = tile.dataset.patient;
    const p = window.ecgmon.store.patients.get(id);
    const canvas = tile.querySelector('canvas.trace');
    out[id] = {displayT: p?.displayT ?? null, canvas: canvas ? canvas.toDataURL() : ''};
  }
  return out;
}"""


@pytest.fixture
def page(ecgmon_stack: EcgmonStack) -> Iterator[Any]:
    """A Chromium page with the token and user already in localStorage."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: `apt-get install -y chromium` (make test does it)",
                    pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 900})
            context.add_init_script(
                f"localStorage.setItem('ecgmonToken', {ecgmon_stack.token!r});"
                f"localStorage.setItem('ecgmonUser', {USER!r});"
                "localStorage.setItem('ecgmonSort', 'bed');"
            )
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert not errors, f"JavaScript errors on the page: {errors}"
        finally:
            browser.close()


def _screenshot(page: Any, tmp_path: Path) -> Path:
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot))
    if target := os.environ.get("ECGMON_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    return shot


def _acknowledge_one(page: Any, stack: EcgmonStack, deadline: float) -> tuple[str, str]:
    """Click ACK on an active (non-technical) alarm until one is confirmed; its patient and id."""
    while time.monotonic() < deadline:
        page.wait_for_selector(f"{TILE} {UNACKED}", timeout=max(1, deadline - time.monotonic()) * 1000)
        # the alarm and its tile read from one element at once: a lazy ``.first`` locator is found
        # again on every call, and alarms that come and go between two calls gave the id of one
        # patient's alarm with another patient's tile (CI saw it once)
        ids = page.evaluate(f"""() => {{
          const b = document.querySelector('{TILE} {UNACKED}');
          if (!b) return null;
          return [b.closest('article.tile')?.dataset.patient, b.closest('div.alarm-badge')?.dataset.alarmId];
        }}""")
        if ids is None:  # no unacknowledged alarm at this instant: wait for one again
            continue
        patient_id, alarm_id = ids
        assert alarm_id and patient_id
        button = page.locator(f'{TILE}[data-patient="{patient_id}"] .alarm-badge[data-alarm-id="{alarm_id}"] '
                              ".ack-btn:not([disabled])")
        try:
            button.click(timeout=3000)
        except Exception:  # noqa: BLE001 - the badge was re-rendered or the alarm ended: next one
            continue
        acked = f'{TILE}[data-patient="{patient_id}"] .alarm-badge.acked[data-alarm-id="{alarm_id}"]'
        try:
            page.wait_for_selector(acked, timeout=8000)
        except Exception:  # noqa: BLE001 - ended before the ack came back: try another alarm
            if page.locator(f'.alarm-badge[data-alarm-id="{alarm_id}"]').count():
                raise
            continue
        return patient_id, alarm_id
    pytest.fail("no alarm could be acknowledged before the deadline", pytrace=False)


def test_station_shows_live_patients_alarms_and_acknowledges(
    ecgmon_stack: EcgmonStack, page: Any, tmp_path: Path
) -> None:
    deadline = time.monotonic() + 75
    page.goto(ecgmon_stack.url + "/", wait_until="domcontentloaded")

    # >= 8 tiles, each with waveform data on its sweep.
    page.wait_for_function(f"document.querySelectorAll('{TILE}').length >= {N_PATIENTS}", timeout=30_000)
    page.wait_for_function(
        f"""() => {{
          const ps = [...window.ecgmon.store.patients.values()];
          return ps.filter((p) => p.ring && p.displayT !== null).length >= {N_PATIENTS};
        }}""",
        timeout=30_000,
    )
    assert page.locator(TILE).count() >= N_PATIENTS
    assert page.locator("#conn-status").inner_text().startswith("LIVE")

    # The traces advance: data time moves on and every canvas repaints.
    before = page.evaluate(TRACE_STATE_JS)
    page.wait_for_timeout(1500)
    after = page.evaluate(TRACE_STATE_JS)
    moved = [pid for pid in before if pid in after and after[pid]["displayT"] is not None
             and before[pid]["displayT"] is not None and after[pid]["displayT"] > before[pid]["displayT"]]
    repainted = [pid for pid in before if pid in after and after[pid]["canvas"] != before[pid]["canvas"]]
    assert len(moved) >= N_PATIENTS, f"data time advanced only for {moved}"
    assert len(repainted) >= N_PATIENTS, f"only these traces were repainted: {repainted}"

    # An alarm appears; ACK is confirmed on screen and by the gateway.
    # A short alarm (bigeminy) can end between the ACK and the REST read (CI saw it once):
    # then acknowledge another one; the checks below hold for an alarm still active.
    while True:
        patient_id, alarm_id = _acknowledge_one(page, ecgmon_stack, deadline)
        badge = page.locator(f'{TILE}[data-patient="{patient_id}"] .alarm-badge[data-alarm-id="{alarm_id}"]')
        acked_on_screen = badge.count() and USER in badge.locator(".ack-by").inner_text()
        state = ecgmon_stack.get_json(f"/api/patients/{patient_id}")
        rest = {a["alarm_id"]: a for a in state["active_alarms"]}
        if alarm_id in rest or time.monotonic() > deadline:
            break
    assert acked_on_screen, f"ACK of {alarm_id} not shown"
    assert alarm_id in rest, f"acknowledged alarm {alarm_id} not active in REST: {state['active_alarms']}"
    assert rest[alarm_id]["acknowledged_by"] == USER, rest[alarm_id]

    # A screenshot of the station with its live alarms.
    page.wait_for_timeout(500)
    shot = _screenshot(page, tmp_path)
    assert shot.stat().st_size > 10_000
    active = page.locator(f"{TILE} .alarm-badge").count()
    assert active >= 1
