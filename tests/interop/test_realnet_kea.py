"""labsim's phones on a real segment against real Kea, tftpd-hpa and nginx (issue 11).

Two namespaces on a bridge (tests/interop/bridge_lab.py, 198.18.N.0/24): the servers in
one, labsim's fleet in the other with ``network: {interface, allow}``. Each phone
broadcasts its own DHCP from its own MAC through the fleet's one packet socket; Kea
answers on its interface (no relay). Checked from outside labsim: Kea's lease file has
each phone's own MAC and, after the run, every lease released; a capture on the bridge
shows the broadcast DISCOVERs from the phones' MACs; nginx's access log shows where the
downloads came from.
"""

from __future__ import annotations

import pytest

from tests.interop.bridge_lab import bridge_lab
from tests.interop.realnet_servers import (CISCO_FIRST, YEALINK_FIRST, capture, kea_leases, kea_on, macs,
                                           nginx_on, read_capture, run_labsim, scenario, tftpd_on, write_files)

pytestmark = pytest.mark.interop

YEALINK, CISCO = 50, 10


def test_sixty_phones_broadcast_dhcp_to_kea_download_reboot_once_and_release(tmp_path):
    with bridge_lab() as lab:
        tftp_root, www = tmp_path / "tftpboot", tmp_path / "www"
        write_files(lab, tftp_root, www, YEALINK, CISCO)
        pcap = tmp_path / "bridge.pcap"
        with kea_on(lab, tmp_path, option66=f"tftp://{lab.server_ip}/"), tftpd_on(lab, tftp_root), \
                nginx_on(lab, www, tmp_path), capture(lab.bridge, pcap, "udp port 67 or udp port 68"):
            done, report = run_labsim(lab, tmp_path, scenario(lab, yealink=YEALINK, cisco=CISCO))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        # The one start line: interface, allow-list, phone count, rate.
        assert (f"real network on {lab.phones_if} ({lab.phones_ip}); allow {lab.subnet}; 60 phones; "
                "DHCP broadcast from each phone's MAC, at most 100/s") in done.stdout

        phones = {phone["mac"]: phone for phone in report["phones"]}
        expected = set(macs(YEALINK_FIRST, YEALINK) + macs(CISCO_FIRST, CISCO))
        assert set(phones) == expected
        assert all(phone["state"] == "ready" and phone["reboots"] == 1 for phone in phones.values())

        # Kea's own record: a lease for each phone's own MAC, and each released at the end
        # (Kea writes a released lease again with valid_lifetime 0).
        leases = kea_leases(tmp_path)
        by_mac = {row["hwaddr"]: row for row in leases.values()}
        assert set(by_mac) == expected
        assert all(row["valid_lifetime"] == "0" for row in by_mac.values()), [
            row for row in by_mac.values() if row["valid_lifetime"] != "0"][:3]
        assert report["network"]["releases"] == 60  # queued at the end, then sent (Kea above)

        # On the wire: broadcast DISCOVERs, each from a phone's own MAC (Ethernet source
        # and chaddr alike), no option 82.
        discovers = read_capture(pcap, "dhcp.option.dhcp == 1", "eth.src", "eth.dst", "dhcp.hw.mac_addr", "ip.dst")
        assert {row[0] for row in discovers} == expected
        assert all(row[1] == "ff:ff:ff:ff:ff:ff" and row[0] == row[2].split(",")[0] and row[3] == "255.255.255.255"
                   for row in discovers)
        assert read_capture(pcap, "dhcp.option.type == 82", "frame.number") == []
        # (dhcp.hw.mac_addr lists chaddr, then option 61's hardware address: the same MAC.)
        releases = read_capture(pcap, "dhcp.option.dhcp == 7", "eth.src", "ip.src", "ip.dst")
        assert {row[0] for row in releases} == expected and {row[2] for row in releases} == {lab.server_ip}

        # Downloads came from the interface's address (the default source), each file on a
        # connection of its own (nginx numbers every request 1 on its connection).
        logged = [line.split() for line in (tmp_path / "access.log").read_text().splitlines()]
        assert {row[0] for row in logged} == {lab.phones_ip}
        assert {row[4] for row in logged} == {"1"} and len({row[3] for row in logged}) == len(logged)
