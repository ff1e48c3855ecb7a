"""labsim's broadcast phones on a real segment against dnsmasq and against `labsim serve`,
downloads from leased addresses, and the allow-list guard on the wire (issue 11).

Same bridge lab as test_realnet_kea.py (two namespaces, 198.18.N.0/24, removed after).
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.interop.bridge_lab import bridge_lab
from tests.interop.realnet_servers import (CISCO_FIRST, YEALINK_FIRST, capture, dnsmasq_on, kea_leases, kea_on,
                                           macs, nginx_on, read_capture, run_labsim, scenario, tftpd_on, write_files)
from tests.serve_process import labsim_serve

pytestmark = pytest.mark.interop

YEALINK, CISCO = 50, 10


def _all_ready(done, report, expected: set[str]) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    phones = {phone["mac"]: phone for phone in report["phones"]}
    assert set(phones) == expected
    assert all(phone["state"] == "ready" and phone["reboots"] == 1 for phone in phones.values())


def test_dnsmasq_as_dhcp_and_tftp_serves_sixty_broadcast_phones(tmp_path):
    with bridge_lab() as lab:
        tftp_root, www = tmp_path / "tftpboot", tmp_path / "www"
        write_files(lab, tftp_root, www, YEALINK, CISCO)
        with dnsmasq_on(lab, tmp_path, tftp_root), nginx_on(lab, www, tmp_path):
            done, report = run_labsim(lab, tmp_path, scenario(lab, yealink=YEALINK, cisco=CISCO))
        expected = set(macs(YEALINK_FIRST, YEALINK) + macs(CISCO_FIRST, CISCO))
        _all_ready(done, report, expected)
        log = (tmp_path / "dnsmasq.log").read_text(errors="replace")
        # dnsmasq's own log: an ACK and then a RELEASE for each phone's own MAC, on its interface.
        acked = set(re.findall(rf"DHCPACK\({lab.server_if}\) \S+ ([0-9a-f:]{{17}})", log))
        released = set(re.findall(rf"DHCPRELEASE\({lab.server_if}\) \S+ ([0-9a-f:]{{17}})", log))
        assert acked == expected and released == expected
        assert not any(mac in (tmp_path / "dnsmasq.leases").read_text() for mac in expected)
        tftp_sent = re.findall(r"sent \S+/(y000000000066\.cfg|y000000000065\.cfg|7841\.xml) to", log)
        assert len(tftp_sent) == 2 * (YEALINK + CISCO)  # each phone's first file, before and after its reboot


SERVE = """\
name: realnet-serve
services:
  dhcp:
    interface: {interface}
    subnet: {subnet}
    pool: {{start: {prefix}.100, end: {prefix}.250}}
    options: {{66: "tftp://{server}/"}}
  tftp: {{port: 69}}
  http: {{port: 80}}
  dns: {{port: 53, records: [{{name: prov.lab.example, type: A, value: "{server}"}}]}}
provisioning: {{directory: files}}
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
"""


@pytest.mark.parametrize("named", [False, True])
def test_labsim_serve_on_the_segment_serves_labsims_broadcast_phones(tmp_path, named):
    """``named``: the scenario names the DNS server (network.dns_server); else the phones
    ask the one their lease names, as real phones do: labsim serve's DHCP gives its DNS
    service's address (on the segment) as option 6."""
    with bridge_lab() as lab:
        files = tmp_path / "served" / "files"
        # One folder for TFTP and HTTP; the HTTP URLs name the server, resolved through the
        # DNS service on the segment (inside allow).
        write_files(lab, files, files, YEALINK, CISCO, http_host="prov.lab.example")
        served = tmp_path / "served" / "serve.yaml"
        served.write_text(SERVE.format(interface=lab.server_if, subnet=lab.subnet, prefix=lab.prefix,
                                       server=lab.server_ip))
        with labsim_serve(str(served), str(tmp_path / "serve-report"), prefix=tuple(lab.in_server())) as serve:
            banner = serve.wait_for("labsim serve:")
            # Every service on the interface's address, not loopback's.
            assert all(f"{service} {lab.server_ip}:{port}" in banner
                       for service, port in (("TFTP", 69), ("HTTP", 80), ("DNS", 53))), banner
            done, report = run_labsim(lab, tmp_path, scenario(
                lab, yealink=YEALINK, cisco=CISCO, network_extra=f", dns_server: '{lab.server_ip}:53'" if named else ""))
            serve.wait_for("dhcp RELEASE")
            assert serve.stop() == 0, serve.stderr
        expected = set(macs(YEALINK_FIRST, YEALINK) + macs(CISCO_FIRST, CISCO))
        _all_ready(done, report, expected)
        acks = {m for line in serve.lines for m in re.findall(rf"dhcp ACK \S+ to ([0-9a-f:]{{17}}) via {lab.server_if}",
                                                              line)}
        releases = {m for line in serve.lines
                    for m in re.findall(rf"dhcp RELEASE \S+ from ([0-9a-f:]{{17}}) via {lab.server_if}", line)}
        assert acks == expected and releases == expected
        answered = [line for line in serve.lines if "dns A prov.lab.example (udp)" in line]
        assert answered and lab.server_ip in answered[0], answered[:1]


def test_source_leased_downloads_leave_from_each_phones_leased_address(tmp_path):
    yealink, cisco = 8, 2
    with bridge_lab() as lab:
        tftp_root, www = tmp_path / "tftpboot", tmp_path / "www"
        write_files(lab, tftp_root, www, yealink, cisco)
        with kea_on(lab, tmp_path, option66=f"tftp://{lab.server_ip}/"), tftpd_on(lab, tftp_root), \
                nginx_on(lab, www, tmp_path):
            done, report = run_labsim(lab, tmp_path, scenario(lab, yealink=yealink, cisco=cisco,
                                                              network_extra=", source: leased"))
            leases = kea_leases(tmp_path)
        _all_ready(done, report, set(macs(YEALINK_FIRST, yealink) + macs(CISCO_FIRST, cisco)))
        granted = {row["address"] for row in leases.values()}
        # nginx saw each phone's MAC file fetched from a leased address, none from the host's.
        seen: dict[str, set[str]] = {}
        for line in (tmp_path / "access.log").read_text().splitlines():
            client, path, _status, _connection, _requests = line.split()
            seen.setdefault(path.strip("/"), set()).add(client)
        mac_files = {mac: f"{mac.replace(':', '')}.cfg" for mac in macs(YEALINK_FIRST, yealink)}
        mac_files.update({mac: f"{mac.replace(':', '')}.xml" for mac in macs(CISCO_FIRST, cisco)})
        clients = set().union(*seen.values())
        assert lab.phones_ip not in clients and clients <= granted and len(clients) >= yealink + cisco
        # Each phone's own file came from one leased address, a different one per phone.
        assert all(len(seen[name]) == 1 and seen[name] <= granted for name in mac_files.values()), seen
        assert len(set().union(*(seen[name] for name in mac_files.values()))) == yealink + cisco
        # ... and the addresses are gone from the interface after the run.
        shown = subprocess.run(lab.in_phones("ip", "-4", "addr", "show", "dev", lab.phones_if),
                               capture_output=True, text=True).stdout
        assert re.findall(r"inet (\S+)/", shown) == [lab.phones_ip]


def test_a_url_outside_allow_fails_the_phone_and_nothing_is_sent_there(tmp_path):
    outside = "198.19.77.7"  # in the benchmarking range, outside this lab's allow-list
    with bridge_lab() as lab:
        pcap = tmp_path / "phones.pcap"
        text = scenario(lab, yealink=3, cisco=1, time_limit_s=6).replace(
            "expect:\n  - phones.ready == 100%\n  - phone.reboots == 1\n", "")
        with kea_on(lab, tmp_path, option66=f"tftp://{outside}/"), \
                capture(lab.phones_if, pcap, f"host {outside} or udp port 67", namespace=lab.in_phones()):
            done, report = run_labsim(lab, tmp_path, text)
        assert report is not None, done.stderr
        for phone in report["phones"]:
            assert phone["state"] != "ready"
            details = " ".join(str(event.get("detail", "")) for event in phone["events"])
            assert f"{outside} is outside network.allow ({lab.subnet}): refused, nothing sent" in details, details
        assert read_capture(pcap, "dhcp", "frame.number"), "the capture saw no DHCP at all"
        assert read_capture(pcap, f"ip.addr == {outside} or arp.dst.proto_ipv4 == {outside}", "frame.number") == []


def test_interface_without_allow_is_refused_by_validate_and_run(tmp_path):
    with bridge_lab() as lab:
        text = scenario(lab, yealink=1, cisco=1).replace(f", allow: [{lab.subnet}]", "")
        for verb in ("validate", "run"):
            done, report = run_labsim(lab, tmp_path, text, verb)
            assert done.returncode == 2 and report is None, (verb, done.stdout, done.stderr)
            assert f"network.interface: network.interface '{lab.phones_if}' needs network.allow" in done.stderr


def test_relay_mode_reaches_a_server_for_another_subnet_from_the_interfaces_address(tmp_path):
    yealink, cisco = 6, 2
    with bridge_lab() as lab:
        tftp_root, www = tmp_path / "tftpboot", tmp_path / "www"
        write_files(lab, tftp_root, www, yealink, cisco)
        remote = "198.19.200"  # the phones' "other subnet": Kea picks it by giaddr = the interface's address
        kea_config = dict(option66=f"tftp://{lab.server_ip}/", subnet=f"{remote}.0/24", relay=lab.phones_ip,
                          pool_prefix=remote)
        with kea_on(lab, tmp_path, **kea_config), tftpd_on(lab, tftp_root), nginx_on(lab, www, tmp_path):
            done, report = run_labsim(lab, tmp_path, scenario(
                lab, yealink=yealink, cisco=cisco,
                network_extra=f", dhcp_mode: relay, dhcp_server: {lab.server_ip}, http_connections: pooled"))
            time.sleep(0.5)
            leases = kea_leases(tmp_path)
        _all_ready(done, report, set(macs(YEALINK_FIRST, yealink) + macs(CISCO_FIRST, cisco)))
        assert f"DHCP relayed to {lab.server_ip} (giaddr {lab.phones_ip})" in done.stdout
        assert {row["hwaddr"] for row in leases.values()} == set(macs(YEALINK_FIRST, yealink) + macs(CISCO_FIRST, cisco))
        assert all(address.startswith(f"{remote}.") for address in leases)
        assert all(row["valid_lifetime"] == "0" for row in leases.values())  # released through the relay
        # http_connections: pooled: the fleet's requests rode fewer connections than they were.
        logged = [line.split() for line in (tmp_path / "access.log").read_text().splitlines()]
        assert logged and len({row[3] for row in logged}) < len(logged)
        assert max(int(row[4]) for row in logged) > 1
