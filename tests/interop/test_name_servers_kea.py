"""A host name in option 66 needs a DNS server in the lease: labsim's phones look names up
with the DNS servers DHCP option 6 gives them, as real phones do. Against Kea with no
option 6 configured they cannot resolve the provisioning server and fail, which a check
before a thousand real phones must show; with Kea's domain-name-servers set to the
lab's DNS they provision."""

import json
import subprocess
import sys

import pytest

from tests.interop.realservers import kea, nginx
from tests.peers import free_port_udp_and_tcp, free_tcp_port

pytestmark = pytest.mark.interop

RELAY = "127.0.0.2"


@pytest.mark.parametrize("name_servers", [None, "127.0.0.1"])
def test_phones_resolve_the_provisioning_host_only_with_the_dns_servers_kea_gives(tmp_path, name_servers):
    root = tmp_path / "www"
    root.mkdir()
    (root / "y000000000066.cfg").write_text("#!version:1.0.0.1\nlang.gui = English\n")
    http_port = free_tcp_port()
    (tmp_path / "lab.yaml").write_text(f"""\
name: kea-option-6
time_limit_s: 60
services:
  dns:
    port: {free_port_udp_and_tcp()}
    records: [{{name: prov.lab, type: A, value: 127.0.0.1}}]
network: {{dhcp_server: 127.0.0.1, dhcp_port: 67, relay_address: {RELAY}}}
fleets:
  - {{vendor: yealink, model: T46S, count: 3, first_mac: "00:15:65:de:00:01", boot_time_s: 0.2}}
""")
    options = [{"name": "tftp-server-name", "data": f"http://prov.lab:{http_port}/"}]
    if name_servers:
        options.append({"name": "domain-name-servers", "data": name_servers})
    with kea(tmp_path, subnet="10.43.0.0/16", pool="10.43.0.10 - 10.43.0.250", relay=RELAY, options=options), \
            nginx(str(root), http_port, tmp_path):
        proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(tmp_path / "lab.yaml"),
                               "--report-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=90)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    summary = report["summary"]
    [(server, line)] = [(s, v) for s, v in summary["servers"].items() if s.startswith("http://")]
    assert server == f"http://prov.lab:{http_port}"
    if name_servers:
        assert summary["by_state"]["ready"] == 3, proc.stdout + proc.stderr
        assert "dns" not in line["by_status"] and report["services"]["dns"]["queries"] >= 1
    else:
        assert summary["by_state"]["failed"] == 3, proc.stdout + proc.stderr
        assert line["by_status"] == {"dns": line["requests"]}
        [problem] = summary["problems"]
        assert problem["error"] == ("prov.lab: no DNS server to ask: the phone's lease has none (DHCP option 6)")
        assert report["services"]["dns"]["queries"] == 0  # they had no one to ask
