"""The vendor matrix's Kea case on two shards: `labsim run --workers 2`, each shard its
own DHCP relay (127.0.0.2 and 127.0.0.3), against real Kea + tftpd-hpa + nginx.

Kea picks the subnet of a relayed request by its giaddr, so its subnet lists both relay
addresses (deploy/kubernetes/README.md says so); with only the first listed, the second
shard's phones get no lease, as documented."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.interop.realservers import kea, nginx, privileged_ports, tftpd_hpa
from tests.interop.test_vendor_matrix import COUNT, ROOT, Yealink, check_split, leases, md5, scenario, split_layout

RELAYS = ["127.0.0.2", "127.0.0.3"]


def _run(tmp_path, text: str, *args: str):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(tmp_path / "r"),
                           *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert (tmp_path / "r" / "report.json").exists(), proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    events = [json.loads(line) for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    return proc, report, events


def _servers(tmp_path, layout, relays):
    option66 = [{"name": "tftp-server-name", "data": layout.option66}]
    return (kea(tmp_path, subnet="10.61.0.0/16", pool="10.61.0.10 - 10.61.3.250", relay=relays, options=option66),
            tftpd_hpa(str(layout.root), layout.tftp_port),
            nginx(str(layout.http_root), layout.http_port, tmp_path, put_folder="uploads"))


@pytest.mark.timeout(120)
def test_the_kea_case_on_two_shards_each_relaying_from_its_own_address(tmp_path):
    layout = split_layout(tmp_path)
    layout.root.mkdir()
    case = Yealink()
    case.write(layout)
    dhcp, tftp, http = _servers(tmp_path, layout, RELAYS)
    with privileged_ports(), dhcp, tftp, http:
        proc, report, events = _run(tmp_path, scenario(case, layout), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "relays 127.0.0.2+0..1" in proc.stdout
    phones = report["phones"]
    assert len(phones) == COUNT and report["summary"]["by_state"]["ready"] == COUNT
    got = leases(report)
    for phone in phones:
        assert phone["reboots"] == 1
        assert phone["files"] == {name: md5(body) for name, body in case.applied(layout, phone).items()}
        assert got[phone["mac"]] and all(address.startswith("10.61.") for address in got[phone["mac"]])
    addresses = [address for mac in got for address in got[mac]]
    assert len(set(addresses)) == len(addresses) == COUNT, "Kea gave one address to two phones"
    check_split(layout, case, report, events, tmp_path)


@pytest.mark.timeout(120)
def test_a_shard_whose_relay_kea_does_not_list_gets_no_lease(tmp_path):
    layout = split_layout(tmp_path)
    layout.root.mkdir()
    case = Yealink()
    case.write(layout)
    text = scenario(case, layout).replace('"time_limit_s": 30', '"time_limit_s": 6')
    dhcp, tftp, http = _servers(tmp_path, layout, RELAYS[:1])
    with privileged_ports(), dhcp, tftp, http:
        proc, report, _ = _run(tmp_path, text, "--workers", "2")
    assert proc.returncode == 1
    holders = {}
    for index in range(2):
        record = json.loads((tmp_path / "r" / "shards" / f"shard-{index}-of-2" / "shard.json").read_text())
        holders.update({p["mac"]: index for p in record["phones"]})
    states = {phone["mac"]: phone["state"] for phone in report["phones"]}
    assert {states[mac] for mac, shard in holders.items() if shard == 0} == {"ready"}
    assert {states[mac] for mac, shard in holders.items() if shard == 1} == {"dhcp"}
