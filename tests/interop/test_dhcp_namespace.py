"""labsim's DHCP server answering real broadcast clients: busybox udhcpc in a network
namespace, reached over a veth pair whose host side the server is bound to
(``services.dhcp.interface``). Needs root, ip and udhcpc; fails (not skips) under CI=true
without them.

Traffic stays inside the veth pair (tests/interop/netns.py: addresses on the veth only,
namespace and links deleted in ``finally``), and the server's interface socket is pinned to
the host side (SO_BINDTODEVICE).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.interop.netns import VethLab
from tests.serve_process import labsim_serve
from tests.peers import free_udp_port, require_binary

pytestmark = pytest.mark.interop


SCENARIO = """\
name: namespace-lab
services:
  dhcp:
    port: {relay_port}
    interface: {host_if}
    subnet: {prefix}.0/24
    pool: {{start: {prefix}.100, end: {prefix}.120}}
    options:
      66: "{prefix}.1"
      150: [{prefix}.1, {prefix}.2]
    classes:
      - {{name: labphone, match: {{vendor_class: {{prefix: "labsim-phone"}}}}, options: {{66: "{prefix}.5"}}}}
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
"""

# udhcpc runs this on each event; on "bound" it prints what the lease says (udhcpc names
# option 66 "tftp" and shows option 150, which it asks for with -O 150, as hex).
LEASE_SCRIPT = """\
#!/bin/sh
[ "$1" = bound ] && echo "LEASE ip=$ip tftp=$tftp opt150=$opt150 serverid=$serverid subnet=$subnet"
exit 0
"""


def udhcpc(lab: VethLab, script: str, *extra: str) -> dict[str, str]:
    ip = require_binary("ip")
    client = require_binary("udhcpc")
    done = subprocess.run(
        [ip, "netns", "exec", lab.namespace, client, "-i", lab.client_if, "-f", "-q", "-n", "-t", "3", "-T", "1",
         "-s", script, "-O", "150", *extra],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    leases = [line for line in done.stdout.splitlines() if line.startswith("LEASE ")]
    assert done.returncode == 0 and len(leases) == 1, done.stdout + done.stderr
    return dict(item.split("=", 1) for item in leases[0].split()[1:])


def test_udhcpc_in_a_namespace_gets_a_lease_option_66_and_its_class(veth_lab, tmp_path):
    require_binary("udhcpc")
    lab = veth_lab
    script = tmp_path / "lease.sh"
    script.write_text(LEASE_SCRIPT)
    script.chmod(0o755)
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(relay_port=free_udp_port(), host_if=lab.host_if, prefix=lab.prefix))
    pool = {f"{lab.prefix}.{n}" for n in range(100, 121)}
    hex150 = "".join(f"{int(part):02x}" for part in f"{lab.prefix}.1".split(".")) + "".join(
        f"{int(part):02x}" for part in f"{lab.prefix}.2".split("."))

    with labsim_serve(str(path), str(tmp_path / "report")) as serve:
        banner = serve.wait_for("labsim serve:")
        assert f"DHCP broadcast on {lab.host_if} port 67" in banner

        # Broadcast bit clear (udhcpc's default): the server unicasts to the new address,
        # having put the client's MAC in the neighbour table itself. With option 60 of
        # the class, option 66 is the class's.
        first = udhcpc(lab, str(script), "-V", "labsim-phone T46S")
        assert first["ip"] in pool
        assert first["tftp"] == f"{lab.prefix}.5"
        assert first["opt150"] == hex150
        assert first["serverid"] == f"{lab.prefix}.1"  # the interface's address, not loopback's
        assert first["subnet"] == "255.255.255.0"
        line = serve.wait_for("dhcp ACK")
        assert f"dhcp ACK {first['ip']} to " in line
        assert line.endswith(f"via {lab.host_if} (vendor labsim-phone T46S, class labphone)")

        # Broadcast bit set (-B) and udhcpc's own vendor class: broadcast replies, global 66.
        second = udhcpc(lab, str(script), "-B")
        assert second["ip"] == first["ip"]  # the same client (MAC) keeps its address
        assert second["tftp"] == f"{lab.prefix}.1"

        assert serve.stop() == 0, serve.stderr
        counters = next(line for line in serve.lines if line.startswith("  dhcp: "))
        fields = dict(item.split("=") for item in counters.split(": ", 1)[1].split())
        assert fields["ack"] == "2" and fields["class_labphone"] == "1"
        # OFFER and ACK of the first exchange were unicast; the -B ones were not
        assert fields["arp_entries"] == "2" and "arp_errors" not in fields
