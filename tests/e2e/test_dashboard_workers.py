"""The dashboard of a `labsim run --workers 2 --ui` run: the phones live in two worker
processes, the page talks to the parent.

In headless Chromium: every tile turns ready, a phone of each shard opens with its story
(asked of the worker that holds it: file names and MD5s as report.json has them), and a
power-cycle of one phone from the page reaches that phone in its shard (its story and the
final report count one power cycle for it, none for the others). Over HTTP: the
services view, a factory reset of one phone reaching it in its shard, a DHCP option and
a power-cycle of all phones from the control API reaching both shards, a fault added in
every shard, packets of a phone of each shard from its shard's capture, and the
exercise check on the parent's mirror and on the requests every worker tells. And a
worker leaves when the parent of an open lab dies.
"""

import json
import os
import signal
import time

import pytest

from labsim.fleet.shard import roster
from labsim.scenario.loader import parse_scenario_text
from tests.dashboard_lab import SMALL_LAB, DashboardLab
from tests.e2e.test_dashboard_browser import browser, tile_states  # noqa: F401 (the fixture)

pytestmark = pytest.mark.e2e

SHARD_OF = {entry.phone.mac: entry.shard for entry in roster(parse_scenario_text(SMALL_LAB), 2)}


def one_phone_per_shard() -> dict[int, str]:
    picked: dict[int, str] = {}
    for mac, shard in SHARD_OF.items():
        picked.setdefault(shard, mac)
    assert sorted(picked) == [0, 1]
    return picked


def click_tile(driver, mac: str) -> None:
    from selenium.webdriver.common.by import By

    tiles = driver.find_element(By.ID, "tiles")
    x, y = driver.execute_script("return layout.pos[fleet.macs.indexOf(arguments[0])];", mac)
    size = driver.execute_script("return layout.size;")
    driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "arguments[0].dispatchEvent(new MouseEvent('click', {clientX: r.left + arguments[1], "
        "clientY: r.top + arguments[2], bubbles: true}));", tiles, x + size / 2, y + size / 2)


def test_a_two_worker_lab_in_chromium(browser, tmp_path):  # noqa: F811 (the fixture)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    lab = DashboardLab(tmp_path, extra=("--workers", "2"))
    try:
        assert "6 phones in 2 workers (3, 3)" in lab.wait_until(
            lambda: "".join(lab.output) if "in 2 workers" in "".join(lab.output) else "", what="the workers")
        browser.get(lab.control_url)
        wait = WebDriverWait(browser, 60, poll_frequency=0.2)
        wait.until(lambda d: tile_states(d).get("ready") == 6)
        lab.wait_until(lambda: "the lab stays open" in "".join(lab.output), what="the settled, merged report")
        phones = {phone["mac"]: phone for phone in lab.report()["phones"]}

        # A phone of each shard: its story comes from the worker that holds it.
        for shard, mac in sorted(one_phone_per_shard().items()):
            click_tile(browser, mac)
            wait.until(lambda d: mac in d.find_element(By.ID, "phone-body").text
                       and "option 66" in d.find_element(By.ID, "phone-body").text)
            story = browser.find_element(By.ID, "phone-body").text
            assert phones[mac]["files"], f"shard {shard}'s phone applied files"
            for name, md5 in phones[mac]["files"].items():
                assert name in story and md5 in story, (shard, name, md5)
            browser.save_screenshot(str(tmp_path / f"workers-phone-shard-{shard}.png"))

        # The last phone opened (shard 1's) is the selected one: power-cycle it from the page.
        target = one_phone_per_shard()[1]
        browser.find_element(By.ID, "phone-close").click()
        browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=controls]").click()
        assert browser.find_element(By.ID, "c-macs").get_attribute("value") == target
        browser.find_element(By.CSS_SELECTOR, "button[data-act=power_cycle]").click()
        wait.until(lambda d: "power cycle: 1 phone(s)" in d.find_element(By.ID, "c-result").text)
        status, story = lab.json(f"api/phone?mac={target}")
        assert status == 200
        lab.wait_until(lambda: (lambda p: p["power_cycles"] == 1 and p["state"] == "ready")(
            lab.json(f"api/phone?mac={target}")[1]), what="the power-cycled phone ready again in its shard")
        status, story = lab.json(f"api/phone?mac={target}")
        assert any("power" in row["text"].lower() for row in story["timeline"]), story["timeline"]
        browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=fleet]").click()
        wait.until(lambda d: tile_states(d).get("ready") == 6)
        browser.save_screenshot(str(tmp_path / "workers-fleet.png"))
    finally:
        assert lab.close() == 0, "".join(lab.output[-80:])
    report = lab.report()
    assert report["complete"] and "lab closed" in report["end_reason"]
    cycled = {phone["mac"]: phone["power_cycles"] for phone in report["phones"]}
    assert cycled == {mac: int(mac == target) for mac in SHARD_OF}
    assert [(r["entry"], r["action"]) for r in report["timeline"]] == [("dashboard", "power_cycle")]


def test_controls_packets_and_the_check_reach_both_shards(tmp_path):
    lab = DashboardLab(tmp_path, extra=("--workers", "2", "--pcap", str(tmp_path / "lab.pcap")))
    try:
        lab.wait_until(lambda: lab.states().get("ready") == 6, what="6 phones ready")
        status, info = lab.json(f"api/info?token={lab.token}")
        assert status == 200 and info["control"] and info["capture"]
        lab.wait_until(lambda: "the lab stays open" in "".join(lab.output), what="the settled, merged report")

        for shard, mac in one_phone_per_shard().items():
            status, body = lab.json(f"api/packets?mac={mac}")
            assert status == 200, (shard, body)
            assert any("DHCP OFFER" in row["info"] for row in body["packets"]), shard
            status, pcap = lab.request(f"api/pcap?mac={mac}")
            assert status == 200 and pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
        assert lab.json("api/phone?mac=00:15:65:00:00:99")[0] == 404

        status, body = lab.json("api/check", body=b"{}")
        assert status == 200
        assert [(e["check"], e["passed"], e["observed"]) for e in body["expectations"]] == [
            ("phones.ready == 100%", True, 6)]

        # A factory reset of one given phone reaches it in its shard (shard 0 here).
        reset = one_phone_per_shard()[0]
        status, body = lab.act(f'{{factory_reset: {{macs: ["{reset}"]}}}}')
        assert status == 200 and body["done"][0]["outcome"] == "factory reset: 1 phone(s)", body
        lab.wait_until(lambda: (lambda p: p["state"] == "ready" and any(
            "factory reset: flash cleared" in row["text"] for row in p["timeline"]))(
            lab.json(f"api/phone?mac={reset}")[1]), what="the factory-reset phone ready again in its shard")
        others = [lab.json(f"api/phone?mac={mac}")[1] for mac in SHARD_OF if mac != reset]
        assert not any("factory reset" in row["text"] for p in others for row in p["timeline"])

        # A fault reaches every shard; the services run once, in the parent.
        status, body = lab.act("{add_fault: {name: slow, service: dhcp, delay_s: 0.001}}")
        assert status == 200, body
        status, body = lab.act("{stop_service: http}")
        assert status == 200 and body["done"][0]["outcome"] == "stop http", body
        status, body = lab.act("{start_service: http}")
        assert status == 200, body
        # A wrong option 66, then every phone power-cycled: both shards' phones fail.
        status, body = lab.act('[{set_dhcp_option: {66: "http://127.0.0.1:8008/"}}, {power_cycle: {phones: all}}]')
        assert status == 200, body
        assert body["done"][1]["outcome"] == "power cycle: 6 phone(s)"
        lab.wait_until(lambda: lab.states().get("failed") == 6, what="6 phones failed")
        for mac in one_phone_per_shard().values():
            status, story = lab.json(f"api/phone?mac={mac}")
            assert story["state"] == "failed" and "8008" in json.dumps(story["cause"]), story["cause"]
        status, services = lab.json("api/services")
        assert [fault["name"] for fault in services["faults"]] == ["slow"]
        assert [r["action"] for r in services["timeline"]] == [
            "factory_reset", "add_fault", "stop_service", "start_service", "set_dhcp_option", "power_cycle"]
    finally:
        assert lab.close() == 1, "".join(lab.output[-60:])  # the expectation fails now: every phone failed
    report = lab.report()
    assert report["summary"]["by_state"]["failed"] == 6
    assert report["network"]["faults"]["delayed"] > 0, "the DHCP fault delayed datagrams in the shards"


SERIES_CHECKS = ["service.http.requests >= 6", "service.tftp.requests == 0", "service.http.requests_per_s.max >= 1",
                 "service.http.requests_per_min.max > 0 during sun 00:00-01:00",
                 "stage.mac_cfg.count >= 6", "stage.dhcp.max < 60",
                 "service.dhcp.requests == 0 during mon-fri"]


def test_the_check_judges_requests_stage_latencies_and_flash_on_every_workers_phones(tmp_path):
    """A check on service.* or stage.* is judged on the fleet's requests and download
    timings as the workers tell them, a check on flash by asking every worker: once the
    lab has settled it says what the merged report says (totals, busiest second and
    minute, a window of the lab's calendar that came and one that did not, a stage's count
    and its slowest, the phones whose flash fails, in the same order)."""
    text = SMALL_LAB.replace("  - phones.ready == 100%\n", "".join(f"  - {check}\n" for check in SERIES_CHECKS)
                             + '  - {flash: {key: static.network.lldp.enable, equals: "1"}}\n')
    lab = DashboardLab(tmp_path, scenario_text=text, extra=("--workers", "2"))
    try:
        lab.wait_until(lambda: "the lab stays open" in "".join(lab.output), what="the settled, merged report")
        status, body = lab.json("api/check", body=b"{}")
        assert status == 200
        checks = body["expectations"]
        checked = {e["check"]: e for e in checks}
        reported = {e["check"]: e for e in lab.report()["expectations"]}
        for check in SERIES_CHECKS[:-1]:
            assert (checked[check]["passed"], checked[check]["observed"]) == (True, reported[check]["observed"]), check
        assert reported["service.http.requests >= 6"]["observed"] >= 12  # both shards' phones: two files each
        assert reported["stage.mac_cfg.count >= 6"]["observed"] >= 6
        # A window that has not come yet (the run is in its first minutes, Sunday on the lab's calendar).
        assert (checked[SERIES_CHECKS[-1]]["passed"], checked[SERIES_CHECKS[-1]]["observed"]) == (False, None)
        # Flash, asked of both workers: the T54S phones (one in each shard) have no common file.
        flash = "every phone: flash static.network.lldp.enable == '1'"
        assert checks[-1]["check"] == flash
        assert {key: checks[-1][key] for key in ("passed", "observed", "detail")} == {
            key: reported[flash][key] for key in ("passed", "observed", "detail")}
        assert checks[-1]["observed"] == {"phones": 6, "failing": 2} and {SHARD_OF[mac] for mac in (
            "00:15:65:77:00:05", "00:15:65:77:00:06")} == {0, 1}, checks[-1]
    finally:
        lab.close()


def test_workers_of_an_open_lab_leave_when_its_parent_dies(tmp_path):
    """A settled lab kept open for the page: SIGKILL on the parent, and no worker stays."""
    lab = DashboardLab(tmp_path, extra=("--workers", "2"))
    workers: list[int] = []
    try:
        lab.wait_until(lambda: "the lab stays open" in "".join(lab.output), what="the settled, merged report")
        with open(f"/proc/{lab.proc.pid}/task/{lab.proc.pid}/children") as handle:
            workers = [int(pid) for pid in handle.read().split()]
        assert len(workers) == 2
        lab.proc.send_signal(signal.SIGKILL)
        lab.proc.wait(timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in workers):
            for pid in workers:
                try:  # reap them here: the killed parent's children are not ours to wait for, so poll
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            time.sleep(0.1)
        alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}")
                 and open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
        assert alive == [], "workers outlived their parent"
    finally:
        lab.close()
        for pid in workers:  # whatever the outcome, leave nothing behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
