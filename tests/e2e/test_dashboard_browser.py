"""The dashboard in a real headless Chromium against a real `ecgmon up` (issue #6 "Must show").

Eight MIT-BIH patients replayed 5x faster than real time: the station shows a tile for
each, the traces sweep, an alarm badge appears, and ACK on it is confirmed on screen and
by the gateway's REST API.  A screenshot is saved (and copied to $ECGMON_SCREENSHOT).
A patient opened late shows its last 20 s and minutes of stored beats at once, and the
ECG the gateway recorded around one of its alarms.
The per-patient alarm settings panel runs against tests/e2e/fake_gateway.py (its contract
stand-in): a change is saved, applied, listed and shown on the station tile; an invalid
value or a gateway failure is explained and changes nothing.
The alarm tones run against it too: with audio on, the high-priority burst repeats while a high
alarm is unacknowledged, the audio pause counts down and silences it, ACK stops it.
So do the patient details (bed label, name, note: entered in the patient view, shown on the
station tile and its bed order; a too long label explained, nothing sent), the connection-loss
alarm (the fake refuses the WebSocket: a banner and the medium tone until it is back), the station
that receives no ECG from any bed (the fake stops every bed's data and says so with a `feed`
frame: a banner on every view and the medium tone until data flows again; a lost connection
takes precedence; the hello tells a station opened meanwhile) and the
discharge (confirmed in the patient view: the tile and its alarms go, a notice says who; a refusal
is shown; data under the id again is a fresh tile; the station's recent discharges, each stay's
alarm events downloaded as CSV, an expired archive explained; one missed while offline is caught
up on reconnecting).
Fails, never skips, when Chromium or the stack cannot start.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import EcgmonStack

from stream.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

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


@contextlib.contextmanager
def _chromium_page(token: str) -> Iterator[Any]:
    """A Chromium page with the token and user already in localStorage; no JavaScript errors."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: `apt-get install -y chromium` (make test does it)",
                    pytrace=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 900})
            context.add_init_script(
                f"localStorage.setItem('ecgmonToken', {token!r});"
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


@pytest.fixture
def page(ecgmon_stack: EcgmonStack) -> Iterator[Any]:
    with _chromium_page(ecgmon_stack.token) as page:
        yield page


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


@pytest.mark.data
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


# The alarm strip card: its title, note and how many pixels of its canvas the trace covers.
EVENT_STRIP_JS = """() => {
  const card = document.querySelector('.event-card');
  const canvas = card?.querySelector('canvas');
  if (!card || card.hidden || !canvas || !canvas.width) return null;
  const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;  // opaque bright pixels: the trace and the beat letters, not the faint grid
  for (let i = 0; i < px.length; i += 4) if (px[i + 3] > 200 && px[i + 1] > 150) drawn++;
  return {title: card.querySelector('h2').textContent, note: card.querySelector('.event-note').textContent,
          drawn, total: px.length / 4};
}"""


@pytest.mark.data
def test_patient_view_opens_with_history_and_shows_an_alarm_strip(
    ecgmon_stack: EcgmonStack, page: Any
) -> None:
    """A patient opened late: strip, trend and beat counts filled at once; an alarm's recorded ECG."""
    deadline = time.monotonic() + 60
    strip, alert = None, None
    while strip is None and time.monotonic() < deadline:  # an onset whose strip the gateway stored
        onsets = [a for a in ecgmon_stack.get_json("/api/alerts?count=1000")["alerts"]
                  if a["phase"] == "onset" and not a["technical"]]
        for a in reversed(onsets):
            status, body = ecgmon_stack.get(f"/api/alerts/{a['alert_id']}/strip")
            if status == 200:
                strip, alert = json.loads(body), a
                break
        else:
            time.sleep(1.0)
    assert strip is not None and alert is not None, "no alarm strip recorded within 60 s"
    assert strip["alert_id"] == alert["alert_id"] and len(strip["mv"]) > 100

    page.goto(f"{ecgmon_stack.url}/#/patient/{alert['patient_id']}", wait_until="domcontentloaded")
    # the gateway's history on subscribe fills the 20 s strip at once: the first frame holds it
    pid = alert["patient_id"]
    page.wait_for_function(f"window.ecgmon.store.patients.get({pid!r})?.ring?.t0 != null", timeout=10_000)
    held_s = page.evaluate(f"(() => {{ const r = window.ecgmon.store.patients.get({pid!r}).ring;"
                           " return (r.end - r.start) / r.fs; })()")
    assert held_s >= 15, f"the strip starts with {held_s:.1f} s of trace: no history on subscribe"
    # and the trend, HRV and counts read the stored beats: minutes of them, not the live few
    # (the replay runs 5x: 5 s of waiting would bring 25 s of live beats)
    page.wait_for_function(
        f"(() => {{ const b = window.ecgmon.store.patients.get({pid!r}).beats;"
        " return b.length && b[b.length - 1].t - b[0].t >= 40; })()", timeout=5000)

    row = page.locator(f'tr[data-alert-id="{alert["alert_id"]}"]')
    row.locator("button", has_text="Strip").click()
    page.wait_for_function(f"(({EVENT_STRIP_JS})())?.drawn > 0", timeout=5000)
    shown = page.evaluate(EVENT_STRIP_JS)
    assert shown["title"].startswith("Alarm strip") and "loading" not in shown["note"]
    assert "red line: alarm raised" in shown["note"], shown
    assert shown["drawn"] > shown["total"] * 0.002  # a 15 s trace drawn, not only the grid


# ---- per-patient alarm settings, against the fake gateway -----------------------------------

FAKE_GATEWAY = Path(__file__).with_name("fake_gateway.py")
AF_PATIENT = "200"  # the fake's atrial fibrillation bed: its AF alarm is on from its 2nd second
SETTINGS_PATH = f"/api/patients/{AF_PATIENT}/alarm-settings"
CARD = ".settings-card"


class FakeGatewayProc:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def get_json(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as res:
            return json.loads(res.read())

    def post_json(self, path: str, body: Any) -> Any:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as res:
            return json.loads(res.read())


@pytest.fixture
def fake_gateway(tmp_path: Path) -> Iterator[FakeGatewayProc]:
    """tests/e2e/fake_gateway.py on a free port, fresh for each test (defaults everywhere)."""
    with _run_fake_gateway(tmp_path) as fake:
        yield fake


@contextlib.contextmanager
def _run_fake_gateway(tmp_path: Path, *args: str) -> Iterator[FakeGatewayProc]:
    port, token = free_port(), secrets.token_urlsafe(16)
    log = (tmp_path / "fake_gateway.log").open("wb")
    # "--token=..." : a token may start with "-", which argparse would take for an option
    proc = subprocess.Popen([sys.executable, str(FAKE_GATEWAY), "--port", str(port), f"--token={token}",
                             *args], stdout=log, stderr=subprocess.STDOUT)
    fake = FakeGatewayProc(f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"fake gateway exited with {proc.returncode}: "
                            f"{(tmp_path / 'fake_gateway.log').read_text()[-2000:]}", pytrace=False)
            try:
                fake.get_json("/api/patients")
                break
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    pytest.fail("fake gateway did not answer within 20 s", pytrace=False)
                time.sleep(0.2)
        yield fake
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.fixture
def fake_page(fake_gateway: FakeGatewayProc) -> Iterator[Any]:
    with _chromium_page(fake_gateway.token) as page:
        yield page


# Every text the status line of the settings card shows, in order (it changes within a second).
STATUS_LOG_JS = """() => {
  window.__settingsStatus = [];
  const node = document.querySelector('.settings-card .settings-status');
  new MutationObserver(() => window.__settingsStatus.push(node.textContent))
    .observe(node, {childList: true, characterData: true, subtree: true});
}"""


def _open_settings_form(page: Any) -> Any:
    card = page.locator(CARD)
    card.get_by_role("button", name="Change…").click()
    form = card.locator("form.settings-form")
    form.wait_for(state="visible")
    return form


def test_alarm_settings_saved_applied_listed_and_shown_on_the_station(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    posts: list[Any] = []
    page.on("request", lambda r: posts.append(r) if r.method == "POST" and SETTINGS_PATH in r.url else None)
    page.goto(f"{fake_gateway.url}/#/patient/{AF_PATIENT}", wait_until="domcontentloaded")
    card = page.locator(CARD)
    page.wait_for_selector(f"{CARD} .settings-origin:has-text('Defaults: never changed')", timeout=10_000)
    assert "HR low40 bpm" in card.locator(".settings-summary").inner_text().replace("\n", "")
    # the AF alarm is active before the change
    af_badge = page.locator(f'.alarm-badge[data-alarm-id^="{AF_PATIENT}:atrial_fibrillation"]')
    af_badge.wait_for(timeout=10_000)

    form = _open_settings_form(page)
    assert "cannot be switched off" in form.inner_text()
    form.get_by_label("HR low (bpm)").fill("50")
    form.get_by_label("HR high (bpm)").fill("130")
    form.get_by_label("Atrial fibrillation").uncheck()
    assert form.locator("label.switch:has-text('Atrial fibrillation') .onoff").inner_text() == "OFF"
    page.evaluate(STATUS_LOG_JS)
    with page.expect_response(lambda r: r.request.method == "POST" and SETTINGS_PATH in r.url) as answer:
        form.get_by_role("button", name="Save").click()
    assert answer.value.status == 202
    request_id = answer.value.json()["request_id"]
    assert posts[0].post_data_json == {"user": USER, "hr_low_bpm": 50, "hr_high_bpm": 130, "pause_s": 2,
                                       "disabled": ["atrial_fibrillation"]}

    status = card.locator(".settings-status")
    page.wait_for_function("document.querySelector('.settings-card .settings-status')"
                           ".textContent.startsWith('Applied')", timeout=10_000)
    seen = page.evaluate("window.__settingsStatus")
    waiting = [i for i, t in enumerate(seen) if "waiting for the monitor to apply" in t]
    assert waiting and waiting[0] < len(seen) - 1, f"no 'waiting' before 'applied': {seen}"
    assert "the monitor uses these settings now" in status.inner_text()
    assert form.is_hidden()
    # the card shows what is in effect, who set it; the history lists the change
    summary = card.locator(".settings-summary").inner_text()
    assert "50 bpm" in summary and "130 bpm" in summary and "Atrial fibrillation" in summary
    assert card.locator(".settings-origin").inner_text().startswith(f"Changed by {USER}")
    first = card.locator(".settings-history li").first
    assert first.get_attribute("data-request-id") == request_id
    text = first.inner_text()
    assert USER in text and "HR low 40 → 50 bpm" in text and "HR high 140 → 130 bpm" in text
    assert "Atrial fibrillation off" in text and "in effect" in text
    # the gateway agrees, and the AF alarm was ended with the reason
    applied = fake_gateway.get_json(SETTINGS_PATH)["applied"]
    assert applied["request_id"] == request_id and applied["disabled"] == ["atrial_fibrillation"]
    af_badge.wait_for(state="detached", timeout=5000)
    page.wait_for_selector(f"td.msg:has-text('Ended: turned off for this patient by {USER}')", timeout=5000)

    # the station tile of this patient carries a small note; the other tiles none
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    flag = page.locator(f'{TILE}[data-patient="{AF_PATIENT}"] .settings-flag')
    flag.wait_for(state="visible", timeout=10_000)
    assert flag.inner_text() == "HR 50–130 · AF alarm off"
    assert USER in (flag.get_attribute("title") or "")
    assert page.locator(f"{TILE} .settings-flag:visible").count() == 1

    # Reset to defaults: saved like any change; the note goes away
    page.goto(f"{fake_gateway.url}/#/patient/{AF_PATIENT}", wait_until="domcontentloaded")
    page.wait_for_selector(f"{CARD} .settings-origin:has-text('Changed by')", timeout=10_000)
    form = _open_settings_form(page)
    form.get_by_role("button", name="Reset to defaults").click()
    assert form.get_by_label("HR low (bpm)").input_value() == "40"
    assert form.get_by_label("Atrial fibrillation").is_checked()
    form.get_by_role("button", name="Save").click()
    page.wait_for_selector(f"{CARD} .settings-status:has-text('Applied')", timeout=10_000)
    assert card.locator(".settings-history li").first.inner_text().count("Reset to defaults") == 1
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    page.wait_for_selector(f'{TILE}[data-patient="{AF_PATIENT}"]', timeout=10_000)
    page.wait_for_timeout(1500)  # a state frame or two
    assert page.locator(f"{TILE} .settings-flag:visible").count() == 0


def test_alarm_settings_invalid_value_or_gateway_failure_is_explained_and_changes_nothing(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(f"{fake_gateway.url}/#/patient/{AF_PATIENT}", wait_until="domcontentloaded")
    page.wait_for_selector(f"{CARD} .settings-origin:has-text('Defaults')", timeout=10_000)
    form = _open_settings_form(page)

    # out of range, and a gap under 10 bpm: inline messages, the field marked, no request
    low, high = form.get_by_label("HR low (bpm)"), form.get_by_label("HR high (bpm)")
    low.fill("10")
    form.get_by_role("button", name="Save").click()
    low_error = form.locator(f"#{low.get_attribute('id')}-err")
    assert low_error.inner_text() == "HR low must be 15–120 bpm."
    assert low.get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.name") == "hr_low_bpm"
    assert "correct the fields marked in red" in form.locator(".form-message").inner_text()
    low.fill("60")  # fixed as typed: the message goes; the gap is now the problem
    high.fill("65")
    assert low_error.inner_text() == ""
    assert "at least 10 bpm above HR low (so 70 or more)" in form.locator(
        f"#{high.get_attribute('id')}-err").inner_text()
    form.get_by_role("button", name="Save").click()
    page.wait_for_timeout(500)
    assert posts == [], f"an invalid form was sent: {posts}"

    # the gateway refuses a value (422) or cannot pass the change on (503): said plainly, under
    # the field the refusal names; nothing changes and the typed values stay for another try
    high.fill("130")
    answers = [(422, {"error": "pause_s must be 1.5-3.5 s, got 9.0"}), (503, {"error": "broker unavailable"})]
    page.route(f"**{SETTINGS_PATH}", lambda route: route.fulfill(
        status=answers[0][0], content_type="application/json", body=json.dumps(answers.pop(0)[1]))
        if route.request.method == "POST" else route.continue_())
    message = form.locator(".form-message")
    form.get_by_role("button", name="Save").click()
    page.wait_for_selector(f"{CARD} .form-message:has-text('refused the change')", timeout=5000)
    pause = form.get_by_label("Pause (s)")
    pause_error = form.locator(f"#{pause.get_attribute('id')}-err").inner_text()
    assert pause_error == "pause_s must be 1.5-3.5 s, got 9.0"
    assert pause.get_attribute("aria-invalid") == "true"
    form.get_by_role("button", name="Save").click()
    page.wait_for_selector(f"{CARD} .form-message:has-text('broker unavailable')", timeout=5000)
    assert "could not pass the change on to the monitor" in message.inner_text()
    assert form.is_visible() and high.input_value() == "130"
    assert fake_gateway.get_json(SETTINGS_PATH)["history"] == []
    # Escape closes the form (and stays on the patient); the card still shows the defaults
    high.press("Escape")
    assert form.is_hidden() and f"#/patient/{AF_PATIENT}" in page.url
    assert page.locator(CARD).get_by_role("button", name="Change…").is_visible()
    assert "Defaults" in page.locator(f"{CARD} .settings-origin").inner_text()


def test_alarm_settings_refused_by_the_monitor_ends_the_wait_and_says_why(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    gets: list[float] = []
    page.on("request", lambda r: gets.append(time.monotonic())
            if r.method == "GET" and r.url.endswith(SETTINGS_PATH) else None)
    page.goto(f"{fake_gateway.url}/#/patient/{AF_PATIENT}", wait_until="domcontentloaded")
    card = page.locator(CARD)
    page.wait_for_selector(f"{CARD} .settings-origin:has-text('Defaults: never changed')", timeout=10_000)
    # the detector will refuse the next change: it has no stream of this patient
    fake_gateway.post_json("/api/_fake/alarm-settings", {"refuse": "unknown_patient"})
    form = _open_settings_form(page)
    form.get_by_label("HR low (bpm)").fill("50")
    page.evaluate(STATUS_LOG_JS)
    with page.expect_response(lambda r: r.request.method == "POST" and SETTINGS_PATH in r.url) as answer:
        form.get_by_role("button", name="Save").click()
    assert answer.value.status == 202
    request_id = answer.value.json()["request_id"]

    # the re-GET while waiting finds the refusal (about a second later): the wait ends, with why
    status = card.locator(".settings-status")
    page.wait_for_selector(f"{CARD} .settings-status.error", timeout=10_000)
    text = status.inner_text()
    assert text.startswith("Not applied: the monitor refused this change — alarm settings for '200', "
                           "whose stream this detector has not seen."), text
    assert "The settings in effect are unchanged." in text
    seen = page.evaluate("window.__settingsStatus")
    assert any("waiting for the monitor to apply" in t for t in seen), seen
    assert not any(t.startswith("Applied") for t in seen), seen
    # the history tags the change "refused"; the card still shows the defaults in effect
    first = card.locator(".settings-history li").first
    assert first.get_attribute("data-request-id") == request_id
    assert first.locator(".tag").inner_text() == "refused"
    assert "in effect" not in first.inner_text() and "waiting" not in first.inner_text()
    assert "40 bpm" in card.locator(".settings-summary").inner_text()
    assert card.locator(".settings-origin").inner_text().startswith("Defaults")
    answer_now = fake_gateway.get_json(SETTINGS_PATH)
    assert answer_now["refused"]["request_id"] == request_id and answer_now["pending"] is None
    assert answer_now["applied"] is None
    # no more polling once refused, and never "applied"
    refused_at = time.monotonic()
    page.wait_for_timeout(4000)
    assert [t for t in gets if t > refused_at + 0.5] == [], "the card still polls after the refusal"
    assert status.inner_text() == text

    # a page opened later says the same (the newest change was refused)
    page.reload(wait_until="domcontentloaded")
    page.wait_for_selector(f"{CARD} .settings-status.error", timeout=10_000)
    assert page.locator(f"{CARD} .settings-status").inner_text().startswith(
        f"Not applied: the monitor refused the change by {USER} — alarm settings for '200'")
    assert page.locator(f"{CARD} .settings-history li .tag").first.inner_text() == "refused"


# ---- alarm tones, against the fake gateway ---------------------------------------------------

# Short intervals for the test (read once by the page): 2.5 s is the shortest high-priority burst
# interval IEC 60601-1-8 allows; the 2 min pause becomes 6 s.
AUDIO_TIMING = {"highMs": 2500, "mediumMs": 4000, "pauseMs": 6000}
MIN_BURST_GAP_MS = 2000  # MIN_BURST_GAP_MS of dashboards/web/js/alarmsound.js
HIGH_BEDS = ("203", "210")  # the fake's VT (from its 3rd second) and extreme bradycardia
PAUSE = "#audio-pause"


def _tones(page: Any, pattern: str | None = None, after_ms: float = 0.0) -> list[dict[str, Any]]:
    """The tone patterns the page played (window.__ecgmonAudioLog), optionally one kind, after a time."""
    log = page.evaluate("window.__ecgmonAudioLog")
    return [e for e in log if (pattern is None or e["pattern"] == pattern) and e["atMs"] > after_ms]


def _wait_tones(page: Any, pattern: str, count: int, after_ms: float, timeout_ms: float
                ) -> list[dict[str, Any]]:
    page.wait_for_function(
        f"window.__ecgmonAudioLog.filter((e) => e.pattern === {pattern!r} && e.atMs > {after_ms}).length"
        f" >= {count}", timeout=timeout_ms)
    return _tones(page, pattern, after_ms)


def _gaps(tones: list[dict[str, Any]]) -> list[float]:
    return [b["atMs"] - a["atMs"] for a, b in zip(tones, tones[1:], strict=False)]


def test_alarm_tones_repeat_until_acknowledged_and_pause_silences_them(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    page.context.add_init_script(f"localStorage.setItem('ecgmonAudioTiming', {json.dumps(AUDIO_TIMING)!r});")
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    for bed in HIGH_BEDS:  # both high alarms on before audio goes on: no onset restarts the cycle below
        page.wait_for_selector(f'{TILE}[data-patient="{bed}"] .alarm-badge.prio-high:not(.acked)',
                               timeout=15_000)
    assert page.locator(PAUSE).is_hidden()
    assert _tones(page) == []  # audio is off by default

    # audio on: the high burst at once, then every 2.5 s while a high alarm is unacknowledged
    page.click("#audio-toggle")
    assert page.locator("#audio-toggle").inner_text() == "AUDIO ON"
    assert page.locator(PAUSE).inner_text() == "PAUSE 6 S"
    highs = _wait_tones(page, "high", 3, 0, 15_000)
    assert highs[0]["reason"] == "first" and all(t["reason"] == "repeat" for t in highs[1:]), highs
    # (atMs is when the tone was started, a little after the decision's clock: 50 ms of slack)
    assert all(AUDIO_TIMING["highMs"] - 50 <= g < AUDIO_TIMING["highMs"] + 2000 for g in _gaps(highs)), highs
    assert {t["pattern"] for t in _tones(page)} == {"high"}  # the medium ones wait under the high
    assert all(t["ctx"] == "running" for t in highs), highs  # WebAudio really plays them

    # the pause: a countdown in the header, no tone at all, then the high burst again at once
    paused_at = page.evaluate(f"() => {{ document.querySelector('{PAUSE}').click(); "
                              "return performance.now(); }")
    first_text = page.locator(PAUSE).inner_text()
    assert first_text.startswith("PAUSED 0:0"), first_text
    page.wait_for_function(f"(t => t.startsWith('PAUSED') && t !== {first_text!r})"
                           f"(document.querySelector('{PAUSE}').textContent)", timeout=5000)  # counting down
    assert page.locator(PAUSE).get_attribute("aria-pressed") == "true"
    resumed = _wait_tones(page, "high", 1, paused_at, 15_000)[0]
    assert resumed["atMs"] - paused_at >= AUDIO_TIMING["pauseMs"], (paused_at, resumed)
    assert resumed["reason"] == "first", resumed
    assert _tones(page, None, paused_at)[0] == resumed  # nothing sounded during the pause
    assert page.locator(PAUSE).inner_text() == "PAUSE 6 S"

    # ACK both high alarms: the high bursts stop; the unacknowledged medium ones (AF, a technical
    # alarm) take over at once and repeat every 4 s
    for bed in HIGH_BEDS:
        badge = page.locator(f'{TILE}[data-patient="{bed}"] .alarm-badge.prio-high').first
        badge.locator(".ack-btn").click()
        page.wait_for_selector(f'{TILE}[data-patient="{bed}"] .alarm-badge.prio-high.acked', timeout=8000)
    acked_at = page.evaluate("performance.now()")
    mediums = _wait_tones(page, "medium", 2, acked_at - 300, 15_000)
    last_high = _tones(page, "high")[-1]["atMs"]
    due = max(acked_at, last_high + MIN_BURST_GAP_MS)  # at once, but never over the last burst
    assert mediums[0]["atMs"] - due < 1000, (acked_at, last_high, mediums)  # within a 250 ms tick
    assert _gaps(mediums)[0] >= AUDIO_TIMING["mediumMs"] - 50, mediums
    assert _tones(page, "high", acked_at) == [], "a high burst after both high alarms were acknowledged"


# ---- patient details (bed label, name, note), against the fake gateway ------------------------

DETAILS_PATIENT = "203"
INFO_PATH = f"/api/patients/{DETAILS_PATIENT}/info"
DETAILS_FORM = "form.info-form"
LONG_NOTE = "pacemaker (DDD, 2019); allergic to penicillin; family to be called before any procedure"


def _tile_order(page: Any) -> list[str]:
    return page.evaluate(f"[...document.querySelectorAll('{TILE}')].map((t) => t.dataset.patient)")


def _open_details_form(page: Any) -> Any:
    page.get_by_role("button", name="Edit details").click()
    form = page.locator(DETAILS_FORM)
    form.wait_for(state="visible")
    return form


def test_patient_details_entered_in_the_patient_view_name_the_bed_on_the_station(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    page.wait_for_function(f"document.querySelectorAll('{TILE}').length >= 10", timeout=10_000)
    assert _tile_order(page)[:3] == ["100", "101", "105"]  # no details: the ids, in natural order
    assert page.locator(f'{TILE}[data-patient="{DETAILS_PATIENT}"] .bed').inner_text() == DETAILS_PATIENT

    # the patient view: no details yet; Edit details, type them, Save
    page.goto(f"{fake_gateway.url}/#/patient/{DETAILS_PATIENT}", wait_until="domcontentloaded")
    title = page.locator(".pv-title")
    title.get_by_text(f"Patient {DETAILS_PATIENT}").wait_for(timeout=10_000)
    form = _open_details_form(page)
    assert "No details entered" in form.locator(".info-origin").inner_text()
    form.get_by_label("Bed label").fill("1")
    form.get_by_label("Name").fill("Ada Test")
    form.get_by_label("Note").fill(LONG_NOTE)
    with page.expect_response(lambda r: r.request.method == "POST" and INFO_PATH in r.url) as answer:
        form.get_by_role("button", name="Save").click()
    assert answer.value.status == 200
    sent = answer.value.request.post_data_json
    assert sent == {"user": USER, "bed": "1", "name": "Ada Test", "note": LONG_NOTE}
    form.wait_for(state="hidden")
    # the header: bed, name, id, who entered them; the note in full
    assert title.locator("h1").inner_text().replace("\n", " ") == "Bed 1 Ada Test"
    sub = title.locator(".pv-sub").inner_text()
    assert sub.startswith(f"{DETAILS_PATIENT} · Changed by {USER} · "), sub
    assert page.locator(".pv-head .note-flag").inner_text() == LONG_NOTE
    stored = fake_gateway.get_json(INFO_PATH)
    assert [stored[k] for k in ("bed", "name", "note", "updated_by")] == ["1", "Ada Test", LONG_NOTE, USER]
    # names are personal data: not in the page title or the URL
    assert "Ada" not in page.title() and "Ada" not in page.url

    # the station: the tile is titled by its bed and name (id small), the note cut with the whole in
    # its tooltip, and bed "1" comes before the ids "100"…
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    tile = page.locator(f'{TILE}[data-patient="{DETAILS_PATIENT}"]')
    tile.locator(".pname:has-text('Ada Test')").wait_for(timeout=10_000)
    assert tile.locator(".bed").inner_text() == "1"
    assert tile.locator(".pid").inner_text() == DETAILS_PATIENT
    assert tile.locator(".tile-title").get_attribute("title") == f"Bed 1 · Ada Test · id {DETAILS_PATIENT}"
    note = tile.locator(".note-flag")
    assert note.inner_text().endswith("…") and len(note.inner_text()) < len(LONG_NOTE)
    assert note.get_attribute("title") == f"Note: {LONG_NOTE}"
    assert _tile_order(page)[0] == DETAILS_PATIENT
    assert page.locator(f"{TILE} .note-flag:visible").count() == 1

    # entered on another station: the live state frames bring them, natural order on the labels
    fake_gateway.post_json("/api/patients/100/info", {"user": "kim", "bed": "ICU-10", "name": "", "note": ""})
    fake_gateway.post_json("/api/patients/101/info", {"user": "kim", "bed": "ICU-2", "name": "", "note": ""})
    page.wait_for_function(f"""() => {{
      const ids = [...document.querySelectorAll('{TILE}')].map((t) => t.dataset.patient);
      return ids.slice(-2).join() === '101,100';
    }}""", timeout=5000)
    order = _tile_order(page)
    assert order[:2] == [DETAILS_PATIENT, "105"], order  # 1, then the ids 105, 106, …
    assert page.locator(f'{TILE}[data-patient="101"] .bed').inner_text() == "ICU-2"

    # Clear details (not a discharge) after a confirmation; the tile is the id again, in its place
    page.goto(f"{fake_gateway.url}/#/patient/{DETAILS_PATIENT}", wait_until="domcontentloaded")
    form = _open_details_form(page)
    assert form.get_by_label("Name").input_value() == "Ada Test"
    form.get_by_role("button", name="Clear details…").click()
    confirm = form.locator(".info-confirm")
    assert "on every station" in confirm.inner_text()
    assert "does not discharge the patient" in confirm.inner_text()
    with page.expect_response(lambda r: r.request.method == "POST" and INFO_PATH in r.url) as answer:
        confirm.get_by_role("button", name="Clear details").click()
    assert answer.value.request.post_data_json == {"user": USER, "bed": "", "name": "", "note": ""}
    title.get_by_text(f"Patient {DETAILS_PATIENT}").wait_for(timeout=5000)
    assert page.locator(".pv-head .note-flag").is_hidden()
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    page.wait_for_function(f"""() => {{
      const t = document.querySelector('{TILE}[data-patient="{DETAILS_PATIENT}"]');
      return t && t.querySelector('.bed').textContent === '{DETAILS_PATIENT}';
    }}""", timeout=10_000)
    order = _tile_order(page)
    assert order.index(DETAILS_PATIENT) == order.index("200") + 1, order
    assert page.locator(f'{TILE}[data-patient="{DETAILS_PATIENT}"] .pname').is_hidden()


def test_patient_details_too_long_or_refused_are_explained_and_nothing_is_sent(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(f"{fake_gateway.url}/#/patient/{DETAILS_PATIENT}", wait_until="domcontentloaded")
    form = _open_details_form(page)
    bed = form.get_by_label("Bed label")
    bed.fill("B" * 17)  # the gateway takes 16: said at once, under the field, with a counter
    error = form.locator(f"#{bed.get_attribute('id')}-err")
    assert error.inner_text() == "Bed label: at most 16 characters (17 now)."
    assert bed.get_attribute("aria-invalid") == "true"
    assert "17 / 16" in form.locator(".info-bed small").inner_text()
    form.get_by_role("button", name="Save").click()
    assert "correct the fields marked in red" in form.locator(".form-message").inner_text()
    assert page.evaluate("document.activeElement.name") == "bed"
    page.wait_for_timeout(500)
    assert posts == [], f"an invalid form was sent: {posts}"
    assert fake_gateway.get_json(INFO_PATH)["bed"] == ""
    bed.fill("B" * 16)
    assert error.inner_text() == "" and bed.get_attribute("aria-invalid") is None

    # the gateway refuses a field (FastAPI's own 422): the message goes under the field it names
    refusal = {"detail": [{"loc": ["body", "name"], "msg": "String should have at most 100 characters"}]}
    page.route(f"**{INFO_PATH}", lambda route: route.fulfill(
        status=422, content_type="application/json", body=json.dumps(refusal))
        if route.request.method == "POST" else route.continue_())
    form.get_by_role("button", name="Save").click()
    page.wait_for_selector(f"{DETAILS_FORM} .form-message:has-text('refused the details')", timeout=5000)
    name = form.get_by_label("Name")
    assert "at most 100 characters" in form.locator(f"#{name.get_attribute('id')}-err").inner_text()
    assert name.get_attribute("aria-invalid") == "true"
    # Escape closes the form and stays on the patient; nothing changed
    name.press("Escape")
    assert form.is_hidden() and f"#/patient/{DETAILS_PATIENT}" in page.url
    assert fake_gateway.get_json(INFO_PATH)["updated_by"] is None


# ---- the connection-loss alarm, against the fake gateway without its scripted alarms ------------

CONN_TIMING = {"connLossMs": 1500, "mediumMs": 3000}
BANNER = "#conn-banner"

# Per station tile (or the patient view): how current it looks.
TILE_LOOK_JS = """() => {
  const probe = document.createElement('i');
  probe.style.color = getComputedStyle(document.documentElement).getPropertyValue('--muted').trim();
  document.body.append(probe);
  const muted = getComputedStyle(probe).color;
  probe.remove();
  const out = {};
  for (const tile of document.querySelectorAll('.station-grid .tile, .patient-view')) {
    const overlay = tile.querySelector('.nodata');
    const canvas = tile.querySelector('canvas.trace, canvas.strip');
    out[tile.dataset.patient ?? 'view'] = {
      freshness: tile.dataset.freshness,
      overlay: overlay.hidden ? '' : overlay.innerText.trim(),
      hrColor: getComputedStyle(tile.querySelector('.hr')).color,
      muted,
      canvasOpacity: Number(getComputedStyle(canvas).opacity),
      alarms: tile.querySelector('.tile-alarms').innerText.trim(),
      lastKnown: tile.querySelectorAll('.alarm-badge.last-known').length,
      badges: tile.querySelectorAll('.alarm-badge').length,
    };
  }
  return out;
}"""


@pytest.fixture
def quiet_gateway(tmp_path: Path) -> Iterator[FakeGatewayProc]:
    """The fake gateway without its scripted alarms: every tone heard is the connection's."""
    with _run_fake_gateway(tmp_path, "--no-alarms") as fake:
        yield fake


@pytest.fixture
def quiet_page(quiet_gateway: FakeGatewayProc) -> Iterator[Any]:
    with _chromium_page(quiet_gateway.token) as page:
        yield page


def _live_station_with_audio(gateway: FakeGatewayProc, page: Any, also: str | None = None) -> None:
    """The station, live (and ``also`` true), audio switched on: one confirmation beep, nothing
    alarming (tone timings shortened, CONN_TIMING)."""
    page.context.add_init_script(f"localStorage.setItem('ecgmonAudioTiming', {json.dumps(CONN_TIMING)!r});")
    page.goto(f"{gateway.url}/#/", wait_until="domcontentloaded")
    page.wait_for_function("document.querySelector('#conn-status').textContent === 'LIVE'", timeout=10_000)
    if also is not None:
        page.wait_for_function(also, timeout=5000)
    page.click("#audio-toggle")
    assert [t["pattern"] for t in _tones(page)] == ["confirm"]  # nothing alarming: one beep


def test_connection_loss_shows_a_banner_and_sounds_until_reconnected(
    quiet_gateway: FakeGatewayProc, quiet_page: Any
) -> None:
    page = quiet_page
    _live_station_with_audio(quiet_gateway, page)
    assert page.locator(BANNER).is_hidden()

    # the link goes down (the fake closes the WebSocket and refuses new ones)
    down_at = page.evaluate("performance.now()")
    quiet_gateway.post_json("/api/_fake/websocket", {"refuse": True})
    page.wait_for_function("document.querySelector('#conn-status').textContent.startsWith('OFFLINE')",
                           timeout=5000)
    page.wait_for_timeout(800)
    assert page.locator(BANNER).is_hidden() and _tones(page, "medium") == []  # not before 1.5 s
    mediums = _wait_tones(page, "medium", 2, down_at, 15_000)
    banner = page.locator(BANNER)
    assert banner.is_visible()
    text = banner.inner_text()
    assert re.search(r"^Connection to the gateway lost since \d\d:\d\d:\d\d — alarms are not being received",
                     text), text
    assert page.title() == "(NO CONNECTION) ecgmon"
    # the medium tone (a technical alarm of medium priority): after the delay, then every 3 s
    assert [t["reason"] for t in mediums[:2]] == ["onset", "repeat"], mediums
    delay = CONN_TIMING["connLossMs"]
    assert delay <= mediums[0]["atMs"] - down_at < delay + 1500, mediums
    # (atMs is when the tone was started, a little after the decision's clock: 50 ms of slack)
    interval = CONN_TIMING["mediumMs"]
    assert all(interval - 50 <= g < interval + 1000 for g in _gaps(mediums)), mediums
    assert {t["pattern"] for t in _tones(page, None, down_at)} == {"medium"}
    # no tile looks live: NO DATA, the trace stopped and greyed, the HR greyed, alarms "last known"
    stale = page.evaluate(TILE_LOOK_JS)
    assert len(stale) == 10 and all(t["freshness"] == "offline" for t in stale.values()), stale
    for pid, t in stale.items():
        assert t["overlay"] == "NO DATA\nCONNECTION LOST", (pid, t)
        assert t["hrColor"] == t["muted"] and t["canvasOpacity"] < 0.6, (pid, t)
        assert t["alarms"] == "Last known: no active alarms", (pid, t)
    frozen = page.evaluate(TRACE_STATE_JS)
    page.wait_for_timeout(1000)
    assert page.evaluate(TRACE_STATE_JS) == frozen, "a trace moved while offline"

    # back: the reconnect logic retries by itself; banner and tone stop
    quiet_gateway.post_json("/api/_fake/websocket", {"refuse": False})
    page.wait_for_function("document.querySelector('#conn-status').textContent === 'LIVE'", timeout=20_000)
    back_at = page.evaluate("performance.now()")
    page.wait_for_selector(BANNER, state="hidden", timeout=2000)
    assert page.title() == "ecgmon · Central station"
    # fresh frames: every tile is live again, its trace sweeps
    page.wait_for_function("[...document.querySelectorAll('.station-grid .tile')]"
                           ".every((t) => t.dataset.freshness === 'live')", timeout=5000)
    for pid, t in page.evaluate(TILE_LOOK_JS).items():
        assert not t["overlay"] and t["hrColor"] != t["muted"] and t["canvasOpacity"] == 1, (pid, t)
        assert t["alarms"] == "No active alarms", (pid, t)
    before = page.evaluate(TRACE_STATE_JS)
    page.wait_for_timeout(1000)
    after = page.evaluate(TRACE_STATE_JS)
    assert all(after[pid]["canvas"] != before[pid]["canvas"] for pid in before), "a trace did not move"
    page.wait_for_timeout(CONN_TIMING["mediumMs"])
    assert _tones(page, None, back_at + 300) == [], "a tone after the connection came back"


def test_offline_alarms_stay_visible_as_last_known_on_tiles_and_in_the_patient_view(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    page.context.add_init_script(f"localStorage.setItem('ecgmonAudioTiming', {json.dumps(CONN_TIMING)!r});")
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    vt = f'{TILE}[data-patient="203"] .alarm-badge.prio-high'
    page.wait_for_selector(vt, timeout=15_000)  # the fake's VT, from its 3rd second
    page.wait_for_function("[...document.querySelectorAll('.station-grid .tile')]"
                           ".every((t) => t.dataset.freshness === 'live')", timeout=5000)
    live = page.evaluate(TILE_LOOK_JS)
    assert all(t["lastKnown"] == 0 for t in live.values()), live

    fake_gateway.post_json("/api/_fake/websocket", {"refuse": True})
    page.wait_for_selector(f"{TILE}.offline", timeout=10_000)
    page.wait_for_function("[...document.querySelectorAll('.station-grid .tile')]"
                           ".every((t) => t.dataset.freshness === 'offline')", timeout=2000)
    stale = page.evaluate(TILE_LOOK_JS)
    # every alarm shown before is still shown, marked as the last known one
    assert stale["203"]["badges"] >= 1, stale["203"]
    for pid, t in stale.items():
        assert t["lastKnown"] == t["badges"] == live[pid]["badges"], (pid, t, live[pid])
        if t["badges"]:
            assert t["alarms"].startswith("LAST KNOWN"), (pid, t)
    assert "Last known" in (page.locator(f"{vt}").get_attribute("title") or "")

    # the patient view opened now: the same (its strip drawn once, under NO DATA)
    page.goto(f"{fake_gateway.url}/#/patient/203", wait_until="domcontentloaded")
    page.wait_for_function("document.querySelector('.patient-view')?.dataset.freshness === 'offline'",
                           timeout=5000)
    view = page.evaluate(TILE_LOOK_JS)["view"]
    assert view["overlay"] == "NO DATA\nCONNECTION LOST" and view["hrColor"] == view["muted"], view
    assert view["badges"] >= 1 and view["lastKnown"] == view["badges"], view
    assert view["canvasOpacity"] < 0.6, view
    assert page.evaluate("""() => { const c = document.querySelector('canvas.strip');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; }"""), "a blank strip"

    fake_gateway.post_json("/api/_fake/websocket", {"refuse": False})
    page.wait_for_function("document.querySelector('.patient-view')?.dataset.freshness === 'live'",
                           timeout=20_000)
    view = page.evaluate(TILE_LOOK_JS)["view"]
    assert not view["overlay"] and view["lastKnown"] == 0 and view["hrColor"] != view["muted"], view


# ---- no bedside data reaches the gateway (broker or Kafka feed down), against the fake ------------

FEED_BANNER = "#feed-banner"
# the time of a wall clock ms as the banner says it today ("14:02:05", local time)
HHMMSS_JS = """(ms) => { const d = new Date(ms); const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`; }"""
EVERY_TILE_JS = ("[...document.querySelectorAll('.station-grid .tile')]"
                 ".every((t) => t.dataset.freshness === {!r})")


def test_no_bedside_data_shows_a_banner_on_every_view_and_sounds_until_data_flows_again(
    quiet_gateway: FakeGatewayProc, quiet_page: Any
) -> None:
    page = quiet_page
    _live_station_with_audio(quiet_gateway, page, EVERY_TILE_JS.format("live"))
    assert page.locator(FEED_BANNER).is_hidden()

    # the broker goes down: no data from any bed reaches the gateway, which tells every station
    down_at = page.evaluate("performance.now()")
    state = quiet_gateway.post_json("/api/_fake/feed", {"receiving": False})
    assert state["receiving"] is False and state["last_data_ms"], state
    since = page.evaluate(HHMMSS_JS, state["last_data_ms"])
    banner = page.locator(FEED_BANNER)
    banner.wait_for(state="visible", timeout=3000)
    text = banner.inner_text()
    assert text.startswith(f"No ECG from any bedside monitor since {since}"), text
    assert "not at the patients" in text and "Beds are not being monitored from here." in text, text
    assert page.locator(BANNER).is_hidden()  # the link to the gateway is fine
    assert page.title() == "(NO BEDSIDE DATA) ecgmon"
    # the medium tone (a technical alarm of medium priority) at once, then every 3 s
    mediums = _wait_tones(page, "medium", 2, down_at, 10_000)
    assert [t["reason"] for t in mediums[:2]] == ["onset", "repeat"], mediums
    assert mediums[0]["atMs"] - down_at < 1000, (down_at, mediums)
    interval = CONN_TIMING["mediumMs"]
    assert all(interval - 50 <= g < interval + 1000 for g in _gaps(mediums)), mediums
    assert {t["pattern"] for t in _tones(page, None, down_at)} == {"medium"}
    # the tiles: NO SIGNAL each, as any bed whose monitor sends nothing, and no alarm of any bed
    page.wait_for_function(EVERY_TILE_JS.format("no-signal"), timeout=8000)
    for pid, t in page.evaluate(TILE_LOOK_JS).items():
        assert t["overlay"] == "NO SIGNAL" and t["badges"] == 0, (pid, t)
    assert page.evaluate(ACTIVE_IDS_JS) == []

    # the patient view says it too (the header's banner)
    page.evaluate("location.hash = '#/patient/100'")
    page.wait_for_selector(".patient-view", timeout=5000)
    assert banner.is_visible() and banner.inner_text() == text

    # the link to the gateway goes down as well: the feed is unknown, the connection banner only
    quiet_gateway.post_json("/api/_fake/websocket", {"refuse": True})
    page.locator(BANNER).wait_for(state="visible", timeout=10_000)
    assert banner.is_hidden()
    assert page.title() == "(NO CONNECTION) ecgmon"
    # back: the reconnect's hello says there is still no bedside data
    quiet_gateway.post_json("/api/_fake/websocket", {"refuse": False})
    page.wait_for_function("document.querySelector('#conn-status').textContent === 'LIVE'", timeout=20_000)
    banner.wait_for(state="visible", timeout=2000)
    assert page.locator(BANNER).is_hidden()
    assert banner.inner_text() == text
    assert page.title() == "(NO BEDSIDE DATA) ecgmon"
    # a station opened now learns it from the hello alone; with audio on the tone sounds at once
    page.reload(wait_until="domcontentloaded")
    banner.wait_for(state="visible", timeout=10_000)
    assert banner.inner_text() == text
    page.wait_for_selector(".patient-view", timeout=5000)
    on_at = page.evaluate("performance.now()")
    page.click("#audio-toggle")
    first = _wait_tones(page, "medium", 1, on_at, 3000)[0]
    assert first["reason"] == "first" and first["atMs"] - on_at < 1000, first
    assert [t["pattern"] for t in _tones(page)] == ["medium"]  # not the "nothing alarming" beep

    # data flows again: banner and tone go, the trace is live again
    quiet_gateway.post_json("/api/_fake/feed", {"receiving": True})
    back_at = page.evaluate("performance.now()")
    banner.wait_for(state="hidden", timeout=3000)
    assert page.title() == "ecgmon · Central station"
    page.wait_for_function("document.querySelector('.patient-view')?.dataset.freshness === 'live'",
                           timeout=5000)
    page.wait_for_timeout(interval + 500)
    assert _tones(page, None, back_at + 300) == [], "a tone after bedside data came back"
    assert banner.is_hidden() and page.locator(BANNER).is_hidden()


# ---- discharge, against the fake gateway --------------------------------------------------------

DISCHARGE_PATIENT = "203"  # the fake's VT bed: a high alarm from its 3rd to its 48th second
DISCHARGE_PATH = f"/api/patients/{DISCHARGE_PATIENT}/discharge"
CONFIRM = ".discharge-confirm"
NOTICE = "#toast .toast-msg.notice"
WARD_DETAILS = {"user": "kim", "bed": "12", "name": "J. Doe", "note": "pacemaker"}
LIST_ROWS = ".discharges-card tbody tr"

# Every text the discharge confirmation's status line shows, in order.
DISCHARGE_STATUS_LOG_JS = """() => {
  window.__dischargeStatus = [];
  const node = document.querySelector('.discharge-confirm .discharge-status');
  new MutationObserver(() => window.__dischargeStatus.push(node.textContent))
    .observe(node, {childList: true, characterData: true, subtree: true});
}"""

# The alarm ids the page holds as active (all patients), and those of one patient.
ACTIVE_IDS_JS = "[...window.ecgmon.store.patients.values()].flatMap((p) => [...p.active.keys()])"


def _patient_alarm_ids(page: Any, pid: str) -> list[str]:
    return page.evaluate(f"[...(window.ecgmon.store.patients.get({pid!r})?.active.keys() ?? [])]")


def _high_count(page: Any) -> int:
    """What the header says: "2 HIGH" -> 2 (0 when there is no high count)."""
    node = page.locator("#alarm-summary .prio-high")
    return int(node.inner_text().split()[0]) if node.count() else 0


def _discharge_via_api(fake: FakeGatewayProc, pid: str, user: str) -> dict[str, Any]:
    """POST a discharge as another station would (202), and wait until the fake carried it out."""
    answer = fake.post_json(f"/api/patients/{pid}/discharge", {"user": user})
    assert answer["status"] == "sent", answer
    deadline = time.monotonic() + 5
    while answer["request_id"] not in [d["request_id"] for d in
                                       fake.get_json("/api/discharges")["discharges"]]:
        assert time.monotonic() < deadline, "the fake did not carry out the discharge"
        time.sleep(0.1)
    return answer


def test_discharge_from_the_patient_view_ends_its_alarms_and_removes_it_from_the_station(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    pid = DISCHARGE_PATIENT
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    fake_gateway.post_json(f"/api/patients/{pid}/info", WARD_DETAILS)
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    page.wait_for_selector(f'{TILE}[data-patient="{pid}"] .alarm-badge.prio-high', timeout=15_000)
    page.wait_for_selector(f'{TILE}[data-patient="210"] .alarm-badge.prio-high', timeout=5000)
    old_alarms = _patient_alarm_ids(page, pid)
    assert old_alarms, "no active alarm on the bed to discharge"
    highs = _high_count(page)
    assert highs >= 2  # its VT and bed 210's extreme bradycardia

    # the patient view: the action opens a confirmation naming the patient and what happens
    page.goto(f"{fake_gateway.url}/#/patient/{pid}", wait_until="domcontentloaded")
    page.get_by_role("button", name="Discharge patient…").click()
    confirm = page.locator(CONFIRM)
    confirm.wait_for(state="visible")
    text = confirm.inner_text()
    assert "Discharge Bed 12 (J. Doe)?" in text and f"id {pid}" in text, text
    for said in ("alarms end", "leaves the central station", "alarm limits are archived", USER):
        assert said in text, (said, text)
    # Escape cancels it (focus is on Cancel, not on the irreversible button) and stays on the patient
    assert page.evaluate("document.activeElement.textContent") == "Cancel"
    page.keyboard.press("Escape")
    confirm.wait_for(state="hidden")
    assert f"#/patient/{pid}" in page.url and posts == []

    page.get_by_role("button", name="Discharge patient…").click()
    page.evaluate(DISCHARGE_STATUS_LOG_JS)
    with page.expect_response(lambda r: r.request.method == "POST" and DISCHARGE_PATH in r.url) as answer:
        confirm.get_by_role("button", name="Discharge", exact=True).click()
    assert answer.value.status == 202
    assert answer.value.request.post_data_json == {"user": USER}
    request_id = answer.value.json()["request_id"]

    # the `discharged` frame: back on the station, a notice says whom, who and when
    page.wait_for_function("location.hash === '#/'", timeout=10_000)
    notice = page.locator(NOTICE)
    notice.wait_for(timeout=5000)
    assert re.fullmatch(rf"Bed 12 \(J\. Doe\) discharged by {USER} at \d\d:\d\d:\d\d", notice.inner_text()), (
        notice.inner_text())
    seen = page.evaluate("window.__dischargeStatus")
    assert any(t.startswith(f"Discharge sent by {USER}") and "waiting for the gateway" in t
               for t in seen), seen
    # its tile, its alarms (badges, header counts, what the tones read) are gone, and stay gone
    # while the frames that follow the discharge (alarm ends, a queued state frame) arrive
    page.wait_for_function(f"document.querySelectorAll('{TILE}').length === 9", timeout=5000)
    page.wait_for_timeout(1500)
    assert pid not in _tile_order(page) and len(_tile_order(page)) == 9
    assert not page.evaluate(f"window.ecgmon.store.patients.has({pid!r})")
    active = page.evaluate(ACTIVE_IDS_JS)
    assert not set(old_alarms) & set(active), active
    for alarm_id in old_alarms:
        assert page.locator(f'.alarm-badge[data-alarm-id="{alarm_id}"]').count() == 0
    assert _high_count(page) == highs - 1
    # the gateway agrees: not listed, its alarms ended with the reason, the stay archived
    assert pid not in [r["patient_id"] for r in fake_gateway.get_json("/api/patients")]
    record = fake_gateway.get_json("/api/discharges")["discharges"][0]
    assert record["request_id"] == request_id and record["user"] == USER
    assert set(old_alarms) <= set(record["alarms_ended"]) and record["info"]["bed"] == "12"
    ends = [a for a in fake_gateway.get_json("/api/alerts?count=1000")["alerts"]
            if a["alarm_id"] in old_alarms and a["phase"] == "end"]
    assert ends and all(a["details"]["reason"] == f"patient discharged by {USER}" for a in ends), ends

    # Back does not reopen the discharged patient's view (the station replaced it in the history)
    page.go_back()
    page.wait_for_timeout(500)
    assert f"#/patient/{pid}" not in page.url
    # a page opened now shows no tile for it, although its alarms are in the gateway's history
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    page.reload(wait_until="domcontentloaded")  # (a goto that changes only the hash loads nothing)
    page.wait_for_function("window.ecgmon.store.lastAlertId !== null", timeout=10_000)  # history read
    page.wait_for_function(f"document.querySelectorAll('{TILE}').length === 9", timeout=10_000)
    page.wait_for_timeout(1500)
    assert pid not in _tile_order(page)
    assert page.locator(NOTICE).count() == 0  # nor a notice: nothing happened since it opened


def test_discharge_refused_by_the_gateway_is_shown_and_the_patient_stays(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    pid = DISCHARGE_PATIENT
    fake_gateway.post_json("/api/_fake/discharge", {"refuse": True})  # Kafka will not take the next one
    page.goto(f"{fake_gateway.url}/#/patient/{pid}", wait_until="domcontentloaded")
    button = page.get_by_role("button", name="Discharge patient…")
    page.wait_for_selector(".discharge-btn:not([disabled])", timeout=10_000)
    button.click()
    confirm = page.locator(CONFIRM)
    assert "Discharge patient 203?" in confirm.inner_text()  # no details entered: the id
    with page.expect_response(lambda r: r.request.method == "POST" and DISCHARGE_PATH in r.url) as answer:
        confirm.get_by_role("button", name="Discharge", exact=True).click()
    assert answer.value.status == 503
    status = confirm.locator(".discharge-status.error")
    status.wait_for(timeout=5000)
    assert status.inner_text() == ("The discharge was not sent: Kafka did not take it; try again. "
                                   "The patient is still monitored.")
    # the view stays, with the confirmation open for another try; the patient is still monitored
    page.wait_for_timeout(1500)
    assert page.url.endswith(f"#/patient/{pid}")
    assert confirm.get_by_role("button", name="Discharge", exact=True).is_enabled()
    assert page.evaluate(f"window.ecgmon.store.patients.get({pid!r}).known")
    assert page.locator(NOTICE).count() == 0
    assert fake_gateway.get_json("/api/discharges")["discharges"] == []

    # tried again: sent, and the patient leaves the station
    with page.expect_response(lambda r: r.request.method == "POST" and DISCHARGE_PATH in r.url) as answer:
        confirm.get_by_role("button", name="Discharge", exact=True).click()
    assert answer.value.status == 202
    page.wait_for_function("location.hash === '#/'", timeout=10_000)
    assert page.locator(NOTICE).inner_text().startswith(f"Patient {pid} discharged by {USER} at ")


def test_a_patient_admitted_again_after_a_discharge_is_a_fresh_tile(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    pid = DISCHARGE_PATIENT
    fake_gateway.post_json(f"/api/patients/{pid}/info", WARD_DETAILS)
    fake_gateway.post_json(f"/api/patients/{pid}/alarm-settings", {
        "user": "kim", "hr_low_bpm": 50, "hr_high_bpm": 130, "pause_s": 2.0, "disabled": []})
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    tile = page.locator(f'{TILE}[data-patient="{pid}"]')
    tile.locator(".settings-flag:visible").wait_for(timeout=10_000)
    tile.locator(".alarm-badge").first.wait_for(timeout=10_000)
    assert tile.locator(".bed").inner_text() == "12" and tile.locator(".pname").inner_text() == "J. Doe"
    old_alarms = _patient_alarm_ids(page, pid)

    # discharged on another station: the tile goes, with the notice
    _discharge_via_api(fake_gateway, pid, "kim")
    tile.wait_for(state="detached", timeout=5000)
    assert page.locator(NOTICE).inner_text().startswith("Bed 12 (J. Doe) discharged by kim at ")

    # data under the same id again: a new admission, a fresh tile
    fake_gateway.post_json("/api/_fake/readmit", {"patient": pid})
    tile.wait_for(timeout=10_000)
    page.wait_for_function(f"""() => {{
      const p = window.ecgmon.store.patients.get({pid!r});
      return p && p.info !== undefined && p.alarmSettings !== undefined && p.ring && p.displayT !== null;
    }}""", timeout=10_000)
    fresh = page.evaluate(f"""(() => {{
      const p = window.ecgmon.store.patients.get({pid!r});
      return {{info: p.info, settings: p.alarmSettings, active: [...p.active.keys()]}};
    }})()""")
    assert fresh["info"] is None and fresh["settings"] is None, fresh
    assert not set(old_alarms) & set(fresh["active"]), (old_alarms, fresh)
    assert tile.locator(".bed").inner_text() == pid  # no bed label, name, note or limits of the old stay
    assert tile.locator(".pname").is_hidden() and tile.locator(".note-flag").is_hidden()
    assert tile.locator(".settings-flag").is_hidden()
    before = page.evaluate(TRACE_STATE_JS)[pid]
    page.wait_for_timeout(1000)
    after = page.evaluate(TRACE_STATE_JS)[pid]
    assert after["displayT"] > before["displayT"] and after["canvas"] != before["canvas"], "a still trace"
    # its patient view: no details, the defaults, and it can be discharged again
    page.goto(f"{fake_gateway.url}/#/patient/{pid}", wait_until="domcontentloaded")
    page.locator(".pv-title").get_by_text(f"Patient {pid}").wait_for(timeout=10_000)
    page.wait_for_selector(f"{CARD} .settings-origin:has-text('Defaults')", timeout=10_000)
    assert page.locator(".pv-head .note-flag").is_hidden()
    assert page.get_by_role("button", name="Discharge patient…").is_enabled()


def test_recent_discharges_are_listed_on_the_station(fake_gateway: FakeGatewayProc, fake_page: Any) -> None:
    page = fake_page
    fake_gateway.post_json(f"/api/patients/{DISCHARGE_PATIENT}/info", WARD_DETAILS)
    _discharge_via_api(fake_gateway, DISCHARGE_PATIENT, "kim")
    _discharge_via_api(fake_gateway, "100", "lee")
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    page.wait_for_function(f"document.querySelectorAll('{TILE}').length === 8", timeout=10_000)
    card = page.locator(".discharges-card")
    assert card.is_hidden()
    toggle = page.get_by_role("button", name="Recent discharges")
    toggle.click()
    rows = card.locator("tbody tr")
    page.wait_for_function(f"document.querySelectorAll('{LIST_ROWS}').length === 2", timeout=5000)
    assert toggle.get_attribute("aria-expanded") == "true"
    assert [h.strip() for h in card.locator("th").all_inner_texts()] == [
        "Time", "Patient", "Discharged by", "Alarms ended", "Stay's alarms"]
    newest, older = (rows.nth(i).locator("td").all_inner_texts() for i in range(2))
    assert re.fullmatch(r"\d\d:\d\d:\d\d", newest[0]) and re.fullmatch(r"\d\d:\d\d:\d\d", older[0])
    assert newest[1:3] == ["Patient 100", "lee"], newest  # newest first
    assert older[1:3] == [f"Bed 12 (J. Doe) · id {DISCHARGE_PATIENT}", "kim"], older
    assert older[3].isdigit() and newest[3] == "0"  # how many alarms the discharge ended
    assert newest[4] == older[4] == "Alarms (CSV)"  # the stay's alarms, fetched on request

    # one discharged while the list is open comes on top
    _discharge_via_api(fake_gateway, "101", "kim")
    page.wait_for_function(f"document.querySelectorAll('{LIST_ROWS}').length === 3", timeout=8000)
    assert rows.first.get_attribute("data-patient") == "101"
    card.get_by_role("button", name="Close").click()
    assert card.is_hidden() and toggle.get_attribute("aria-expanded") == "false"


CSV_COLUMNS = ["alert_id", "alarm_id", "alarm_type", "priority", "phase", "technical", "onset_t_s", "t_s",
               "heart_rate_bpm", "message", "reason"]
EXPORT_STATUS = ".discharges-card .discharges-export"


def _open_recent_discharges(page: Any, fake: FakeGatewayProc, rows: int) -> Any:
    """The station with its Recent discharges card open, once it lists `rows` rows."""
    page.goto(f"{fake.url}/#/", wait_until="domcontentloaded")
    page.get_by_role("button", name="Recent discharges").click()
    page.wait_for_function(f"document.querySelectorAll('{LIST_ROWS}').length === {rows}", timeout=5000)
    return page.locator(".discharges-card")


def test_recent_discharges_download_the_stays_alarm_events_as_csv(
    fake_gateway: FakeGatewayProc, fake_page: Any, tmp_path: Path
) -> None:
    page = fake_page
    pid = DISCHARGE_PATIENT
    user = 'Kim "K", RN'  # a comma and quotes: the reason column must come back as it was
    fake_gateway.post_json(f"/api/patients/{pid}/info", WARD_DETAILS)
    deadline = time.monotonic() + 15  # the fake's VT starts in its 3rd second
    while not any(p["active_alarms"] for p in fake_gateway.get_json("/api/patients")
                  if p["patient_id"] == pid):
        assert time.monotonic() < deadline, "the VT bed raised no alarm to end"
        time.sleep(0.2)
    rid = _discharge_via_api(fake_gateway, pid, user)["request_id"]
    record = next(d for d in fake_gateway.get_json("/api/discharges")["discharges"] if d["request_id"] == rid)
    assert record["alarms_ended"], record
    gets: list[str] = []
    page.on("request", lambda r: gets.append(r.url) if "/api/discharges/" in r.url else None)

    card = _open_recent_discharges(page, fake_gateway, 1)
    row = card.locator(f'tbody tr[data-request-id="{rid}"]')
    assert row.locator(".stay-count").count() == 0  # not fetched yet
    with page.expect_download(timeout=5000) as dl:
        row.get_by_role("button", name="Alarms (CSV)").click()
    download = dl.value
    stamp = time.strftime("%Y%m%d-%H%M", time.localtime(record["discharged_at_ms"] / 1000))
    assert download.suggested_filename == f"ecgmon-{pid}-{stamp}-alarms.csv"
    assert gets == [f"{fake_gateway.url}/api/discharges/{rid}"], gets
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    text = saved.read_bytes().decode("utf-8")  # UTF-8, header row first
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n"), text[:200]
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == CSV_COLUMNS
    events = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows[1:]]
    # every alert frame of the stay, oldest first: the VT's onset, and the discharge's alarm ends
    assert any(e["alarm_id"] in record["alarms_ended"] and e["phase"] == "onset" for e in events), events
    ends = [e for e in events if e["phase"] == "end" and e["alarm_id"] in record["alarms_ended"]]
    assert sorted(e["alarm_id"] for e in ends) == sorted(record["alarms_ended"]), events
    for end in ends:
        assert end["reason"] == f"patient discharged by {user}", end
        assert end["alarm_type"] == "ventricular_tachycardia" and end["priority"] == "high", end
        assert end["technical"] == "false" and float(end["t_s"]) >= float(end["onset_t_s"]), end
    assert [float(e["t_s"]) for e in events] == sorted(float(e["t_s"]) for e in events)
    stay = fake_gateway.get_json(f"/api/discharges/{rid}")
    assert [e["alert_id"] for e in events] == [a["alert_id"] for a in stay["alerts"]]

    # the card says what was downloaded, and the row how many alarm events the stay had
    n = len(events)
    status = page.locator(f"{EXPORT_STATUS}.ok")
    status.wait_for(timeout=5000)
    assert status.inner_text() == (f"Downloaded {download.suggested_filename}: {n} alarm event"
                                   f"{'' if n == 1 else 's'} of Bed 12 (J. Doe)'s stay.")
    assert row.locator(".stay-count").inner_text().strip() == f"{n} alarm event{'' if n == 1 else 's'}"
    assert "Doe" not in download.suggested_filename  # names stay on screen, never in files' names


def test_recent_discharges_alarms_of_an_expired_archive_are_explained_and_nothing_downloaded(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    rid = _discharge_via_api(fake_gateway, "100", "lee")["request_id"]
    fake_gateway.post_json("/api/_fake/expire-archive", {"request_id": rid})  # older than the archive keeps
    with pytest.raises(urllib.error.HTTPError) as unknown:
        fake_gateway.get_json("/api/discharges/no-such-discharge")
    assert unknown.value.code == 404
    downloads: list[Any] = []
    page.on("download", lambda d: downloads.append(d))

    card = _open_recent_discharges(page, fake_gateway, 1)
    row = card.locator(f'tbody tr[data-request-id="{rid}"]')
    with page.expect_response(lambda r: r.url.endswith(f"/api/discharges/{rid}")) as answer:
        row.get_by_role("button", name="Alarms (CSV)").click()
    assert answer.value.status == 404
    status = page.locator(f"{EXPORT_STATUS}.error")
    status.wait_for(timeout=5000)
    assert status.inner_text() == ("Archive not found: no archive of this discharge: unknown, or older than "
                                   "ECGMON_ARCHIVE_DAYS. Nothing downloaded.")
    page.wait_for_timeout(1000)
    assert downloads == []
    assert row.locator(".stay-count").count() == 0
    # the list itself is unchanged, and the action can be tried again
    assert row.locator("td").nth(2).inner_text() == "lee"
    assert row.get_by_role("button", name="Alarms (CSV)").is_enabled()


def test_a_discharge_missed_while_offline_removes_the_tile_when_back(
    fake_gateway: FakeGatewayProc, fake_page: Any
) -> None:
    page = fake_page
    pid = DISCHARGE_PATIENT
    page.goto(f"{fake_gateway.url}/#/", wait_until="domcontentloaded")
    page.wait_for_selector(f'{TILE}[data-patient="{pid}"] .alarm-badge', timeout=15_000)
    old_alarms = _patient_alarm_ids(page, pid)
    fake_gateway.post_json("/api/_fake/websocket", {"refuse": True})
    page.wait_for_function("document.querySelector('#conn-status').textContent.startsWith('OFFLINE')",
                           timeout=5000)
    _discharge_via_api(fake_gateway, pid, "kim")  # the frame reaches no one
    page.wait_for_timeout(500)
    assert pid in _tile_order(page)  # nothing said yet: the station did not hear of it
    fake_gateway.post_json("/api/_fake/websocket", {"refuse": False})
    page.wait_for_function("document.querySelector('#conn-status').textContent === 'LIVE'", timeout=20_000)
    # the hello no longer lists it, the gateway's archive says why: the tile goes, with the notice
    page.locator(f'{TILE}[data-patient="{pid}"]').wait_for(state="detached", timeout=5000)
    assert page.locator(NOTICE).inner_text().startswith(f"Patient {pid} discharged by kim at ")
    assert not set(old_alarms) & set(page.evaluate(ACTIVE_IDS_JS))
    assert len(_tile_order(page)) == 9
