"""labsim's PnP responder on the real multicast group: ``labsim serve`` with
``services.pnp.interface`` naming the host side of a veth pair, and a phone in a network
namespace on the other side multicasting a Yealink-style ``ua-profile`` SUBSCRIBE to
224.0.1.75:5060 (RFC 6080), as a phone does at boot. Needs root and ip; fails (not skips)
under CI=true without them.

The phone is this file run as a program inside the namespace (``ip netns exec NS python3
-m tests.interop.test_pnp_multicast ...``): real sockets in another network stack, so
nothing reaches the responder unless the kernel delivers the group to it on that link.
Traffic stays inside the veth pair (tests/interop/netns.py), and the responder's group
socket is pinned to the host side (SO_BINDTODEVICE).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from labsim.wire import sip_pnp
from tests.interop.netns import VethLab, run_ip
from tests.serve_process import labsim_serve
from tests.peers import free_tcp_port, free_udp_port, require_binary

pytestmark = pytest.mark.interop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUP, PNP_PORT = sip_pnp.PNP_MULTICAST  # 224.0.1.75:5060
OTHER_GROUP = "224.0.1.76"  # joined by nobody: a SUBSCRIBE there must go unanswered
MAC = "00:15:65:00:00:01"

SCENARIO = """\
name: pnp-namespace-lab
services:
  dhcp: {{port: {dhcp_port}}}
  http: {{port: {http_port}}}
  pnp:
    port: {pnp_port}
    interface: {host_if}
    url: "http://{prefix}.1:{http_port}/default/"
    per_model: {{T46S: "http://{prefix}.1:{http_port}/{{model}}/{{mac}}.cfg"}}
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "{mac}"}}
"""


# --- the phone, run inside the namespace ------------------------------------------------------


def _phone(argv: list[str]) -> None:
    """Multicast a SUBSCRIBE to the PnP group, collect the answers, acknowledge the NOTIFY;
    then multicast one to OTHER_GROUP and listen for a second. Prints one JSON object."""
    [address] = argv  # the phone's address on its link

    def subscribe(call_id: str, group: str) -> bytes:
        return sip_pnp.build_subscribe(mac=MAC, vendor="Yealink", model="T46S", version="66.85.0.5",
                                       local=(address, PNP_PORT), call_id=f"{call_id}@{address}", tag=call_id,
                                       branch=f"{sip_pnp.BRANCH_MAGIC}{call_id}", user_agent="Yealink SIP-T46S",
                                       target=(group, PNP_PORT)).encode()

    def receive(until: float, want: int) -> list[dict]:
        got = []
        while len(got) < want and time.monotonic() < until:
            sock.settimeout(max(0.01, until - time.monotonic()))
            try:
                data, source = sock.recvfrom(65535)
            except socket.timeout:
                break
            got.append({"from": list(source), "data": base64.b64encode(data).decode()})
        return got

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, PNP_PORT))  # a phone's SIP port, where the answers come
        # As a phone does: the group leaves through the link that has its address.
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.sendto(subscribe("first", GROUP), (GROUP, PNP_PORT))
        answers = receive(time.monotonic() + 5.0, want=2)
        if len(answers) == 2:  # acknowledge the NOTIFY to where it came from
            notify = sip_pnp.parse(base64.b64decode(answers[1]["data"]))
            sock.sendto(sip_pnp.build_response(notify, 200, "OK").encode(), tuple(answers[1]["from"]))
        sock.sendto(subscribe("other", OTHER_GROUP), (OTHER_GROUP, PNP_PORT))
        stray = receive(time.monotonic() + 1.0, want=1)
    print(json.dumps({"answers": answers, "stray": stray}), flush=True)


def run_phone(lab: VethLab, address: str) -> dict:
    ip = require_binary("ip")
    done = subprocess.run(
        [ip, "netns", "exec", lab.namespace, sys.executable, "-m", "tests.interop.test_pnp_multicast", address],
        capture_output=True, text=True, timeout=30, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def group_joined(interface: str) -> bool:
    """Whether the host has joined the PnP group on ``interface`` (the kernel's own list)."""
    return GROUP in run_ip("maddr", "show", "dev", interface).stdout


# --- the test ----------------------------------------------------------------------------------


def test_a_phone_multicasting_in_a_namespace_gets_its_url_from_the_group(veth_lab, tmp_path):
    lab = veth_lab
    phone_address = f"{lab.prefix}.2"
    run_ip("-n", lab.namespace, "addr", "add", f"{phone_address}/24", "dev", lab.client_if)
    http_port = free_tcp_port()
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(dhcp_port=free_udp_port(), http_port=http_port, pnp_port=free_udp_port(),
                                    host_if=lab.host_if, prefix=lab.prefix, mac=MAC))
    assert not group_joined(lab.host_if)

    with labsim_serve(str(path), str(tmp_path / "report")) as serve:
        banner = serve.wait_for("labsim serve:")
        assert f"PnP group 224.0.1.75 on {lab.host_if} port {PNP_PORT}" in banner
        assert group_joined(lab.host_if)  # IP_ADD_MEMBERSHIP on that interface, seen by the kernel

        result = run_phone(lab, phone_address)
        answers = result["answers"]
        assert len(answers) == 2, result
        # Unicast back from the interface's address and the group's port, not from loopback
        assert [tuple(a["from"]) for a in answers] == [(f"{lab.prefix}.1", PNP_PORT)] * 2
        ok, notify = (sip_pnp.parse(base64.b64decode(a["data"])) for a in answers)
        assert ok.status == 200 and ok.cseq == (1, "SUBSCRIBE") and ok.call_id == f"first@{phone_address}"
        assert notify.method == "NOTIFY" and notify.call_id == ok.call_id
        assert sip_pnp.tag_of(notify, "from") == sip_pnp.tag_of(ok, "to") != ""
        # The per-model URL with this phone's MAC filled in, not the default one
        assert sip_pnp.notify_url(notify) == f"http://{lab.prefix}.1:{http_port}/T46S/001565000001.cfg"
        assert notify.header("via").startswith(f"SIP/2.0/UDP {lab.prefix}.1:{PNP_PORT};")
        assert notify.header("contact") == f"<sip:{lab.prefix}.1:{PNP_PORT}>"
        # Nobody joined 224.0.1.76: that SUBSCRIBE reached no one (checked in the counters too)
        assert result["stray"] == []
        line = serve.wait_for("pnp SUBSCRIBE")
        assert line.endswith(f"pnp SUBSCRIBE from {phone_address}:{PNP_PORT} on {lab.host_if} "
                             f"(Yealink T46S 001565000001): NOTIFY {sip_pnp.notify_url(notify)}")

        assert serve.stop() == 0, serve.stderr
    assert not group_joined(lab.host_if)  # closing the socket left the group

    counters = next(line for line in serve.lines if line.startswith("  pnp: "))
    fields = dict(item.split("=") for item in counters.split(": ", 1)[1].split())
    # On the group socket: the SUBSCRIBE (multicast) and the phone's 200 OK to the NOTIFY
    # (unicast to the interface's address); not the SUBSCRIBE to the other group.
    assert fields["interface_received"] == "2" and fields["received"] == "2", counters
    assert fields["subscribes"] == "1" and fields["notifies_sent"] == "1" and fields["notify_acked"] == "1", counters
    assert "send_errors" not in fields and "malformed" not in fields, counters
    assert sum("pnp SUBSCRIBE" in line for line in serve.lines) == 1  # the acknowledgement is not logged


if __name__ == "__main__":
    _phone(sys.argv[1:])
