"""The dashboard in real headless Chromium (Debian chromium + chromium-driver, Selenium).

A small run with --ui: the tiles turn ready, a click on a phone shows its timeline with
the file names and MD5s report.json has, a trainer control (wrong option 66, then
power-cycle) turns the tiles failed, and the read-only URL's controls get 403. A
screenshot is saved under the test's tmp folder. Under CI=true a missing browser fails.
"""

import json
import os
import shutil

import pytest

from tests.dashboard_lab import DashboardLab
from tests.peers import missing, require_binary

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")


@pytest.fixture
def browser(tmp_path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed (pip install -e .[test])")
    chromium = shutil.which("chromium") or require_binary("chromium")
    driver_path = shutil.which("chromedriver") or require_binary("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def tile_states(driver) -> dict:
    """Phones per state as the page holds them (what the tiles are painted from)."""
    return driver.execute_script(
        "const c = {}; (fleet.states || []).forEach((s) => { c[STATES[s]] = (c[STATES[s]] || 0) + 1; }); return c;")


def post_action(driver, text: str) -> int:
    """A control sent by the page itself, with whatever token its URL has."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('api/action', {method: 'POST', headers: {'content-type': 'application/json', 'x-labsim-token': TOKEN},"
        " body: JSON.stringify({do: arguments[0]})}).then((r) => done(r.status), () => done(-1));", text)


def busiest(times: list[float], seconds: float) -> int:
    """The most of these moments within any span of this many seconds."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


def check_the_request_rate_chart(browser, lab) -> None:
    """The page draws requests per second from the points' running totals: over the last
    second, or over the step since the point before once a long lab's series is thinned."""
    rates = "return requestRates(arguments[0], arguments[1]);"
    # A worker whose counts reach the parent only every 2 s, in a bunch, beside one that
    # reports on time (200 requests/s each, points four times a second): the bunch is
    # spread over a second (600/s), not drawn as one quarter second's 1,800/s.
    t = [0.25 * k for k in range(1, 25)]
    totals = [{"http": 200 * x + 200 * (x // 2 * 2)} for x in t]
    drawn = [r.get("http", 0) for r in browser.execute_script(rates, t, totals)]
    assert max(drawn[8:]) <= 600 + 1e-6 and 350 <= sum(drawn[8:]) / len(drawn[8:]) <= 450, drawn
    # A thinned series, a point every 4 s, with 40 requests in one quarter second of each
    # 8 s: each step's rate is its requests over its 4 s, and the steps hold all of them.
    t = [4.0 * k for k in range(1, 11)]
    totals = [{"tftp": 40 * ((k + 1) // 2)} for k in range(1, 11)]
    drawn = [r.get("tftp", 0) for r in browser.execute_script(rates, t, totals)]
    assert drawn == [10, 0] * 5 and sum(rate * 4 for rate in drawn) == totals[-1]["tftp"], drawn
    # This lab's storm: a rate is taken from the last point at least a second back, so over
    # a second plus at most one step between points: the chart's peak is at most the
    # busiest such span on the wire over one second. Before, a quarter second's burst was
    # drawn times four (here the phones' first 22 GETs, within 20 ms: 88/s, where with
    # steps of 0.25 s this allows 40).
    with open(lab.report_dir / "events.jsonl", encoding="utf-8") as events:
        gets = [e["t"] for e in map(json.loads, events) if e["kind"] == "fetch" and e["url"].startswith("http:")]
    t, totals, drawn = browser.execute_script(  # one moment: the series grows as the lab runs
        "const s = fleet.series; return [s.t, s.totals, requestRates(s.t, s.totals).map((r) => r.http || 0)];")
    longest_step = max(later - earlier for earlier, later in zip(t, t[1:]))
    assert 0 < max(drawn) <= busiest(gets, 1 + longest_step), (drawn, busiest(gets, 1 + longest_step), t, totals)


def test_the_dashboard_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    lab = DashboardLab(tmp_path)
    try:
        browser.get(lab.control_url)
        wait = WebDriverWait(browser, 45, poll_frequency=0.2)
        wait.until(lambda d: tile_states(d).get("ready") == 6)
        assert browser.find_element(By.ID, "mode").text == "trainer (controls on)"
        legend = browser.find_element(By.ID, "legend").text
        assert "ready 6" in legend.replace("\n", " ")
        lab.wait_until(lambda: (lab.report_dir / "report.json").exists(), what="the settled report")
        report = lab.report()
        phone = report["phones"][0]
        check_the_request_rate_chart(browser, lab)

        # Click the first tile: its story, with the file names and MD5s the report has.
        tiles = browser.find_element(By.ID, "tiles")
        x, y = browser.execute_script("return layout.pos[fleet.macs.indexOf(arguments[0])];", phone["mac"])
        size = browser.execute_script("return layout.size;")
        browser.execute_script(
            "const r = arguments[0].getBoundingClientRect();"
            "arguments[0].dispatchEvent(new MouseEvent('click', {clientX: r.left + arguments[1], clientY: r.top + arguments[2], bubbles: true}));",
            tiles, x + size / 2, y + size / 2)
        wait.until(lambda d: phone["mac"] in d.find_element(By.ID, "phone-body").text)
        story = browser.find_element(By.ID, "phone-body").text
        assert phone["files"], "the phone applied files"
        for name, md5 in phone["files"].items():
            assert name in story and md5 in story, (name, md5)
        assert "option 66 (tftp_server_name)" in story and lab.moved("http://127.0.0.1:8080/") in story
        browser.save_screenshot(str(tmp_path / "dashboard-phone.png"))
        browser.find_element(By.ID, "phone-close").click()

        # Trainer controls from the page: a wrong option 66, then power-cycle: the tiles turn failed.
        browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=controls]").click()
        value = browser.find_element(By.ID, "c-opt-value")
        value.clear()
        value.send_keys("http://127.0.0.1:8008/")
        browser.find_element(By.CSS_SELECTOR, "button[data-act=set-option]").click()
        wait.until(lambda d: "set_dhcp_option: DHCP options set: 66" in d.find_element(By.ID, "c-result").text)
        browser.find_element(By.ID, "c-macs").clear()
        browser.find_element(By.CSS_SELECTOR, "button[data-act=power_cycle]").click()
        wait.until(lambda d: "power cycle: 6 phone(s)" in d.find_element(By.ID, "c-result").text)
        browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=fleet]").click()
        wait.until(lambda d: tile_states(d).get("failed") == 6)
        screenshot = tmp_path / "dashboard-failed.png"
        browser.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000

        # The students' URL: no controls shown, and a control from it is refused.
        browser.get(lab.base)
        wait.until(lambda d: d.find_element(By.ID, "mode").text == "read-only view")
        assert not browser.find_element(By.ID, "controls-tab").is_displayed()
        assert post_action(browser, "{power_cycle: {phones: all}}") == 403
        wait.until(lambda d: tile_states(d).get("failed") == 6)  # a fresh page starts from the current state
        services = json.loads(lab.request("api/services")[1])
        assert [r["action"] for r in services["timeline"]] == ["set_dhcp_option", "power_cycle"]
    finally:
        lab.close()
    assert os.path.exists(tmp_path / "dashboard-failed.png")


def test_a_student_reads_the_exercise_reveals_hints_and_checks_the_lab(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.dashboard_lab import ROOT

    text = open(os.path.join(ROOT, "scenarios", "lab-wrong-option-66.yaml")).read()
    lab = DashboardLab(tmp_path, scenario_text=text)
    try:
        browser.get(lab.base)  # the students' URL
        wait = WebDriverWait(browser, 45, poll_frequency=0.2)
        wait.until(lambda d: tile_states(d).get("failed") == 10)
        browser.find_element(By.ID, "lab-tab").click()
        # The tab shows once the browser has laid it out again: wait for its text (an
        # element not yet shown reads as '' to WebDriver; CI once read it too early).
        wait.until(lambda d: "The phones never get ready" in d.find_element(By.ID, "lab-task").text)
        assert browser.find_elements(By.CSS_SELECTOR, ".hint") == []
        for shown in (1, 2):
            browser.find_element(By.ID, "hint-next").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".hint")) == shown)
        assert "Click a red tile" in browser.find_elements(By.CSS_SELECTOR, ".hint")[0].text
        browser.find_element(By.ID, "check").click()
        wait.until(lambda d: "FAIL" in d.find_element(By.ID, "check-result").text)
        rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#check-result tr.fail")]
        assert rows[0].startswith("FAIL phones.ready == 100% 0")
        browser.save_screenshot(str(tmp_path / "dashboard-exercise.png"))
    finally:
        lab.close()
