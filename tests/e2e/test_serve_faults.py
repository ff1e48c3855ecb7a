"""``labsim serve`` puts its services behind the scenario's ``faults:`` as ``run`` does
(the soak in benchmarks/soak.py runs its services this way): an HTTP outage answers 503,
a TFTP link that loses everything answers nothing."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from tests.peers import free_tcp_port, free_udp_port
from tests.serve_process import labsim_serve

pytestmark = pytest.mark.e2e


def test_serve_applies_the_scenarios_faults(tmp_path):
    http, tftp = free_tcp_port(), free_udp_port()
    scenario = tmp_path / "serve.yaml"
    scenario.write_text(f"""\
name: serve-faults
services:
  dhcp: {{port: {free_udp_port()}}}
  http: {{port: {http}}}
  tftp: {{port: {tftp}}}
provisioning:
  files: {{a.cfg: "x"}}
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
faults:
  - {{name: http-outage, service: http, down: true}}
  - {{name: tftp-black-hole, service: tftp, direction: in, loss: 1.0}}
""")
    with labsim_serve(str(scenario), str(tmp_path / "report")) as serve:
        serve.wait_for("Ctrl-C to stop")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/a.cfg", timeout=5)
        assert caught.value.code == 503
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(1.0)
            udp.sendto(b"\x00\x01a.cfg\x00octet\x00", ("127.0.0.1", tftp))
            with pytest.raises(TimeoutError):
                udp.recvfrom(600)
        serve.stop()
