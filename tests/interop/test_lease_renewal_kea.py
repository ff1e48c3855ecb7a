"""labsim's phones renew their lease against Kea: a 60 s lease with Kea's renew and rebind
timers set to 3 s and 6 s (options 58/59), so renewals come within a short run. Kea
must ACK each renewal (a REQUEST with ciaddr, through the fleet's relay) with the same
address; nothing of labsim's own DHCP runs here."""

import json
import subprocess
import sys

import pytest

from tests.interop.realservers import kea, nginx
from tests.peers import free_tcp_port

pytestmark = pytest.mark.interop

RELAY = "127.0.0.2"


def test_yealink_phones_renew_their_lease_with_kea(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "y000000000066.cfg").write_text("#!version:1.0.0.1\nlang.gui = English\n")
    http_port = free_tcp_port()
    (tmp_path / "lab.yaml").write_text(f"""\
name: kea-renewal
time_limit_s: 60
duration: 10s
network: {{dhcp_server: 127.0.0.1, dhcp_port: 67, relay_address: {RELAY}}}
fleets:
  - {{vendor: yealink, model: T46S, count: 4, first_mac: "00:15:65:dd:00:01", boot_time_s: 0.2}}
expect:
  - phones.ready == 100%
""")
    options = [{"name": "tftp-server-name", "data": f"http://127.0.0.1:{http_port}/"}]
    timers = {"valid-lifetime": 60, "renew-timer": 3, "rebind-timer": 6}
    with kea(tmp_path, subnet="10.42.0.0/16", pool="10.42.0.10 - 10.42.0.250", relay=RELAY, options=options,
             timers=timers), nginx(str(root), http_port, tmp_path):
        proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(tmp_path / "lab.yaml"),
                               "--report-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    events = [json.loads(line) for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    answered = 0
    for phone in report["phones"]:
        mac = phone["mac"]
        mine = [e for e in events if e["mac"] == mac and e["kind"] == "dhcp"]
        first_ack = next(e for e in mine if e["type"] == "ACK")
        renewals = [e for e in mine if e["dir"] == "out" and e["type"] == "REQUEST" and e["t"] > first_ack["t"] + 1]
        acks = [e for e in mine if e["dir"] == "in" and e["type"] == "ACK" and e["t"] > first_ack["t"] + 1]
        # T1 = 3 s from Kea's option 58: renewals about every 3 s, each ACKed with the same address.
        assert len(renewals) >= 2 and len(acks) >= 2, (mac, mine)
        assert abs(renewals[0]["t"] - first_ack["t"] - 3.0) < 0.5
        assert {e["yiaddr"] for e in acks} == {first_ack["yiaddr"]} and first_ack["yiaddr"].startswith("10.42.")
        assert not [e for e in mine if e["type"] == "NAK"]
        assert phone["state"] == "ready"
        answered += sum(1 for e in events if e["mac"] == mac and e["kind"] == "step" and "renewed" in e["detail"])
    # Kea's answers to the renewals are the report's numbers for Kea: each one timed
    # (stage dhcp_renew) and counted on Kea's line with the first leases, none an error.
    stages = report["summary"]["stages_s"]
    assert answered >= 8 and stages["dhcp_renew"]["count"] == answered
    [(name, server)] = [(name, s) for name, s in report["summary"]["servers"].items() if name.startswith("dhcp://")]
    assert server["requests"] == stages["dhcp"]["count"] + answered and server["by_status"] == {
        "ok": server["requests"]}, (name, server)
