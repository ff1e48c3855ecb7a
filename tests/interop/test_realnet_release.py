"""A real-network run gives back every lease however it ends (time limit, SIGTERM, Ctrl-C),
and refuses to start on an interface that is down or has no address (issue 11).

Kea in the server namespace of a bridge lab (tests/interop/bridge_lab.py); option 66
points at an address in the allow-list where nothing answers, so the phones hold their
leases and keep trying to download until the run is stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.interop.bridge_lab import bridge_lab
from tests.interop.netns import run_ip
from tests.interop.realnet_servers import ROOT, kea_leases, kea_on, macs, run_labsim

pytestmark = pytest.mark.interop

PHONES = 12
FIRST = "00:15:65:dd:00:01"


def _scenario(lab, time_limit_s: int) -> str:
    return f"""\
name: realnet-release
time_limit_s: {time_limit_s}
network: {{interface: {lab.phones_if}, allow: [{lab.subnet}]}}
fleets:
  - {{vendor: yealink, model: T46S, count: {PHONES}, first_mac: "{FIRST}"}}
"""


def _leased_macs(tmp_path) -> dict[str, str]:
    try:
        return {row["hwaddr"]: row["valid_lifetime"] for row in kea_leases(tmp_path).values()}
    except FileNotFoundError:
        return {}


@pytest.mark.parametrize("ending", ["time limit", "SIGTERM", "SIGINT"])
def test_every_lease_is_released_however_the_run_ends(tmp_path, ending):
    expected = set(macs(FIRST, PHONES))
    with bridge_lab() as lab:
        with kea_on(lab, tmp_path, option66=f"tftp://{lab.prefix}.9/"):  # nothing answers there
            if ending == "time limit":
                done, report = run_labsim(lab, tmp_path, _scenario(lab, 4))
                assert done.returncode == 1 and "time limit of 4s reached" in done.stdout, done.stdout + done.stderr
            else:
                path = tmp_path / "scenario.yaml"
                path.write_text(_scenario(lab, 120))
                proc = subprocess.Popen(lab.in_phones(sys.executable, "-m", "labsim", "run", str(path),
                                                      "--report-dir", str(tmp_path / "report")),
                                        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                try:
                    deadline = time.monotonic() + 30
                    while set(_leased_macs(tmp_path)) != expected:  # every phone holds a lease
                        assert time.monotonic() < deadline and proc.poll() is None, "the phones got no leases"
                        time.sleep(0.2)
                    proc.send_signal(getattr(signal, ending))
                    out, err = proc.communicate(timeout=30)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.communicate()
                assert proc.returncode == 1 and "interrupted" in out, out + err
            time.sleep(0.5)  # Kea appends the last releases
            leases = _leased_macs(tmp_path)
        assert set(leases) == expected
        assert all(lifetime == "0" for lifetime in leases.values()), leases


def test_release_false_keeps_the_leases(tmp_path):
    with bridge_lab() as lab:
        with kea_on(lab, tmp_path, option66=f"tftp://{lab.prefix}.9/"):
            text = _scenario(lab, 4).replace(f"allow: [{lab.subnet}]", f"allow: [{lab.subnet}], release: false")
            done, _ = run_labsim(lab, tmp_path, text)
            time.sleep(0.5)
            leases = _leased_macs(tmp_path)
        assert done.returncode == 1 and "no DHCPRELEASE at the end" in done.stdout
        assert set(leases) == set(macs(FIRST, PHONES)) and all(v != "0" for v in leases.values())


def test_an_interface_down_or_without_an_address_is_refused(tmp_path):
    with bridge_lab() as lab:
        run_ip("-n", lab.phones_ns, "link", "set", lab.phones_if, "down")
        done, report = run_labsim(lab, tmp_path, _scenario(lab, 10))
        assert done.returncode == 2 and report is None
        assert f"network.interface {lab.phones_if!r} is down: refused, nothing sent" in done.stderr, done.stderr
        run_ip("-n", lab.phones_ns, "link", "set", lab.phones_if, "up")
        run_ip("-n", lab.phones_ns, "addr", "flush", "dev", lab.phones_if)
        done, report = run_labsim(lab, tmp_path, _scenario(lab, 10))
        assert done.returncode == 2 and report is None
        assert f"network.interface {lab.phones_if!r} has no IPv4 address: refused, nothing sent" in done.stderr
        missing = _scenario(lab, 10).replace(lab.phones_if, "nosuch0")
        done, report = run_labsim(lab, tmp_path, missing)
        assert done.returncode == 2 and "network.interface 'nosuch0': no such interface" in done.stderr
