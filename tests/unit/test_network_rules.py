"""Where a run may send: loopback by default; with network.interface AND network.allow,
the allow-list. validate and run read the same rules, each refusal at the key that
causes it, naming the key and the address."""

import subprocess
import sys

import pytest

from labsim.scenario.loader import ScenarioError, parse_scenario_text
from labsim.transport.guard import AllowList, NotAllowed

BASE = """\
name: t
{network}
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
"""


def problems(network: str) -> list[str]:
    try:
        parse_scenario_text(BASE.format(network=network), "s.yaml")
    except ScenarioError as exc:
        return [str(problem) for problem in exc.problems]
    return []


def test_a_real_dhcp_server_without_interface_is_refused_at_its_key():
    found = problems("network: {dhcp_server: 192.168.1.10}")
    assert found == ["s.yaml:2:11: network.dhcp_server: 192.168.1.10 is outside the "
                     "loopback lab (127.0.0.0/8); to reach a real server, name network.interface and network.allow "
                     "(README: Testing your own servers)"]


@pytest.mark.parametrize("key, value", [("dns_server", "10.1.1.1:53"), ("pnp_server", "192.0.2.7"),
                                        ("relay_address", "10.0.0.2")])
def test_every_server_key_is_held_to_loopback(key, value):
    found = problems(f"network: {{dhcp_server: 127.0.0.1, {key}: '{value}'}}")
    assert len(found) == 1 and f"network.{key}: {value.split(':')[0]} is outside the loopback lab" in found[0]


def test_interface_without_allow_is_refused():
    found = problems("network: {interface: eth1}")
    assert len(found) == 1 and "network.interface 'eth1' needs network.allow" in found[0]
    assert problems("network: {interface: eth1, allow: []}")[0].startswith("s.yaml:2:28: network.allow: network.interface")


def test_allow_without_interface_is_refused():
    found = problems("network: {dhcp_server: 127.0.0.1, allow: [10.20.0.0/24]}")
    assert len(found) == 1 and "network.allow needs network.interface" in found[0]


def test_with_both_keys_servers_must_be_in_the_allow_list():
    assert problems("network: {interface: eth1, allow: [198.18.5.0/24], dhcp_server: 198.18.5.1}") == []
    assert problems("network: {interface: eth1, allow: [198.18.5.0/24]}") == []  # broadcast: no server named
    found = problems("network: {interface: eth1, allow: [198.18.5.0/24], dns_server: '198.19.0.1:53'}")
    assert len(found) == 1 and "network.dns_server: 198.19.0.1 is outside network.allow (198.18.5.0/24)" in found[0]


def test_loopback_interface_takes_only_loopback_in_allow():
    assert problems("network: {interface: lo, allow: [127.0.0.0/8]}") == []
    found = problems("network: {interface: lo, allow: [127.0.0.1, 198.18.0.0/15]}")
    assert len(found) == 1 and "network.allow[1]: 198.18.0.0/15 is not on interface 'lo'" in found[0]


def test_a_bad_allow_item_and_relay_mode_without_server():
    found = problems("network: {interface: eth1, allow: [10.20.0.0/33]}")
    assert len(found) == 1 and "network.allow[0]" in found[0] and "not an address or subnet" in found[0]
    found = problems("network: {interface: eth1, allow: [10.20.0.0/24], dhcp_mode: relay}")
    assert len(found) == 1 and "network.dhcp_mode relay needs network.dhcp_server" in found[0]


def test_validate_and_run_refuse_alike(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE.format(network="network: {dhcp_server: 192.168.1.10}"))
    for command in ("validate", "run"):
        done = subprocess.run([sys.executable, "-m", "labsim", command, str(path), "--report-dir", str(tmp_path)]
                              if command == "run" else [sys.executable, "-m", "labsim", command, str(path)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert "network.dhcp_server: 192.168.1.10 is outside the loopback lab" in done.stderr, done.stderr


def test_allow_list_check():
    allow = AllowList(["198.18.5.0/24", "198.19.0.9"])
    assert allow.check("198.18.5.77") == "198.18.5.77" and allow.check("198.19.0.9") == "198.19.0.9"
    with pytest.raises(NotAllowed, match=r"198.19.0.10 is outside network.allow \(198.18.5.0/24, 198.19.0.9/32\)"):
        allow.check("198.19.0.10")
    with pytest.raises(NotAllowed, match="outside network.allow"):
        allow.check("localhost")  # loopback only when the list says so
    with pytest.raises(NotAllowed, match="host name"):
        allow.check("provisioning.example.com")


def test_without_privileges_the_packet_socket_is_refused_with_the_reason(monkeypatch):
    from types import SimpleNamespace

    from twisted.internet.task import Clock

    from labsim.transport import realnet

    def no_permission(interface):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(realnet, "open_packet_socket", no_permission)
    monkeypatch.setattr(realnet, "check_interface", lambda spec: SimpleNamespace(address="127.0.0.1"))
    spec = SimpleNamespace(interface="lo", allow=["127.0.0.0/8"], source="interface", dhcp_rate=100,
                           dhcp_mode="broadcast", http_connections="per_request")
    with pytest.raises(realnet.RefusedToStart, match="'lo': the phones' packet socket needs root or CAP_NET_RAW"):
        realnet.RealNetwork(Clock(), spec)
